//! Seeded randomness, one independent stream per concern.
//!
//! Why separate streams: if the network and the nemesis shared one generator, a change in how
//! many frames the core sends would shift every later fault. With one stream per concern, the
//! faults a seed draws stay put while the protocol evolves, so a regression seed keeps testing
//! the situation it was added for as long as possible.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// The generator used everywhere in the simulator.
pub type SimRng = Pcg64;

/// What a random stream is used for; each gets its own generator derived from the seed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Drawing [`SimOptions`](crate::SimOptions).
    Options,
    /// Delays, duplicates and link breaks.
    Network,
    /// The nemesis: crashes, pauses, partitions, churn, garbage.
    Faults,
    /// Multicast timing and payloads.
    Workload,
    /// State transfer options and the crashes aimed at transfers.
    State,
    /// Disk options, the disk's losses at crashes, and crashes of many nodes at once.
    Disk,
    /// The frame size limit (small ones make view-change messages go in pieces).
    Frame,
    /// The replicated store: whether a seed runs it, and its clients' operations.
    Store,
}

/// The generator for `stream` of `seed`.
pub fn stream(seed: u64, stream: Stream) -> SimRng {
    let salt = match stream {
        Stream::Options => 0x6f70_7469_6f6e_7321,
        Stream::Network => 0x6e65_7477_6f72_6b21,
        Stream::Faults => 0x6661_756c_7473_2121,
        Stream::Workload => 0x776f_726b_6c6f_6164,
        Stream::State => 0x7374_6174_6521_2121,
        Stream::Disk => 0x6469_736b_7321_2121,
        Stream::Frame => 0x6672_616d_6573_2121,
        Stream::Store => 0x7374_6f72_6521_2121,
    };
    SimRng::seed_from_u64(mix(seed ^ salt))
}

/// SplitMix64's finaliser: spreads nearby seeds (1, 2, 3, ...) far apart.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A sample of the exponential distribution with the given mean, in nanoseconds (the waiting
/// time of a Poisson process). Never zero, so that a process always moves time forward.
pub fn exp_nanos(rng: &mut SimRng, mean_nanos: f64) -> u64 {
    let u: f64 = rng.random();
    let x = -(1.0 - u).ln() * mean_nanos;
    if x.is_finite() && x >= 1.0 {
        x.min(1e18) as u64
    } else {
        1
    }
}

/// A uniform sample of `[lo, hi]` (inclusive), tolerating `lo == hi`.
pub fn between(rng: &mut SimRng, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        let a: u64 = stream(7, Stream::Network).random();
        let b: u64 = stream(7, Stream::Faults).random();
        let c: u64 = stream(8, Stream::Network).random();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, stream(7, Stream::Network).random::<u64>());
    }

    #[test]
    fn exponential_has_roughly_the_mean() {
        let mut rng = stream(1, Stream::Faults);
        let n = 20_000;
        let sum: u64 = (0..n).map(|_| exp_nanos(&mut rng, 1000.0)).sum();
        let mean = sum as f64 / n as f64;
        assert!((900.0..1100.0).contains(&mean), "mean {mean}");
    }
}
