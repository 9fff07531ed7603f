//! G14 durability (DESIGN §3 G14, with `appendfsync always`).
//!
//! Checkable form: a `durable` line of view `v` with position `a` says every member of `v`
//! stored the state after `a` total and safe messages. Every `digest` or `state_loaded` line of
//! a later view (`w > v`) must then report `applied >= a`: the state a view starts from (given
//! by a member alive, or recovered from disks after crashes of the majority or of the whole
//! group) holds everything acknowledged durable before. Together with ST3 (equal `applied`,
//! equal `hash`), the acknowledged prefix itself is intact.
//!
//! How: per view, the highest position acknowledged in it; a report for view `w` is compared
//! with the highest of views below `w`. Views are few, so a scan of the map is cheap.

use std::collections::BTreeMap;

use crate::trace::Proc;
use crate::violation::{Guarantee, Violation};

/// Positions acknowledged durable, by view.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    acked: BTreeMap<u64, (u64, Proc)>,
}

impl Durability {
    /// `p` saw every member of `view` report the state at `applied` stored.
    pub(crate) fn on_durable(&mut self, p: Proc, view: u64, applied: u64) {
        let e = self.acked.entry(view).or_insert((applied, p));
        if applied > e.0 {
            *e = (applied, p);
        }
    }

    /// `p` reports (or loaded) the state at `applied` at the start of `view`.
    pub(crate) fn on_report(&self, t: u64, p: Proc, view: u64, applied: u64) -> Result<(), Violation> {
        let best = self.acked.range(..view).map(|(v, (a, q))| (*a, *v, *q)).max();
        match best {
            Some((a, v, q)) if applied < a => Err(Violation::new(
                Guarantee::G14Durability,
                t,
                format!(
                    "{p} starts view {view} with {applied} messages applied, but {q} saw every member of view {v} store {a}: acknowledged writes were lost"
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, Trace};
    use crate::trace::Ev;
    use crate::Guarantee;

    #[test]
    fn a_later_state_missing_an_acknowledged_position_is_caught() {
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.ev(Some(a), Ev::Durable { view: 1, applied: 5 });
        tr.install_all(2, &[a, b]);
        tr.digest(a, 2, (5, 0)).digest(b, 2, (5, 0));
        tr.assert_ok();
        let mut tr = Trace::group(&[a, b], 1);
        tr.ev(Some(a), Ev::Durable { view: 1, applied: 5 });
        tr.install_all(2, &[a, b]);
        tr.digest(a, 2, (4, 0));
        tr.assert_violates(Guarantee::G14Durability);
    }

    #[test]
    fn the_acknowledging_view_itself_is_not_judged() {
        // A member that installs the view late reports its start, before the acknowledged
        // messages: that is no loss.
        let (a, b) = (p(1), p(2));
        let mut tr = Trace::group(&[a, b], 1);
        tr.install_all(2, &[a, b]);
        tr.ev(Some(a), Ev::Durable { view: 2, applied: 9 });
        tr.digest(b, 2, (3, 0));
        tr.assert_ok();
    }
}
