//! Compact trace building for tests.

use std::collections::HashMap;

use crate::trace::{chain, digest, Ev, Order, Proc, TraceEvent};
use crate::{check_trace, Guarantee, Violation};

/// Node `node`, first incarnation.
pub(crate) fn p(node: u64) -> Proc {
    Proc { node, inc: 0 }
}

/// Node `node`, incarnation `inc`.
pub(crate) fn pi(node: u64, inc: u64) -> Proc {
    Proc { node, inc }
}

/// The digest a test message carries: a function of its identity.
pub(crate) fn msg_digest(sender: Proc, view: u64, seq: u64) -> u64 {
    digest(format!("{sender}/{view}/{seq}").as_bytes())
}

/// The state (`applied`, `hash`) after applying the given total or safe messages, in order,
/// from the initial state.
pub(crate) fn state_after(msgs: &[(Proc, u64, u64)]) -> (u64, u64) {
    state_from((0, 0), msgs)
}

/// The state after applying the given total or safe messages, in order, to `from`.
pub(crate) fn state_from(from: (u64, u64), msgs: &[(Proc, u64, u64)]) -> (u64, u64) {
    msgs.iter().fold(from, |(applied, hash), &(s, v, n)| (applied + 1, chain(hash, msg_digest(s, v, n))))
}

/// A trace under construction; each event is one nanosecond after the previous one.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub(crate) events: Vec<TraceEvent>,
    t: u64,
    /// The order each message was sent with, so that deliveries can repeat it.
    orders: HashMap<(Proc, u64, u64), Order>,
}

impl Trace {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts `members` and has each install `view` with exactly them.
    pub(crate) fn group(members: &[Proc], view: u64) -> Self {
        let mut tr = Self::new();
        for &m in members {
            tr.start(m);
        }
        tr.install_all(view, members);
        tr
    }

    pub(crate) fn ev(&mut self, p: Option<Proc>, ev: Ev) -> &mut Self {
        self.t += 1;
        self.events.push(TraceEvent { t: self.t, p, ev });
        self
    }

    pub(crate) fn start(&mut self, p: Proc) -> &mut Self {
        self.ev(Some(p), Ev::Start { bootstrap: false })
    }

    /// A process that founds the group (its state starts as the initial one).
    pub(crate) fn bootstrap(&mut self, p: Proc) -> &mut Self {
        self.ev(Some(p), Ev::Start { bootstrap: true })
    }

    pub(crate) fn install(&mut self, p: Proc, view: u64, members: &[Proc]) -> &mut Self {
        self.install_loading(p, view, members, &[])
    }

    /// An install of a view whose `loading` list is `loading`.
    pub(crate) fn install_loading(
        &mut self,
        p: Proc,
        view: u64,
        members: &[Proc],
        loading: &[Proc],
    ) -> &mut Self {
        let ev =
            Ev::Install { view, members: members.to_vec(), loading: loading.to_vec(), recovered: vec![] };
        self.ev(Some(p), ev)
    }

    /// Each of `who` installs `view` with `members`, `recovered` naming the restarts among them.
    pub(crate) fn install_recovered(
        &mut self,
        who: &[Proc],
        view: u64,
        members: &[Proc],
        recovered: &[Proc],
    ) -> &mut Self {
        for &p in who {
            let ev = Ev::Install {
                view,
                members: members.to_vec(),
                loading: vec![],
                recovered: recovered.to_vec(),
            };
            self.ev(Some(p), ev);
        }
        self
    }

    /// Every member installs `view` with exactly `members` and `loading`.
    pub(crate) fn install_loading_all(&mut self, view: u64, members: &[Proc], loading: &[Proc]) -> &mut Self {
        for &m in members {
            self.install_loading(m, view, members, loading);
        }
        self
    }

    /// `p` reports its state at the start of `view`.
    pub(crate) fn digest(&mut self, p: Proc, view: u64, (applied, hash): (u64, u64)) -> &mut Self {
        self.ev(Some(p), Ev::Digest { view, applied, hash })
    }

    /// `p` loaded the state transferred for `view`.
    pub(crate) fn state_loaded(&mut self, p: Proc, view: u64, (applied, hash): (u64, u64)) -> &mut Self {
        self.ev(Some(p), Ev::StateLoaded { view, applied, hash })
    }

    /// Every member installs `view` with exactly `members`.
    pub(crate) fn install_all(&mut self, view: u64, members: &[Proc]) -> &mut Self {
        for &m in members {
            self.install(m, view, members);
        }
        self
    }

    /// A FIFO multicast.
    pub(crate) fn send(&mut self, p: Proc, view: u64, seq: u64) -> &mut Self {
        self.send_as(p, view, seq, Order::Fifo)
    }

    /// A multicast with the given order; its deliveries (by [`Trace::deliver`]) carry it too.
    pub(crate) fn send_as(&mut self, p: Proc, view: u64, seq: u64, order: Order) -> &mut Self {
        let digest = msg_digest(p, view, seq);
        self.orders.insert((p, view, seq), order);
        self.ev(Some(p), Ev::Send { view, seq, digest, order })
    }

    /// Delivers a message with the order it was sent with (FIFO if it was never sent).
    pub(crate) fn deliver(&mut self, p: Proc, sender: Proc, view: u64, seq: u64) -> &mut Self {
        self.deliver_digest(p, sender, view, seq, msg_digest(sender, view, seq))
    }

    /// Delivers a message claiming the given order, whatever it was sent with.
    pub(crate) fn deliver_as(
        &mut self,
        p: Proc,
        sender: Proc,
        view: u64,
        seq: u64,
        order: Order,
    ) -> &mut Self {
        let digest = msg_digest(sender, view, seq);
        self.ev(Some(p), Ev::Deliver { sender, view, seq, digest, order })
    }

    pub(crate) fn deliver_digest(
        &mut self,
        p: Proc,
        sender: Proc,
        view: u64,
        seq: u64,
        digest: u64,
    ) -> &mut Self {
        let order = self.orders.get(&(sender, view, seq)).copied().unwrap_or_default();
        self.ev(Some(p), Ev::Deliver { sender, view, seq, digest, order })
    }

    /// Every process in `to` delivers the message.
    pub(crate) fn deliver_all(&mut self, to: &[Proc], sender: Proc, view: u64, seq: u64) -> &mut Self {
        for &q in to {
            self.deliver(q, sender, view, seq);
        }
        self
    }

    /// `sender` multicasts in `view` and everyone in `to` delivers it.
    pub(crate) fn multicast(&mut self, sender: Proc, view: u64, seq: u64, to: &[Proc]) -> &mut Self {
        self.send(sender, view, seq).deliver_all(to, sender, view, seq)
    }

    /// `sender` multicasts with `order` in `view` and everyone in `to` delivers it.
    pub(crate) fn multicast_as(
        &mut self,
        sender: Proc,
        view: u64,
        seq: u64,
        order: Order,
        to: &[Proc],
    ) -> &mut Self {
        self.send_as(sender, view, seq, order).deliver_all(to, sender, view, seq)
    }

    pub(crate) fn crash(&mut self, p: Proc) -> &mut Self {
        self.ev(Some(p), Ev::Crash)
    }

    pub(crate) fn phase(&mut self, name: &str) -> &mut Self {
        self.ev(None, Ev::Phase { name: name.to_owned() })
    }

    pub(crate) fn end(&mut self) -> &mut Self {
        self.ev(None, Ev::End)
    }

    /// Asserts the trace passes, showing the violation if not.
    #[track_caller]
    pub(crate) fn assert_ok(&self) {
        if let Err(v) = check_trace(&self.events) {
            panic!("expected a valid trace, got: {v}");
        }
    }

    /// Asserts the trace breaks `guarantee` (and nothing reported before it).
    #[track_caller]
    pub(crate) fn assert_violates(&self, guarantee: Guarantee) -> Violation {
        match check_trace(&self.events) {
            Ok(()) => panic!("expected a {guarantee} violation, trace passed"),
            Err(v) => {
                assert_eq!(v.guarantee, guarantee, "wrong guarantee: {v}");
                v
            }
        }
    }
}
