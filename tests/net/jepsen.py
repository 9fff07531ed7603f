#!/usr/bin/env python3
"""A Jepsen-style run of the store across network namespaces: N chorus-kv nodes, each on its own
host (tests/net/hosts.py), redis-py clients (tests/kv/workload.py: register and list-append in
MULTI), and a nemesis that injects a fault about every --interval seconds and heals it:

  partition kinds: isolate-one, halves (majority | minority), majorities-ring (every node sees
                   a majority, no two the same), one-way (a link drops one direction), bridge
                   (two sides and one node that sees both);
  netem:           delay with jitter, loss, duplication, reordering on one or every link (on a
                   kernel without sch_netem: loss by iptables and bandwidth limits by tbf only);
  process:         kill -9 and restart (one, a minority, the coordinator), pause and resume
                   (SIGSTOP / SIGCONT) past the suspicion timeout;
  membership:      a node or a minority leaves (SIGTERM) and joins again as a new member
                   (leave); a node never seen before (a new node id, an empty data directory,
                   on a spare host) joins mid-run, loads the state, and leaves at the heal
                   (join);
  clock:           a node's (or a minority's) wall clock stepped forward or back by up to 5
                   minutes, or running 3 times fast or at half speed (libfaketime, Debian's
                   `faketime` package, preloaded into every node when clock faults are in the
                   mix, which slows a node's hot path a lot: no clock faults in throughput
                   figures; a fault takes effect within about 2 s; the monotonic clock, which the timeouts use, is left alone, as an NTP
                   step would leave it). The traces keep the machine's clock (runtime::
                   trace_nanos reads it without libc), so `chorus check` can merge them.

Then every fault is healed, every node must be back in one view, every node answers a final
read of every list key, and the run is judged:

  - chorus-lin: linearizability per key, and no acknowledged append missing from any final read;
  - chorus-lin txn: the multi-key transactions (MULTI of list appends and reads) strictly
    serializable by Elle's method: no write-write, write-read, read-write or real-time cycle;
  - chorus check: the nodes' merged traces (view agreement, the flush, integrity, ordering; the
    runtime writes them, without the application's state lines);
  - every replica reports the same applied index once the writes stop.

Everything goes to --out (default target/jepsen/<time>): history.jsonl, nemesis.jsonl (each
fault with its start and end, on the history's clock), node logs and traces, verdict.txt, and
latency.svg (latency over time, faults shaded). Exit status 0 only if every check passed.

    sudo python3 tests/net/jepsen.py --nodes 5 --seconds 60          # one run
    python3 tests/net/jepsen.py --runs 100 --seconds 60             # the long campaign
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hosts as hostsmod  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PEER_PORT, CLIENT_PORT = 7101, 6379

FAULTS = ["isolate", "halves", "ring", "one-way", "bridge", "netem", "kill", "pause", "leave", "join", "clock"]


def faketime_lib():
    """libfaketime's multi-threaded library, if installed (apt-get install faketime)."""
    for p in sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1")):
        return p
    return None


def now_ns():
    return time.monotonic_ns()


class Store:
    def __init__(self, hosts, out, binary, suspect_ms, faketime=None):
        self.h = hosts
        self.out = out
        # With clock faults: libfaketime preloaded, each node's offset in clocks/node-N ("+0 x1"
        # until a fault writes another; re-read at most once a second).
        self.faketime = faketime
        (out / "clocks").mkdir(parents=True, exist_ok=True)
        self.bin = binary
        self.suspect_ms = suspect_ms
        self.procs = {}
        self.lives = {i: 0 for i in hosts.ns}
        # Node id -> host: node i on host i, and nodes that join mid-run on a spare host.
        self.host_of = {i: i for i in hosts.ns}
        self.paused = set()
        (out / "data").mkdir(parents=True, exist_ok=True)
        # Mutual TLS on the peer links, as in production: a development CA and a certificate
        # per node naming its address (`chorus certs`, the chorus binary next to chorus-kv).
        # Clients (the workload, redis-py) connect in plaintext.
        self.certs = out / "certs"
        addrs = ",".join(hosts.addr(j) for j in hosts.ns)
        subprocess.run([str(Path(binary).parent / "chorus"), "certs", "--dir", str(self.certs), "--host", addrs]
                       + [f"node-{j}" for j in hosts.ns], check=True, stdout=subprocess.DEVNULL)

    def addr(self, i):
        return self.h.addr(self.host_of[i])

    def cert(self, i):
        """A certificate for node i (one that joins mid-run), signed by the run's CA."""
        subprocess.run([str(Path(self.bin).parent / "chorus"), "certs", "--dir", str(self.certs), "--host",
                        self.addr(i), f"node-{i}"], check=True, stdout=subprocess.DEVNULL)

    def start(self, i):
        h = self.h
        self.lives[i] += 1
        seeds = ",".join(f"{j}@{h.addr(j)}:{PEER_PORT}" for j in h.ns if j != i)
        argv = [
            str(self.bin), "node", "--node", str(i),
            "--group-listen", f"{self.addr(i)}:{PEER_PORT}",
            "--listen", f"{self.addr(i)}:{CLIENT_PORT}",
            "--seed", seeds,
            "--data-dir", str(self.out / "data" / f"node-{i}"),
            "--appendfsync", "always",
        ]
        if i == 1:
            argv.append("--bootstrap")  # Founds only once: its data directory says so later.
        env = dict(os.environ)
        env.update({
            "CHORUS_SECRET": "jepsen-run-secret-0123456789abcdef",
            "CHORUS_CLUSTER": "jepsen",
            "CHORUS_LOG": "info",
            "CHORUS_SUSPECT_TIMEOUT_MS": str(self.suspect_ms),
            "CHORUS_TRACE": str(self.trace_path(i)),
            "CHORUS_TLS_CERT": str(self.certs / f"node-{i}.pem"),
            "CHORUS_TLS_KEY": str(self.certs / f"node-{i}-key.pem"),
            "CHORUS_TLS_CA": str(self.certs / "ca.pem"),
            "CHORUS_KV_PLAINTEXT": "1",
        })
        if self.faketime is not None:
            clock = self.clock_file(i)
            if not clock.exists():
                clock.write_text("+0 x1\n")
            env.update({
                "LD_PRELOAD": str(self.faketime),
                "FAKETIME_TIMESTAMP_FILE": str(clock),
                "FAKETIME_CACHE_DURATION": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            })
        log = open(self.out / f"node-{i}.log", "a")
        p = h.popen(self.host_of[i], argv, stdout=log, stderr=log, env=env)
        self.procs[i] = p
        h.procs[i] = p

    def clock_file(self, i):
        return self.out / "clocks" / f"node-{i}"

    def set_clock(self, i, spec):
        """libfaketime's spec for node i: "+0 x1" (the real time), "+120s x1", "-30s x1", "+0 x3"."""
        tmp = self.clock_file(i).with_suffix(".tmp")
        tmp.write_text(spec + "\n")
        tmp.replace(self.clock_file(i))

    def trace_path(self, i):
        return self.out / f"node-{i}.life-{self.lives[i]}.trace.jsonl"

    def harness(self, ev):
        """A line of the harness's own trace (crashes), on the nodes' clock."""
        with open(self.out / "harness.trace.jsonl", "a") as f:
            f.write(json.dumps(ev) + "\n")

    def current_proc(self, i):
        """The life (node, incarnation) node i's trace last started, if any."""
        try:
            lines = self.trace_path(i).read_text().splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            try:
                e = json.loads(line)
            except ValueError:
                continue  # A line cut by the kill.
            if e.get("ev") == "start":
                return e["p"]
        return None

    def kill(self, i):
        p = self.procs.pop(i, None)
        if p is not None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            life = self.current_proc(i)
            if life is not None:
                self.harness({"t": time.time_ns(), "p": life, "ev": "crash"})
        self.paused.discard(i)

    def leave(self, i, within=10.0):
        """SIGTERM: the node leaves the group (a new view without it) and exits. If it has not
        exited within `within` seconds it is killed, and that counts as a crash."""
        p = self.procs.pop(i, None)
        if p is None:
            return True
        if i in self.paused:
            os.killpg(p.pid, signal.SIGCONT)
            self.paused.discard(i)
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=within)
            return True
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            life = self.current_proc(i)
            if life is not None:
                self.harness({"t": time.time_ns(), "p": life, "ev": "crash"})
            return False

    def pause(self, i):
        if i in self.procs:
            os.killpg(self.procs[i].pid, signal.SIGSTOP)
            self.paused.add(i)

    def resume(self, i):
        if i in self.paused and i in self.procs:
            os.killpg(self.procs[i].pid, signal.SIGCONT)
        self.paused.discard(i)

    def info(self, i, timeout=1.0):
        import redis
        c = redis.Redis(host=self.addr(i), port=CLIENT_PORT, socket_timeout=timeout,
                        socket_connect_timeout=timeout)
        try:
            return c.info()
        finally:
            c.close()

    def skew(self, i):
        """Node i's wall clock (Redis TIME) minus the harness's, in seconds; None if no answer."""
        import redis
        c = redis.Redis(host=self.addr(i), port=CLIENT_PORT, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            sec, usec = c.time()
            return sec + usec / 1e6 - time.time()
        except Exception:  # noqa: BLE001 - a node down or cut off
            return None
        finally:
            c.close()

    def one_view(self, deadline_s):
        """Waits until every node reports the same view of all nodes; returns seconds taken."""
        t0 = time.monotonic()
        n = len(self.h.ns)
        while time.monotonic() - t0 < deadline_s:
            try:
                infos = [self.info(i) for i in self.h.ns]
                views = {str(x.get("view_id")) for x in infos}
                full = all(len(str(x.get("members", "")).split(",")) == n for x in infos)
                if len(views) == 1 and full:
                    return time.monotonic() - t0
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        return None

    def coordinator(self):
        """The oldest member of the view (the coordinator unless suspected), by node id."""
        for i in self.h.ns:
            try:
                members = str(self.info(i).get("members", "")).split(",")
                first = members[0].lstrip("n").split(".")[0]
                return int(first)
            except Exception:  # noqa: BLE001
                continue
        return 1


class Nemesis:
    def __init__(self, store, rng, log, faults):
        self.joined = 0  # Nodes that joined mid-run so far (ids 101, 102, ...).
        self.s = store
        self.h = store.h
        self.rng = rng
        self.log = log
        self.faults = faults
        self.counts = {}
        self.netem = self.h.netem_available()

    def record(self, kind, start, end, detail):
        self.log.write(json.dumps({"fault": kind, "start_ns": start, "end_ns": end, "detail": detail}) + "\n")
        self.log.flush()
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def inject(self, duration):
        nodes = sorted(self.h.ns)
        n = len(nodes)
        kind = self.rng.choice(self.faults)
        start = now_ns()
        detail = ""
        heal = self.h.heal
        if kind == "isolate":
            x = self.rng.choice(nodes)
            self.h.partition([{x}, set(nodes) - {x}])
            detail = f"node {x} cut off"
        elif kind == "halves":
            shuffled = nodes[:]
            self.rng.shuffle(shuffled)
            a = set(shuffled[: n // 2])
            self.h.partition([a, set(nodes) - a])
            detail = f"minority {sorted(a)} | majority {sorted(set(nodes) - a)}"
        elif kind == "ring":
            # Node k hears the nodes within n//2 places of it on a shuffled ring: a majority
            # each, no two the same (for n >= 5).
            ring = nodes[:]
            self.rng.shuffle(ring)
            views = {}
            for k, x in enumerate(ring):
                near = {ring[(k + d) % n] for d in range(-(n // 4) - 0, n // 4 + 1)}
                if len(near) <= n // 2:
                    near.add(ring[(k + n // 4 + 1) % n])
                views[x] = near
            self.h.see(views)
            detail = "majorities ring " + " ".join(f"{x}:{sorted(v)}" for x, v in sorted(views.items()))
        elif kind == "one-way":
            a, b = self.rng.sample(nodes, 2)
            self.h.one_way(a, b)
            detail = f"{a} -> {b} dropped"
        elif kind == "bridge":
            shuffled = nodes[:]
            self.rng.shuffle(shuffled)
            b = shuffled[0]
            left = set(shuffled[1: 1 + (n - 1) // 2])
            right = set(shuffled[1 + (n - 1) // 2:])
            views = {x: left | {b} for x in left}
            views.update({x: right | {b} for x in right})
            views[b] = set(nodes)
            self.h.see(views)
            detail = f"bridge {b} between {sorted(left)} and {sorted(right)}"
        elif kind == "netem":
            who = nodes if self.rng.random() < 0.5 else [self.rng.choice(nodes)]
            if self.netem:
                spec = self.rng.choice([
                    "delay 60ms 30ms", "delay 20ms 10ms loss 5%", "loss 10%", "delay 10ms duplicate 5%",
                    "delay 30ms 20ms reorder 25% 50%", "rate 2mbit delay 5ms",
                ])
                for x in who:
                    self.h.netem(x, spec)
            else:
                # This kernel has no sch_netem: loss by iptables, bandwidth by tbf.
                spec = self.rng.choice(["loss 5%", "loss 20%", "rate 2mbit", "rate 500kbit"])
                for x in who:
                    if spec.startswith("loss"):
                        self.h.loss(x, float(spec.split()[1].rstrip("%")) / 100)
                    else:
                        self.h.rate(x, spec.split()[1])
            detail = f"link '{spec}' on {who}"
        elif kind == "kill":
            target = self.rng.choice(["one", "minority", "coordinator"])
            if target == "one":
                victims = [self.rng.choice(nodes)]
            elif target == "coordinator":
                victims = [self.s.coordinator()]
            else:
                victims = self.rng.sample(nodes, (n - 1) // 2)
            for x in victims:
                self.s.kill(x)

            def heal():
                for x in victims:
                    self.s.start(x)

            detail = f"kill -9 {victims} ({target}), restarted at the heal"
        elif kind == "pause":
            victims = [self.rng.choice(nodes)] if self.rng.random() < 0.6 else self.rng.sample(nodes, (n - 1) // 2)
            for x in victims:
                self.s.pause(x)

            def heal():
                for x in victims:
                    self.s.resume(x)

            detail = f"SIGSTOP {victims}, SIGCONT at the heal"
        elif kind == "leave":
            # Membership: a node (or a minority) leaves the group for good (SIGTERM: it says
            # goodbye, a view without it is installed) and joins again at the heal, as a new
            # member that loads the state.
            victims = [self.rng.choice(nodes)] if self.rng.random() < 0.7 else self.rng.sample(nodes, (n - 1) // 2)
            clean = [self.s.leave(x) for x in victims]

            def heal():
                for x in victims:
                    self.s.start(x)

            how = "left cleanly" if all(clean) else "did not exit within 10 s after SIGTERM: killed"
            detail = f"SIGTERM {victims} ({how}), joined again at the heal"
        elif kind == "join":
            # A node never seen before: a new id, an empty data directory, on the spare host.
            self.joined += 1
            k = 100 + self.joined
            self.s.host_of[k] = self.h.spares[0]
            self.s.lives[k] = 0
            self.s.cert(k)
            t0 = time.monotonic()
            self.s.start(k)
            active = None
            while time.monotonic() - t0 < duration:
                try:
                    if self.s.info(k, 0.5).get("role") == "active":
                        active = time.monotonic() - t0
                        break
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.2)
            duration = max(0.0, duration - (time.monotonic() - t0))

            def heal():
                self.s.leave(k)

            got = f"active after {active:.1f} s" if active is not None else "not active before the heal"
            detail = f"node {k} (never a member) joined from {self.s.addr(k)}: {got}; left at the heal"
        elif kind == "clock":
            victims = [self.rng.choice(nodes)] if self.rng.random() < 0.6 else self.rng.sample(nodes, (n - 1) // 2)
            spec = self.rng.choice([
                # "x1" every time: libfaketime keeps the last rate when a spec names none.
                f"+{self.rng.randint(5, 300)}s x1", f"-{self.rng.randint(5, 300)}s x1", "+0 x3", "+0 x0.5",
            ])
            for x in victims:
                self.s.set_clock(x, spec)
            # The node's own word for it: its TIME against ours, once libfaketime re-read the file
            # (it does within about 2 s).
            time.sleep(2.5)
            skews = {x: self.s.skew(x) for x in victims}

            def heal():
                for x in victims:
                    self.s.set_clock(x, "+0 x1")

            seen = ", ".join(f"node {x} {'?' if v is None else f'{v:+.0f} s'}" for x, v in skews.items())
            detail = f"wall clock '{spec}' on {victims} (TIME - real time after 2.5 s: {seen}), real again at the heal"
        print(f"nemesis: {kind}: {detail}", flush=True)
        time.sleep(duration)
        heal()
        self.record(kind, start, now_ns(), detail)


def noquorum_latency(history):
    """How quickly refused operations were refused: the latency of every NOQUORUM answer."""
    inv, lat = {}, []
    with open(history) as f:
        for line in f:
            e = json.loads(line)
            key = (e["process"], e["f"], e["key"])
            if e["type"] == "invoke":
                inv[key] = e["time_ns"]
            elif key in inv:
                t0 = inv.pop(key)
                if str(e.get("error", "")).startswith("NOQUORUM"):
                    lat.append((e["time_ns"] - t0) / 1e6)
    if not lat:
        return "NOQUORUM answers: none"
    lat.sort()
    return (f"NOQUORUM answers: {len(lat)}, latency median {lat[len(lat) // 2]:.1f} ms, "
            f"p99 {lat[min(len(lat) - 1, len(lat) * 99 // 100)]:.1f} ms, max {lat[-1]:.1f} ms")


def latency_svg(history, faults, path):
    """Latency of every completed operation over time (ok green, fail orange, info red),
    faults shaded."""
    inv = {}
    points = []
    for line in history.read_text().splitlines():
        e = json.loads(line)
        key = (e["process"], e["f"], e["key"])
        if e["type"] == "invoke":
            inv[key] = e["time_ns"]
        elif key in inv:
            t0 = inv.pop(key)
            points.append((t0, (e["time_ns"] - t0) / 1e6, e["type"]))
    if not points:
        path.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        return
    t_min = min(p[0] for p in points)
    t_max = max(p[0] for p in points)
    span = max(1, t_max - t_min)
    lat_max = max(10.0, max(p[1] for p in points))
    w, hgt, pad = 1000, 400, 50

    def x(t):
        return pad + (t - t_min) / span * (w - 2 * pad)

    def y(ms):
        # Log scale from 0.1 ms.
        import math
        lo, hi = math.log10(0.1), math.log10(lat_max)
        return hgt - pad - (math.log10(max(ms, 0.1)) - lo) / (hi - lo) * (hgt - 2 * pad)

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{hgt}' font-family='sans-serif' font-size='11'>",
           f"<rect width='{w}' height='{hgt}' fill='white'/>"]
    for f in faults:
        x0, x1 = x(max(f["start_ns"], t_min)), x(min(f["end_ns"], t_max))
        if x1 > x0:
            out.append(f"<rect x='{x0:.1f}' y='{pad}' width='{x1 - x0:.1f}' height='{hgt - 2 * pad}' fill='#e0e0ff'>"
                       f"<title>{f['fault']}: {f['detail']}</title></rect>")
            out.append(f"<text x='{x0 + 2:.1f}' y='{pad - 4}' fill='#446'>{f['fault']}</text>")
    colour = {"ok": "#2a2", "fail": "#e80", "info": "#d22"}
    # At most about 6,000 points (every failure and unknown kept): a readable, small file.
    step = max(1, len(points) // 6000)
    points = [p for k, p in enumerate(points) if p[2] != "ok" or k % step == 0]
    for t, ms, typ in points:
        out.append(f"<circle cx='{x(t):.1f}' cy='{y(ms):.1f}' r='1.3' fill='{colour.get(typ, '#000')}'/>")
    for ms in (0.1, 1, 10, 100, 1000, 10000):
        if ms <= lat_max:
            out.append(f"<text x='4' y='{y(ms) + 4:.1f}'>{ms:g} ms</text>")
    out.append(f"<text x='{pad}' y='{hgt - 10}'>time → ({span / 1e9:.0f} s); latency, log scale; "
               "green ok, orange fail, red unknown; shaded: faults</text>")
    out.append("</svg>")
    path.write_text("\n".join(out))


def one_run(args, run_no, out):
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: give a new --out")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed + run_no)
    faults = args.faults.split(",") if args.faults else FAULTS
    faketime = faketime_lib() if "clock" in faults else None
    if "clock" in faults and faketime is None:
        print("clock faults need libfaketime (apt-get install faketime): left out of this run", flush=True)
        faults = [f for f in faults if f != "clock"]
    h = hostsmod.Hosts(args.nodes, spares=1 if "join" in faults else 0)
    verdict = []
    ok = True
    work = None
    try:
        store = Store(h, out, args.bin, args.suspect_ms, faketime)
        for i in h.ns:
            store.start(i)
        t = store.one_view(60)
        if t is None:
            raise RuntimeError("the nodes did not form one view within 60 s")
        print(f"run {run_no}: {args.nodes} nodes in one view after {t:.1f} s", flush=True)
        addrs = ",".join(f"{h.addr(i)}:{CLIENT_PORT}" for i in h.ns)
        history = out / "history.jsonl"
        work = subprocess.Popen([
            sys.executable, str(REPO / "tests/kv/workload.py"), "--addrs", addrs, "--seconds", str(args.seconds),
            "--clients", str(args.clients), "--keys", "4", "--seed", str(args.seed + run_no), "--history", str(history),
            "--timeout", "2", "--final-all", "--rotate", "1", "--counters", str(out / "counters.txt"),
            "--txn-history", str(out / "txn.jsonl"),
        ], stdout=open(out / "workload.log", "w"), stderr=subprocess.STDOUT)
        nem_log = open(out / "nemesis.jsonl", "w")
        nemesis = Nemesis(store, rng, nem_log, faults)
        if "clock" in args.faults.split(",") + (FAULTS if not args.faults else []) and faketime is None:
            verdict.append("clock faults: no libfaketime here (apt-get install faketime): none injected")
        if not nemesis.netem:
            verdict.append("link faults: this kernel has no sch_netem: loss (iptables) and bandwidth (tbf) only; "
                           "no delay, jitter, duplication or reordering")
        end = time.monotonic() + args.seconds - args.quiet
        time.sleep(min(3, args.interval / 2))
        while time.monotonic() + args.interval * 0.6 < end:
            dur = args.interval * rng.uniform(0.4, 0.7)
            nemesis.inject(dur)
            rest = args.interval - dur
            time.sleep(max(0.0, min(rest, end - time.monotonic())))
        h.heal()
        t = store.one_view(60)
        back = None if t is None else t
        verdict.append(f"healed: every node back in one view after {back:.1f} s" if back is not None
                       else "healed: NOT back in one view within 60 s")
        ok &= back is not None
        rc = work.wait(timeout=args.seconds + 180)
        verdict.append(f"workload: exit {rc} ({(out / 'workload.log').read_text().strip().splitlines()[-1]})")
        ok &= rc == 0
        # Every replica at the same applied index once writes stop.
        time.sleep(1)
        applied = {}
        for i in h.ns:
            try:
                applied[i] = store.info(i, 3).get("applied_index")
            except Exception as e:  # noqa: BLE001
                applied[i] = f"error: {e}"
        same = len(set(map(str, applied.values()))) == 1
        verdict.append(f"applied index per node: {applied} ({'equal' if same else 'DIFFERENT'})")
        ok &= same
        lin = subprocess.run([str(REPO / "target/release/chorus-lin"), "check", str(history)],
                             capture_output=True, text=True)
        (out / "chorus-lin.txt").write_text(lin.stdout + lin.stderr)
        verdict.append(f"chorus-lin: exit {lin.returncode}: " + (lin.stdout.strip().splitlines() or ["?"])[-1])
        ok &= lin.returncode == 0
        txn = subprocess.run([str(REPO / "target/release/chorus-lin"), "txn", str(out / "txn.jsonl")],
                             capture_output=True, text=True)
        (out / "chorus-lin-txn.txt").write_text(txn.stdout + txn.stderr)
        verdict.append(f"transactions (chorus-lin txn): exit {txn.returncode}: "
                       + (txn.stdout.strip().splitlines() or txn.stderr.strip().splitlines() or ["?"])[-1])
        ok &= txn.returncode == 0
        verdict.append(noquorum_latency(history))
        nem_log.close()
        faults_seen = [json.loads(x) for x in (out / "nemesis.jsonl").read_text().splitlines()]
        latency_svg(history, faults_seen, out / "latency.svg")
        verdict.append("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(nemesis.counts.items())))
        for i in list(store.procs):
            store.kill(i)
        traces = sorted(str(p) for p in out.glob("*.trace.jsonl"))
        if traces:
            chk = subprocess.run([str(REPO / "target/release/chorus"), "check", *traces], capture_output=True, text=True)
            (out / "chorus-check.txt").write_text(chk.stdout + chk.stderr)
            verdict.append(f"chorus check ({len(traces)} traces): exit {chk.returncode}: "
                           + (chk.stdout.strip().splitlines() or chk.stderr.strip().splitlines() or ["?"])[-1])
            ok &= chk.returncode == 0
        else:
            verdict.append("chorus check: no traces written")
            ok = False
    except Exception as e:  # noqa: BLE001 - the run fails with its reason
        verdict.append(f"ERROR: {e}")
        ok = False
    finally:
        if work is not None and work.poll() is None:
            work.kill()  # A run that failed must not leave its clients writing into the history.
            work.wait()
        h.close()
    if ok and args.runs > 1:
        # A campaign keeps every failing run whole; a passing run's history is compressed.
        subprocess.run(["gzip", "-f", str(out / "history.jsonl"), str(out / "txn.jsonl")], check=False)
        shutil.rmtree(out / "data", ignore_errors=True)
    verdict.insert(0, f"run {run_no}: {'PASS' if ok else 'FAIL'} ({out})")
    (out / "verdict.txt").write_text("\n".join(verdict) + "\n")
    print("\n".join(verdict), flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=60, help="workload length of one run")
    ap.add_argument("--interval", type=float, default=10, help="seconds between fault starts")
    ap.add_argument("--quiet", type=float, default=8, help="seconds without faults at the end")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--faults", default="", help="comma-separated subset of " + ",".join(FAULTS))
    ap.add_argument("--suspect-ms", type=int, default=1000)
    ap.add_argument("--out", default="")
    ap.add_argument("--bin", default=str(REPO / "target/release/chorus-kv"))
    args = ap.parse_args()
    why = hostsmod.available()
    if why:
        print(f"SKIP: Jepsen-style run: {why}")
        return 0
    for tool in ("chorus-kv", "chorus-lin", "chorus"):
        if not (REPO / "target/release" / tool).exists():
            print(f"build first: cargo build --release (target/release/{tool} is missing)", file=sys.stderr)
            return 2
    base = Path(args.out) if args.out else REPO / "target/jepsen" / time.strftime("%Y%m%d-%H%M%S")
    print(f"seed {args.seed}; output in {base}", flush=True)
    results = []
    for r in range(args.runs):
        out = base / f"run-{r:03d}" if args.runs > 1 else base
        results.append(one_run(args, r, out))
    passed = sum(results)
    print(f"{passed}/{len(results)} runs passed (seed {args.seed}; replay one: --seed {args.seed} --runs 1 "
          f"after shifting by its run number)")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
