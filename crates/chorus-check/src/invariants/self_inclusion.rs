//! G3 self-inclusion (DESIGN §3 G3; TESTING GM1; CKV01 "Self Inclusion"; VS.txt #6).
//!
//! Checkable form: for every `install` line of process p with member list M, p ∈ M
//! (same node and same incarnation).

use crate::trace::Proc;
use crate::violation::{procs, Guarantee, Violation};

pub(crate) fn on_install(t: u64, p: Proc, view: u64, members: &[Proc]) -> Result<(), Violation> {
    if members.contains(&p) {
        return Ok(());
    }
    Err(Violation::new(
        Guarantee::G3SelfInclusion,
        t,
        format!("{p} installed view {view} {} without itself", procs(members)),
    ))
}

#[cfg(test)]
mod tests {
    use crate::testkit::{p, pi, Trace};
    use crate::Guarantee;

    #[test]
    fn member_of_own_view_passes() {
        Trace::group(&[p(1), p(2)], 1).assert_ok();
    }

    #[test]
    fn installing_a_view_without_itself_is_caught() {
        let mut tr = Trace::new();
        tr.start(p(1)).start(p(2)).install(p(1), 1, &[p(2)]);
        let v = tr.assert_violates(Guarantee::G3SelfInclusion);
        assert!(v.detail.contains("n1.0"), "{v}");
    }

    #[test]
    fn an_older_incarnation_in_the_view_does_not_count() {
        let mut tr = Trace::new();
        tr.start(pi(1, 1)).install(pi(1, 1), 1, &[pi(1, 0)]);
        tr.assert_violates(Guarantee::G3SelfInclusion);
    }
}
