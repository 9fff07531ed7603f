#!/usr/bin/env python3
"""Summarize a Jepsen-style campaign (tests/net/jepsen.py --runs N --out DIR) as Markdown tables:
the runs and their verdicts, then every fault kind with how often it was injected, in how many
runs, and how many of those runs failed; then the workload totals and the slowest heals and
NOQUORUM answers. Reads DIR/run-*/verdict.txt and nemesis.jsonl, so it also works on a campaign
that is still running (the runs done so far) or that was stopped.

    python3 tests/net/campaign.py target/jepsen/campaign-20261208
"""
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path


def num(pattern, text, cast=int):
    m = re.search(pattern, text)
    return cast(m.group(1)) if m else None


def variant(fault, detail):
    """The sub-kind of a fault worth a row of its own: the netem setting, the clock fault's form
    (stepped or a rate), which processes a kill or pause hit."""
    if fault == "netem":
        m = re.search(r"'([a-z]+)", detail)
        return m.group(1) if m else ""
    if fault == "clock":
        m = re.search(r"'([+-]\d+)s? x([\d.]+)'", detail)
        if m:
            return "stepped" if m.group(2) == "1" else "rate"
    if fault in ("kill", "pause"):
        for word in ("coordinator", "majority", "minority"):
            if word in detail:
                return word
        m = re.search(r"\[([\d, ]+)\]", detail)
        return "one" if not m or len(m.group(1).split(",")) == 1 else "minority"
    return ""


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base = Path(sys.argv[1])
    runs = sorted(p for p in base.glob("run-*") if (p / "verdict.txt").exists())
    if not runs:
        print(f"no finished run under {base}", file=sys.stderr)
        return 1
    injected, in_runs, failed_with = Counter(), Counter(), Counter()
    variants = defaultdict(Counter)
    failed = []
    totals = Counter()
    heals, noquorum_max, noquorum_med = [], [], []
    for run in runs:
        verdict = (run / "verdict.txt").read_text()
        ok = "PASS" in verdict.splitlines()[0]
        if not ok:
            failed.append(run.name)
        kinds = set()
        nem = run / "nemesis.jsonl"
        for line in nem.read_text().splitlines() if nem.exists() else []:
            e = json.loads(line)
            injected[e["fault"]] += 1
            kinds.add(e["fault"])
            v = variant(e["fault"], e.get("detail", ""))
            if v:
                variants[e["fault"]][v] += 1
        for k in kinds:
            in_runs[k] += 1
            if not ok:
                failed_with[k] += 1
        totals["ops ok"] += num(r"workload done: (\d+) ok", verdict) or 0
        totals["ops failed or unknown"] += num(r"ok, (\d+) errors", verdict) or 0
        totals["ops checked for linearizability"] += num(r"\((\d+) ops, \d+ keys", verdict) or 0
        totals["transactions checked"] += num(r"(\d+) txns \(", verdict) or 0
        totals["acknowledged increments"] += num(r"(\d+) acknowledged increments", verdict) or 0
        totals["trace events checked"] += num(r"exit 0: (\d+) events", verdict) or 0
        totals["NOQUORUM answers"] += num(r"NOQUORUM answers: (\d+)", verdict) or 0
        h = num(r"back in one view after ([\d.]+) s", verdict, float)
        if h is not None:
            heals.append(h)
        m = num(r"NOQUORUM answers: \d+, latency median ([\d.]+) ms", verdict, float)
        if m is not None:
            noquorum_med.append(m)
        m = num(r"max ([\d.]+) ms", verdict, float)
        if m is not None:
            noquorum_max.append(m)
        for check, pat in (("linearizable (chorus-lin)", r"chorus-lin: exit 0"),
                           ("strictly serializable (chorus-lin txn)", r"no cycle: strictly serializable"),
                           ("every trace passes chorus check", r"chorus check \(\d+ traces\): exit 0"),
                           ("equal applied index", r"\(equal\)"),
                           ("counters: no acknowledged increment lost", r"counters: ok")):
            totals[check] += 1 if re.search(pat, verdict) else 0
    n = len(runs)
    print(f"## Campaign {base.name}: {n - len(failed)} of {n} runs passed\n")
    if failed:
        print("Failed runs: " + ", ".join(failed) + "\n")
    print("| fault | injected | runs with it | failed runs with it | forms |")
    print("|---|---:|---:|---:|---|")
    for k, c in sorted(injected.items(), key=lambda kv: -kv[1]):
        forms = ", ".join(f"{v} {c2}" for v, c2 in sorted(variants[k].items()))
        print(f"| {k} | {c} | {in_runs[k]} | {failed_with[k]} | {forms} |")
    print(f"| **all** | {sum(injected.values())} | {n} | {len(failed)} | |\n")
    print("| outcome | total |")
    print("|---|---:|")
    for k in ("ops ok", "ops failed or unknown", "ops checked for linearizability", "transactions checked",
              "acknowledged increments", "trace events checked", "NOQUORUM answers"):
        print(f"| {k} | {totals[k]} |")
    for k in ("linearizable (chorus-lin)", "strictly serializable (chorus-lin txn)",
              "counters: no acknowledged increment lost", "every trace passes chorus check",
              "equal applied index"):
        print(f"| runs {k} | {totals[k]} of {n} |")
    if heals:
        heals.sort()
        print(f"| back in one view after the last heal | median {heals[len(heals) // 2]:.1f} s, "
              f"max {heals[-1]:.1f} s |")
    if noquorum_med:
        noquorum_med.sort()
        print(f"| NOQUORUM latency (per run median, then median of runs) | "
              f"{noquorum_med[len(noquorum_med) // 2]:.1f} ms; worst answer {max(noquorum_max):.1f} ms |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
