"""Large values and a large transaction through one node of a store, read back through others
(issue 14 #2): SETs of 1, 16 and 64 MiB, and a MULTI of 2,000 SETs of 1 KB.

    python3 tests/kv/large_values.py --ports 7001,7002,7003
"""
import argparse
import sys
import time

import redis


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True)
    ports = [int(p) for p in ap.parse_args().ports.split(",")]
    conns = [redis.Redis(port=p, socket_timeout=120) for p in ports]
    writer, readers = conns[0], conns[1:]
    for mb in (1, 16, 64):
        value = bytes([mb]) * (mb << 20)
        t = time.time()
        if writer.set(f"big:{mb}", value) is not True:
            print(f"SET of {mb} MiB was not acknowledged")
            return 1
        took = time.time() - t
        for r in readers:
            if r.get(f"big:{mb}") != value:
                print(f"{mb} MiB value written through port {ports[0]} not read back whole elsewhere")
                return 1
        print(f"SET {mb} MiB acknowledged in {took:.2f} s, read back whole through {len(readers)} other node(s)")
    pipe = writer.pipeline(transaction=True)
    for i in range(2000):
        pipe.set(f"multi:{i}", (b"%04d" % i) * 250)
    t = time.time()
    replies = pipe.execute()
    took = time.time() - t
    if len(replies) != 2000 or not all(replies):
        print("MULTI of 2,000 SETs failed:", replies[:5])
        return 1
    for r in readers:
        if r.get("multi:1999") != b"1999" * 250 or r.get("multi:0") != b"0000" * 250:
            print("the transaction's writes are not all read back elsewhere")
            return 1
    print(f"MULTI of 2,000 SETs of 1 KB executed in {took:.2f} s, read back through the other nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
