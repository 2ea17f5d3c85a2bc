// Lar's web UI: the few things a server-rendered page cannot do alone. Streaming an answer from
// /v1/chat/completions (the same API every client uses) with a stop button, saving the conversation through
// /ui/api/chats and swapping in the server's rendering of it (Markdown made safe on the server), the conversation
// list's search, rename, delete, import; a pull's progress bar; the server page's live figures.
// Text from the model is only ever set with textContent here; HTML comes from the server alone.
"use strict";

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const csrf = () => $('meta[name="lar-csrf"]')?.content || "";

  /** Message of an error body in either shape: {"error": "..."} (Ollama) or {"error": {"message": ...}}. */
  async function errorOf(r) {
    let msg = `${r.status} ${r.statusText}`;
    try {
      const j = await r.json();
      if (typeof j.error === "string") msg = j.error;
      else if (j.error?.message) msg = j.error.message;
    } catch (_) { /* not JSON: the status says it */ }
    return new Error(msg);
  }

  /** A same-origin request with the CSRF token (a JSON `body`, or `raw` bytes as they are); a 401 sends the page
   * to sign in. */
  async function api(method, url, body, signal, raw, extra) {
    const headers = { "x-lar-csrf": csrf(), ...extra };
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(url, {
      method, headers, signal, credentials: "same-origin",
      body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) {
      location.href = "/ui/login?next=" + encodeURIComponent(location.pathname);
      throw new Error("signed out");
    }
    if (!r.ok) throw await errorOf(r);
    return r;
  }

  /** Reads a streamed body line by line (NDJSON) or event by event (SSE: `sep` "\n\n"). */
  async function eachPart(r, sep, onPart) {
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf(sep)) >= 0) {
        const part = buf.slice(0, i);
        buf = buf.slice(i + sep.length);
        if (part.trim()) onPart(part);
      }
    }
    if (buf.trim()) onPart(buf);
  }

  function logout() {
    const b = $("#logout");
    if (!b) return;
    b.addEventListener("click", async () => {
      try { await api("POST", "/ui/logout"); } catch (_) { /* going to the sign-in page anyway */ }
      location.href = "/ui/login";
    });
  }

  // ---- chat ----
  function chat() {
    const main = $("main.chat");
    if (!main) return;
    const conv = JSON.parse($("#conversation").textContent);
    const messagesEl = $("#messages"), form = $("#composer"), prompt = $("#prompt");
    const send = $("#send"), stop = $("#stop"), status = $("#status"), list = $("#chat-list");
    let controller = null;

    /** Keeps the newest message in view while it grows (unless the reader scrolled up). */
    const follow = (force) => {
      const near = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 80;
      if (force || near) messagesEl.scrollTop = messagesEl.scrollHeight;
    };
    const say = (text, isError) => {
      status.textContent = text;
      status.classList.toggle("error", !!isError);
    };

    function readSettings() {
      conv.model = $("#model").value;
      conv.system = $("#system").value;
      const num = (id, int) => {
        const v = $(id).value.trim();
        if (v === "") return undefined;
        const n = int ? parseInt(v, 10) : parseFloat(v);
        return Number.isFinite(n) ? n : undefined;
      };
      conv.params = {
        temperature: num("#temperature"), top_p: num("#top_p"),
        max_tokens: num("#max_tokens", true), seed: num("#seed", true),
      };
      for (const k of Object.keys(conv.params)) if (conv.params[k] === undefined) delete conv.params[k];
    }

    function bubble(role) {
      const art = document.createElement("article");
      art.className = `msg ${role}`;
      const head = document.createElement("header");
      head.className = "msg-head";
      const r = document.createElement("span");
      r.className = "role";
      r.textContent = role;
      head.append(r);
      const content = document.createElement("div");
      content.className = "content plain";
      art.append(head, content);
      messagesEl.append(art);
      follow(true);
      return art;
    }

    function busy(on) {
      send.hidden = on;
      stop.hidden = !on;
      prompt.disabled = on;
      main.classList.toggle("busy", on);
    }

    // Only the newest list request may fill the list: an older answer arriving late must not undo a search.
    let listSeq = 0;
    async function refreshList() {
      const seq = ++listSeq;
      const q = $("#chat-search").value;
      const r = await api("GET", `/ui/chats?q=${encodeURIComponent(q)}&current=${encodeURIComponent(conv.id)}`);
      const html = await r.text();
      if (seq === listSeq) list.innerHTML = html;
    }

    /** Stores the conversation, then shows the server's rendering of it. */
    async function save() {
      if (!conv.id) {
        const r = await api("POST", "/ui/api/chats", conv);
        conv.id = (await r.json()).ids[0];
        main.dataset.id = conv.id;
        history.replaceState(null, "", `/ui/c/${conv.id}`);
        $("#export").href = `/ui/api/chats/${conv.id}`;
        $("#export").download = `${conv.id}.json`;
        $("#chat-actions").hidden = false;
      } else {
        await api("PUT", `/ui/api/chats/${conv.id}`, conv);
      }
      const r = await api("GET", `/ui/c/${conv.id}/messages`);
      messagesEl.innerHTML = await r.text();
      follow(true);
      await refreshList();
      const current = $("#chat-list a[aria-current=page]");
      if (current) $("#chat-title").textContent = current.textContent;
    }

    async function generate() {
      readSettings();
      if (!conv.model) { say("Choose a model first (Model and settings).", true); return; }
      const msgs = [];
      if (conv.system.trim()) msgs.push({ role: "system", content: conv.system });
      if (conv.attachments?.length) {
        // The files go whole when they fit, else the pieces most like the question (the server decides).
        const question = [...conv.messages].reverse().find((m) => m.role === "user")?.content || "";
        try {
          const r = await api("POST", "/ui/api/context", { model: conv.model, question, files: conv.attachments });
          const c = await r.json();
          msgs.push({ role: "system", content: c.system });
          if (!c.whole) say(`The files are long: ${c.pieces} of ${c.of} pieces go with this question.`);
        } catch (e) { say(`The attached files could not be used: ${e.message}`, true); return; }
      }
      for (const m of conv.messages) {
        if (m.role === "user" || m.role === "assistant") msgs.push({ role: m.role, content: m.content });
      }
      const body = { model: conv.model, messages: msgs, stream: true, ...conv.params };
      const reply = { role: "assistant", content: "", model: conv.model };
      const art = bubble("assistant");
      const content = $(".content", art);
      let thinking = null;
      const calls = [];
      controller = new AbortController();
      busy(true);
      say("Waiting for the model…");
      let stopped = false, failed = null;
      try {
        const r = await api("POST", "/v1/chat/completions", body, controller.signal);
        say("");
        await eachPart(r, "\n\n", (ev) => {
          for (const line of ev.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") continue;
            const j = JSON.parse(data);
            if (j.error) throw new Error(j.error.message || String(j.error));
            if (Array.isArray(j.sources)) reply.sources = j.sources;
            const d = j.choices?.[0]?.delta || {};
            if (d.reasoning_content) {
              if (!thinking) {
                thinking = document.createElement("details");
                thinking.className = "thinking";
                thinking.open = true;
                const s = document.createElement("summary");
                s.textContent = "Thinking";
                const t = document.createElement("div");
                t.className = "thinking-text";
                thinking.append(s, t);
                art.insertBefore(thinking, content);
              }
              reply.reasoning = (reply.reasoning || "") + d.reasoning_content;
              $(".thinking-text", thinking).textContent = reply.reasoning;
            }
            if (d.content) {
              reply.content += d.content;
              content.textContent = reply.content;
              follow(false);
            }
            for (const tc of d.tool_calls || []) {
              const c = calls[tc.index] ||= { id: tc.id, type: "function", function: { name: "", arguments: "" } };
              if (tc.function?.name) c.function.name += tc.function.name;
              if (tc.function?.arguments) c.function.arguments += tc.function.arguments;
            }
          }
        });
      } catch (e) {
        if (e.name === "AbortError") stopped = true;
        else failed = e;
      }
      controller = null;
      busy(false);
      if (calls.length) reply.tool_calls = calls.filter(Boolean);
      if (stopped) reply.stopped = true;
      if (reply.content || reply.reasoning || reply.tool_calls) conv.messages.push(reply);
      else art.remove();
      try {
        await save();
        say(failed ? `The answer failed: ${failed.message}` : stopped ? "Stopped." : "", !!failed);
      } catch (e) {
        say(`Not saved: ${e.message}`, true);
      }
      // Back to the message box, unless the reader has meanwhile gone elsewhere (the search box, a setting).
      const at = document.activeElement;
      if (!at || at === document.body || form.contains(at)) prompt.focus();
    }

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = prompt.value;
      if (!text.trim() || controller) return;
      conv.messages.push({ role: "user", content: text });
      $(".content", bubble("user")).textContent = text;
      prompt.value = "";
      generate();
    });
    prompt.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    stop.addEventListener("click", () => controller?.abort());

    messagesEl.addEventListener("click", async (e) => {
      const b = e.target.closest("button[data-action]");
      if (!b || controller) return;
      const art = b.closest("article.msg");
      const i = parseInt(art.dataset.index, 10);
      const m = conv.messages[i];
      if (!m) return;
      if (b.dataset.action === "copy") {
        try { await navigator.clipboard.writeText(m.content); say("Copied."); } catch (_) { say("The browser refused the clipboard.", true); }
      } else if (b.dataset.action === "edit") {
        // The message goes back to the composer; it and what followed it are replaced when sent.
        prompt.value = m.content;
        conv.messages = conv.messages.slice(0, i);
        while (art.nextSibling) art.nextSibling.remove();
        art.remove();
        prompt.focus();
      } else if (b.dataset.action === "regenerate") {
        conv.messages = conv.messages.slice(0, i);
        art.remove();
        generate();
      }
    });

    // Files for this conversation alone: read to text by the server, kept with the conversation.
    const chips = $("#attachments");
    conv.attachments ||= [];
    function showAttachments() {
      chips.textContent = "";
      for (const a of conv.attachments) {
        const li = document.createElement("li");
        li.dataset.name = a.name;
        const span = document.createElement("span");
        span.textContent = `📎 ${a.name} (${a.text.length} characters)`;
        const x = document.createElement("button");
        x.type = "button";
        x.className = "link";
        x.dataset.action = "detach";
        x.setAttribute("aria-label", `Remove ${a.name}`);
        x.textContent = "×";
        li.append(span, x);
        chips.append(li);
      }
    }
    async function attach(files) {
      for (const f of files) {
        say(`Reading ${f.name}…`);
        try {
          const r = await api("POST", "/ui/api/extract", undefined, undefined, f, { "x-file-name": encodeURIComponent(f.name) });
          const j = await r.json();
          conv.attachments = conv.attachments.filter((a) => a.name !== j.name).concat([{ name: j.name, text: j.text }]);
          say(`Attached ${j.name}.`);
        } catch (e) { say(e.message, true); }
      }
      showAttachments();
      if (conv.id) await save().catch((e) => say(`Not saved: ${e.message}`, true));
    }
    $("#attach").addEventListener("change", (e) => { attach([...e.target.files]); e.target.value = ""; });
    chips.addEventListener("click", async (e) => {
      const b = e.target.closest("button[data-action=detach]");
      if (!b) return;
      conv.attachments = conv.attachments.filter((a) => a.name !== b.closest("li").dataset.name);
      showAttachments();
      if (conv.id) await save().catch((err) => say(`Not saved: ${err.message}`, true));
    });
    main.addEventListener("dragover", (e) => { e.preventDefault(); main.classList.add("dragging"); });
    main.addEventListener("dragleave", (e) => { if (e.target === main) main.classList.remove("dragging"); });
    main.addEventListener("drop", (e) => {
      e.preventDefault();
      main.classList.remove("dragging");
      attach([...e.dataTransfer.files]);
    });

    let searchTimer = null;
    $("#chat-search").addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => refreshList().catch((e) => say(e.message, true)), 200);
    });

    $("#rename")?.addEventListener("click", async () => {
      const t = window.prompt("Title", $("#chat-title").textContent);
      if (t === null) return;
      try {
        await api("PATCH", `/ui/api/chats/${conv.id}`, { title: t });
        conv.title = t.trim();
        $("#chat-title").textContent = conv.title || "New chat";
        await refreshList();
      } catch (e) { say(e.message, true); }
    });
    $("#delete")?.addEventListener("click", async () => {
      if (!window.confirm("Delete this conversation?")) return;
      try { await api("DELETE", `/ui/api/chats/${conv.id}`); location.href = "/ui"; } catch (e) { say(e.message, true); }
    });
    $("#import").addEventListener("change", async (e) => {
      const f = e.target.files[0];
      if (!f) return;
      try {
        const r = await api("POST", "/ui/api/chats", JSON.parse(await f.text()));
        const ids = (await r.json()).ids;
        say(`Imported ${ids.length} conversation(s).`);
        await refreshList();
      } catch (err) { say(`Import failed: ${err.message}`, true); }
      e.target.value = "";
    });
    follow(true);
    prompt.focus();
  }

  // ---- models ----
  function models() {
    const form = $("#pull");
    if (!form) return;
    const bar = $("#pull-progress"), st = $("#pull-status");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const source = $("#pull-source").value.trim();
      if (!source) return;
      bar.hidden = false;
      bar.removeAttribute("value");
      st.textContent = "Starting…";
      st.classList.remove("error");
      try {
        const r = await api("POST", "/api/pull", { model: source, stream: true });
        let ok = false;
        await eachPart(r, "\n", (line) => {
          const j = JSON.parse(line);
          if (j.error) throw new Error(j.error);
          if (j.total) { bar.max = j.total; bar.value = j.completed || 0; }
          st.textContent = j.total ? `${j.status}: ${Math.round(100 * (j.completed || 0) / j.total)}%` : j.status;
          if (j.status === "success") ok = true;
        });
        if (!ok) throw new Error("the pull ended without success");
        st.textContent = "Pulled.";
        location.reload();
      } catch (err) {
        st.textContent = `Pull failed: ${err.message}`;
        st.classList.add("error");
        bar.hidden = true;
      }
    });
    $("#model-table")?.addEventListener("click", async (e) => {
      const b = e.target.closest("button[data-action]");
      if (!b) return;
      const row = b.closest("tr");
      const name = row.dataset.model, out = $(".row-status", row);
      out.classList.remove("error");
      try {
        if (b.dataset.action === "verify") {
          out.textContent = "Verifying…";
          await api("POST", `/ui/api/models/${encodeURIComponent(name)}/verify`);
          out.textContent = "sha256 verified";
        } else if (b.dataset.action === "delete") {
          if (!window.confirm(`Delete ${name} from the store?`)) return;
          await api("DELETE", "/api/delete", { model: name });
          row.remove();
        }
      } catch (err) {
        out.textContent = err.message;
        out.classList.add("error");
      }
    });
  }

  // ---- documents ----
  function documents() {
    const create = $("#kb-create");
    if (!create) return;
    create.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = $("#kb-create-status");
      out.classList.remove("error");
      out.textContent = "Creating…";
      try {
        await api("POST", "/ui/api/kb", { name: $("#kb-name").value.trim(), embedder: $("#kb-embedder").value });
        location.reload();
      } catch (err) {
        out.textContent = err.message;
        out.classList.add("error");
      }
    });

    /** Files of a drop, folders walked (each with its path inside the folder). */
    async function dropped(items) {
      const out = [];
      const walk = async (entry, prefix) => {
        if (entry.isFile) {
          const f = await new Promise((res, rej) => entry.file(res, rej));
          out.push({ file: f, path: prefix + f.name });
        } else if (entry.isDirectory) {
          const reader = entry.createReader();
          for (;;) {
            const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
            if (!batch.length) break;
            for (const c of batch) await walk(c, `${prefix}${entry.name}/`);
          }
        }
      };
      for (const it of items) {
        const entry = it.webkitGetAsEntry?.();
        if (entry) await walk(entry, "");
      }
      return out;
    }

    /** Uploads the files, then ingests them, showing progress and the report. */
    async function add(section, files) {
      const kb = section.dataset.kb;
      const bar = $(".kb-progress", section), st = $(".kb-status", section), skipped = $(".kb-skipped", section);
      st.classList.remove("error");
      skipped.textContent = "";
      bar.hidden = false;
      bar.max = files.length;
      bar.value = 0;
      const early = [];
      try {
        let i = 0;
        for (const { file, path } of files) {
          st.textContent = `Uploading ${path} (${++i}/${files.length})`;
          const url = `/ui/api/kb/${encodeURIComponent(kb)}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
          const j = await (await api("PUT", url, undefined, undefined, file)).json();
          if (j.skipped) early.push({ path, reason: j.skipped });
          bar.value = i;
        }
        st.textContent = "Reading and indexing…";
        bar.removeAttribute("value");
        const r = await api("POST", `/ui/api/kb/${encodeURIComponent(kb)}/ingest`);
        let done = 0;
        await eachPart(r, "\n", (line) => {
          const j = JSON.parse(line);
          if (j.error) throw new Error(j.error);
          if (j.found !== undefined) { bar.max = Math.max(1, j.found); bar.value = 0; }
          if (j.file) { bar.value = ++done; st.textContent = `Indexed ${j.file}`; }
          if (j.report) {
            const rep = j.report;
            rep.skipped = early.concat(rep.skipped);
            st.textContent = `${rep.files_read} file(s) read, ${rep.files_unchanged} unchanged, `
              + `${rep.skipped.length} skipped; ${rep.chunks_added} chunks added in ${rep.seconds.toFixed(1)} s`;
            for (const s of rep.skipped) {
              const li = document.createElement("li");
              li.textContent = `${s.path}: ${s.reason}`;
              skipped.append(li);
            }
          }
        });
      } catch (err) {
        st.textContent = err.message;
        st.classList.add("error");
      }
      bar.hidden = true;
    }

    for (const section of document.querySelectorAll("section.kb")) {
      const zone = $(".drop", section);
      zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
      zone.addEventListener("dragleave", () => zone.classList.remove("over"));
      zone.addEventListener("drop", async (e) => {
        e.preventDefault();
        zone.classList.remove("over");
        add(section, await dropped([...e.dataTransfer.items]));
      });
      for (const input of section.querySelectorAll("input[type=file]")) {
        input.addEventListener("change", () => {
          const files = [...input.files].map((f) => ({ file: f, path: f.webkitRelativePath || f.name }));
          input.value = "";
          if (files.length) add(section, files);
        });
      }
    }
  }

  // ---- lab ----
  function lab() {
    const form = $("#bench");
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const st = $("#bench-status");
      st.classList.remove("error");
      st.textContent = "Running…";
      form.querySelector("button").disabled = true;
      try {
        const r = await api("POST", "/ui/api/lab/bench", {
          model: $("#bench-model").value,
          prompt_tokens: parseInt($("#bench-p").value, 10),
          gen_tokens: parseInt($("#bench-n").value, 10),
        });
        location.href = `/ui/lab/${(await r.json()).id}`;
      } catch (err) {
        st.textContent = err.message;
        st.classList.add("error");
      }
      form.querySelector("button").disabled = false;
    });
  }

  // ---- server ----
  function server() {
    const live = $("#live");
    if (!live) return;
    let prev = new Map(), prevAt = performance.now();
    const rates = () => {
      const now = performance.now(), next = new Map();
      for (const row of live.querySelectorAll("tr[data-model]")) {
        const n = parseFloat(row.dataset.generated);
        next.set(row.dataset.model, n);
        const p = prev.get(row.dataset.model);
        if (p !== undefined) $(".rate", row).textContent = ((n - p) / ((now - prevAt) / 1000)).toFixed(1);
      }
      prev = next;
      prevAt = now;
    };
    rates();
    setInterval(async () => {
      try {
        const r = await api("GET", live.dataset.src);
        live.innerHTML = await r.text();
        rates();
      } catch (_) { /* the next tick tries again */ }
    }, 2000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    logout();
    chat();
    documents();
    models();
    lab();
    server();
  });
})();
