#!/usr/bin/env python3
"""Differential test of chorus-kv against a real redis-server.

    differential.py OURS REDIS [--seed N] [--count N] [--protocol 2|3] [-v]

OURS and REDIS are host:port. Both servers are flushed, then the same pseudo-random command
sequence (from --seed) runs against both: --count steps over a small key space, across every
command family chorus-kv supports (strings, keys and expiry, lists, hashes, sets, MULTI/EXEC/
DISCARD, WATCH, pipelines, connection commands), with wrong-type errors, syntax errors, arity
errors and unknown commands mixed in. Every reply is compared; the first mismatch is printed
with the seed and the step, and the script exits 1. Exit 0: no mismatch.

How replies are compared:
- exactly, including error texts (the exception class redis-py maps the error to, and its text);
- as multisets where Redis's order is unspecified: KEYS, SMEMBERS, HKEYS, HVALS, HGETALL;
- SCAN: a full iteration (cursor to 0), compared as the set of keys returned;
- loosely where time passes between the two requests: TTL and EXPIRETIME within 1 s,
  PTTL and PEXPIRETIME within 1000 ms (expiries are far in the future, or in the past, never
  about to fire, except in one composite step that sets a 1 ms expiry and waits 20 ms on both).

The allowlist: differences that are justified, and so never generated or compared:
- SELECT with an index other than 0: chorus-kv has one database ("ERR DB index is out of range").
- SCAN cursors: chorus-kv's are key hashes, Redis's are table positions (only the set of keys is
  compared); SCAN accepts a cursor that is not a decimal u64 in Redis (strtoul), not here.
- The order of unordered replies (see above).
- INFO, CONFIG GET, CLIENT LIST/INFO, COMMAND, HELLO: contents differ by nature (only HELLO's
  "proto" is compared).
- WATCH may abort spuriously in chorus-kv (a key already expired but not yet deleted when
  watched, more than 65,536 deletions between WATCH and EXEC, a 64-bit hash collision); never
  generated here.
- DBSIZE: Redis counts keys whose expiry has passed until it reclaims them, chorus-kv does not;
  on a difference the script touches every key on redis-server (lazy expiry) and asks again.
  DBSIZE is not generated inside transactions and pipelines.
- Commands chorus-kv does not implement (an "unknown command" error in chorus-kv).
- Malformed requests: chorus-kv requires CRLF after a bulk string (Redis skips two bytes) and
  has tighter default limits (64 MiB bulks); not generated here.
"""

import argparse
import random
import sys
import time

import redis
from redis.exceptions import ResponseError, RedisError

KEYS = ["k0", "k1", "k2", "k3", "k4", "a:1", "a:2", "b"]
FIELDS = ["f0", "f1", "f2", "f3"]
MEMBERS = ["m0", "m1", "m2", "m3", "m4", "1", "2"]
PATTERNS = ["*", "k*", "k?", "a:*", "[ka]*", "*1", "k[0-2]", "b", "[^k]*", "x*", "\\k*"]


class Mismatch(Exception):
    pass


# ---------------------------------------------------------------- values


def rval(r):
    c = r.random()
    if c < 0.35:
        return str(r.randint(-5, 100))
    if c < 0.45:
        return r.choice(["9223372036854775807", "-9223372036854775808", "9223372036854775806",
                         "01", " 1", "1.5", "", "abc", "-0", "+1"])
    return r.choice(["v", "val", "x" * r.randint(1, 20), "hello world", "é", "a\r\nb"])


def rint_arg(r):
    c = r.random()
    if c < 0.8:
        return str(r.randint(-3, 10))
    return r.choice(["x", "1.0", "9223372036854775807", "-9223372036854775808", "", "01"])


def keys(r, lo=1, hi=3):
    return [r.choice(KEYS) for _ in range(r.randint(lo, hi))]


# ---------------------------------------------------------------- comparators
# Each step is (args, comparator); comparators take the two normalized replies.


def norm(v):
    """Turns a redis-py reply into plain comparable data (errors into tuples)."""
    if isinstance(v, BaseException):
        return ("error", type(v).__name__, str(v))
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {"map": sorted((repr(norm(k)), repr(norm(x))) for k, x in v.items())}
    if isinstance(v, set):
        return {"set": sorted(repr(norm(x)) for x in v)}
    if isinstance(v, str):
        return v.encode()
    return v


def exact(a, b):
    return a == b


def unordered(a, b):
    def key(v):
        if isinstance(v, dict):
            return sorted(v.get("set", v.get("map", [])))
        if isinstance(v, list):
            return sorted(repr(x) for x in v)
        return v
    return key(a) == key(b)


def pairs(a, b):
    def key(v):
        if isinstance(v, dict):
            return sorted(v.get("map", []))
        if isinstance(v, list):
            return sorted((repr(v[i]), repr(v[i + 1])) for i in range(0, len(v) - 1, 2))
        return v
    return key(a) == key(b)


def loose(tol):
    def cmp(a, b):
        if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
            if a < 0 or b < 0:
                return a == b
            return abs(a - b) <= tol
        return a == b
    return cmp


# ---------------------------------------------------------------- generators


def gen_string(r):
    k = r.choice(KEYS)
    c = r.randrange(19)
    if c == 16:
        return [r.choice(["GETRANGE", "SUBSTR"]), k, r.choice([str(r.randint(-8, 8)), "x"]),
                r.choice([str(r.randint(-8, 8)), "-1", "100"])], exact
    if c == 17:
        return ["SETRANGE", k, r.choice([str(r.randint(0, 12)), "0", "-1", "x"]), r.choice([rval(r), ""])], exact
    if c == 18:
        args = ["GETEX", k]
        opts = r.choice([[], ["PERSIST"], ["EX", str(r.randint(100, 1000))], ["PX", str(r.randint(100000, 900000))],
                         ["EXAT", str(int(time.time()) + 1000)], ["PXAT", str(int(time.time() * 1000) + 500000)],
                         ["EX", "0"], ["EX", "x"], ["EXAT", "1"], ["EX", "5", "PERSIST"], ["PERSIST", "PERSIST"],
                         ["EX", "5", "EX", "6"], ["EX"], ["BAD"]])
        return args + opts, exact
    if c == 0:
        return ["GET", k], exact
    if c == 1:
        args = ["SET", k, rval(r)]
        opts = []
        if r.random() < 0.5:
            opts += r.choice([["EX", str(r.randint(100, 1000))], ["PX", str(r.randint(100000, 900000))],
                              ["EXAT", str(int(time.time()) + 1000)], ["PXAT", str(int(time.time() * 1000) + 500000)],
                              ["EXAT", "1"], ["PX", "0"], ["EX", "-1"], ["EX", "x"], ["KEEPTTL"], ["EX"]])
        if r.random() < 0.3:
            opts.append(r.choice(["NX", "XX", "nx"]))
        if r.random() < 0.3:
            opts.append("GET")
        if r.random() < 0.05:
            opts.append(r.choice(["BAD", "NX", "XX", "KEEPTTL", "EX", "PX"]))
        r.shuffle(opts) if r.random() < 0.2 else None
        return args + opts, exact
    if c == 2:
        return ["MGET"] + keys(r), exact
    if c == 3:
        ks = keys(r)
        args = ["MSET"]
        for kk in ks:
            args += [kk, rval(r)]
        if r.random() < 0.05:
            args.pop()
        return args, exact
    if c == 4:
        return [r.choice(["DEL", "UNLINK"])] + keys(r), exact
    if c == 5:
        return ["EXISTS"] + keys(r), exact
    if c == 6:
        return [r.choice(["INCR", "DECR"]), k], exact
    if c == 7:
        return [r.choice(["INCRBY", "DECRBY"]), k, rint_arg(r)], exact
    if c == 8:
        return ["APPEND", k, rval(r)], exact
    if c == 9:
        return ["STRLEN", k], exact
    if c == 10:
        return ["GETDEL", k], exact
    if c == 11:
        return ["SETNX", k, rval(r)], exact
    if c == 12:
        return [r.choice(["SETEX", "PSETEX"]), k, r.choice(["500000", "100000", "0", "-1", "x"]), rval(r)], exact
    if c == 13:
        return ["GETSET", k, rval(r)], exact
    if c == 14:
        ks = keys(r)
        args = ["MSETNX"]
        for kk in ks:
            args += [kk, rval(r)]
        return args, exact
    return ["SET", k, str(r.randint(0, 50))], exact


def gen_keys(r):
    k = r.choice(KEYS)
    c = r.randrange(15)
    if c == 12:
        return [r.choice(["RENAME", "RENAMENX"]), k, r.choice(KEYS)], exact
    if c == 13:
        args = ["COPY", k, r.choice(KEYS)]
        args += r.choice([[], [], ["REPLACE"], ["DB", "0"], ["DB", "x"], ["BAD"], ["DB", "0", "REPLACE"]])
        return args, exact
    if c == 14:
        return ["TOUCH"] + keys(r), exact
    if c in (0, 1):
        cmd = r.choice(["EXPIRE", "PEXPIRE"])
        n = r.choice([str(r.randint(200, 2000)), str(r.randint(200000, 900000)), "-5", "0", "x"])
        args = [cmd, k, n]
        if r.random() < 0.4:
            args += r.sample(["NX", "XX", "GT", "LT"], r.randint(1, 2))
        if r.random() < 0.03:
            args.append("FOO")
        return args, exact
    if c == 2:
        cmd = r.choice(["EXPIREAT", "PEXPIREAT"])
        if cmd == "EXPIREAT":
            n = r.choice([str(int(time.time()) + 1000), "1", "-1"])
        else:
            n = r.choice([str(int(time.time() * 1000) + 500000), "1"])
        return [cmd, k, n], exact
    if c == 3:
        return ["TTL", k], loose(1)
    if c == 4:
        return ["PTTL", k], loose(1000)
    if c == 5:
        return ["PERSIST", k], exact
    if c == 6:
        return ["TYPE", k], exact
    if c == 7:
        return ["KEYS", r.choice(PATTERNS)], unordered
    if c == 8:
        return ["DBSIZE"], exact
    if c == 9:
        return [r.choice(["EXPIRETIME", "PEXPIRETIME"]), k], loose(1000)
    if c == 10:
        return ["SCAN*", r.choice([None, r.choice(PATTERNS)]), r.choice([None, "1", "2", "100"]),
                r.choice([None, None, "string", "list", "hash", "set"])], None
    return ["EXISTS", k], exact


def gen_list(r):
    k = r.choice(KEYS)
    c = r.randrange(15)
    if c == 8:
        return ["LSET", k, r.choice([str(r.randint(-5, 5)), "x"]), rval(r)], exact
    if c == 9:
        return ["LTRIM", k, r.choice([str(r.randint(-6, 6)), "x"]), r.choice([str(r.randint(-6, 6)), "-1", "100"])], exact
    if c == 10:
        return ["LREM", k, r.choice([str(r.randint(-3, 3)), "x"]), rval(r)], exact
    if c == 11:
        return ["LINSERT", k, r.choice(["BEFORE", "AFTER", "after", "MIDDLE"]), rval(r), rval(r)], exact
    if c == 12:
        args = ["LPOS", k, rval(r)]
        for opt in r.sample(["RANK", "COUNT", "MAXLEN"], r.randint(0, 2)):
            args += [opt, r.choice([str(r.randint(-3, 3)), "0", "x", "-1"])]
        if r.random() < 0.05:
            args.append(r.choice(["BAD", "RANK"]))
        return args, exact
    if c == 13:
        return ["LMOVE", k, r.choice(KEYS), r.choice(["LEFT", "RIGHT", "left", "UP"]), r.choice(["LEFT", "RIGHT"])], exact
    if c == 14:
        return ["RPOPLPUSH", k, r.choice(KEYS)], exact
    if c in (0, 1):
        cmd = r.choice(["LPUSH", "RPUSH", "LPUSH", "RPUSH", "LPUSHX", "RPUSHX"])
        return [cmd, k] + [rval(r) for _ in range(r.randint(1, 4))], exact
    if c == 2:
        args = [r.choice(["LPOP", "RPOP"]), k]
        if r.random() < 0.5:
            args.append(r.choice(["0", "1", "2", "10", "-1", "x"]))
        return args, exact
    if c in (3, 4):
        return ["LRANGE", k, str(r.randint(-6, 6)), r.choice([str(r.randint(-6, 6)), "-1", "100", "x"])], exact
    if c == 5:
        return ["LLEN", k], exact
    if c == 6:
        return ["LINDEX", k, r.choice([str(r.randint(-5, 5)), "x"])], exact
    return ["RPUSH", k, rval(r)], exact


def gen_hash(r):
    k = r.choice(KEYS)
    f = r.choice(FIELDS)
    c = r.randrange(13)
    if c in (0, 1):
        args = [r.choice(["HSET", "HSET", "HMSET"]), k]
        for _ in range(r.randint(1, 3)):
            args += [r.choice(FIELDS), rval(r)]
        if r.random() < 0.05:
            args.pop()
        return args, exact
    if c == 2:
        return ["HGET", k, f], exact
    if c == 3:
        return ["HDEL", k] + r.sample(FIELDS, r.randint(1, 3)), exact
    if c == 4:
        return ["HGETALL", k], pairs
    if c == 5:
        return ["HINCRBY", k, f, rint_arg(r)], exact
    if c == 6:
        return ["HLEN", k], exact
    if c == 7:
        return ["HMGET", k] + r.sample(FIELDS, r.randint(1, 3)), exact
    if c == 8:
        return ["HEXISTS", k, f], exact
    if c == 9:
        return [r.choice(["HKEYS", "HVALS"]), k], unordered
    if c == 10:
        return ["HSETNX", k, f, rval(r)], exact
    if c == 11:
        return ["HSTRLEN", k, f], exact
    return ["HSET", k, f, str(r.randint(0, 9))], exact


def gen_set(r):
    k = r.choice(KEYS)
    c = r.randrange(12)
    if c in (7, 8):
        return [r.choice(["SINTER", "SUNION", "SDIFF"])] + keys(r), unordered
    if c == 9:
        return [r.choice(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]), r.choice(KEYS)] + keys(r), exact
    if c == 10:
        return ["SMOVE", k, r.choice(KEYS), r.choice(MEMBERS)], exact
    if c == 11:
        ks = keys(r)
        n = r.choice([str(len(ks)), str(len(ks)), "0", "x", str(len(ks) + 1)])
        args = ["SINTERCARD", n] + ks
        if r.random() < 0.4:
            args += ["LIMIT", r.choice(["0", "1", "2", "-1", "x"])]
        if r.random() < 0.05:
            args.append("BAD")
        return args, exact
    if c in (0, 1):
        return ["SADD", k] + [r.choice(MEMBERS) for _ in range(r.randint(1, 4))], exact
    if c == 2:
        return ["SREM", k] + [r.choice(MEMBERS) for _ in range(r.randint(1, 3))], exact
    if c == 3:
        return ["SMEMBERS", k], unordered
    if c == 4:
        return ["SISMEMBER", k, r.choice(MEMBERS)], exact
    if c == 5:
        return ["SCARD", k], exact
    return ["SMISMEMBER", k] + [r.choice(MEMBERS) for _ in range(r.randint(1, 3))], exact


ARITY = {"GET": 2, "SET": -3, "LPUSH": -3, "HSET": -4, "SADD": -3, "TTL": 2, "LRANGE": 4, "HGET": 3,
         "INCRBY": 3, "EXPIRE": -3, "GETDEL": 2, "MGET": -2, "SCARD": 2, "LINDEX": 3, "ECHO": 2}


def gen_bad(r):
    c = r.randrange(3)
    if c == 0:
        name = r.choice(list(ARITY))
        a = ARITY[name]
        n = (a - 1 + r.choice([-1, 1])) if a > 0 else r.randint(0, -a - 2)
        n = max(0, n)
        return [r.choice([name, name.lower()])] + [r.choice(KEYS) for _ in range(n)], exact
    if c == 1:
        return [r.choice(["FOO", "GETX", "SPOPX", "xyz"])] + [rval(r) for _ in range(r.randint(0, 3))], exact
    return [r.choice(["PING", "ECHO"])] + ([rval(r)] if r.random() < 0.7 else []), exact


FAMILIES = [(gen_string, 30), (gen_keys, 14), (gen_list, 16), (gen_hash, 16), (gen_set, 12), (gen_bad, 5)]


def gen_simple(r):
    total = sum(w for _, w in FAMILIES)
    x = r.uniform(0, total)
    for g, w in FAMILIES:
        x -= w
        if x <= 0:
            return g(r)
    return gen_string(r)


def gen_exact_simple(r):
    """A command with an exact comparator (for inside MULTI and pipelines)."""
    while True:
        args, cmp = gen_simple(r)
        if cmp is exact and args[0] not in ("SCAN*", "DBSIZE"):
            return args, cmp


# ---------------------------------------------------------------- running


class Side:
    def __init__(self, addr, protocol, name):
        host, port = addr.rsplit(":", 1)
        self.name = name
        self.conn = redis.Connection(host=host, port=int(port), protocol=protocol, socket_timeout=30)
        self.conn.connect()
        self.other = redis.Connection(host=host, port=int(port), protocol=protocol, socket_timeout=30)
        self.other.connect()

    def call(self, args, conn=None):
        conn = conn or self.conn
        conn.send_command(*args)
        return self.read(conn)

    def read(self, conn=None):
        conn = conn or self.conn
        try:
            return norm(conn.read_response())
        except ResponseError as e:
            return norm(e)

    def pipeline(self, cmds):
        self.conn.send_packed_command(self.conn.pack_commands(cmds))
        return [self.read() for _ in cmds]

    def scan_all(self, pattern, count, typ):
        cursor = b"0"
        seen = []
        for _ in range(10000):
            args = ["SCAN", cursor]
            if pattern is not None:
                args += ["MATCH", pattern]
            if count is not None:
                args += ["COUNT", count]
            if typ is not None:
                args += ["TYPE", typ]
            rep = self.call(args)
            if not isinstance(rep, list) or len(rep) != 2:
                return ("bad scan reply", rep)
            cursor, batch = rep
            seen.extend(batch)
            if cursor in (b"0", 0):
                return sorted(set(seen))
        return ("scan did not finish", seen)


def check(step, seed, what, a, b, cmp):
    if not cmp(a, b):
        raise Mismatch(f"seed {seed} step {step}: {what}\n  chorus-kv: {a!r}\n  redis:     {b!r}")


def run(ours, theirs, seed, count, verbose):
    r = random.Random(seed)
    for side in (ours, theirs):
        side.call(["FLUSHALL"])
    for step in range(count):
        kind = r.random()
        if kind < 0.80:
            args, cmp = gen_simple(r)
            if args[0] == "SCAN*":
                _, pat, cnt, typ = args
                a, b = ours.scan_all(pat, cnt, typ), theirs.scan_all(pat, cnt, typ)
                check(step, seed, f"SCAN MATCH {pat} COUNT {cnt} TYPE {typ} (full iteration)", a, b, exact)
                continue
            if verbose:
                print(step, args)
            a, b = ours.call(args), theirs.call(args)
            if args == ["DBSIZE"] and a != b:
                # Redis counts keys whose expiry passed until it reclaims them: touch every key
                # (lazy expiry) and ask again.
                for k in KEYS:
                    theirs.call(["EXISTS", k])
                b = theirs.call(args)
            check(step, seed, args, a, b, cmp)
        elif kind < 0.88:
            # A transaction: MULTI, commands (maybe a queue-time error), EXEC or DISCARD.
            steps = [(["MULTI"], exact)]
            for _ in range(r.randint(0, 5)):
                steps.append(gen_exact_simple(r) if r.random() < 0.9 else gen_bad(r))
            end = ["EXEC"] if r.random() < 0.85 else ["DISCARD"]
            if verbose:
                print(step, [s[0] for s in steps], end)
            for args, _ in steps:
                check(step, seed, args, ours.call(args), theirs.call(args), exact)
            check(step, seed, end, ours.call(end), theirs.call(end), exact)
        elif kind < 0.93:
            # WATCH: watch keys, maybe change one from another connection, then a transaction.
            wk = keys(r, 1, 2)
            if verbose:
                print(step, "WATCH", wk)
            check(step, seed, ["WATCH"] + wk, ours.call(["WATCH"] + wk), theirs.call(["WATCH"] + wk), exact)
            if r.random() < 0.5:
                other, _ = gen_exact_simple(r)
                if r.random() < 0.5:
                    other = ["SET", r.choice(wk), "changed"]
                if verbose:
                    print(step, "other connection:", other)
                check(step, seed, f"(other connection) {other}", ours.call(other, ours.other),
                      theirs.call(other, theirs.other), exact)
            if r.random() < 0.1:
                check(step, seed, ["UNWATCH"], ours.call(["UNWATCH"]), theirs.call(["UNWATCH"]), exact)
            cmds = [gen_exact_simple(r)[0] for _ in range(r.randint(1, 3))]
            if verbose:
                print(step, "MULTI", cmds, "EXEC")
            for args in [["MULTI"]] + cmds + [["EXEC"]]:
                check(step, seed, f"(watched {wk}) {args}", ours.call(args), theirs.call(args), exact)
        elif kind < 0.97:
            # A pipeline.
            cmds = [gen_exact_simple(r)[0] for _ in range(r.randint(2, 20))]
            if verbose:
                print(step, "pipeline", cmds)
            a, b = ours.pipeline(cmds), theirs.pipeline(cmds)
            for i, (x, y) in enumerate(zip(a, b)):
                check(step, seed, f"pipeline[{i}] {cmds[i]}", x, y, exact)
        elif kind < 0.985:
            # An expiry that fires: 1 ms, wait, then look.
            k = r.choice(KEYS)
            for side in (ours, theirs):
                side.call(["SET", k, "short", "PX", "1"])
            time.sleep(0.02)
            for args in (["GET", k], ["EXISTS", k], ["TTL", k], ["TYPE", k]):
                check(step, seed, f"(after expiry) {args}", ours.call(args), theirs.call(args), exact)
        elif kind < 0.99:
            if r.random() < 0.5:
                args = [r.choice(["FLUSHALL", "FLUSHDB"])] + ([r.choice(["ASYNC", "SYNC", "BAD"])] if r.random() < 0.3 else [])
                check(step, seed, args, ours.call(args), theirs.call(args), exact)
        else:
            a = ours.call(["HELLO"])
            b = theirs.call(["HELLO"])
            pa = dict(zip(a[::2], a[1::2])) if isinstance(a, list) else {}
            pb = dict(zip(b[::2], b[1::2])) if isinstance(b, list) else {}
            if isinstance(a, dict):
                pa = {eval(k): eval(v) for k, v in a["map"]}
                pb = {eval(k): eval(v) for k, v in b["map"]}
            check(step, seed, "HELLO proto", pa.get(b"proto"), pb.get(b"proto"), exact)
        # Every so often, compare the whole keyspace.
        if step % 200 == 199:
            check(step, seed, "KEYS * (state check)", ours.call(["KEYS", "*"]), theirs.call(["KEYS", "*"]), unordered)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ours")
    p.add_argument("redis")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--protocol", type=int, default=2, choices=[2, 3])
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    try:
        ours = Side(a.ours, a.protocol, "chorus-kv")
        theirs = Side(a.redis, a.protocol, "redis")
        t0 = time.time()
        run(ours, theirs, a.seed, a.count, a.verbose)
    except Mismatch as e:
        print(f"MISMATCH (protocol {a.protocol}): {e}")
        print(f"replay: {sys.argv[0]} {a.ours} {a.redis} --seed {a.seed} --count {a.count} --protocol {a.protocol} -v")
        return 1
    except RedisError as e:
        print(f"FAILED (seed {a.seed}): {type(e).__name__}: {e}")
        return 1
    print(f"ok: seed {a.seed}, {a.count} steps, protocol {a.protocol}, {time.time() - t0:.1f}s, no mismatch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
