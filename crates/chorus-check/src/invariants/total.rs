//! G9 total order (DESIGN §3 G9; TESTING OR3 "Total order"; CKV01 "Strong Total Order"; VS.txt
//! #9).
//!
//! Checkable form: let T(p, v) be the sequence of messages with order `total` or `safe` that
//! process p delivers while its current view is v, in p's line order. For any two processes p
//! and q and any view v, the messages common to T(p, v) and T(q, v) appear in the same
//! relative order in both. Every process counts, including one that crashes, is excluded or
//! leaves while in v (CKV01's strong total order: a process that fails after delivering never
//! disagrees with the others).
//!
//! Views are enough: a message is delivered only in its sending view (G5), and a process's
//! views follow one another, so two processes' common messages all lie in common views.
//! With G4 (equal delivered sets for processes that go on to the next view) this gives OR3's
//! "every process's delivery sequence is a prefix of one common sequence, equal at the view's
//! end" for those processes.
//!
//! How: T(p, v) is final when p's stay in v ends — p installs the next view, its life ends
//! (`crash`, `excluded`, `left`, or the `start` of a newer incarnation), or the run ends
//! ([`crate::Checker::finish`]). At that point it is compared with every sequence of v finished
//! before: for each, one pass over T(p, v) looking each message up in the other's position map
//! must see increasing positions. Then T(p, v)'s own position map is kept for the ones still to
//! come. Time is O(length × processes) per view, memory one map per process and view.
//! Sequences shorter than two cannot disagree with anything and are not kept.
//!
//! Pairwise agreement is not enough: three processes that each saw two of three messages (a
//! before b at one, b before c at another, c before a at a third) agree pairwise, yet no common
//! sequence holds all three orders. So each finished sequence also adds its consecutive pairs
//! to the view's union graph, and at the end of the run ([`TotalOrder::finish`]) every view's
//! graph must be acyclic (Kahn's algorithm): then one sequence extends every process's order.

use crate::hash::FastMap;
use crate::trace::Proc;
use crate::violation::{Guarantee, MsgId, Violation};

/// Per view, the finished sequences so far as position maps.
#[derive(Debug, Default)]
pub(crate) struct TotalOrder {
    views: FastMap<u64, Vec<Finished>>,
    /// Per view, the union of the finished sequences' orders: each message's successors.
    graphs: FastMap<u64, FastMap<MsgId, Vec<MsgId>>>,
}

#[derive(Debug)]
struct Finished {
    p: Proc,
    pos: FastMap<MsgId, u32>,
}

impl TotalOrder {
    /// `p`'s stay in `view` ended, in which it delivered the total and safe messages `seq` in
    /// this order.
    pub(crate) fn on_view_end(
        &mut self,
        t: u64,
        p: Proc,
        view: u64,
        seq: Vec<MsgId>,
    ) -> Result<(), Violation> {
        if seq.len() < 2 {
            return Ok(());
        }
        let finished = self.views.entry(view).or_default();
        for other in finished.iter() {
            // The latest common message so far: its position in `other` and its id.
            let mut last: Option<(u32, MsgId)> = None;
            for m in &seq {
                let Some(&j) = other.pos.get(m) else { continue };
                if let Some((i, prev)) = last {
                    if j < i {
                        return Err(Violation::new(
                            Guarantee::G9Total,
                            t,
                            format!(
                                "in view {view} {p} delivered {prev} before {m}, but {} delivered \
                                 {m} before {prev}",
                                other.p
                            ),
                        ));
                    }
                }
                last = Some((j, *m));
            }
        }
        let graph = self.graphs.entry(view).or_default();
        for pair in seq.windows(2) {
            graph.entry(pair[0]).or_default().push(pair[1]);
            graph.entry(pair[1]).or_default();
        }
        let mut pos = FastMap::default();
        pos.reserve(seq.len());
        for (i, m) in seq.into_iter().enumerate() {
            pos.insert(m, i as u32);
        }
        finished.push(Finished { p, pos });
        Ok(())
    }

    /// End of run: in every view, one sequence must extend every process's total order (the
    /// union of their orders has no cycle). Views in increasing order; each checked once.
    pub(crate) fn finish(&mut self, t: u64) -> Result<(), Violation> {
        let mut views: Vec<u64> = self.graphs.keys().copied().collect();
        views.sort_unstable();
        for view in views {
            let Some(graph) = self.graphs.remove(&view) else { continue };
            if let Some(cycle) = find_cycle(&graph) {
                return Err(Violation::new(
                    Guarantee::G9Total,
                    t,
                    format!(
                        "in view {view} no single order extends every process's total order: \
                         together they put {} in a cycle (each pair of processes agrees)",
                        crate::violation::msgs(&cycle)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Some messages on a cycle of `graph`, if it has one (Kahn's algorithm: what cannot be
/// ordered is on a cycle or after one; a walk from there finds the cycle itself).
fn find_cycle(graph: &FastMap<MsgId, Vec<MsgId>>) -> Option<Vec<MsgId>> {
    let mut indegree: FastMap<MsgId, usize> = graph.keys().map(|m| (*m, 0)).collect();
    for next in graph.values().flatten() {
        *indegree.entry(*next).or_default() += 1;
    }
    let mut ready: Vec<MsgId> = indegree.iter().filter(|(_, d)| **d == 0).map(|(m, _)| *m).collect();
    let mut ordered = 0;
    while let Some(m) = ready.pop() {
        ordered += 1;
        for next in graph.get(&m).into_iter().flatten() {
            if let Some(d) = indegree.get_mut(next) {
                *d -= 1;
                if *d == 0 {
                    ready.push(*next);
                }
            }
        }
    }
    if ordered == indegree.len() {
        return None;
    }
    // Every message left has a predecessor left: walking predecessors backwards from any of
    // them must revisit one, and the walk from that one back to itself is a cycle.
    let left: FastMap<MsgId, ()> = indegree.iter().filter(|(_, d)| **d > 0).map(|(m, _)| (*m, ())).collect();
    let mut pred: FastMap<MsgId, MsgId> = FastMap::default();
    for (m, nexts) in graph {
        if left.contains_key(m) {
            for n in nexts {
                if left.contains_key(n) {
                    pred.entry(*n).or_insert(*m);
                }
            }
        }
    }
    let mut start = *left.keys().min()?;
    let mut seen: FastMap<MsgId, ()> = FastMap::default();
    while seen.insert(start, ()).is_none() {
        start = *pred.get(&start)?;
    }
    let mut cycle = vec![start];
    let mut m = *pred.get(&start)?;
    while m != start {
        cycle.push(m);
        m = *pred.get(&m)?;
    }
    cycle.reverse();
    Some(cycle)
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::trace::Order;
    use crate::Guarantee;

    /// a and b each send a total message and a safe one in view 1.
    fn sent() -> Trace {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send_as(a, 1, 1, Order::Total).send_as(b, 1, 1, Order::Total);
        tr.send_as(a, 1, 2, Order::Safe).send_as(b, 1, 2, Order::Safe);
        tr
    }

    #[test]
    fn one_order_everywhere_passes() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = sent();
        for q in [a, b, c] {
            tr.deliver(q, b, 1, 1).deliver(q, a, 1, 1).deliver(q, a, 1, 2).deliver(q, b, 1, 2);
        }
        tr.install_all(2, &[a, b, c]).end();
        tr.assert_ok();
    }

    #[test]
    fn fifo_and_causal_messages_are_not_ordered() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send(a, 1, 1).send_as(b, 1, 1, Order::Causal);
        tr.deliver(a, a, 1, 1).deliver(a, b, 1, 1).deliver(b, b, 1, 1).deliver(b, a, 1, 1);
        tr.install_all(2, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn survivors_disagreeing_are_caught_at_the_second_install() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = sent();
        tr.deliver(a, a, 1, 1).deliver(a, b, 1, 1);
        tr.deliver(b, b, 1, 1).deliver(b, a, 1, 1);
        tr.install(a, 2, &[a, b, c]).install(b, 2, &[a, b, c]);
        let install_t = tr.events.last().map_or(0, |e| e.t);
        tr.end();
        let v = tr.assert_violates(Guarantee::G9Total);
        assert!(
            v.detail.contains("in view 1 n2.0 delivered (n2.0, v1, #1) before (n1.0, v1, #1), but n1.0"),
            "{v}"
        );
        assert_eq!(v.t, install_t);
    }

    #[test]
    fn a_crashed_process_counts() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = sent();
        // c delivers in another order, then crashes; the survivors agree among themselves.
        tr.deliver(c, b, 1, 1).deliver(c, a, 1, 1).crash(c);
        tr.deliver(a, a, 1, 1).deliver(a, b, 1, 1).deliver(b, a, 1, 1).deliver(b, b, 1, 1);
        tr.install_all(2, &[a, b]);
        tr.assert_violates(Guarantee::G9Total);
    }

    #[test]
    fn only_common_messages_matter() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = sent();
        // c misses two messages and crashes; what it delivered is in the survivors' order.
        tr.deliver(c, b, 1, 1).deliver(c, b, 1, 2).crash(c);
        for q in [a, b] {
            tr.deliver(q, a, 1, 1).deliver(q, b, 1, 1).deliver(q, a, 1, 2).deliver(q, b, 1, 2);
        }
        tr.install_all(2, &[a, b]);
        tr.assert_ok();
    }

    #[test]
    fn safe_and_total_messages_share_the_order() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = sent();
        tr.deliver(a, a, 1, 1).deliver(a, a, 1, 2).deliver(a, b, 1, 1);
        tr.deliver(b, b, 1, 1).deliver(b, a, 1, 1).deliver(b, a, 1, 2);
        tr.install(a, 2, &[a, b, c]).ev(Some(b), crate::trace::Ev::Left);
        let v = tr.assert_violates(Guarantee::G9Total);
        assert!(v.detail.contains("(n2.0, v1, #1)"), "{v}");
    }

    #[test]
    fn a_cycle_among_three_processes_is_caught_though_each_pair_agrees() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.send_as(a, 1, 1, Order::Total).send_as(b, 1, 1, Order::Total).send_as(c, 1, 1, Order::Total);
        // x = a's, y = b's, z = c's message: a sees x y, b sees y z, c sees z x; all crash.
        tr.deliver(a, a, 1, 1).deliver(a, b, 1, 1).crash(a);
        tr.deliver(b, b, 1, 1).deliver(b, c, 1, 1).crash(b);
        tr.deliver(c, c, 1, 1).deliver(c, a, 1, 1).crash(c);
        tr.end();
        let v = tr.assert_violates(Guarantee::G9Total);
        assert!(v.detail.contains("in a cycle"), "{v}");
        assert!(v.detail.contains("(n1.0, v1, #1)") && v.detail.contains("(n3.0, v1, #1)"), "{v}");
    }

    #[test]
    fn processes_still_in_the_view_are_compared_at_the_end() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send_as(a, 1, 1, Order::Total).send_as(a, 1, 2, Order::Total).send_as(b, 1, 1, Order::Total);
        tr.deliver(a, a, 1, 1).deliver(a, b, 1, 1).deliver(a, a, 1, 2);
        tr.deliver(b, a, 1, 1).deliver(b, a, 1, 2).deliver(b, b, 1, 1);
        let mut checker = crate::Checker::new();
        for ev in &tr.events {
            assert_eq!(checker.observe(ev), Ok(()));
        }
        let v = checker.finish().unwrap_err();
        assert_eq!(v.guarantee, Guarantee::G9Total);
    }
}
