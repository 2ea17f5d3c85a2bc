#!/usr/bin/env python3
"""What structured output costs in decode speed: `lar serve` tokens/s with and without a JSON schema, at 1 and 16
concurrent streams, on the same model, threads and server (the grammar mask runs on the engine thread for every
sequence of every step, so its cost shows here if anywhere).

    bench/structured.sh                                   # builds Lar in release mode, then runs this on Qwen 0.5B
    python3 bench/structured.py LAR MODEL.gguf            # CONC=1,16 THREADS=2 REQS=2 TOKENS=64

Each client sends REQS chat requests (temperature 0.8, a distinct seed each) for TOKENS tokens: unconstrained with
`ignore_eos`, or with a schema long enough that TOKENS never completes it. Reported: aggregate completion tokens/s
and the ratio with/without.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from importlib import import_module  # noqa: E402

load = import_module("serve-load")
THREADS = int(os.environ.get("THREADS", "2"))
REQS = int(os.environ.get("REQS", "2"))
TOKENS = int(os.environ.get("TOKENS", "64"))
CONC = [int(c) for c in os.environ.get("CONC", "1,16").split(",")]
SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string", "maxLength": 60},
    "items": {"type": "array", "minItems": 12, "maxItems": 12, "items": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 40}, "note": {"type": "string", "maxLength": 80},
        "qty": {"type": "integer", "minimum": 1, "maximum": 99}}, "required": ["name", "note", "qty"]}}},
    "required": ["title", "items"]}


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def run(port, conc, schema):
    done, lock = [], threading.Lock()

    def client(k):
        for j in range(REQS):
            body = {"model": "m", "max_tokens": TOKENS, "temperature": 0.8, "seed": 100 * k + j,
                    "messages": [{"role": "user", "content": f"Make a shopping list for party number {k}-{j}."}]}
            if schema:
                body["response_format"] = {"type": "json_schema", "json_schema": {"name": "list", "schema": SCHEMA}}
            else:
                body["ignore_eos"] = True
            r = post(port, body)
            with lock:
                done.append(r["usage"]["completion_tokens"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(conc)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0), sum(done)


def main():
    lar, model = sys.argv[1], sys.argv[2]
    home = tempfile.mkdtemp(prefix="lar-bench-structured-")
    env = dict(os.environ, LAR_HOME=home)
    subprocess.run([lar, "import", model, "--name", "m"], env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"model {os.path.basename(model)}, {THREADS} threads, {TOKENS} tokens per request, {REQS} per client\n")
    print("| streams | tokens/s plain | tokens/s with schema | ratio |\n|---|---|---|---|")
    for conc in CONC:
        p, port, _ = load.start_lar(lar, home, "m", conc, ctx=1024)
        try:
            run(port, 1, True)  # warm-up: loads the model and builds its grammar vocabulary
            plain, n1 = run(port, conc, False)
            constrained, n2 = run(port, conc, True)
        finally:
            p.terminate()
            p.wait()
        assert n2 >= 0.9 * n1, f"the schema ended early: {n2} vs {n1} tokens"
        print(f"| {conc} | {plain:.1f} | {constrained:.1f} | {constrained / plain:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
