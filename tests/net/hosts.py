#!/usr/bin/env python3
"""Test hosts: N network namespaces on one bridge, each with its own address, and the faults
a Jepsen nemesis injects between them.

    hosts = Hosts(5)                 # namespaces chn<id>-1..5, addresses 10.<a>.<b>.1..5
    hosts.popen(1, ["chorus-kv", ...], stdout=f, stderr=f)
    hosts.partition([{1, 2, 3}, {4, 5}])   # node-to-node traffic between the sides dropped
    hosts.netem(2, "delay 80ms 40ms loss 5%")
    hosts.heal()
    hosts.close()                    # also at exit, on SIGINT/SIGTERM, and after a failure

Only what this module made is touched: its namespaces, its bridge, and one FORWARD rule in the
root namespace that lets the bridge's traffic through (Docker sets the FORWARD policy to DROP,
and bridged frames go through it). Partitions are iptables rules inside the namespaces that
drop packets from the other nodes' addresses; the root namespace (where clients run) keeps
talking to every node, as Jepsen's clients do. `python3 hosts.py --cleanup` removes what a
killed run left behind (names starting with `chn`).

Needs root, `ip`, `iptables` and `tc` (Debian: iproute2, iptables). Delay, jitter, duplication
and reordering need the kernel's sch_netem; without it (`netem_available()` says so), loss comes
from iptables' statistic match and bandwidth limits from tbf.
"""
import atexit
import os
import shutil
import signal
import subprocess
import sys

PREFIX = "chn"


def run(*argv, check=True, quiet=False):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    if not quiet and r.returncode != 0:
        return None
    return r.stdout


def available():
    """Why these hosts cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian: iproute2 / iptables)"
    probe = f"{PREFIX}probe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Hosts:
    made = 0  # Hosts made by this process: each gets its own names and subnet.

    def __init__(self, n, tag=None, spares=0):
        self.n = n
        Hosts.made += 1
        self.tag = tag or str(os.getpid() % 10000 * 10 + Hosts.made % 10)
        # One /24 per run, from the tag, inside 10.0.0.0/8: runs side by side do not collide.
        k = int(self.tag) % 37500
        self.net = f"10.{100 + k // 250}.{k % 250}"
        self.bridge = f"{PREFIX}{self.tag}br"
        self.gateway = f"{self.net}.254"
        self.ns = {i: f"{PREFIX}{self.tag}-{i}" for i in range(1, n + 1)}
        # Spare hosts (n+1, ...): made and deleted with the others, but outside `ns`, so that no
        # fault and no final check touches them; a node that joins mid-run runs there.
        self.spares = list(range(n + 1, n + 1 + spares))
        self.all_ns = {**self.ns, **{i: f"{PREFIX}{self.tag}-{i}" for i in self.spares}}
        self.procs = {}
        self.closed = False
        self._forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        atexit.register(self.close)
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)

            def handler(signum, frame, previous=previous):
                self.close()
                if callable(previous):
                    previous(signum, frame)
                sys.exit(128 + signum)

            signal.signal(sig, handler)
        try:
            self._make()
        except Exception:
            self.close()
            raise

    def _make(self):
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        run("iptables", "-I", *self._forward_rule)
        for i, ns in self.all_ns.items():
            run("ip", "netns", "add", ns)
            host_end, ns_end = f"{PREFIX}{self.tag}v{i}", f"{PREFIX}{self.tag}p{i}"
            run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            run("ip", "link", "set", host_end, "master", self.bridge)
            run("ip", "link", "set", host_end, "up")
            run("ip", "link", "set", ns_end, "netns", ns)
            self.sh(i, "ip", "link", "set", ns_end, "name", "eth0")
            self.sh(i, "ip", "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            self.sh(i, "ip", "link", "set", "eth0", "up")
            self.sh(i, "ip", "link", "set", "lo", "up")
            self.sh(i, "ip", "route", "add", "default", "via", self.gateway)

    def addr(self, i):
        return f"{self.net}.{i}"

    def sh(self, i, *argv, check=True):
        return run("ip", "netns", "exec", self.all_ns[i], *argv, check=check)

    def popen(self, i, argv, **kw):
        """Starts `argv` inside host i's namespace (its own process group, so a pause or a kill
        reaches everything it started)."""
        return subprocess.Popen(["ip", "netns", "exec", self.all_ns[i], *argv], start_new_session=True, **kw)

    # --- the nemesis -------------------------------------------------------------------

    def _drop_from(self, i, j):
        """Host i drops every packet from host j (one direction)."""
        self.sh(i, "iptables", "-A", "INPUT", "-s", self.addr(j), "-j", "DROP")

    def partition(self, sides):
        """Node-to-node traffic between different sides is dropped both ways. A node in no
        side is cut off from all."""
        side_of = {}
        for k, side in enumerate(sides):
            for i in side:
                side_of[i] = k
        for i in self.ns:
            for j in self.ns:
                if i != j and side_of.get(i, -1 - i) != side_of.get(j, -1 - j):
                    self._drop_from(i, j)

    def see(self, views):
        """Each host i hears exactly the hosts in views[i] (and itself): any pattern, such as
        a majorities ring or a bridge node; links are cut in the direction given."""
        for i in self.ns:
            for j in self.ns:
                if i != j and j not in views.get(i, set()):
                    self._drop_from(i, j)

    def one_way(self, src, dst):
        """Packets from src to dst are dropped; dst to src still flows."""
        self._drop_from(dst, src)

    def netem(self, i, spec):
        """tc netem on host i's link, e.g. 'delay 80ms 40ms loss 5% duplicate 1% reorder 10%'.
        Needs a kernel with sch_netem (`netem_available`)."""
        self.sh(i, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", *spec.split())

    def loss(self, i, fraction):
        """Host i drops this fraction of the packets from the other nodes (iptables'
        statistic match: works without netem)."""
        for j in self.ns:
            if j != i:
                self.sh(i, "iptables", "-A", "INPUT", "-s", self.addr(j), "-m", "statistic", "--mode", "random",
                        "--probability", f"{fraction:.3f}", "-j", "DROP")

    def rate(self, i, rate):
        """Host i's outgoing link limited to `rate` (e.g. '2mbit') with a token bucket (tbf)."""
        self.sh(i, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "32kbit",
                "latency", "400ms")

    def netem_available(self):
        """Whether this kernel has sch_netem (delay, jitter, duplication, reordering)."""
        r = subprocess.run(["ip", "netns", "exec", self.ns[1], "tc", "qdisc", "replace", "dev", "lo", "root",
                            "netem", "delay", "1ms"], capture_output=True)
        subprocess.run(["ip", "netns", "exec", self.ns[1], "tc", "qdisc", "del", "dev", "lo", "root"],
                       capture_output=True)
        return r.returncode == 0

    def heal(self):
        for i in self.ns:
            self.sh(i, "iptables", "-F", "INPUT")
            self.sh(i, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)

    def rules(self):
        """The faults in force, for the log: per host, the addresses it drops and its qdisc."""
        out = {}
        for i in self.ns:
            drops = [line.split()[3] for line in (self.sh(i, "iptables", "-S", "INPUT") or "").splitlines()
                     if line.startswith("-A INPUT -s")]
            qd = (self.sh(i, "tc", "qdisc", "show", "dev", "eth0") or "").strip()
            out[i] = (drops, qd if ("netem" in qd or "tbf" in qd) else "")
        return out

    # --- teardown ----------------------------------------------------------------------

    def close(self):
        if self.closed:
            return
        self.closed = True
        for p in list(self.procs.values()):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for ns in self.all_ns.values():
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(["iptables", "-D", *self._forward_rule], capture_output=True)


def cleanup_stale():
    """Removes namespaces, bridges and FORWARD rules of runs that were killed (-9)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    for line in names:
        name = line.split(" ")[0]
        if name.startswith(PREFIX):
            for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            print(f"removed namespace {name}")
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
            subprocess.run(["iptables", "-D", "FORWARD", "-i", name, "-o", name, "-j", "ACCEPT"], capture_output=True)
            print(f"removed bridge {name}")


def self_test():
    """Makes 3 hosts, checks that they reach each other, that a partition and a one-way cut
    do what they say, and that heal restores everything; everything is removed at the end."""
    h = Hosts(3)
    try:
        def reach(i, j):
            r = subprocess.run(["ip", "netns", "exec", h.ns[i], "ping", "-c", "1", "-W", "1", h.addr(j)],
                               capture_output=True)
            return r.returncode == 0

        assert reach(1, 2) and reach(2, 3) and reach(3, 1), "hosts reach each other"
        h.partition([{1, 2}, {3}])
        assert reach(1, 2) and not reach(1, 3) and not reach(3, 2), "partition"
        h.heal()
        h.one_way(1, 2)  # 1 -> 2 dropped: a ping from 1 gets no answer, nor does one from 2
        assert not reach(1, 2) and not reach(2, 1) and reach(1, 3), "one-way cut (pings need both ways)"
        h.heal()
        assert reach(1, 2) and reach(2, 1) and reach(3, 2), "healed"
        print("hosts: 3 namespaces, partition, one-way cut and heal work")
    finally:
        h.close()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert h.ns[1] not in left, "namespaces removed"


if __name__ == "__main__":
    if "--cleanup" in sys.argv:
        cleanup_stale()
    elif "--self-test" in sys.argv:
        why = available() or (None if shutil.which("ping") else "needs `ping` (Debian: iputils-ping)")
        if why:
            print(f"SKIP: {why}")
            sys.exit(0)
        self_test()
    else:
        print(__doc__)
