#!/usr/bin/env python3
"""`lar serve` vs llama.cpp's llama-server under load, side by side on the same GGUF file and threads.

    bench/serve-load.sh                       # builds what it needs, then runs this on the 1.1B and Qwen 0.5B
    python3 bench/serve-load.py LAR LLAMA_BIN_DIR MODEL.gguf...   # CONC=1,4,8,16 THREADS=2 REQS=2 TOKENS=64
    SKIP_LOAD=1 python3 bench/serve-load.py ...                 # only the single-server figures
    LAR_SERVE_ARGS="--max-batch-tokens 256" python3 bench/serve-load.py ...   # extra flags for lar serve

For each model and concurrency C, each server is started alone with C slots (llama-server `-np C -c C*CTX`,
`lar serve --parallel C --ctx CTX`), warmed up, then C client threads each send REQS streamed `/v1/completions`
requests one after another (a distinct ~100-token prompt each, so neither server's prompt cache helps; TOKENS
generated with `ignore_eos`). Reported: aggregate generated tokens/s (all tokens / wall time), time to first token
p50/p99, inter-token latency p50/p99, and Lar/llama-server ratios.

Lar alone, on the last model (it needs a chat template): one stream through HTTP against `lar bench` decode on the same file and threads;
a repeated 1,000-token system prompt (time to first token of the first and second request); and the idle server's
RSS and CPU over 5 s.
"""
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CTX = int(os.environ.get("CTX", "512"))
THREADS = int(os.environ.get("THREADS", "2"))
REQS = int(os.environ.get("REQS", "2"))
TOKENS = int(os.environ.get("TOKENS", "64"))
CONC = [int(c) for c in os.environ.get("CONC", "1,4,8,16").split(",")]
WORDS = ("the quick brown fox jumps over a lazy dog while seven small birds sing about rivers mountains and "
         "old cities under a pale morning sky ").split()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt(i, n_words=80):
    return f"Story {i}: " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(n_words))


def wait_healthy(port, proc, secs=120):
    t = time.time()
    while time.time() - t < secs:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become healthy")


def stream(port, path, body):
    """POSTs a streamed request; returns (ttft, [inter-token gaps], tokens) in seconds."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit(f"HTTP {r.status}: {r.read()[:300]}")
    first, last, gaps, n = None, None, [], 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ch = json.loads(line[6:])
        choice = (ch.get("choices") or [{}])[0]
        piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
        if not piece:
            continue
        now = time.perf_counter()
        if first is None:
            first = now - t0
        else:
            gaps.append(now - last)
        last = now
        n += 1
    return first or 0.0, gaps, n


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def load(port, conc, model_name):
    results, lock = [], threading.Lock()

    def client(k):
        for j in range(REQS):
            body = {"model": model_name, "prompt": prompt(1000 * conc + 10 * k + j), "max_tokens": TOKENS,
                    "temperature": 0, "stream": True, "ignore_eos": True}
            r = stream(port, "/v1/completions", body)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(conc)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r[2] for r in results)
    ttft = [r[0] for r in results]
    itl = [g for r in results for g in r[1]]
    return {"tps": tokens / wall, "ttft50": pct(ttft, 50), "ttft99": pct(ttft, 99), "itl50": pct(itl, 50),
            "itl99": pct(itl, 99), "tokens": tokens}


def start_llama(bin_dir, model, conc):
    port = free_port()
    p = subprocess.Popen([os.path.join(bin_dir, "llama-server"), "-m", model, "--host", "127.0.0.1", "--port",
                          str(port), "-t", str(THREADS), "-tb", str(THREADS), "-np", str(conc), "-c",
                          str(CTX * conc)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_healthy(port, p)
    return p, port, "model"


def start_lar(lar, home, name, conc, ctx=CTX):
    port = free_port()
    env = dict(os.environ, LAR_HOME=home, RUST_LOG="warn")
    p = subprocess.Popen([lar, "serve", "--port", str(port), "--threads", str(THREADS), "--parallel", str(conc),
                          "--ctx", str(ctx), "--model", name] + os.environ.get("LAR_SERVE_ARGS", "").split(), env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_healthy(port, p)
    return p, port, name


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def run(start, conc):
    p, port, name = start(conc)
    try:
        stream(port, "/v1/completions", {"model": name, "prompt": prompt(7), "max_tokens": 8, "temperature": 0,
                                         "stream": True})
        return load(port, conc, name)
    finally:
        stop(p)


def proc_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def lar_only(lar, home, name, model):
    out = {}
    bench = json.loads(subprocess.run([lar, "bench", model, "-p", "16", "-n", "128", "-r", "3", "--threads",
                                       str(THREADS), "--json"], check=True, capture_output=True, text=True).stdout)
    p, port, _ = start_lar(lar, home, name, 1, ctx=2048)
    try:
        stream(port, "/v1/completions", {"model": name, "prompt": prompt(3), "max_tokens": 8, "stream": True})
        _, gaps, _ = stream(port, "/v1/completions", {"model": name, "prompt": prompt(4), "max_tokens": 128,
                                                      "temperature": 0, "stream": True, "ignore_eos": True})
        out["http_decode_tps"] = 1 / statistics.median(gaps)
        out["bench_decode_tps"] = bench["gen_tps"]
        system = "You are a careful assistant. " + " ".join(WORDS[k % len(WORDS)] for k in range(900))
        ttfts = []
        for q in ("What is the first word?", "What is the last word?"):
            body = {"model": name, "max_tokens": 4, "temperature": 0, "stream": True,
                    "messages": [{"role": "system", "content": system}, {"role": "user", "content": q}]}
            ttfts.append(stream(port, "/v1/chat/completions", body)[0])
        out["system_ttft_first"], out["system_ttft_second"] = ttfts
        time.sleep(2)
        t0 = proc_ticks(p.pid)
        time.sleep(5)
        out["idle_cpu_pct"] = (proc_ticks(p.pid) - t0) / os.sysconf("SC_CLK_TCK") / 5 * 100
        out["idle_rss"] = proc_rss(p.pid)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/api/ps")
        out["planned"] = json.loads(c.getresponse().read())["models"][0]["size"]
        out["file_bytes"] = os.path.getsize(model)
    finally:
        stop(p)
    return out


def main():
    lar, bin_dir, models = sys.argv[1], sys.argv[2], sys.argv[3:]
    home = tempfile.mkdtemp(prefix="lar-serve-bench-")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# lar serve vs llama-server: {cpu}, {THREADS} threads, ctx {CTX} per sequence, {REQS} requests per "
          f"stream, {TOKENS} tokens each (ignore_eos), distinct ~100-token prompts")
    print("| model | streams | Lar tok/s | llama-server tok/s | ratio | TTFT p50 / p99 Lar (s) | "
          "TTFT p50 / p99 llama-server (s) | ITL p50 / p99 Lar (ms) | ITL p50 / p99 llama-server (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for i, model in enumerate(models):
            name = f"bench{i}"
            subprocess.run([lar, "import", model, "--name", name], env=dict(os.environ, LAR_HOME=home), check=True,
                           capture_output=True)
            for c in ([] if os.environ.get("SKIP_LOAD") else CONC):
                ll = run(lambda n: start_llama(bin_dir, model, n), c)
                la = run(lambda n: start_lar(lar, home, name, n), c)
                print(f"| {os.path.basename(model)} | {c} | {la['tps']:.1f} | {ll['tps']:.1f} | "
                      f"{la['tps'] / ll['tps']:.2f} | {la['ttft50']:.2f} / {la['ttft99']:.2f} | "
                      f"{ll['ttft50']:.2f} / {ll['ttft99']:.2f} | {la['itl50'] * 1e3:.0f} / {la['itl99'] * 1e3:.0f} | "
                      f"{ll['itl50'] * 1e3:.0f} / {ll['itl99'] * 1e3:.0f} |", flush=True)
        o = lar_only(lar, home, f"bench{len(models) - 1}", models[-1])
        print(f"\nOne stream through HTTP: {o['http_decode_tps']:.1f} tok/s vs lar bench decode "
              f"{o['bench_decode_tps']:.1f} tok/s: {o['http_decode_tps'] / o['bench_decode_tps']:.2f}x")
        print(f"Repeated ~1,000-token system prompt: TTFT {o['system_ttft_first'] * 1e3:.0f} ms, then "
              f"{o['system_ttft_second'] * 1e3:.0f} ms ({o['system_ttft_first'] / o['system_ttft_second']:.1f}x lower)")
        print(f"Idle with the model loaded: RSS {o['idle_rss'] / 2**20:.0f} MiB (file {o['file_bytes'] / 2**20:.0f} MiB),"
              f" planned {o['planned'] / 2**20:.0f} MiB (weights + KV + buffers), CPU {o['idle_cpu_pct']:.1f}% over 5 s")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
