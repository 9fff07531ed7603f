#!/usr/bin/env python3
"""redis-py against a replicated store: every command family, RESP2 and RESP3, written through
one node and read through the others (linearizable reads: each read sees the write before it).

    redispy_smoke.py --ports 7001,7002,7003
"""
import argparse
import sys

import redis


def check(what, got, want):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}")
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True)
    args = ap.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    for proto in (2, 3):
        w = redis.Redis(port=ports[0], protocol=proto, decode_responses=True)
        rs = [redis.Redis(port=p, protocol=proto, decode_responses=True) for p in ports]
        k = f"smoke{proto}"
        w.delete(f"{k}:s", f"{k}:l", f"{k}:h", f"{k}:set", f"{k}:n", f"{k}:e")
        check("set", w.set(f"{k}:s", "v1"), True)
        check("set nx", w.set(f"{k}:s", "v2", nx=True), None)
        check("set get", w.set(f"{k}:s", "v2", get=True), "v1")
        check("incrby", w.incrby(f"{k}:n", 5), 5)
        check("rpush", w.rpush(f"{k}:l", "a", "b", "c"), 3)
        check("hset", w.hset(f"{k}:h", mapping={"f1": "1", "f2": "2"}), 2)
        check("sadd", w.sadd(f"{k}:set", "x", "y"), 2)
        check("set ex", w.set(f"{k}:e", "v", ex=100), True)
        with w.pipeline(transaction=True) as p:
            p.incr(f"{k}:n")
            p.lpush(f"{k}:l", "z")
            p.get(f"{k}:s")
            check("multi/exec", p.execute(), [6, 4, "v2"])
        for r in rs:
            check("get", r.get(f"{k}:s"), "v2")
            check("get n", r.get(f"{k}:n"), "6")
            check("lrange", r.lrange(f"{k}:l", 0, -1), ["z", "a", "b", "c"])
            check("hgetall", r.hgetall(f"{k}:h"), {"f1": "1", "f2": "2"})
            check("smembers", r.smembers(f"{k}:set"), {"x", "y"})
            ttl = r.ttl(f"{k}:e")
            if not 90 <= ttl <= 100:
                print(f"FAIL ttl: {ttl}")
                sys.exit(1)
            check("type", r.type(f"{k}:h"), "hash")
            check("exists", r.exists(f"{k}:s", f"{k}:l", f"{k}:missing"), 2)
        # WATCH: a transaction aborted by a write through another node.
        with w.pipeline(transaction=True) as p:
            p.watch(f"{k}:s")
            rs[-1].set(f"{k}:s", "changed elsewhere")
            p.multi()
            p.set(f"{k}:s", "mine")
            try:
                p.execute()
                print("FAIL watch: the transaction ran though the watched key changed")
                sys.exit(1)
            except redis.WatchError:
                pass
        check("after watch", rs[1].get(f"{k}:s"), "changed elsewhere")
        # A wrong type is an error, and the connection goes on.
        try:
            w.lpush(f"{k}:s", "x")
            print("FAIL wrongtype: no error")
            sys.exit(1)
        except redis.ResponseError as e:
            check("wrongtype", str(e).split(" ")[0], "WRONGTYPE")
        check("ping", w.ping(), True)
        info = w.info("group")
        if info.get("role") != "active" or "view_id" not in info:
            print(f"FAIL info group: {info}")
            sys.exit(1)
    print("redis-py smoke: ok (RESP2 and RESP3, every node)")


if __name__ == "__main__":
    main()
