//! `chorus trace svg`'s renderer on a simulated run: a seed with view changes, flushes and
//! state transfers gives a diagram that is well-formed SVG (xmllint, when installed: Debian's
//! libxml2-utils; `scripts/test.sh` installs it) and shows each of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use chorus_check::svg::{render, Window};
use chorus_check::trace::Ev;
use chorus_sim::{run_seed, Settings};

#[test]
fn a_seed_with_a_view_change_and_a_transfer_draws_as_valid_svg() {
    // Seed 3: five views with joiners, a whole-group crash and recoveries.
    let o = run_seed(3, Settings::traced(false));
    let trace = o.trace.expect("a kept trace");
    // A view whose change had a flush and a state transfer.
    let loaded: Vec<u64> = trace
        .iter()
        .filter_map(|e| match &e.ev {
            Ev::StateLoaded { view, .. } => Some(*view),
            _ => None,
        })
        .collect();
    let view = loaded
        .into_iter()
        .find(|v| {
            render(&trace, &Window { view: Some(*v), ..Window::default() })
                .is_ok_and(|s| s.contains("blocks: flush"))
        })
        .expect("seed 3 has a view change with a flush and a state transfer");
    for w in [Window::default(), Window { view: Some(view), ..Window::default() }] {
        let svg = render(&trace, &w).unwrap();
        assert!(svg.contains(&format!("view {view}")), "no band for view {view}");
        assert!(svg.contains(&format!("state transfer for view {view}")), "no transfer arrow");
        assert!(svg.contains("blocks: flush"), "no flush mark in {w:?}");
        assert!(svg.contains("delivered at"), "no message arrow");
        let path = std::env::temp_dir().join(format!("chorus-svg-test-{}-{view}.svg", std::process::id()));
        std::fs::write(&path, &svg).unwrap();
        match Command::new("xmllint").arg("--noout").arg(&path).output() {
            Ok(out) => assert!(out.status.success(), "xmllint: {}", String::from_utf8_lossy(&out.stderr)),
            Err(_) => {
                eprintln!("SKIP the xmllint part: xmllint is not installed (apt-get install libxml2-utils)")
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}
