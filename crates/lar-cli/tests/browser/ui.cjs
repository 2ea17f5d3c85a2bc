// The web UI in a real browser: Debian's Chromium driven by playwright-core (NODE_PATH from scripts/browser.sh),
// against real `lar serve` processes with SmolLM2 that crates/lar-cli/tests/serve.rs starts.
//   LAR_UI_URL        a server without keys (with LAR_PYPI_URL set to a local PyPI stand-in)
//   LAR_UI_KEYED_URL  a server with the key LAR_UI_KEY
//   LAR_UI_PULL_SOURCE what the models page pulls;  LAR_SCREENSHOTS  where screenshots go
//   LAR_UI_DOCS       a folder with lease.pdf (two pages) and garden.md, uploaded to a new knowledge base
// Each check prints "ok - ..."; the first failure throws and exits 1.
"use strict";
const { chromium } = require("playwright-core");
const assert = require("node:assert/strict");
const path = require("node:path");

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("LAR_UI_URL"), keyedBase = env("LAR_UI_KEYED_URL"), key = env("LAR_UI_KEY");
const shots = env("LAR_SCREENSHOTS");
const ok = (what) => console.log(`ok - ${what}`);

async function newPage(browser) {
  const page = await browser.newPage();
  page.setDefaultTimeout(60_000);
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/** Types a message and sends it with Enter. */
async function ask(page, text) {
  await page.fill("#prompt", text);
  await page.press("#prompt", "Enter");
}

const idle = (page) => page.waitForFunction(() => document.querySelector("#stop").hidden
  && !document.querySelector("#prompt").disabled);

async function chat(browser) {
  const page = await newPage(browser);
  await page.goto(base + "/");
  assert.equal(new URL(page.url()).pathname, "/ui", "a browser at / lands on the UI");
  await page.click("details.settings summary");
  assert.equal(await page.inputValue("#model"), "smollm2:latest");
  await page.fill("#temperature", "0");
  await page.fill("#max_tokens", "40");
  await ask(page, "Name three colours.");
  // Text shows while the answer is still coming (the stop button is up).
  await page.waitForFunction(() => {
    const c = document.querySelector("article.msg.assistant .content");
    return c && c.textContent.length > 0 && !document.querySelector("#stop").hidden;
  });
  ok("the answer streams in");
  await idle(page);
  await page.waitForURL(/\/ui\/c\/c[0-9a-f]+$/);
  await page.waitForFunction(() => document.querySelector("#chat-title").textContent === "Name three colours.");
  assert.ok(await page.isVisible("#delete"), "stored: it can be deleted");
  assert.ok(!(await page.isVisible("#stop")), "no stop button once answered");
  const first = (await page.textContent("article.msg.assistant .content")).trim();
  assert.ok(first.length > 0, "an answer");
  assert.equal(await page.locator("#chat-list a[aria-current=page]").count(), 1, "listed as the current chat");
  await shot(page, "chat");
  ok(`answered and saved (${page.url()})`);

  // Stop a long answer: what came is kept, marked stopped.
  await page.fill("#max_tokens", "400");
  await ask(page, "Write a long story about a lighthouse keeper and her cat.");
  await page.waitForFunction(() => {
    const all = document.querySelectorAll("article.msg.assistant .content");
    return all.length === 2 && all[1].textContent.length > 20;
  });
  await page.click("#stop");
  await idle(page);
  await page.waitForFunction(() => document.querySelector("#status").textContent === "Stopped.");
  const stopped = await page.textContent("article.msg.assistant:last-of-type .content");
  assert.ok(stopped.trim().length > 20, "the partial answer is kept");
  assert.equal(await page.locator("article.msg.assistant .stopped").count(), 1);
  ok("stopped mid-answer, partial answer kept");

  // Reload: the conversation comes back from the server.
  const url = page.url();
  await page.reload();
  assert.equal(await page.locator("article.msg.user").count(), 2);
  assert.equal(await page.locator("article.msg.assistant").count(), 2);
  assert.equal(await page.locator("article.msg.assistant .stopped").count(), 1);
  await page.goto(base + "/ui");
  await page.click(`#chat-list a[href="${new URL(url).pathname}"]`);
  await page.waitForURL(url);
  assert.ok((await page.textContent("#messages")).includes("lighthouse keeper"));
  ok("reload and the list find the conversation");

  // Regenerate the stopped answer.
  await page.click("details.settings summary");
  await page.fill("#max_tokens", "12");
  await page.click("article.msg.assistant:last-of-type button[data-action=regenerate]");
  await idle(page);
  // Done once saved: the message box has the focus back (the last thing an answer does).
  await page.waitForFunction(() => document.querySelectorAll("article.msg.assistant").length === 2
    && document.querySelectorAll("article.msg.assistant .stopped").length === 0
    && document.activeElement === document.querySelector("#prompt"));
  ok("regenerated");

  // Search.
  // Listen before typing: on a loaded machine the debounced search can answer before a listener set up afterwards.
  const searched = page.waitForResponse((r) => r.url().includes("/ui/chats?q=lighthouse"));
  await page.fill("#chat-search", "lighthouse");
  await searched;
  await page.waitForFunction(() => document.querySelectorAll("#chat-list a").length === 1);
  assert.equal(await page.inputValue("#prompt"), "", "nothing typed into the message box");
  await page.fill("#chat-search", "no such words anywhere");
  await page.waitForFunction(() => document.querySelector("#chat-list li.empty"));
  ok("search filters the list");

  // A phone's width: nothing wider than the screen. Dark mode: dark background.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.fill("#chat-search", "");
  await shot(page, "chat-phone");
  const wide = await page.evaluate(() => [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1).map((e) => e.tagName + "#" + e.id + "." + e.className));
  assert.deepEqual(wide.slice(0, 5), [], "fits a phone");
  await page.emulateMedia({ colorScheme: "dark" });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, b] = bg.match(/\d+/g).map(Number);
  assert.ok(r + g + b < 150, `a dark background: ${bg}`);
  await page.setViewportSize({ width: 1280, height: 720 });
  await shot(page, "chat-dark");
  await page.emulateMedia({ colorScheme: "light" });
  ok("readable on a phone, light and dark");
  assert.deepEqual(page.errors, []);
  await page.close();
}

async function attachments(browser) {
  const page = await newPage(browser);
  await page.goto(base + "/ui");
  const garden = require("node:fs").readFileSync(path.join(env("LAR_UI_DOCS"), "garden.md"), "utf8");
  await page.setInputFiles("#attach", path.join(env("LAR_UI_DOCS"), "garden.md"));
  await page.waitForSelector("#attachments li[data-name='garden.md']");
  let sent = null;
  page.on("request", (r) => { if (r.url().endsWith("/v1/chat/completions")) sent = JSON.parse(r.postData()); });
  await page.click("details.settings summary");
  await page.fill("#max_tokens", "8");
  await ask(page, "What does the file say?");
  await idle(page);
  await page.waitForURL(/\/ui\/c\//);
  const system = sent.messages.find((m) => m.role === "system");
  const line = garden.split("\n").find((l) => l.trim().length > 20).trim();
  assert.ok(system && system.content.includes(line), "the file went to the model whole");
  await page.reload();
  await page.waitForSelector("#attachments li[data-name='garden.md']");
  ok("a file attached to a chat goes to the model and stays with the chat");
  assert.deepEqual(page.errors, []);
  await page.close();
}

async function hostile(browser) {
  const page = await newPage(browser);
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
  await page.goto(base + "/ui");
  // Raw HTML, then a Markdown link and an HTML link in paragraphs of their own (so Markdown parses them).
  const evil = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">\n\n"
    + "Click [here](javascript:window.__xss=3) or ![img](javascript:window.__xss=6)\n\n"
    + "<a href=\"javascript:window.__xss=4\">raw</a>";
  const conv = {
    title: "Hostile " + evil,
    messages: [
      { role: "user", content: evil },
      { role: "assistant", content: evil, reasoning: evil,
        tool_calls: [{ id: "1", type: "function", function: { name: evil, arguments: evil } }] },
    ],
  };
  await page.setInputFiles("#import", {
    name: "<img src=x onerror=\"window.__xss=5\">.json", mimeType: "application/json",
    buffer: Buffer.from(JSON.stringify(conv)),
  });
  await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("Imported 1"));
  await page.click("#chat-list a >> text=Hostile");
  await page.waitForURL(/\/ui\/c\//);
  for (const a of await page.locator("#messages a").all()) {
    const href = (await a.getAttribute("href")) || "";
    assert.ok(!href.toLowerCase().includes("javascript"), `inert link: ${href}`);
  }
  // Click every link-looking thing the model wrote: nothing may run.
  for (const a of await page.locator("#messages .content a").all()) await a.click({ noWaitAfter: true }).catch(() => {});
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__xss), undefined, "no script ran");
  assert.deepEqual(dialogs, []);
  const text = await page.textContent("#messages");
  assert.ok(text.includes("<script>") && text.includes("Click here or img"), "shown as text");
  await shot(page, "hostile");
  ok("hostile text and file names render inert");
  await page.close();
}

async function documents(browser) {
  const page = await newPage(browser);
  await page.goto(base + "/ui/kb");
  await page.fill("#kb-name", "home-docs");
  await page.selectOption("#kb-embedder", "all-minilm:latest");
  await page.click("#kb-create button[type=submit]");
  const kb = page.locator("section.kb[data-kb='home-docs']");
  await kb.waitFor();
  ok("knowledge base created");
  const docs = env("LAR_UI_DOCS");
  await kb.locator("input.kb-files").setInputFiles([path.join(docs, "lease.pdf"), path.join(docs, "garden.md"),
    path.join(docs, "notes.xyz")]);
  await page.waitForFunction(() => /^2 file\(s\) read/.test(document.querySelector("section.kb .kb-status").textContent),
    null, { timeout: 120_000 });
  assert.match(await kb.locator(".kb-skipped").textContent(), /notes\.xyz: unsupported file type/);
  await shot(page, "documents");
  ok(`uploaded and indexed: ${await kb.locator(".kb-status").textContent()}`);

  await kb.locator("text=Ask this knowledge base").click();
  await page.waitForURL(/model=kb:home-docs/);
  assert.equal(await page.inputValue("#model"), "kb:home-docs");
  await page.click("details.settings summary");
  await page.fill("#max_tokens", "60");
  await page.fill("#temperature", "0");
  await ask(page, "How much notice is needed to end the lease?");
  await idle(page);
  const source = page.locator("details.sources a.source", { hasText: "lease.pdf, page 2" });
  await source.waitFor();
  await shot(page, "ask");
  ok("answered with its sources listed");
  await source.click();
  await page.waitForURL(/\/ui\/kb\/home-docs\/source\?.*page=2#cited$/);
  const cited = await page.textContent("#cited");
  assert.ok(cited.includes("page 2") && cited.includes("sixty days"), cited);
  assert.equal(await page.locator(".part.cited").count(), 1);
  await shot(page, "source");
  ok("the citation opens the PDF's text at page 2");
  assert.deepEqual(page.errors, []);
  await page.close();
}

async function models(browser) {
  const page = await newPage(browser);
  await page.goto(base + "/ui/models");
  await page.fill("#pull-source", env("LAR_UI_PULL_SOURCE"));
  await page.click("#pull button[type=submit]");
  // Progress shows, then the page reloads with the model in the table.
  await page.waitForSelector("#pull-progress:not([hidden])");
  await page.waitForSelector("tr[data-model='tinysmol:latest']");
  ok("pulled from a local source with progress");
  await page.click("tr[data-model='tinysmol:latest'] button[data-action=verify]");
  await page.waitForFunction(() => document.querySelector("tr[data-model='tinysmol:latest'] .row-status").textContent === "sha256 verified");
  ok("verified");
  await shot(page, "models");
  await page.click("a[href='/ui/models/smollm2:latest']");
  await page.fill("input[name=ctx]", "2048");
  await page.click(".plan button[type=submit]");
  await page.waitForURL(/ctx=2048/);
  const verdict = await page.textContent(".verdict");
  assert.match(verdict, /^Yes: .* at context 2048\./, verdict);
  assert.ok(await page.locator(".plan-lines tr").count() >= 4, "the figures, line by line");
  await shot(page, "planner");
  ok(`the planner answers: ${verdict.trim()}`);
  page.once("dialog", (d) => d.accept());
  await page.goto(base + "/ui/models");
  await page.click("tr[data-model='tinysmol:latest'] button[data-action=delete]");
  await page.waitForSelector("tr[data-model='tinysmol:latest']", { state: "detached" });
  await page.reload();
  assert.equal(await page.locator("tr[data-model='tinysmol:latest']").count(), 0);
  ok("deleted");
  await page.goto(base + "/ui/server");
  await page.waitForSelector("#loaded tr[data-model='smollm2:latest']");
  await page.waitForFunction(() => /\d/.test(document.querySelector("#loaded .rate").textContent));
  await shot(page, "server");
  ok("the server page shows the loaded model");
  assert.deepEqual(page.errors, []);
  await page.close();
}

async function lab(browser) {
  const page = await newPage(browser);
  await page.goto(base + "/ui/lab");
  await page.selectOption("#bench-model", "smollm2:latest");
  await page.fill("#bench-p", "64");
  await page.fill("#bench-n", "16");
  await page.click("#bench button[type=submit]");
  await page.waitForURL(/\/ui\/lab\/[0-9a-f]+$/, { timeout: 120_000 });
  const tps = await page.textContent("#metrics");
  assert.match(tps, /gen_tps\s*\d/, tps);
  ok("a benchmark run from the page is recorded");
  await page.goto(base + "/ui/lab");
  const img = page.locator("img.chart");
  await img.waitFor();
  await page.waitForFunction(() => document.querySelector("img.chart").complete);
  assert.ok(await img.evaluate((i) => i.naturalWidth > 0), "the chart loads");
  await shot(page, "lab");
  ok("the lab lists runs with a chart");
  assert.deepEqual(page.errors, []);
  await page.close();
}

async function keyed(browser) {
  const page = await newPage(browser);
  await page.goto(keyedBase + "/ui/models");
  assert.equal(new URL(page.url()).pathname, "/ui/login", "asked to sign in");
  await page.fill("#key", "wrong-key");
  await page.click("button[type=submit]");
  await page.waitForSelector("p.error");
  await page.fill("#key", key);
  await page.click("button[type=submit]");
  await page.waitForURL(keyedBase + "/ui/models");
  ok("signed in with the key, back where it started");
  await page.goto(keyedBase + "/ui");
  await page.click("details.settings summary");
  await page.fill("#max_tokens", "8");
  await ask(page, "Say hello.");
  await idle(page);
  await page.waitForURL(/\/ui\/c\//);
  assert.ok((await page.textContent("article.msg.assistant .content")).trim().length > 0);
  ok("chat works on the keyed server");
  await page.click("#logout");
  await page.waitForURL(/\/ui\/login/);
  await page.goto(keyedBase + "/ui");
  assert.equal(new URL(page.url()).pathname, "/ui/login", "signed out");
  ok("signed out");
  assert.deepEqual(page.errors, []);
  await page.close();
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.LAR_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  try {
    await chat(browser);
    await attachments(browser);
    await hostile(browser);
    await documents(browser);
    await models(browser);
    await lab(browser);
    await keyed(browser);
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
