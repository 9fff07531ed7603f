//! The simulated network: one TCP-like connection per directed link.
//!
//! Why TCP-like: the runtime will run chorus over TCP, so the faults worth simulating are the
//! ones TCP lets through: delay and jitter, a connection that breaks (everything in flight on it
//! is lost, later frames go over a new connection), duplicates from an application-level
//! retransmission racing the original, and partitions. Reordering inside one connection is
//! something TCP never does; it stays as a swarm option (`reorder`) because a core that is
//! robust to it is also robust to two connections racing after a reconnect.
//!
//! A link's *epoch* names its current connection. A frame carries the epoch it was sent on and
//! is dropped on arrival if the link broke since (or is cut by a partition now).

use bytes::Bytes;
use rand::Rng;

use crate::options::SimOptions;
use crate::rng::{self, SimRng, Stream};

/// A frame on the wire.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// Sending node.
    pub from: u64,
    /// Receiving node.
    pub to: u64,
    /// The connection it was sent on.
    pub epoch: u64,
    /// The bytes.
    pub frame: Bytes,
}

/// When the copies of one sent frame arrive (`None`: lost).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// The frame's arrival time.
    pub first: Option<u64>,
    /// A duplicate's arrival time.
    pub duplicate: Option<u64>,
    /// The connection it travels on.
    pub epoch: u64,
}

fn link(links: &mut [Link], n: u64, from: u64, to: u64) -> Option<&mut Link> {
    if from < n && to < n {
        links.get_mut((from * n + to) as usize)
    } else {
        None
    }
}

#[derive(Copy, Clone, Debug, Default)]
struct Link {
    epoch: u64,
    /// Latest arrival scheduled on this connection (FIFO links never deliver before it).
    last_arrival: u64,
    /// A partition cuts this direction.
    cut: bool,
}

/// Counters for reports.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the network.
    pub sent: u64,
    /// Bytes handed to the network.
    pub bytes: u64,
    /// Frames lost (break, partition, dead receiver).
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Connection resets.
    pub breaks: u64,
}

/// The network between `n` nodes.
#[derive(Debug)]
pub struct Network {
    n: u64,
    links: Vec<Link>,
    rng: SimRng,
    delay_min: u64,
    jitter: u64,
    break_prob: f64,
    duplicate_prob: f64,
    reorder: bool,
    /// Counters.
    pub stats: NetStats,
}

impl Network {
    /// The network of a run with these options.
    pub fn new(o: &SimOptions) -> Network {
        let n = o.total_nodes();
        Network {
            n,
            links: vec![Link::default(); (n * n) as usize],
            rng: rng::stream(o.seed, Stream::Network),
            delay_min: o.delay_min,
            jitter: o.jitter,
            break_prob: o.break_prob,
            duplicate_prob: o.duplicate_prob,
            reorder: o.reorder,
            stats: NetStats::default(),
        }
    }

    fn link(&mut self, from: u64, to: u64) -> Option<&mut Link> {
        link(&mut self.links, self.n, from, to)
    }

    fn delay(&mut self) -> u64 {
        let j = if self.jitter == 0 { 0 } else { self.rng.random_range(0..=self.jitter) };
        self.delay_min + j
    }

    /// Sends a frame of `len` bytes at `now`: when (and whether) it and a duplicate arrive.
    pub fn send(&mut self, now: u64, from: u64, to: u64, len: usize) -> Route {
        self.stats.sent += 1;
        self.stats.bytes += len as u64;
        let breaks = self.break_prob > 0.0 && self.rng.random_bool(self.break_prob);
        let dup = self.duplicate_prob > 0.0 && self.rng.random_bool(self.duplicate_prob);
        let d1 = self.delay();
        let d2 = self.delay();
        let reorder = self.reorder;
        let Some(link) = link(&mut self.links, self.n, from, to) else {
            self.stats.lost += 1;
            return Route::default();
        };
        if link.cut || breaks {
            // The connection resets: this frame and all in flight on it are gone.
            link.epoch += 1;
            self.stats.lost += 1;
            self.stats.breaks += 1;
            return Route { epoch: link.epoch, ..Route::default() };
        }
        let mut arrive = |d: u64| {
            let t = now + d;
            if reorder {
                t
            } else {
                let t = t.max(link.last_arrival);
                link.last_arrival = t;
                t
            }
        };
        let first = arrive(d1);
        let duplicate = dup.then(|| arrive(d2));
        if duplicate.is_some() {
            self.stats.duplicated += 1;
        }
        Route { first: Some(first), duplicate, epoch: link.epoch }
    }

    /// Whether a frame that arrives now is handed to its receiver: its connection is still the
    /// current one and no partition cuts the link (if one does, the connection breaks).
    pub fn arrives(&mut self, f: &InFlight) -> bool {
        let Some(link) = self.link(f.from, f.to) else { return false };
        if link.cut {
            link.epoch += 1;
        }
        let ok = !link.cut && link.epoch == f.epoch;
        if !ok {
            self.stats.lost += 1;
        }
        ok
    }

    /// Resets every connection into `node` (it crashed: what was on its way to it is lost).
    pub fn reset_into(&mut self, node: u64) {
        for from in 0..self.n {
            if let Some(l) = self.link(from, node) {
                l.epoch += 1;
            }
        }
    }

    /// Cuts (or restores) the directed link `from → to`.
    pub fn set_cut(&mut self, from: u64, to: u64, cut: bool) {
        if let Some(l) = self.link(from, to) {
            if cut && !l.cut {
                l.epoch += 1;
            }
            l.cut = cut;
        }
    }

    /// Whether the directed link `from → to` is cut.
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        from < self.n && to < self.n && self.links[(from * self.n + to) as usize].cut
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        for l in &mut self.links {
            l.cut = false;
        }
    }

    /// Stops connection breaks and duplicates (the liveness phase); delay, jitter and
    /// reordering stay, they are the network rather than faults.
    pub fn calm(&mut self) {
        self.break_prob = 0.0;
        self.duplicate_prob = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::MS;

    fn net(reorder: bool, break_prob: f64, duplicate_prob: f64) -> Network {
        let mut o = SimOptions::from_seed(3);
        o.initial_nodes = 3;
        o.joiners_at.clear();
        o.delay_min = 10 * MS;
        o.jitter = 20 * MS;
        o.reorder = reorder;
        o.break_prob = break_prob;
        o.duplicate_prob = duplicate_prob;
        Network::new(&o)
    }

    #[test]
    fn fifo_links_never_reorder() {
        let mut n = net(false, 0.0, 0.1);
        let mut last = 0;
        for i in 0..1000 {
            let r = n.send(i * MS / 10, 0, 1, 10);
            for t in [r.first, r.duplicate].into_iter().flatten() {
                assert!(t >= last);
                last = t;
            }
        }
        assert!(n.stats.duplicated > 0);
    }

    #[test]
    fn reordering_links_do_reorder() {
        let mut n = net(true, 0.0, 0.0);
        let arrivals: Vec<u64> = (0..100).filter_map(|i| n.send(i * MS / 10, 0, 1, 10).first).collect();
        assert!(arrivals.windows(2).any(|w| w[1] < w[0]));
    }

    #[test]
    fn a_break_loses_what_is_in_flight() {
        let mut n = net(false, 0.0, 0.0);
        let r = n.send(0, 0, 1, 10);
        let f = InFlight { from: 0, to: 1, epoch: r.epoch, frame: Bytes::new() };
        assert!(n.arrives(&f));
        n.reset_into(1);
        assert!(!n.arrives(&f));
        // The other direction is untouched.
        let r = n.send(0, 1, 0, 10);
        assert!(n.arrives(&InFlight { from: 1, to: 0, epoch: r.epoch, frame: Bytes::new() }));
    }

    #[test]
    fn partitions_cut_one_direction_until_healed() {
        let mut n = net(false, 0.0, 0.0);
        let before = n.send(0, 0, 1, 10);
        n.set_cut(0, 1, true);
        assert!(n.send(0, 0, 1, 10).first.is_none());
        assert!(n.send(0, 1, 0, 10).first.is_some());
        let f = InFlight { from: 0, to: 1, epoch: before.epoch, frame: Bytes::new() };
        assert!(!n.arrives(&f), "in flight when the cut began");
        n.heal();
        let r = n.send(0, 0, 1, 10);
        assert!(n.arrives(&InFlight { from: 0, to: 1, epoch: r.epoch, frame: Bytes::new() }));
        assert!(!n.arrives(&f), "the old connection stays dead");
    }

    #[test]
    fn breaks_happen_at_about_the_rate() {
        let mut n = net(false, 0.01, 0.0);
        let lost = (0..20_000).filter(|i| n.send(*i, 0, 1, 1).first.is_none()).count();
        assert!((100..300).contains(&lost), "{lost}");
    }
}
