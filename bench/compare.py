#!/usr/bin/env python3
"""Lar vs llama.cpp, side by side on the same files and threads; prints a table and appends it to BENCHMARKS.md.

    bench/compare.sh            # builds what it needs, then runs this
    RUNS=5 THREADS=2 bench/compare.sh

For each model it alternates `llama-bench -r 1` and `lar bench -r 1` (prompt 512, 128 generated) RUNS times, takes
medians, and prints the ratio Lar / llama.cpp. It measures read bandwidth once (`lar bench --bandwidth`) and prints
decode speed as a fraction of the limit bandwidth / bytes read per token (all weights but the embedding lookup).

With LAR_BEFORE=/path/to/an/older/lar it also runs that binary in the same rotation and prints its figures and the
ratio of this build to it, so a change that must not move speed is checked side by side in one run. A model Lar
refuses (a type it does not run) gets a row saying so. TITLE="..." heads the appended section with its own line,
COMMAND="..." names the script that ran it (bench/types.sh does both), P and N set the prompt and generated
lengths (512 and 128).
"""
import datetime
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAR = os.path.join(ROOT, "target", "release", "lar")


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def llama(bin_dir, model, threads, p, n):
    rows = run_json([os.path.join(bin_dir, "llama-bench"), "-m", model, "-t", str(threads), "-p", str(p), "-n", str(n),
                     "-r", "1", "-o", "json"])
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] == p and r["n_gen"] == 0)
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] == n and r["n_prompt"] == 0)
    return pp, tg


class Refused(Exception):
    pass


def lar(model, threads, p, n, binary=LAR):
    cmd = [binary, "bench", model, "-p", str(p), "-n", str(n), "-r", "1", "--threads", str(threads), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Refused((r.stderr.strip().splitlines() or ["failed"])[-1])
    v = json.loads(r.stdout)
    return v["prompt_tps"], v["gen_tps"], v["peak_rss_bytes"]


def bytes_per_token(model):
    v = run_json([LAR, "show", model, "--json", "--no-hash"])
    return v["weight_bytes_per_token"]


def main():
    bin_dir, models = sys.argv[1], sys.argv[2:]
    runs, threads = int(os.environ.get("RUNS", "5")), int(os.environ.get("THREADS", "2"))
    before = os.environ.get("LAR_BEFORE")
    p, n = int(os.environ.get("P", "512")), int(os.environ.get("N", "128"))
    bw = run_json([LAR, "bench", "--bandwidth", "--threads", str(threads), "--json", "-"])["read_gb_per_s"]
    title = os.environ.get("TITLE")
    lines = ([f"## {title}", ""] if title else []) + [
        f"### {datetime.date.today()} — {threads} threads, pp{p} / tg{n}, medians of {runs} alternating runs",
        "",
        f"Read bandwidth ({threads} threads): {bw:.1f} GB/s.",
        "",
        "| model | llama.cpp pp t/s | Lar pp t/s | pp ratio | llama.cpp tg t/s | Lar tg t/s | tg ratio | tg limit t/s | Lar tg / limit | Lar peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ab_rows = []
    for m in models:
        lp, lt, rp, rt, rss = [], [], [], [], []
        bp, bt = [], []
        refused, refused_before = None, None
        for _ in range(runs):
            a, b = llama(bin_dir, m, threads, p, n)
            lp.append(a)
            lt.append(b)
            try:
                c, d, r = lar(m, threads, p, n)
                rp.append(c)
                rt.append(d)
                rss.append(r)
            except Refused as e:
                refused = str(e)
            if before:
                try:
                    c, d, _ = lar(m, threads, p, n, before)
                    bp.append(c)
                    bt.append(d)
                except Refused as e:
                    refused_before = str(e)
        med = statistics.median
        if refused:
            row = (f"| {os.path.basename(m)} | {med(lp):.1f} | refused | | {med(lt):.1f} | refused | | | | |")
            print(row, f"({refused})", flush=True)
            lines.append(row)
            if before:
                ab_rows.append(f"| {os.path.basename(m)} | | refused | | | refused | |")
            continue
        if before and refused_before:
            ab_rows.append(f"| {os.path.basename(m)} | refused | {med(rp):.1f} | | refused | {med(rt):.1f} | |")
        elif before:
            ab_rows.append(f"| {os.path.basename(m)} | {med(bp):.1f} | {med(rp):.1f} | {med(rp) / med(bp):.3f}x | "
                           f"{med(bt):.1f} | {med(rt):.1f} | {med(rt) / med(bt):.3f}x |")
        limit = bw * 1e9 / bytes_per_token(m)
        row = (f"| {os.path.basename(m)} | {med(lp):.1f} | {med(rp):.1f} | {med(rp) / med(lp):.2f}x | {med(lt):.1f} | "
               f"{med(rt):.1f} | {med(rt) / med(lt):.2f}x | {limit:.0f} | {med(rt) / limit:.0%} | {max(rss) / 2**20:.0f} |")
        print(row, flush=True)
        lines.append(row)
    command = os.environ.get("COMMAND") or f"RUNS={runs} THREADS={threads} bench/compare.sh"
    if before:
        lines += ["", f"This build against `{before}` in the same rotation:", "",
                  "| model | before pp t/s | after pp t/s | pp after/before | before tg t/s | after tg t/s | tg after/before |",
                  "|---|---|---|---|---|---|---|"] + ab_rows
        if not os.environ.get("COMMAND"):
            command = f"LAR_BEFORE={before} " + command
    lines += ["", f"Command: `{command}`", ""]
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "a") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
