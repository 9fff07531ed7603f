#!/usr/bin/env python3
"""Jepsen-style client workload against a chorus-kv store, with redis-py.

Several client threads, each on its own connection to one node (chosen round-robin, and
re-chosen after an error), run for --seconds:

- register: SET k v / GET k on keys r0..r{n}; values are unique per write;
- list-append: MULTI; RPUSH k v; LRANGE k 0 -1; EXEC on keys l0..l{n}, recorded as an append
  and a read-list over the same interval (sound for the checker: weaker than one atomic op);
- transactions (with --txn-history FILE): MULTI of 1 to 4 micro-operations on keys t0..t3
  (RPUSH of a unique element, or LRANGE 0 -1), EXEC; recorded in FILE in the `"f":"txn"`
  format that `chorus-lin txn` judges for strict serializability (Elle's list-append method);
- counter (with --counters FILE): INCR on keys c0..c{n}, checked here, not by chorus-lin (as
  Jepsen's counter workload): every value an acknowledged INCR returned is distinct, and the
  final value read through every node lies between the acknowledged increments and those plus
  the ones of unknown outcome (a refused one never counts). The verdict goes to FILE and to the
  exit status.

Every operation is written to the history (JSON lines, the chorus-lin format) as an invoke and
then ok / fail / info: ok with the value read, fail when the store said nothing was done
(NOQUORUM, NOTREADY, READONLY, OVERLOADED, refused connections), info when the outcome is
unknown (timeouts, UNCERTAIN, a connection dropped mid-request). After the run, one final
read of every list key through a node that answers (the checker verifies no acknowledged
append is missing from it).

    workload.py --ports 7001,7002,7003 --seconds 20 --clients 6 --history h.jsonl
"""
import argparse
import json
import random
import sys
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

START = time.monotonic()
# Every list key the clients used (the final reads read them all).
LISTS = set()
LISTS_LOCK = threading.Lock()

# Counter keys: [acknowledged, unknown outcome, values the acknowledged ones returned].
COUNTERS = {}
COUNTERS_LOCK = threading.Lock()

DEFINITE = ("NOQUORUM", "NOTREADY", "READONLY", "OVERLOADED", "LOADING", "TRYAGAIN", "STANDBY")


class History:
    def __init__(self, path):
        self.f = open(path, "w")
        self.lock = threading.Lock()

    def write(self, **ev):
        ev["time_ns"] = time.monotonic_ns()
        line = json.dumps(ev)
        with self.lock:
            self.f.write(line + "\n")

    def close(self):
        self.f.close()


def classify(e):
    """ok is not an option here: 'fail' (definitely not done) or 'info' (unknown)."""
    if isinstance(e, redis.exceptions.ConnectionError) and not isinstance(e, redis.exceptions.TimeoutError):
        # Refused before sending is definite, but redis-py cannot tell us when it was sent:
        # a reset mid-request is unknown. Be conservative.
        return "info"
    if isinstance(e, redis.exceptions.ResponseError):
        msg = str(e)
        if msg.split(" ", 1)[0].upper() in DEFINITE:
            return "fail"
        return "info"
    return "info"


def connect(addr, timeout):
    # No retries: redis-py (6 and later) resends a request after a timeout or a dropped
    # connection by default, which would run it twice behind the history's back.
    host, port = addr
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        retry_on_error=[],
    )


def txn(conn, rng, cid, seq, args, txh, proc):
    """One transaction of list appends and reads over a few keys, in MULTI/EXEC."""
    rot = f"{int((time.monotonic() - START) / args.rotate)}-" if args.rotate else ""
    mops = []
    for j in range(rng.randint(1, 4)):
        key = f"t{rot}{rng.randrange(4)}"
        mops.append(["append", key, f"{cid}-{seq}-{j}"] if rng.random() < 0.5 else ["r", key, None])
    txh.write(process=proc, type="invoke", f="txn", value=mops)
    pipe = conn.pipeline(transaction=True)
    for f, key, v in mops:
        if f == "append":
            pipe.rpush(key, v)
        else:
            pipe.lrange(key, 0, -1)
    results = pipe.execute()
    done = [[f, key, [x.decode() for x in r] if f == "r" else v] for (f, key, v), r in zip(mops, results)]
    txh.write(process=proc, type="ok", f="txn", value=done)


def client(cid, args, ports, hist, stop, counters, txh=None):
    rng = random.Random(args.seed * 1000 + cid)
    node = cid % len(ports)
    conn = None
    seq = 0
    gen = 0
    while not stop.is_set():
        # After an operation with an unknown outcome the process may still be "in flight":
        # continue as a new process, as Jepsen does.
        proc = cid + 100 * gen
        if conn is None:
            conn = connect(ports[node], args.timeout)
        seq += 1
        if txh is not None and rng.random() < 0.25:
            try:
                txn(conn, rng, cid, seq, args, txh, proc)
                counters["ok"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                t = classify(e)
                txh.write(process=proc, type=t, f="txn", value=[], error=str(e))
                gen += t == "info"
                counters["err"] += 1
                conn, node = None, (node + 1) % len(ports)
        elif args.counters and rng.random() < 0.2:
            key = f"c{rng.randrange(args.keys)}"
            with COUNTERS_LOCK:
                COUNTERS.setdefault(key, [0, 0, []])
            try:
                v = conn.incr(key)
                with COUNTERS_LOCK:
                    COUNTERS[key][0] += 1
                    COUNTERS[key][2].append(v)
                counters["ok"] += 1
            except Exception as e:  # noqa: BLE001
                t = classify(e)
                if t == "info":
                    with COUNTERS_LOCK:
                        COUNTERS[key][1] += 1
                gen += t == "info"
                counters["err"] += 1
                conn, node = None, (node + 1) % len(ports)
        elif rng.random() < 0.5:
            key = f"r{rng.randrange(args.keys)}"
            if rng.random() < 0.5:
                value = f"{cid}-{seq}"
                hist.write(process=proc, type="invoke", f="write", key=key, value=value)
                try:
                    r = conn.set(key, value)
                    hist.write(process=proc, type="ok" if r else "fail", f="write", key=key, value=value)
                    counters["ok"] += 1
                except Exception as e:  # noqa: BLE001 - every failure is recorded
                    t = classify(e)
                    hist.write(process=proc, type=t, f="write", key=key, value=value, error=str(e))
                    gen += t == "info"
                    counters["err"] += 1
                    conn, node = None, (node + 1) % len(ports)
            else:
                hist.write(process=proc, type="invoke", f="read", key=key, value=None)
                try:
                    r = conn.get(key)
                    hist.write(process=proc, type="ok", f="read", key=key, value=None if r is None else r.decode())
                    counters["ok"] += 1
                except Exception as e:  # noqa: BLE001
                    # A read that failed changed nothing: drop it (fail).
                    hist.write(process=proc, type="fail", f="read", key=key, value=None, error=str(e))
                    counters["err"] += 1
                    conn, node = None, (node + 1) % len(ports)
        else:
            key = f"l{rng.randrange(args.keys)}"
            if args.rotate:
                # A new set of list keys every --rotate seconds: lists stay short, and so do the
                # history's reads of them (Jepsen retires keys the same way).
                key = f"l{int((time.monotonic() - START) / args.rotate)}-{key[1:]}"
            with LISTS_LOCK:
                LISTS.add(key)
            value = f"{cid}-{seq}"
            p2 = proc + 50_000  # the read half of the transaction, as its own process
            hist.write(process=proc, type="invoke", f="append", key=key, value=value)
            hist.write(process=p2, type="invoke", f="read-list", key=key, value=None)
            try:
                pipe = conn.pipeline(transaction=True)
                pipe.rpush(key, value)
                pipe.lrange(key, 0, -1)
                _, lst = pipe.execute()
                hist.write(process=proc, type="ok", f="append", key=key, value=value)
                hist.write(process=p2, type="ok", f="read-list", key=key, value=[x.decode() for x in lst])
                counters["ok"] += 1
            except Exception as e:  # noqa: BLE001
                t = classify(e)
                hist.write(process=proc, type=t, f="append", key=key, value=value, error=str(e))
                hist.write(process=p2, type="fail", f="read-list", key=key, value=None, error=str(e))
                gen += t == "info"
                counters["err"] += 1
                conn, node = None, (node + 1) % len(ports)
        if args.pace:
            time.sleep(args.pace)


def final_reads(args, ports, hist):
    """One read of every list key, through the first node that answers, after the run (with
    --final-all, through every node: each must answer)."""
    if args.final_all:
        return all(final_reads_at(args, [port], hist) for port in ports)
    return final_reads_at(args, ports, hist)


def final_reads_at(args, ports, hist):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for port in ports:
            key = None
            try:
                conn = connect(port, args.timeout)
                for key in sorted(LISTS):
                    hist.write(process=99_999, type="invoke", f="read-list", key=key, value=None)
                    lst = conn.lrange(key, 0, -1)
                    hist.write(process=99_999, type="ok", f="read-list", key=key, value=[x.decode() for x in lst], final=True)
                return True
            except Exception as e:  # noqa: BLE001
                hist.write(process=99_999, type="fail", f="read-list", key=key, value=None, error=str(e))
                print(f"final read through {port} failed: {e}", file=sys.stderr)
        time.sleep(1)
    return False


def check_counters(args, ports):
    """The counter verdict (see the module docs); True if it holds at every node."""
    lines, ok, violated = [], True, False
    for key, (acked, unknown, values) in sorted(COUNTERS.items()):
        if len(set(values)) != len(values):
            ok, violated = False, True
            lines.append(f"{key}: two acknowledged INCRs returned the same value")
        for host, port in ports:
            try:
                c = connect((host, port), args.timeout)
                final = int(c.get(key) or 0)
            except Exception as e:  # noqa: BLE001
                ok = False
                lines.append(f"{key} at {host}:{port}: final read failed: {e}")
                continue
            good = acked <= final <= acked + unknown and all(v <= final for v in values)
            ok &= good
            violated |= not good
            lines.append(f"{key} at {host}:{port}: final {final}, acknowledged {acked}, unknown {unknown}: "
                         f"{'ok' if good else 'VIOLATION'}")
    # A final read that failed proves nothing either way: the run fails, but not as a lost write.
    word = "ok" if ok else "VIOLATION" if violated else "NOT JUDGED (a final read failed)"
    verdict = f"counters: {word} ({len(COUNTERS)} keys, " \
              f"{sum(a for a, _, _ in COUNTERS.values())} acknowledged increments)"
    with open(args.counters, "w") as f:
        f.write(verdict + "\n" + "\n".join(lines) + "\n")
    return ok, verdict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", help="nodes on 127.0.0.1, e.g. 7001,7002,7003")
    ap.add_argument("--addrs", help="nodes as host:port, e.g. 10.100.1.1:6379,10.100.1.2:6379")
    ap.add_argument("--final-all", action="store_true", help="final reads through every node")
    ap.add_argument("--rotate", type=float, default=0, help="new list keys every this many seconds (0: never)")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--keys", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--pace", type=float, default=0.002)
    ap.add_argument("--history", required=True)
    ap.add_argument("--counters", help="run the counter workload too; its verdict goes here")
    ap.add_argument("--txn-history", help="run multi-key transactions too, recorded here (chorus-lin txn)")
    args = ap.parse_args()
    if args.addrs:
        ports = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in args.addrs.split(",")]
    elif args.ports:
        ports = [("127.0.0.1", int(p)) for p in args.ports.split(",")]
    else:
        ap.error("--ports or --addrs is required")
    hist = History(args.history)
    txh = History(args.txn_history) if args.txn_history else None
    stop = threading.Event()
    counters = {"ok": 0, "err": 0}
    threads = [threading.Thread(target=client, args=(c, args, ports, hist, stop, counters, txh))
               for c in range(args.clients)]
    for t in threads:
        t.start()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        time.sleep(1)
        print(f"workload: {counters['ok']} ok, {counters['err']} errors", flush=True)
    stop.set()
    for t in threads:
        t.join()
    reads = final_reads(args, ports, hist)
    hist.close()
    if txh is not None:
        txh.close()
    ok, counted = reads, ""
    if args.counters:
        c_ok, verdict = check_counters(args, ports)
        ok &= c_ok
        counted = f", {verdict}"
    print(f"workload done: {counters['ok']} ok, {counters['err']} errors, final reads {'taken' if reads else 'FAILED'}{counted}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
