//! G12 liveness (DESIGN §3 G12; TESTING MC7 "Termination", with MC5 "Self Delivery" as a
//! step; CKV01 "Termination of Delivery"; TigerBeetle's liveness mode).
//!
//! Judged once, at the end of the run, and only if the harness wrote `phase` `liveness`
//! (faults stopped and everything healed). The harness bounds the time: it writes `end` once
//! the bound has passed.
//!
//! Checkable form, with Alive = processes started and not ended:
//! - (a) every alive process has installed a view, all alive processes' current views have
//!   the same id, and that view's member set equals Alive; and no alive process is still
//!   waiting for its state there (listed in `loading` of the final view without a
//!   `state_loaded`: TESTING ST5, state transfer terminates too).
//! - (b) for every `send` (s, v, n): if s stayed in v (installed a view after v, or is alive
//!   at the end with current view v), then every q that installed v and then either installed
//!   a view after v or is alive at the end with current view v delivered (s, v, n).
//!
//! How (b) stays cheap. For a view that was left, G2 says leavers go from v to v+1 and G4
//! that they all delivered the same set; s is one of them, so (b) holds for v exactly when
//! each leaver delivered its own sends of v before leaving (MC5). That is recorded at each
//! install. For the final view, once (a) holds every member is alive and in it (a process
//! that stayed in v while another left it would break (a)), so all pairs are compared at
//! the end. The checker stops at the first violation, so G2 and G4 did hold.
//!
//! A process whose state transfer in v was cut off (listed in `loading` of v, never loaded
//! there) delivered nothing in v (ST2) and is exempt from G4, so the shortcut above does not
//! cover it: it cannot deliver its own sends of v. Its sends of v, if any, are kept and
//! compared at the end with the set of the first process that went on from v without being
//! exempt (G4's reference); if there is none, no process that stayed in v delivers anything
//! there to compare with.

use crate::checker::{ProcState, Procs, Views};
use crate::invariants::virtual_synchrony::VirtualSynchrony;
use crate::trace::Proc;
use crate::violation::{procs, Guarantee, MsgId, Violation};

/// How many missing deliveries a report lists.
const EXAMPLES: usize = 5;

#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// A `liveness` phase was observed.
    armed: bool,
    /// First few (q, m) where q left m's view without delivering its own m.
    missed: Vec<(Proc, MsgId)>,
    missed_count: u64,
    /// (p, v, sent): p sent `sent` messages in v, which it left with its transfer cut off.
    cut_off_sends: Vec<(Proc, u64, u64)>,
}

impl Liveness {
    pub(crate) fn arm(&mut self) {
        self.armed = true;
    }

    /// `p` leaves view `from`, where it sent `sent` messages and delivered `own` of them;
    /// `cut_off`: it waited for its state in `from` all along, so it delivered nothing there.
    pub(crate) fn on_transition(&mut self, p: Proc, from: u64, sent: u64, own: u64, cut_off: bool) {
        if cut_off {
            if sent > 0 {
                self.cut_off_sends.push((p, from, sent));
            }
            return;
        }
        for seq in own + 1..=sent {
            self.missed_count += 1;
            if self.missed.len() < EXAMPLES {
                self.missed.push((p, MsgId { sender: p, view: from, seq }));
            }
        }
    }

    pub(crate) fn finish(
        &self,
        t: u64,
        procs_state: &Procs,
        views: &Views,
        vs: &VirtualSynchrony,
    ) -> Result<(), Violation> {
        if !self.armed {
            return Ok(());
        }
        let fail = |detail: String| Err(Violation::new(Guarantee::G12Liveness, t, detail));
        let mut alive: Vec<(Proc, &ProcState)> =
            procs_state.iter().filter(|(_, s)| s.live).map(|(p, s)| (*p, s)).collect();
        alive.sort_by_key(|(p, _)| *p);

        // (a) one view holding exactly the live processes.
        let mut view_of = Vec::with_capacity(alive.len());
        for (p, s) in &alive {
            match s.view {
                Some(v) => view_of.push((*p, v)),
                None => return fail(format!("{p} is alive but never installed a view")),
            }
        }
        let Some(&(_, final_view)) = view_of.first() else {
            // Nobody alive: there is no view to hold and nothing to deliver to.
            return Ok(());
        };
        if view_of.iter().any(|(_, v)| *v != final_view) {
            let list: Vec<String> = view_of.iter().map(|(p, v)| format!("{p} in {v}")).collect();
            return fail(format!("live processes are in different views: {}", list.join(", ")));
        }
        let alive_set: Vec<Proc> = alive.iter().map(|(p, _)| *p).collect();
        if let Some(record) = views.get(&final_view) {
            let mut members = record.members.clone();
            members.sort();
            if members != alive_set {
                return fail(format!(
                    "final view {final_view} holds {} but the live processes are {}",
                    procs(&record.members),
                    procs(&alive_set)
                ));
            }
        }

        if let Some((p, _)) = alive.iter().find(|(_, s)| s.transfer.waiting().is_some()) {
            return fail(format!(
                "{p} is still waiting for its state transfer in final view {final_view} (listed in \
                 `loading`, no `state_loaded`)"
            ));
        }

        // (b) every multicast of a process that stayed in its view was delivered.
        let mut missed = self.missed.clone();
        let mut count = self.missed_count;
        for &(s, view, sent) in &self.cut_off_sends {
            let Some((q, set)) = vs.survivor(view) else { continue };
            let got = set.get(&s).copied().unwrap_or(0);
            for seq in got + 1..=sent {
                count += 1;
                if missed.len() < EXAMPLES {
                    missed.push((q, MsgId { sender: s, view, seq }));
                }
            }
        }
        for (q, qs) in &alive {
            for (s, ss) in &alive {
                let got = qs.delivered.get(s).copied().unwrap_or(0);
                for seq in got + 1..=ss.sent {
                    count += 1;
                    if missed.len() < EXAMPLES {
                        missed.push((*q, MsgId { sender: *s, view: final_view, seq }));
                    }
                }
            }
        }
        if count == 0 {
            return Ok(());
        }
        let examples: Vec<String> = missed.iter().map(|(q, m)| format!("{q} never delivered {m}")).collect();
        fail(format!(
            "{count} multicasts of processes that stayed in their view were not delivered, \
             e.g. {}",
            examples.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, pi, Trace};
    use crate::trace::Ev;
    use crate::Guarantee;

    /// a, b, c in view 1; c is excluded, restarts as a new incarnation and re-joins in view 3.
    fn healed() -> Trace {
        let (a, b, c, c1) = (p(1), p(2), p(3), pi(3, 1));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.multicast(a, 1, 1, &[a, b, c]);
        tr.ev(Some(c), Ev::Excluded).install_all(2, &[a, b]);
        tr.phase("liveness");
        tr.start(c1).install_all(3, &[a, b, c1]);
        tr.multicast(c1, 3, 1, &[c1, a, b]).multicast(a, 3, 1, &[a, b, c1]);
        tr
    }

    #[test]
    fn a_healed_group_passes() {
        healed().end().assert_ok();
    }

    #[test]
    fn without_a_liveness_phase_nothing_is_judged() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.send(a, 1, 1).start(p(3)).end();
        tr.assert_ok();
    }

    #[test]
    fn a_live_process_outside_the_view_is_caught() {
        let mut tr = healed();
        tr.start(p(4)).end();
        let v = tr.assert_violates(Guarantee::G12Liveness);
        assert!(v.detail.contains("never installed a view"), "{v}");
    }

    #[test]
    fn live_processes_in_different_views_are_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.phase("liveness").install(a, 2, &[a, b, c]).install(b, 2, &[a, b, c]).end();
        let v = tr.assert_violates(Guarantee::G12Liveness);
        assert!(v.detail.contains("different views"), "{v}");
    }

    #[test]
    fn a_final_view_holding_a_dead_process_is_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.phase("liveness").crash(c).end();
        let v = tr.assert_violates(Guarantee::G12Liveness);
        assert!(v.detail.contains("final view 1 holds"), "{v}");
    }

    #[test]
    fn an_undelivered_multicast_in_the_final_view_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = healed();
        tr.send(b, 3, 1).deliver(b, b, 3, 1).deliver(a, b, 3, 1).end();
        let v = tr.assert_violates(Guarantee::G12Liveness);
        assert!(v.detail.contains("n3.1 never delivered (n2.0, v3, #1)"), "{v}");
    }

    #[test]
    fn leaving_a_view_without_self_delivery_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.phase("liveness").send(a, 1, 1).install_all(2, &[a, b]).end();
        let v = tr.assert_violates(Guarantee::G12Liveness);
        assert!(v.detail.contains("n1.0 never delivered (n1.0, v1, #1)"), "{v}");
    }

    #[test]
    fn a_joiner_that_loads_in_the_final_view_passes() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.phase("liveness").start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr.multicast(a, 2, 1, &[a, b]).state_loaded(c, 2, (0, 0)).send(c, 2, 1);
        tr.deliver_all(&[a, b], c, 2, 1).deliver(c, a, 2, 1).deliver(c, c, 2, 1).end();
        tr.assert_ok();
    }

    #[test]
    fn a_joiner_still_loading_at_the_end_is_caught() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.phase("liveness").start(c).install_loading_all(2, &[a, b, c], &[c]).end();
        let v = tr.assert_violates(Guarantee::G12Liveness);
        assert!(v.detail.contains("n3.0 is still waiting for its state transfer in final view 2"), "{v}");
    }

    #[test]
    fn a_cut_off_joiner_needs_none_of_the_view_it_never_loaded() {
        // c never loads in view 2 (it sends nothing there: the core takes no multicast before
        // the state), so it delivers nothing of view 2; it loads in view 3.
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b], 1);
        tr.phase("liveness").start(c).install_loading_all(2, &[a, b, c], &[c]);
        tr.multicast(a, 2, 1, &[a, b]).install_loading_all(3, &[a, b, c], &[c]);
        tr.state_loaded(c, 3, (0, 0)).end();
        tr.assert_ok();
    }

    #[test]
    fn a_multicast_of_a_crashed_sender_need_not_be_delivered() {
        let (a, b, c) = (p(1), p(2), p(3));
        let mut tr = Trace::group(&[a, b, c], 1);
        tr.phase("liveness").send(c, 1, 1).crash(c).install_all(2, &[a, b]).end();
        tr.assert_ok();
    }
}
