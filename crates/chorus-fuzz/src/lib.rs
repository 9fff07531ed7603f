//! The fuzz targets' bodies, one function per target, each taking the raw bytes libFuzzer
//! hands out. cargo-fuzz runs them from `fuzz/` (`bash scripts/fuzz-long.sh`, outside CI);
//! `cargo test` replays every committed corpus input and every input that once crashed or hung
//! (`fuzz/corpus/TARGET`, `fuzz/regressions/TARGET`) through the same functions, without
//! libFuzzer or sanitizers, so CI keeps what the long runs found at no extra build.
//!
//! Structured targets decode their input as libfuzzer-sys's `fuzz_target!` does
//! (`Arbitrary::arbitrary_take_rest`), so a corpus file means the same thing to both.

use arbitrary::{Arbitrary, Unstructured};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by name (the directory names under `fuzz/corpus`).
pub const TARGETS: [(&str, Target); 5] = [
    ("wire_decode", wire_decode),
    ("node_inputs", node_inputs),
    ("resp_request", resp_request),
    ("config_toml", config_toml),
    ("trace_reader", trace_reader),
];

/// The peer frame decoder on arbitrary bytes: it must return a frame or a typed error, never
/// panic, and whatever it accepts must re-encode to a frame that decodes to the same value.
pub fn wire_decode(data: &[u8]) {
    use chorus_core::wire;
    if let Ok(body) = wire::decode(data, 1 << 20) {
        let again = wire::encode(&body);
        assert_eq!(wire::decode(&again, 1 << 20).ok(), Some(body));
    }
}

/// The checker's trace reader and the checker on arbitrary bytes (a damaged or hostile trace
/// file): reading and checking either succeed or give an error; they never panic.
pub fn trace_reader(bytes: &[u8]) {
    let Ok(events) = chorus_check::read_jsonl(bytes) else { return };
    let mut checker = chorus_check::Checker::new();
    for ev in &events {
        if checker.observe(ev).is_err() {
            return;
        }
    }
    let _ = checker.finish();
}

/// A node's TOML config (the store's file: `[group]` and `[kv]`), arbitrary text: parsing and
/// building either succeed or give an error; they never panic.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = toml::from_str::<chorus_kv::config::FileConfig>(text) else { return };
    if file.group.secret_file.is_some() {
        return; // It would read a file named by the input.
    }
    let _ = chorus_kv::config::build(file.group.clone(), file.kv);
    let _ = chorus::config::Partial::from_toml(text).and_then(|p| p.build());
}

/// The store's RESP request parser on arbitrary bytes, fed in arbitrary pieces, before and
/// after authentication: it must never panic, and never hand out a request beyond the limits.
pub fn resp_request(data: &[u8]) {
    let Ok(input) = resp::Input::arbitrary_take_rest(Unstructured::new(data)) else { return };
    resp::run(input);
}

/// A member of a 3-node view fed an arbitrary sequence of inputs: raw frames (mostly valid
/// protocol messages with fuzzed fields, from members and strangers), timer ticks, multicasts
/// and leave. The node must never panic, whatever the peers say.
pub fn node_inputs(data: &[u8]) {
    let Ok(inputs) = Vec::<node::Input>::arbitrary_take_rest(Unstructured::new(data)) else { return };
    node::run(inputs);
}

mod resp {
    use arbitrary::Arbitrary;
    use bytes::BytesMut;
    use chorus_kv::resp::{Limits, RequestParser};

    #[derive(Arbitrary, Debug)]
    pub(crate) struct Input {
        authed: bool,
        /// Where the bytes are cut into reads.
        cuts: Vec<u16>,
        bytes: Vec<u8>,
    }

    pub(crate) fn run(input: Input) {
        // Small limits, so that the fuzzer reaches them.
        let limits = Limits {
            max_bulk_len: 1024,
            max_args: 16,
            max_inline_len: 1024,
            max_request_bytes: 8192,
            unauth_max_args: 4,
            unauth_max_bulk_len: 256,
        };
        let mut parser = RequestParser::new(limits.clone());
        let mut buf = BytesMut::new();
        let mut rest = &input.bytes[..];
        let mut cuts = input.cuts.iter();
        while !rest.is_empty() {
            let n = cuts.next().map_or(rest.len(), |c| usize::from(*c).clamp(1, rest.len()));
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match parser.parse(&mut buf, input.authed) {
                    Ok(Some(args)) => {
                        // Multibulk requests obey the argument limits (tighter before AUTH, as
                        // Redis's); an inline one is bounded by its line length.
                        let max_args = limits.max_args.max(limits.max_inline_len);
                        let max_len = limits.max_bulk_len.max(limits.max_inline_len);
                        assert!(args.len() <= max_args, "{} arguments", args.len());
                        assert!(args.iter().all(|a| a.len() <= max_len));
                        let total: usize = args.iter().map(|a| a.len()).sum();
                        assert!(total <= limits.max_request_bytes, "{total} bytes in one request");
                    }
                    Ok(None) => break,
                    Err(_) => return, // The server closes the connection.
                }
            }
        }
    }
}

mod node {
    use std::time::Duration;

    use arbitrary::Arbitrary;
    use bytes::Bytes;
    use chorus_core::wire::{self, Ack, Ballot, Data, FrameBody, Msg, Proposal, Rejoin};
    use chorus_core::{Config, GroupId, Incarnation, Instant, MemberId, Node, NodeId, View, ViewId};

    #[derive(Arbitrary, Debug)]
    pub(crate) enum Input {
        Raw {
            from: u8,
            bytes: Vec<u8>,
        },
        Msg {
            from: u8,
            inc: u8,
            to_me: bool,
            msg: FuzzMsg,
        },
        Tick {
            ms: u16,
        },
        Multicast {
            len: u8,
        },
        Leave,
        /// The application writes a checkpoint piece (or finishes) for the last view it was asked.
        Checkpoint {
            len: u16,
            finish: bool,
        },
    }

    #[derive(Arbitrary, Debug)]
    pub(crate) enum FuzzMsg {
        /// `wild`: the clock is taken as is (up to u64::MAX), else kept small.
        Data {
            view: u8,
            sender: u16,
            seq: u64,
            len: u8,
            wild: bool,
        },
        Ack {
            view: u8,
            received: Vec<u64>,
            sent: u64,
            suspects: Vec<u16>,
            wedged: bool,
            durable: u64,
        },
        Nak {
            view: u8,
            sender: u16,
            from: u64,
            to: u64,
        },
        Join {
            node: u8,
            inc: u8,
            group: Option<bool>,
            founding: bool,
        },
        Leave {
            view: u8,
        },
        Prepare {
            view: u8,
            round: u64,
            coord: u8,
            received: Vec<u64>,
        },
        Promise {
            view: u8,
            round: u64,
            received: Vec<u64>,
            accepted: bool,
            msgs: u8,
            rejoin: Option<(u8, Option<u64>)>,
        },
        Preempted {
            view: u8,
            round: u64,
            coord: u8,
        },
        Accept {
            view: u8,
            round: u64,
            members: Vec<u8>,
            cut: Vec<u64>,
        },
        Accepted {
            view: u8,
            round: u64,
        },
        Install {
            prev: u8,
            next: u8,
            members: Vec<u8>,
            cut: Vec<u64>,
        },
        InstallReq {
            have: u8,
        },
        /// `wild`: the incarnation is taken as is (up to u64::MAX), else kept small.
        NotMember {
            view: u8,
            newest: u64,
            wild: bool,
        },
        /// `wild`: the offset is taken as is (up to u64::MAX), else kept small.
        StateChunk {
            view: u8,
            offset: u64,
            len: u8,
            last: bool,
            wild: bool,
        },
        StateAck {
            view: u8,
            offset: u64,
            done: bool,
        },
        /// A piece of a fragmented frame: `whole` makes it a piece of an encoded frame built from
        /// `inner` (so that reassembly reaches the frame's handling), else raw bytes.
        Frag {
            id: u8,
            index: u16,
            count: u16,
            len: u8,
            whole: bool,
            inner: Box<FuzzMsg>,
        },
    }

    fn member(n: u8) -> MemberId {
        MemberId::new(u64::from(n % 5), 0)
    }

    /// The node's own group (true) or a stranger's.
    fn group(ours: bool) -> GroupId {
        GroupId(if ours { OUR_GROUP } else { OUR_GROUP + 1 })
    }

    const OUR_GROUP: u64 = 0xc0ffee;

    fn proposal(prev: u8, next: u8, members: &[u8], cut: Vec<u64>) -> Proposal {
        Proposal {
            prev: ViewId(u64::from(prev % 6)),
            next: View {
                id: ViewId(u64::from(next % 6)),
                members: members.iter().take(8).map(|m| member(*m)).collect(),
            },
            cut,
            loading: members.iter().skip(1).take(2).map(|m| member(*m)).collect(),
            recovered: members.iter().skip(3).take(1).map(|m| MemberId::new(u64::from(m % 5), 1)).collect(),
            group: group(next % 8 != 7),
        }
    }

    fn to_msg(m: FuzzMsg, from: MemberId) -> Msg {
        let v = |x: u8| ViewId(u64::from(x % 6));
        let ballot = |round: u64, c: MemberId| Ballot { round: round % 8, coord: c };
        match m {
            FuzzMsg::Data { view, sender, seq, len, wild } => Msg::Data(Data {
                view: v(view),
                sender: sender % 4,
                seq: seq % 64,
                order: chorus_core::Order::ALL[usize::from(len % 4)],
                lamport: if wild { seq } else { seq % 100 },
                deps: if len % 2 == 0 { vec![u64::from(len % 5); usize::from(len % 4)] } else { Vec::new() },
                payload: Bytes::from(vec![7u8; usize::from(len)]),
            }),
            FuzzMsg::Ack { view, received, sent, suspects, wedged, durable } => Msg::Ack(Ack {
                view: v(view),
                received,
                sent,
                suspects,
                wedged,
                clock: if wedged { sent } else { sent % 100 },
                holds_state: !wedged,
                durable: durable % 64,
            }),
            FuzzMsg::Nak { view, sender, from, to } => Msg::Nak { view: v(view), sender, from, to },
            FuzzMsg::Join { node, inc, group: g, founding } => Msg::Join {
                joiner: MemberId::new(u64::from(node % 5), u64::from(inc % 3)),
                group: g.map(group),
                founding,
            },
            FuzzMsg::Leave { view } => Msg::Leave { view: v(view) },
            FuzzMsg::Prepare { view, round, coord, received } => {
                Msg::Prepare { view: v(view), ballot: ballot(round, member(coord)), coord_received: received }
            }
            FuzzMsg::Promise { view, round, received, accepted, msgs, rejoin } => Msg::Promise {
                view: v(view),
                ballot: ballot(round, MemberId::new(0, 0)),
                received: received.clone(),
                accepted: accepted.then(|| {
                    (ballot(round, from), proposal(view, view.wrapping_add(1), &[0, 1, 2], received))
                }),
                msgs: (0..msgs % 4)
                    .map(|i| Data {
                        view: v(view),
                        sender: u16::from(i),
                        seq: u64::from(i) + 1,
                        order: chorus_core::Order::Total,
                        lamport: u64::from(i),
                        deps: Vec::new(),
                        payload: Bytes::new(),
                    })
                    .collect(),
                holds_state: msgs % 2 == 0,
                rejoin: rejoin.map(|(inc, state)| Rejoin {
                    new: MemberId::new(from.node.0, u64::from(inc % 3) + 1),
                    state,
                }),
            },
            FuzzMsg::Preempted { view, round, coord } => {
                Msg::Preempted { view: v(view), ballot: ballot(round, member(coord)) }
            }
            FuzzMsg::Accept { view, round, members, cut } => Msg::Accept {
                view: v(view),
                ballot: ballot(round, from),
                proposal: proposal(view, view.wrapping_add(1), &members, cut),
                msgs: Vec::new(),
            },
            FuzzMsg::Accepted { view, round } => {
                Msg::Accepted { view: v(view), ballot: ballot(round, MemberId::new(0, 0)) }
            }
            FuzzMsg::Install { prev, next, members, cut } => {
                Msg::Install { proposal: proposal(prev, next, &members, cut), msgs: Vec::new() }
            }
            FuzzMsg::InstallReq { have } => Msg::InstallReq { have: v(have) },
            FuzzMsg::NotMember { view, newest, wild } => {
                Msg::NotMember { view: v(view), newest: Incarnation(if wild { newest } else { newest % 4 }) }
            }
            FuzzMsg::StateChunk { view, offset, len, last, wild } => Msg::StateChunk {
                view: v(view),
                offset: if wild { offset } else { offset % 1024 },
                data: Bytes::from(vec![3u8; usize::from(len)]),
                last,
            },
            FuzzMsg::StateAck { view, offset, done } => {
                Msg::StateAck { view: v(view), offset: offset % 1024, done }
            }
            FuzzMsg::Frag { id, index, count, len, whole, inner } => {
                let (index, count) = (u32::from(index), u32::from(count));
                if !whole {
                    return Msg::Frag {
                        id: u64::from(id),
                        index,
                        count,
                        data: Bytes::from(vec![7u8; usize::from(len)]),
                    };
                }
                // A real piece of a real frame: in few pieces, so that whole frames come together.
                let frame = chorus_core::wire::encode(&chorus_core::wire::FrameBody {
                    from,
                    to: None,
                    msgs: vec![to_msg(*inner, from)],
                });
                let count = (count % 3).max(1);
                let index = index % count;
                let piece = frame.len().div_ceil(count as usize).max(1);
                let at = |i: u32| (i as usize * piece).min(frame.len());
                Msg::Frag { id: u64::from(id % 4), index, count, data: frame.slice(at(index)..at(index + 1)) }
            }
        }
    }

    /// A node that is member 0 of view 2 = {0, 1, 2}: bootstrap, then let 1 and 2 join.
    fn setup(now: Instant) -> Node {
        let mut c = Config::new(NodeId(0), Incarnation(0));
        c.bootstrap = true;
        c.state_transfer = true;
        c.new_group = GroupId(OUR_GROUP);
        let mut node = match Node::new(c, now) {
            Ok(n) => n,
            Err(_) => unreachable!("default config is valid"),
        };
        for j in [1u64, 2] {
            let join = FrameBody {
                from: MemberId::new(j, 0),
                to: None,
                msgs: vec![Msg::Join { joiner: MemberId::new(j, 0), group: None, founding: false }],
            };
            let _ = node.handle_frame(now, NodeId(j), &wire::encode(&join));
        }
        node
    }

    pub(crate) fn run(inputs: Vec<Input>) {
        let mut now = Instant::from_nanos(1_000_000_000);
        let mut node = setup(now);
        let mut asked = None;
        for input in inputs.into_iter().take(64) {
            match input {
                Input::Raw { from, bytes } => {
                    let _ = node.handle_frame(now, NodeId(u64::from(from % 5)), &bytes);
                }
                Input::Msg { from, inc, to_me, msg } => {
                    let sender = MemberId::new(u64::from(from % 5), u64::from(inc % 2));
                    let to = to_me.then(|| node.member_id());
                    let body = FrameBody { from: sender, to, msgs: vec![to_msg(msg, sender)] };
                    let _ = node.handle_frame(now, sender.node, &wire::encode(&body));
                }
                Input::Tick { ms } => {
                    now = now + Duration::from_millis(u64::from(ms % 2000));
                    node.handle_timeout(now);
                }
                Input::Multicast { len } => {
                    let order = chorus_core::Order::ALL[usize::from(len % 4)];
                    let _ = node.multicast_ordered(now, Bytes::from(vec![1u8; usize::from(len)]), order);
                }
                Input::Leave => node.leave(now),
                Input::Checkpoint { len, finish } => {
                    if let Some(view) = asked {
                        let _ = if finish {
                            node.finish_checkpoint(view)
                        } else {
                            node.write_checkpoint(view, Bytes::from(vec![5u8; usize::from(len)]))
                        };
                    }
                }
            }
            while node.poll_transmit().is_some() {}
            while let Some(ev) = node.poll_event() {
                if let chorus_core::Event::CheckpointRequest { view, .. } = ev {
                    asked = Some(view);
                }
            }
            while node.poll_transmit().is_some() {}
        }
    }
}
