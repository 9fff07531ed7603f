//! The nemesis: which fault strikes next, where, and for how long.
//!
//! Each kind of fault is a Poisson process at the rate [`SimOptions`] drew for it; when one
//! fires, the nemesis picks a target with its own random stream. It does not apply the fault:
//! the cluster does, because only the cluster knows whether a crash is allowed (the primary
//! partition constraint, see [`crate::cluster`]) and it hands the nemesis the eligible nodes.
//!
//! Why partitions and pauses are unconstrained but crashes are not: a partition or a pause ends,
//! so the group can always recover after it; a crash of a majority of the latest view (or of the
//! view about to be installed) is permanent, and in the primary-partition model such a group
//! can never install a view again. Requiring liveness after that would be asking for the
//! impossible.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::options::{PartitionMode, SimOptions, MS, SEC};
use crate::rng::{self, SimRng, Stream};

/// A kind of fault, each with its own rate.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Crash a node (it restarts later as a new incarnation).
    Crash,
    /// Pause a node.
    Pause,
    /// Cut links between nodes.
    Partition,
    /// A node leaves gracefully and re-joins later.
    Churn,
    /// Hand a node random bytes as if from a peer.
    Garbage,
    /// Crash every running node at once (with disks only).
    CrashAll,
    /// Crash a majority of the running nodes at once (with disks only).
    CrashMajority,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Churn,
        FaultKind::Garbage,
        FaultKind::CrashAll,
        FaultKind::CrashMajority,
    ];
}

/// A fault to apply now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Crash `node`; restart it as a new incarnation `restart_after` later.
    Crash {
        /// The node.
        node: u64,
        /// Delay until the restart.
        restart_after: u64,
    },
    /// Pause `node` for `duration`.
    Pause {
        /// The node.
        node: u64,
        /// How long.
        duration: u64,
    },
    /// Cut these directed links for `duration`.
    Partition {
        /// The shape, for reports.
        mode: PartitionMode,
        /// Directed links `(from, to)` that lose every frame.
        cuts: Vec<(u64, u64)>,
        /// How long.
        duration: u64,
    },
    /// `node` leaves gracefully, then joins again `rejoin_after` after its `Left`.
    Leave {
        /// The node.
        node: u64,
        /// Delay from `Left` until it joins as a new incarnation.
        rejoin_after: u64,
    },
    /// Crash these nodes at once; each restarts after its delay.
    CrashMany {
        /// (node, restart delay).
        nodes: Vec<(u64, u64)>,
    },
    /// Hand `node` random bytes as if they came from `from`.
    Garbage {
        /// The receiver.
        node: u64,
        /// The claimed peer.
        from: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
}

/// The nodes a fault may strike, as the cluster sees them right now.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    /// Every node id of the run.
    pub nodes: u64,
    /// Nodes running (paused or not).
    pub running: Vec<u64>,
    /// Running nodes that are not paused.
    pub awake: Vec<u64>,
    /// Running nodes whose leave keeps a live majority in every view the group may install
    /// next (see `Cluster::removable`).
    pub removable: Vec<u64>,
    /// Running nodes that may crash: as `removable`, or any with disks (they come back).
    pub crashable: Vec<u64>,
    /// Whether a partition is already in force (one at a time).
    pub partitioned: bool,
}

/// Draws faults from a seed's [`Stream::Faults`] stream.
#[derive(Debug)]
pub struct Nemesis {
    rng: SimRng,
    rates: [f64; FaultKind::ALL.len()],
    modes: Vec<PartitionMode>,
    partition_max: u64,
    pause_long_share: f64,
    flush_crash_prob: f64,
    /// Crashes aimed at state transfers draw from their own stream, so that they do not shift
    /// the other faults of a seed.
    transfer_rng: SimRng,
}

impl Nemesis {
    /// The nemesis of a run with these options.
    pub fn new(o: &SimOptions) -> Nemesis {
        Nemesis {
            rng: rng::stream(o.seed, Stream::Faults),
            rates: [
                o.crash_rate,
                o.pause_rate,
                o.partition_rate,
                o.churn_rate,
                o.garbage_rate,
                o.disks.crash_all_rate,
                o.disks.crash_majority_rate,
            ],
            modes: o.partition_modes.clone(),
            partition_max: o.partition_max,
            pause_long_share: o.pause_long_share,
            flush_crash_prob: o.flush_crash_prob,
            transfer_rng: rng::stream(rng::mix(o.seed), Stream::State),
        }
    }

    /// A transfer expected to take about `span` just started: after what delay (if at all) to
    /// crash its donor or loading member.
    pub fn transfer_crash_delay(&mut self, prob: f64, span: u64) -> Option<u64> {
        let r = &mut self.transfer_rng;
        (prob > 0.0 && r.random_bool(prob.min(1.0))).then(|| rng::between(r, 0, span))
    }

    /// How long a crashed node stays down.
    pub fn restart_delay(&mut self) -> u64 {
        rng::between(&mut self.transfer_rng, 500 * MS, 3 * SEC)
    }

    /// A view change just started: after what delay (if at all) to crash one of its blocked
    /// members (BUGGIFY-style aim at the flush, which uniform crash times rarely hit).
    pub fn flush_crash_delay(&mut self) -> Option<u64> {
        let r = &mut self.rng;
        (self.flush_crash_prob > 0.0 && r.random_bool(self.flush_crash_prob))
            .then(|| rng::between(r, 0, 30 * MS))
    }

    /// Which blocked member to crash: the coordinator (first of `candidates`, if it is one) half
    /// of the time, else any; plus the restart delay.
    pub fn flush_crash_target(&mut self, candidates: &[u64], coordinator: Option<u64>) -> Option<(u64, u64)> {
        let r = &mut self.rng;
        let node = match coordinator {
            Some(c) if r.random_bool(0.5) => c,
            _ => *candidates.choose(r)?,
        };
        Some((node, rng::between(r, 500 * MS, 5 * SEC)))
    }

    /// When the next fault of `kind` strikes after `now` (`None`: this kind is off).
    pub fn next(&mut self, kind: FaultKind, now: u64) -> Option<u64> {
        let rate = self.rates[kind as usize];
        (rate > 0.0).then(|| now + rng::exp_nanos(&mut self.rng, SEC as f64 / rate))
    }

    /// The fault of `kind` to apply now, if there is an eligible target.
    pub fn draw(&mut self, kind: FaultKind, t: &Targets) -> Option<Fault> {
        let r = &mut self.rng;
        match kind {
            FaultKind::Crash => Some(Fault::Crash {
                node: *t.crashable.choose(r)?,
                restart_after: rng::between(r, 500 * MS, 5 * SEC),
            }),
            FaultKind::Churn => Some(Fault::Leave {
                node: *t.removable.choose(r)?,
                rejoin_after: rng::between(r, 500 * MS, 3 * SEC),
            }),
            FaultKind::Pause => {
                let node = *t.awake.choose(r)?;
                let duration = if r.random_bool(self.pause_long_share) {
                    rng::between(r, 600 * MS, 3 * SEC)
                } else {
                    rng::between(r, 20 * MS, 400 * MS)
                };
                Some(Fault::Pause { node, duration })
            }
            FaultKind::Partition => {
                if t.partitioned || t.nodes < 2 {
                    return None;
                }
                let mode = *self.modes.choose(r)?;
                let cuts = cuts(mode, t, r);
                let duration = rng::between(r, 100 * MS, self.partition_max);
                (!cuts.is_empty()).then_some(Fault::Partition { mode, cuts, duration })
            }
            FaultKind::CrashAll | FaultKind::CrashMajority => {
                let mut nodes = t.running.clone();
                nodes.shuffle(r);
                if kind == FaultKind::CrashMajority {
                    nodes.truncate(nodes.len() / 2 + 1);
                }
                // Restarts spread out, some before others, so that recovery starts with the
                // first ones back.
                let nodes: Vec<(u64, u64)> =
                    nodes.into_iter().map(|n| (n, rng::between(r, 50 * MS, 3 * SEC))).collect();
                (!nodes.is_empty()).then_some(Fault::CrashMany { nodes })
            }
            FaultKind::Garbage => {
                let node = *t.awake.choose(r)?;
                let len = r.random_range(0..=64usize);
                let bytes = (0..len).map(|_| r.random::<u8>()).collect();
                Some(Fault::Garbage { node, from: r.random_range(0..t.nodes), bytes })
            }
        }
    }
}

/// The directed links a partition of shape `mode` cuts.
fn cuts(mode: PartitionMode, t: &Targets, r: &mut SimRng) -> Vec<(u64, u64)> {
    let n = t.nodes;
    let mut order: Vec<u64> = (0..n).collect();
    order.shuffle(r);
    let both = |a: &[u64], b: &[u64]| {
        let mut v = Vec::new();
        for x in a {
            for y in b {
                v.push((*x, *y));
                v.push((*y, *x));
            }
        }
        v
    };
    match mode {
        PartitionMode::IsolateOne => {
            let Some(x) = t.running.choose(r).copied() else { return Vec::new() };
            let others: Vec<u64> = (0..n).filter(|y| *y != x).collect();
            both(&[x], &others)
        }
        PartitionMode::Split => {
            let k = r.random_range(1..=((n - 1) / 2).max(1)) as usize;
            both(&order[..k], &order[k..])
        }
        PartitionMode::MajoritiesRing => {
            // Each node keeps its k nearest ring neighbours on each side, k just large enough
            // that it sees a majority (itself + 2k >= n/2 + 1).
            let k = (n / 2).div_ceil(2);
            let mut v = Vec::new();
            for i in 0..n {
                for j in 0..n {
                    let d = i.abs_diff(j);
                    if i != j && d.min(n - d) > k {
                        v.push((order[i as usize], order[j as usize]));
                    }
                }
            }
            v
        }
        PartitionMode::OneWay => {
            let k = r.random_range(1..n) as usize;
            let mut v = Vec::new();
            for x in &order[..k] {
                for y in &order[k..] {
                    v.push((*x, *y));
                }
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: u64) -> Targets {
        Targets {
            nodes: n,
            running: (0..n).collect(),
            awake: (0..n).collect(),
            removable: (0..n).collect(),
            crashable: (0..n).collect(),
            partitioned: false,
        }
    }

    fn reach(n: u64, cuts: &[(u64, u64)]) -> Vec<Vec<u64>> {
        (0..n).map(|i| (0..n).filter(|j| !cuts.contains(&(i, *j))).collect()).collect()
    }

    #[test]
    fn majorities_ring_gives_everyone_a_different_majority() {
        for n in [5u64, 7] {
            let mut r = rng::stream(1, Stream::Faults);
            let c = cuts(PartitionMode::MajoritiesRing, &targets(n), &mut r);
            let seen = reach(n, &c);
            for s in &seen {
                assert!(s.len() as u64 > n / 2, "{n}: {seen:?}");
            }
            let mut distinct = seen.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len() as u64, n, "{seen:?}");
        }
    }

    #[test]
    fn split_leaves_a_minority_and_a_majority() {
        let mut r = rng::stream(2, Stream::Faults);
        for _ in 0..50 {
            let c = cuts(PartitionMode::Split, &targets(5), &mut r);
            let sizes: Vec<usize> = reach(5, &c).iter().map(Vec::len).collect();
            assert!(sizes.iter().any(|s| *s >= 3) && sizes.iter().any(|s| *s <= 2), "{sizes:?}");
        }
    }

    #[test]
    fn one_way_is_asymmetric() {
        let mut r = rng::stream(3, Stream::Faults);
        let c = cuts(PartitionMode::OneWay, &targets(4), &mut r);
        assert!(!c.is_empty());
        assert!(c.iter().all(|(a, b)| !c.contains(&(*b, *a))));
    }

    #[test]
    fn crash_only_targets_crashable_nodes() {
        let mut o = SimOptions::from_seed(1);
        o.crash_rate = 1.0;
        let mut nem = Nemesis::new(&o);
        let mut t = targets(5);
        t.crashable = vec![3];
        for _ in 0..20 {
            assert!(matches!(nem.draw(FaultKind::Crash, &t), Some(Fault::Crash { node: 3, .. })));
        }
        t.crashable.clear();
        assert_eq!(nem.draw(FaultKind::Crash, &t), None);
        assert!(nem.next(FaultKind::Crash, 0).is_some());
        o.crash_rate = 0.0;
        assert_eq!(Nemesis::new(&o).next(FaultKind::Crash, 0), None);
    }
}
