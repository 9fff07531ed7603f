#!/usr/bin/env python3
"""Partial connectivity: the cases where other protocols are known to stall (OmniPaxos,
EuroSys 2023: quorum-loss, constrained election, chained), played on a real store in network
namespaces, and measured.

For each scenario: a fresh store (data directories, `appendfsync always`), a writer per node
that SETs through its own node every 50 ms, the links cut as the scenario says for --hold
seconds, then healed. Measured:

  - how long after the cut writes succeed again anywhere, and through which nodes;
  - the share of 100 ms slots during the cut in which at least one write succeeded;
  - the views installed during the cut (from the nodes' logs);
  - how long after the heal a write through every node succeeds.

    sudo python3 tests/net/scenarios.py              # every scenario, table on stdout
    sudo python3 tests/net/scenarios.py chained-3    # one

Links are directed: `hears[i]` is the set of nodes whose packets node i receives.
"""
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hosts as hostsmod  # noqa: E402
import jepsen  # noqa: E402

import redis  # noqa: E402


def full(nodes, cut):
    """Everyone hears everyone except across the undirected links in `cut`."""
    hears = {i: set(nodes) for i in nodes}
    for a, b in cut:
        hears[a].discard(b)
        hears[b].discard(a)
    return hears


SCENARIOS = {
    # The coordinator (node 1, the oldest member) keeps one link, to node 3; nodes 2-5 stay fully
    # connected: a connected majority exists without the coordinator, and node 3 still hears it.
    "quorum-loss": (5, lambda n: full(n, [(1, 2), (1, 4), (1, 5)])),
    # Node 5 is the only one that hears a majority; the others each hear only node 5 (a star):
    # no three nodes hear each other.
    "constrained": (5, lambda n: {1: {5}, 2: {5}, 3: {5}, 4: {5}, 5: set(n)}),
    # A chain of three: 1-2 and 2-3 up, 1-3 down. {1,2} and {2,3} are connected majorities.
    "chained-3": (3, lambda n: full(n, [(1, 3)])),
    # Primary partition: a minority {1, 2} (with the coordinator) and a majority {3, 4, 5}.
    "halves": (5, lambda n: {i: ({1, 2} if i <= 2 else {3, 4, 5}) for i in n}),
    # A chain of five: only neighbours hear each other. No connected majority exists.
    "chained-5": (5, lambda n: full(n, [(a, b) for a in n for b in n if a < b and b - a > 1])),
}


def writer(store, i, stop, log):
    c = None
    k = 0
    while not stop.is_set():
        k += 1
        t0 = time.monotonic()
        try:
            if c is None:
                c = redis.Redis(host=store.h.addr(i), port=jepsen.CLIENT_PORT, socket_timeout=1,
                                socket_connect_timeout=1)
            c.set(f"w{i}", k)
            log.append((t0, time.monotonic(), i, "ok"))
        except Exception as e:  # noqa: BLE001 - every outcome is recorded
            log.append((t0, time.monotonic(), i, str(e).split(" ")[0][:20]))
            c = None
        time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))


def views_in(out, t0_wall, t1_wall):
    """Views installed during [t0, t1] (wall clock), from the traces."""
    views = set()
    for p in out.glob("node-*.trace.jsonl"):
        for line in p.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("ev") == "install" and t0_wall <= e["t"] <= t1_wall:
                views.add((e["view"], tuple(m["node"] for m in e["members"])))
    return sorted(views)


def run(name, hold, base):
    n, pattern = SCENARIOS[name]
    out = base / name
    out.mkdir(parents=True, exist_ok=True)
    h = hostsmod.Hosts(n)
    try:
        store = jepsen.Store(h, out, jepsen.REPO / "target/release/chorus-kv", 1000)
        for i in h.ns:
            store.start(i)
        if store.one_view(60) is None:
            raise RuntimeError("no view of all nodes")
        time.sleep(1)
        log, stop = [], threading.Event()
        threads = [threading.Thread(target=writer, args=(store, i, stop, log)) for i in h.ns]
        for t in threads:
            t.start()
        time.sleep(2)
        hears = pattern(sorted(h.ns))
        cut_at, cut_wall = time.monotonic(), time.time_ns()
        h.see(hears)
        time.sleep(hold)
        heal_at, heal_wall = time.monotonic(), time.time_ns()
        h.heal()
        # Back: every node took a write begun after the heal (at most 60 s).
        back = None
        while time.monotonic() - heal_at < 60:
            done = {x[2] for x in list(log) if x[0] >= heal_at and x[3] == "ok"}
            if done >= set(h.ns):
                back = max(min(x[1] for x in list(log) if x[0] >= heal_at and x[3] == "ok" and x[2] == i)
                           for i in h.ns) - heal_at
                break
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()
        during = [x for x in log if cut_at <= x[0] < heal_at]
        ok = [x for x in during if x[3] == "ok"]
        # Writes that began before the cut may end after it: "again" means begun after the cut.
        first = min((x[1] for x in ok if x[0] >= cut_at), default=None)
        slots = int((heal_at - cut_at) / 0.1)
        good = {int((x[1] - cut_at) / 0.1) for x in ok if x[1] < heal_at}
        through = sorted({x[2] for x in ok if first is not None and x[0] >= first})
        errors = {}
        for x in during:
            if x[3] != "ok":
                errors[x[3]] = errors.get(x[3], 0) + 1
        # Per node: when it first refused after the cut (NOQUORUM), and how long refusals took.
        refusals = {}
        for i in h.ns:
            mine = [x for x in during if x[2] == i and x[3] == "NOQUORUM"]
            if mine:
                lat = sorted(x[1] - x[0] for x in mine)
                refusals[i] = {"first_s": round(min(x[1] for x in mine) - cut_at, 2),
                               "median_ms": round(lat[len(lat) // 2] * 1000, 1),
                               "max_ms": round(lat[-1] * 1000, 1)}
        for i in list(store.procs):
            store.kill(i)
        views = views_in(out, cut_wall, heal_wall)
        return {
            "scenario": name,
            "nodes": n,
            "hears": {k: sorted(v) for k, v in hears.items()},
            "first_write_after_cut_s": None if first is None else round(first - cut_at, 2),
            "writes_through": through,
            "slots_with_a_write": f"{len(good)}/{slots}",
            "views_during_cut": [f"v{v}{list(m)}" for v, m in views],
            "errors_during_cut": errors,
            "refusals": refusals,
            "every_node_writes_after_heal_s": None if back is None else round(back, 2),
        }
    finally:
        h.close()


def main():
    why = hostsmod.available()
    if why:
        print(f"SKIP: partial-connectivity scenarios: {why}")
        return 0
    names = sys.argv[1:] or list(SCENARIOS)
    base = jepsen.REPO / "target/scenarios" / time.strftime("%Y%m%d-%H%M%S")
    results = []
    for name in names:
        r = run(name, 15, base)
        print(json.dumps(r), flush=True)
        results.append(r)
    (base / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    print(f"\nresults in {base}/results.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
