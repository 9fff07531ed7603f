//! The application load: every member multicasts tagged payloads at a Poisson rate, each in an
//! ordering mode drawn from the seed's [`OrderMix`].
//!
//! Why tags: the checker matches deliveries to sends by sender, view, sequence number and
//! payload digest. A payload that starts with a tag unique in the run (node, per-node counter,
//! incarnation) makes every digest distinct, so a message delivered with another message's
//! payload, or a resurrected payload of an earlier life, shows up as a digest mismatch.

use bytes::Bytes;
use chorus_core::Order;
use rand::RngCore;

use crate::options::{OrderMix, SimOptions, SEC};
use crate::rng::{self, SimRng, Stream};

/// Draws send times and payloads from a seed's [`Stream::Workload`] stream.
#[derive(Debug)]
pub struct Workload {
    rng: SimRng,
    rate: f64,
    payload_min: usize,
    payload_max: usize,
    orders: OrderMix,
    counters: Vec<u64>,
}

impl Workload {
    /// The workload of a run with these options.
    pub fn new(o: &SimOptions) -> Workload {
        Workload {
            rng: rng::stream(o.seed, Stream::Workload),
            rate: o.send_rate,
            payload_min: o.payload_min,
            payload_max: o.payload_max,
            orders: o.orders,
            counters: vec![0; o.total_nodes() as usize],
        }
    }

    /// When a member that multicast at `now` multicasts next.
    pub fn next(&mut self, now: u64) -> u64 {
        now + rng::exp_nanos(&mut self.rng, SEC as f64 / self.rate.max(1e-3))
    }

    /// The ordering of the next multicast.
    pub fn order(&mut self) -> Order {
        self.orders.pick(&mut self.rng)
    }

    /// A fresh payload for `node` in incarnation `inc`: 8-byte tag `node << 56 | counter`,
    /// then the incarnation if there is room, then random bytes.
    pub fn payload(&mut self, node: u64, inc: u64) -> Bytes {
        let counter = match self.counters.get_mut(node as usize) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => 0,
        };
        let len = rng::between(&mut self.rng, self.payload_min as u64, self.payload_max as u64) as usize;
        let mut p = Vec::with_capacity(len.max(8));
        p.extend_from_slice(&((node << 56) | (counter & ((1 << 56) - 1))).to_le_bytes());
        if len >= 16 {
            p.extend_from_slice(&inc.to_le_bytes());
        }
        let head = p.len().min(len);
        p.resize(len.max(head), 0);
        self.rng.fill_bytes(&mut p[head..]);
        Bytes::from(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn payloads_are_unique_and_sized() {
        let o = SimOptions::from_seed(11);
        let mut w = Workload::new(&o);
        let mut seen = BTreeSet::new();
        for i in 0..2000u64 {
            let node = i % o.total_nodes();
            let p = w.payload(node, i / 100);
            assert!(p.len() >= o.payload_min.max(8) && p.len() <= o.payload_max);
            assert!(seen.insert(chorus_check::trace::digest(&p[..8])), "tag repeated");
        }
    }

    #[test]
    fn sends_at_about_the_rate() {
        let mut o = SimOptions::from_seed(12);
        o.send_rate = 100.0;
        let mut w = Workload::new(&o);
        let (mut t, mut n) = (0, 0);
        while t < 10 * SEC {
            t = w.next(t);
            n += 1;
        }
        assert!((850..1150).contains(&n), "{n}");
    }
}
