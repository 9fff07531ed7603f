//! Space-time diagrams of traces: one time line per process life, views as bands, multicasts as
//! arrows from the send to each delivery (coloured by ordering), the flush and the install
//! marked, state transfer from the donor to each joiner, suspicions, crashes, pauses, exclusions
//! and departures. `chorus trace svg` writes one from any trace (real nodes' merged traces, or
//! the simulator's).
//!
//! Time runs left to right in **event order**, not to scale: every distinct timestamp gets one
//! step, so that a burst of a few microseconds and a pause of seconds are both readable. A
//! window (`Window`) cuts a long run down to a time range or to one view change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::trace::{Ev, Order, Proc, TraceEvent};

/// Which part of a run to draw.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Events at or after this time (the trace's nanoseconds).
    pub from: Option<u64>,
    /// Events at or before this time.
    pub to: Option<u64>,
    /// Only the change to this view: from the first sign of it (a suspicion or a flush after the
    /// previous view's first install) to the last state loaded in it.
    pub view: Option<u64>,
}

/// Why a diagram cannot be drawn.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SvgError {
    /// Nothing of the trace is in the window.
    #[error("no event of the trace falls in the window (from {from:?}, to {to:?}, view {view:?})")]
    Empty {
        /// The window's start.
        from: Option<u64>,
        /// Its end.
        to: Option<u64>,
        /// The view asked for.
        view: Option<u64>,
    },
    /// The view asked for is installed nowhere in the trace.
    #[error("view {0} is installed nowhere in the trace")]
    NoSuchView(u64),
}

const LANE: f64 = 46.0;
const TOP: f64 = 56.0;
const LEFT: f64 = 150.0;

fn colour(o: Order) -> &'static str {
    match o {
        Order::Fifo => "#8a8a8a",
        Order::Causal => "#2e8b57",
        Order::Total => "#1f5fbf",
        Order::Safe => "#8e3fbf",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The window's bounds, in the trace's time.
fn bounds(events: &[TraceEvent], w: &Window) -> Result<(u64, u64), SvgError> {
    let (mut from, mut to) = (w.from.unwrap_or(0), w.to.unwrap_or(u64::MAX));
    if let Some(v) = w.view {
        let installs =
            |id: u64| events.iter().filter(move |e| matches!(e.ev, Ev::Install { view, .. } if view == id));
        let first = installs(v).map(|e| e.t).min().ok_or(SvgError::NoSuchView(v))?;
        let last = installs(v).map(|e| e.t).max().unwrap_or(first);
        let prev = events
            .iter()
            .filter_map(|e| match e.ev {
                Ev::Install { view, .. } if view < v && e.t <= first => Some(e.t),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        // The first suspicion or flush after the previous view was installed.
        let sign = events
            .iter()
            .filter(|e| e.t >= prev && e.t <= first)
            .filter(|e| matches!(e.ev, Ev::Suspect { .. } | Ev::Blocked { .. } | Ev::Crash | Ev::Left))
            .map(|e| e.t)
            .min()
            .unwrap_or(first);
        let loaded = events
            .iter()
            .filter(|e| matches!(e.ev, Ev::StateLoaded { view, .. } if view == v))
            .map(|e| e.t)
            .max()
            .unwrap_or(last);
        // A few steps either side, so that what led to it and what followed show.
        let times: BTreeSet<u64> = events.iter().map(|e| e.t).collect();
        let before = times.range(..sign).rev().nth(6).copied().unwrap_or(sign);
        let after = times.range(loaded.max(last)..).nth(8).copied().unwrap_or(loaded.max(last));
        from = from.max(before);
        to = to.min(after);
    }
    if events.iter().any(|e| e.t >= from && e.t <= to) {
        Ok((from, to))
    } else {
        Err(SvgError::Empty { from: w.from, to: w.to, view: w.view })
    }
}

/// Draws `events` (one trace, or several merged by time) as an SVG document.
pub fn render(events: &[TraceEvent], w: &Window) -> Result<String, SvgError> {
    let (from, to) = bounds(events, w)?;
    let shown: Vec<&TraceEvent> = events.iter().filter(|e| e.t >= from && e.t <= to).collect();
    // Lanes: every process life seen, by node then incarnation; lives numbered per node.
    let mut procs: BTreeSet<Proc> = BTreeSet::new();
    for e in &shown {
        if let Some(p) = e.p {
            procs.insert(p);
        }
        if let Ev::Install { members, .. } = &e.ev {
            procs.extend(members.iter().copied());
        }
    }
    let mut lives: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for e in events {
        if let Some(p) = e.p {
            let l = lives.entry(p.node).or_default();
            if !l.contains(&p.inc) {
                l.push(p.inc);
            }
        }
    }
    let lane: HashMap<Proc, usize> = procs.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let y = |p: &Proc| TOP + LANE * lane.get(p).copied().unwrap_or(0) as f64 + LANE / 2.0;
    // Time: one step per distinct timestamp.
    let times: Vec<u64> = shown.iter().map(|e| e.t).collect::<BTreeSet<_>>().into_iter().collect();
    let step = (1100.0 / times.len().max(1) as f64).clamp(5.0, 28.0);
    let xi: HashMap<u64, usize> = times.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let x = |t: u64| LEFT + 20.0 + step * xi.get(&t).copied().unwrap_or(0) as f64;
    let right = LEFT + 40.0 + step * times.len() as f64;
    let width = right + 30.0;
    let height = TOP + LANE * procs.len() as f64 + 70.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker><pattern id="loading" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="6" fill="#e0a030"/></pattern></defs>"##
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);

    // View bands: from a view's first install to the next view's first install.
    let mut first_install: BTreeMap<u64, (u64, Vec<Proc>)> = BTreeMap::new();
    for e in &shown {
        if let Ev::Install { view, members, .. } = &e.ev {
            first_install.entry(*view).or_insert((e.t, members.clone()));
        }
    }
    // The view in force when the window opens gets its band from the left edge.
    let before = events
        .iter()
        .filter(|e| e.t < from)
        .filter_map(|e| match &e.ev {
            Ev::Install { view, members, .. } if !first_install.contains_key(view) => {
                Some((*view, members.clone()))
            }
            _ => None,
        })
        .max_by_key(|(v, _)| *v);
    let mut ordered: Vec<(u64, u64, Vec<Proc>)> =
        first_install.into_iter().map(|(v, (t, m))| (v, t, m)).collect();
    ordered.sort_by_key(|(_, t, _)| *t);
    if let (Some((v, members)), Some(first)) = (before, times.first()) {
        ordered.insert(0, (v, *first, members));
    }
    for (k, (v, t, members)) in ordered.iter().enumerate() {
        let x0 = x(*t);
        let x1 = ordered.get(k + 1).map_or(right, |(_, t1, _)| x(*t1));
        let fill = if k % 2 == 0 { "#eef3fb" } else { "#f6f0fb" };
        let names: Vec<String> = members.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>view {v}: {}</title></rect>"#,
            TOP - 6.0,
            (x1 - x0).max(1.0),
            LANE * procs.len() as f64 + 12.0,
            esc(&names.join(", "))
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#44546a">view {v}</text>"##,
            x0 + 3.0,
            TOP - 12.0
        );
    }

    // Lanes: labels and life lines.
    let mut span: HashMap<Proc, (u64, u64, Option<&'static str>)> = HashMap::new();
    for e in &shown {
        if let Some(p) = e.p {
            let end = match e.ev {
                Ev::Crash => Some("crash"),
                Ev::Excluded => Some("excluded"),
                Ev::Left => Some("left"),
                _ => None,
            };
            let sp = span.entry(p).or_insert((e.t, e.t, None));
            sp.1 = e.t;
            if end.is_some() {
                sp.2 = end;
            }
        }
    }
    for p in &procs {
        let life = lives.get(&p.node).and_then(|l| l.iter().position(|i| *i == p.inc)).map_or(1, |i| i + 1);
        let yy = y(p);
        let _ = writeln!(
            s,
            r##"<text x="10" y="{:.1}" font-weight="bold">n{} <tspan font-weight="normal" fill="#666">life {life}</tspan><title>{p} (incarnation {})</title></text>"##,
            yy + 4.0,
            p.node,
            p.inc
        );
        let (x0, x1, end) = match span.get(p) {
            Some((a, b, end)) => (x(*a), if end.is_some() { x(*b) } else { right }, *end),
            None => (LEFT + 10.0, right, None),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x0:.1}" y1="{yy:.1}" x2="{x1:.1}" y2="{yy:.1}" stroke="#333" stroke-width="1.5"/>"##
        );
        if let Some(what) = end {
            if what == "crash" {
                let _ = writeln!(
                    s,
                    r##"<path d="M{:.1},{:.1} l8,8 m0,-8 l-8,8" stroke="#c00" stroke-width="2"><title>{p} crashed</title></path>"##,
                    x1 - 4.0,
                    yy - 4.0
                );
            } else {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" fill="#c00">{what}</text>"##,
                    x1 + 3.0,
                    yy + 4.0
                );
            }
        }
    }

    // Messages: from the send to each delivery.
    let mut sends: HashMap<(Proc, u64, u64), u64> = HashMap::new();
    for e in &shown {
        if let (Some(p), Ev::Send { view, seq, .. }) = (e.p, &e.ev) {
            sends.insert((p, *view, *seq), e.t);
        }
    }
    for e in &shown {
        if let (Some(p), Ev::Deliver { sender, view, seq, order, .. }) = (e.p, &e.ev) {
            let c = colour(*order);
            let (x1, y1) = (x(e.t), y(&p));
            match sends.get(&(*sender, *view, *seq)) {
                Some(&ts) if *sender != p => {
                    let _ = writeln!(
                        s,
                        r#"<line x1="{:.1}" y1="{:.1}" x2="{x1:.1}" y2="{y1:.1}" stroke="{c}" stroke-width="1" marker-end="url(#arrow)" opacity="0.8"><title>{order:?} {sender} #{seq} (view {view}) delivered at {p}</title></line>"#,
                        x(ts),
                        y(sender),
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{x1:.1}" cy="{y1:.1}" r="2.2" fill="{c}"><title>{p} delivers {order:?} {sender} #{seq} (view {view})</title></circle>"#
                    );
                }
            }
        }
    }
    for e in &shown {
        let Some(p) = e.p else { continue };
        let (xx, yy) = (x(e.t), y(&p));
        match &e.ev {
            Ev::Send { view, seq, order, .. } => {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{xx:.1}" cy="{yy:.1}" r="3" fill="{}"><title>{p} sends {order:?} #{seq} in view {view}</title></circle>"#,
                    colour(*order)
                );
            }
            Ev::Install { view, members, loading, .. } => {
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{:.1}" width="6" height="18" fill="#44546a"><title>{p} installs view {view}: {} member(s){}</title></rect>"##,
                    xx - 3.0,
                    yy - 9.0,
                    members.len(),
                    if loading.is_empty() {
                        String::new()
                    } else {
                        format!(", {} loading the state", loading.len())
                    }
                );
                // State transfer: the donor is the oldest member not loading.
                if loading.contains(&p) {
                    let donor = members.iter().find(|m| !loading.contains(m));
                    let loaded = shown.iter().find(|f| {
                        f.p == Some(p)
                            && f.t >= e.t
                            && matches!(f.ev, Ev::StateLoaded { view: lv, .. } if lv == *view)
                    });
                    if let Some(done) = loaded {
                        let _ = writeln!(
                            s,
                            r#"<rect x="{xx:.1}" y="{:.1}" width="{:.1}" height="8" fill="url(#loading)"><title>{p} loads the state for view {view}</title></rect>"#,
                            yy - 4.0,
                            (x(done.t) - xx).max(2.0)
                        );
                        if let Some(d) = donor {
                            let dt = shown
                                .iter()
                                .find(|f| {
                                    f.p == Some(*d)
                                        && matches!(f.ev, Ev::Install { view: dv, .. } if dv == *view)
                                })
                                .map_or(e.t, |f| f.t);
                            let _ = writeln!(
                                s,
                                r##"<path d="M{:.1},{:.1} L{:.1},{:.1}" stroke="#d08000" stroke-width="2.5" stroke-dasharray="6,3" fill="none" marker-end="url(#arrow)"><title>state transfer for view {view}: {d} to {p}</title></path>"##,
                                x(dt),
                                y(d),
                                x(done.t),
                                yy
                            );
                        }
                    }
                }
            }
            Ev::StateLoaded { view, applied, .. } => {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{xx:.1}" cy="{yy:.1}" r="5" fill="none" stroke="#d08000" stroke-width="2"><title>{p} loaded the state of view {view} ({applied} applied)</title></circle>"##
                );
            }
            Ev::Suspect { member } => {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" fill="#c00" font-weight="bold">?<title>{p} suspects {member}</title></text>"##,
                    xx - 3.0,
                    yy - 8.0
                );
            }
            Ev::Blocked { reason } => {
                let (label, c) = if reason == "flush" { ("flush", "#e07b00") } else { ("no quorum", "#c00") };
                let _ = writeln!(
                    s,
                    r#"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="{c}" stroke-width="3"><title>{p} blocks: {label}</title></line>"#,
                    yy - 12.0,
                    yy + 12.0
                );
            }
            Ev::Pause => {
                let resumed =
                    shown.iter().find(|f| f.p == Some(p) && f.t >= e.t && matches!(f.ev, Ev::Resume));
                let x1 = resumed.map_or(right, |f| x(f.t));
                let _ = writeln!(
                    s,
                    r##"<rect x="{xx:.1}" y="{:.1}" width="{:.1}" height="6" fill="#999" opacity="0.6"><title>{p} paused</title></rect>"##,
                    yy - 3.0,
                    (x1 - xx).max(2.0)
                );
            }
            Ev::Start { .. } => {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{xx:.1}" cy="{yy:.1}" r="4" fill="white" stroke="#333" stroke-width="1.5"><title>{p} starts</title></circle>"##
                );
            }
            _ => {}
        }
    }

    // Legend.
    let ly = height - 28.0;
    let mut lx = 10.0;
    for (name, c) in
        [("fifo", Order::Fifo), ("causal", Order::Causal), ("total", Order::Total), ("safe", Order::Safe)]
    {
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.0}" y1="{ly:.0}" x2="{:.0}" y2="{ly:.0}" stroke="{}" stroke-width="2" marker-end="url(#arrow)"/><text x="{:.0}" y="{:.0}">{name}</text>"#,
            lx + 24.0,
            colour(c),
            lx + 28.0,
            ly + 4.0
        );
        lx += 80.0;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{lx:.0}" y="{:.0}" width="6" height="14" fill="#44546a"/><text x="{:.0}" y="{:.0}">install</text><line x1="{:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}" stroke="#e07b00" stroke-width="3"/><text x="{:.0}" y="{:.0}">flush</text><path d="M{:.0},{ly:.0} l30,0" stroke="#d08000" stroke-width="2.5" stroke-dasharray="6,3" marker-end="url(#arrow)"/><text x="{:.0}" y="{:.0}">state transfer (donor to joiner; hatched: loading)</text><text x="{:.0}" y="{:.0}" fill="#c00" font-weight="bold">?</text><text x="{:.0}" y="{:.0}">suspicion</text>"##,
        ly - 7.0,
        lx + 10.0,
        ly + 4.0,
        lx + 60.0,
        ly - 8.0,
        lx + 60.0,
        ly + 8.0,
        lx + 66.0,
        ly + 4.0,
        lx + 110.0,
        lx + 146.0,
        ly + 4.0,
        lx + 440.0,
        ly + 4.0,
        lx + 452.0,
        ly + 4.0
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="{:.0}" fill="#666">time runs left to right in event order (not to scale): {} events, {} processes</text>"##,
        height - 8.0,
        shown.len(),
        procs.len()
    );
    s.push_str("</svg>\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(node: u64) -> Proc {
        Proc { node, inc: 0 }
    }

    fn ev(t: u64, who: u64, ev: Ev) -> TraceEvent {
        TraceEvent { t, p: Some(p(who)), ev }
    }

    fn run() -> Vec<TraceEvent> {
        let m12 = vec![p(1), p(2)];
        let m123 = vec![p(1), p(2), p(3)];
        vec![
            ev(1, 1, Ev::Install { view: 1, members: m12.clone(), loading: vec![], recovered: vec![] }),
            ev(1, 2, Ev::Install { view: 1, members: m12, loading: vec![], recovered: vec![] }),
            ev(2, 1, Ev::Send { view: 1, seq: 1, digest: 7, order: Order::Safe }),
            ev(3, 2, Ev::Deliver { sender: p(1), view: 1, seq: 1, digest: 7, order: Order::Safe }),
            ev(3, 1, Ev::Deliver { sender: p(1), view: 1, seq: 1, digest: 7, order: Order::Safe }),
            ev(4, 1, Ev::Blocked { reason: "flush".into() }),
            ev(5, 1, Ev::Install { view: 2, members: m123.clone(), loading: vec![p(3)], recovered: vec![] }),
            ev(5, 2, Ev::Install { view: 2, members: m123.clone(), loading: vec![p(3)], recovered: vec![] }),
            ev(6, 3, Ev::Install { view: 2, members: m123, loading: vec![p(3)], recovered: vec![] }),
            ev(8, 3, Ev::StateLoaded { view: 2, applied: 1, hash: 9 }),
            ev(9, 2, Ev::Crash),
        ]
    }

    #[test]
    fn a_view_change_with_a_transfer_is_drawn() {
        let svg = render(&run(), &Window::default()).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for want in [
            "view 1",
            "view 2",
            "Safe n1.0 #1 (view 1) delivered at n2.0",
            "n1.0 blocks: flush",
            "state transfer for view 2: n1.0 to n3.0",
            "n3.0 loads the state for view 2",
            "n2.0 crashed",
        ] {
            assert!(svg.contains(want), "missing {want:?} in\n{svg}");
        }
    }

    #[test]
    fn windows_cut_the_run() {
        let only_view_2 = render(&run(), &Window { view: Some(2), ..Window::default() }).unwrap();
        assert!(only_view_2.contains("state transfer for view 2"));
        assert_eq!(
            render(&run(), &Window { view: Some(9), ..Window::default() }),
            Err(SvgError::NoSuchView(9))
        );
        let early = render(&run(), &Window { to: Some(3), ..Window::default() }).unwrap();
        assert!(!early.contains("view 2") && early.contains("delivered at n2.0"));
        assert!(matches!(
            render(&run(), &Window { from: Some(100), ..Window::default() }),
            Err(SvgError::Empty { .. })
        ));
    }
}
