//! The core stays sans-IO and deterministic (STYLE §7.2 rule 1). clippy.toml forbids the
//! methods and types; this test pins the dependency list and catches what clippy cannot see
//! (a new dependency that brings a runtime, or I/O hidden behind a path clippy does not know).

use std::fs;
use std::path::Path;

const ALLOWED_DEPS: &[&str] = &["bytes", "serde", "postcard", "thiserror"];
const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net",
    "std::fs",
    "std::thread",
    "std::process",
    "Instant::now",
    "SystemTime",
    "HashMap",
    "HashSet",
    "rand::",
    "getrandom",
];

#[test]
fn dependencies_are_the_allowed_few() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    for line in deps.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name = line.split(['=', '.', ' ']).next().unwrap();
        assert!(ALLOWED_DEPS.contains(&name), "chorus-core must not depend on `{name}` (sans-IO core)");
    }
}

#[test]
fn sources_do_no_io_and_read_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for word in FORBIDDEN {
                assert!(!code.contains(word), "{}:{}: `{word}` in the sans-IO core", path.display(), i + 1);
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "expected the core's sources in {}", src.display());
}
