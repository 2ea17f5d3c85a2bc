// The web UI's costs (see bench/ui.sh): node bench/ui.cjs URL PID. Prints a Markdown table.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("node:fs");

const [base, pid] = process.argv.slice(2);
const PROMPT = "Name three colours.";
const REPS = 5;
const rssMiB = () => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]) / 1024;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Milliseconds from sending the request to the first chunk with text. */
async function apiTtft() {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "smollm2", stream: true, max_tokens: 16, temperature: 0,
      messages: [{ role: "user", content: PROMPT }] }),
  });
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let first = null, buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    if (first === null && /"content":"[^"]/.test(buf)) first = performance.now() - t0;
  }
  return first;
}

(async () => {
  // Warm, as the page's runs will: the model has answered as many times as it will before the second reading.
  for (let i = 0; i < 2 * REPS; i++) await apiTtft();
  await sleep(2000);
  const rssIdle = rssMiB();
  const browser = await chromium.launch({
    executablePath: process.env.LAR_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage();
  const paints = [], pageTtft = [], apiTtfts = [];
  for (let i = 0; i < REPS; i++) {
    await page.goto(`${base}/ui`, { waitUntil: "load" });
    paints.push(await page.evaluate(() => new Promise((resolve) => {
      new PerformanceObserver((list) => {
        const e = list.getEntries().find((x) => x.name === "first-contentful-paint");
        if (e) resolve(e.startTime);
      }).observe({ type: "paint", buffered: true });
    })));
    await page.click("details.settings summary");
    await page.fill("#max_tokens", "16");
    await page.fill("#temperature", "0");
    await page.fill("#prompt", PROMPT);
    // Click to the first text of the answer, timed in the page.
    const ms = await page.evaluate(() => new Promise((resolve) => {
      const msgs = document.querySelector("#messages");
      let t0 = 0;
      const obs = new MutationObserver(() => {
        const c = document.querySelector("article.msg.assistant .content");
        if (c && c.textContent.length > 0) { obs.disconnect(); resolve(performance.now() - t0); }
      });
      obs.observe(msgs, { subtree: true, childList: true, characterData: true });
      t0 = performance.now();
      document.querySelector("#send").click();
    }));
    pageTtft.push(ms);
    await page.waitForFunction(() => document.querySelector("#stop").hidden && location.pathname.startsWith("/ui/c/"));
    apiTtfts.push(await apiTtft());
  }
  await page.goto(`${base}/ui`);
  await sleep(10_000);
  const rssOpen = rssMiB();
  await browser.close();
  let raw = 0, gz = 0;
  for (const name of ["ui.css", "ui.js"]) {
    raw += (await (await fetch(`${base}/ui/assets/${name}`)).arrayBuffer()).byteLength;
    const r = await fetch(`${base}/ui/assets/${name}`, { headers: { "accept-encoding": "gzip" } });
    gz += Number(r.headers.get("content-length") || 0);
  }
  const html = (await (await fetch(`${base}/ui`, { headers: { accept: "text/html" } })).text()).length;
  console.log("| measure | value |");
  console.log("|---|---|");
  console.log(`| RSS of lar serve, no page open (after ${2 * REPS} answers through the API) | ${rssIdle.toFixed(1)} MiB |`);
  console.log(`| RSS with the chat page open and idle 10 s (after ${REPS} more answers from it and ${REPS} through the API) | ${rssOpen.toFixed(1)} MiB (+${(rssOpen - rssIdle).toFixed(1)} MiB) |`);
  console.log(`| chat page, first contentful paint (median of ${REPS}) | ${median(paints).toFixed(0)} ms |`);
  console.log(`| time to first token from the page, click to first text (median of ${REPS}) | ${median(pageTtft).toFixed(0)} ms |`);
  console.log(`| time to first token from the API, same request (median of ${REPS}) | ${median(apiTtfts).toFixed(0)} ms |`);
  console.log(`| assets (ui.css + ui.js), raw / gzipped | ${(raw / 1024).toFixed(1)} KiB / ${(gz / 1024).toFixed(1)} KiB |`);
  console.log(`| chat page HTML (empty conversation) | ${(html / 1024).toFixed(1)} KiB |`);
})().catch((e) => { console.error(e); process.exit(1); });
