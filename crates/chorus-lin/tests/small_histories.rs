//! Tiny hand-made histories with known verdicts, the explanations, the budget, the parsers'
//! errors, and the `chorus-lin` binary's exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use chorus_lin::{
    check_history, edn, jepsen, jsonl, lost_appends, Budget, CheckOptions, Error, Exhausted, ModelKind,
    Partition, Verdict,
};

/// Builds JSONL from compact lines: `P invoke|ok|fail|info F KEY [VALUE]`, where VALUE is a
/// string, `nil`, or `[a,b]` for a list.
fn jl(lines: &str) -> String {
    let mut out = String::new();
    for l in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = l.split_whitespace().collect();
        let value = match parts.get(4) {
            None | Some(&"nil") => "null".to_owned(),
            Some(v) if v.starts_with('[') => {
                let inner = v.trim_start_matches('[').trim_end_matches(']');
                let items: Vec<String> =
                    inner.split(',').filter(|s| !s.is_empty()).map(|s| format!("{s:?}")).collect();
                format!("[{}]", items.join(","))
            }
            Some(v) => format!("{v:?}"),
        };
        out.push_str(&format!(
            "{{\"process\":{},\"type\":\"{}\",\"f\":\"{}\",\"key\":\"{}\",\"value\":{}}}\n",
            parts[0], parts[1], parts[2], parts[3], value
        ));
    }
    out
}

fn verdict(lines: &str) -> Verdict {
    let h = jsonl::parse(&jl(lines)).unwrap();
    check_history(&h, &CheckOptions::default()).unwrap().verdict()
}

#[test]
fn sequential_register() {
    assert_eq!(
        verdict(
            "1 invoke write x 1
             1 ok write x
             2 invoke read x
             2 ok read x 1"
        ),
        Verdict::Linearizable
    );
}

#[test]
fn initial_read_is_nil() {
    assert_eq!(verdict("1 invoke read x\n1 ok read x nil"), Verdict::Linearizable);
    assert_eq!(verdict("1 invoke read x\n1 ok read x 0"), Verdict::NotLinearizable);
}

#[test]
fn stale_read_is_not_linearizable() {
    assert_eq!(
        verdict(
            "1 invoke write x 1
             1 ok write x
             1 invoke write x 2
             1 ok write x
             2 invoke read x
             2 ok read x 1"
        ),
        Verdict::NotLinearizable
    );
}

#[test]
fn concurrent_read_may_see_old_or_new() {
    for seen in ["nil", "1"] {
        let h = format!(
            "1 invoke write x 1
             2 invoke read x
             2 ok read x {seen}
             1 ok write x"
        );
        assert_eq!(verdict(&h), Verdict::Linearizable, "read {seen}");
    }
}

#[test]
fn new_then_old_during_one_write_is_not_linearizable() {
    // Two reads in sequence, both concurrent with the write: the first sees the new value, the
    // second the old one.
    assert_eq!(
        verdict(
            "1 invoke write x 1
             2 invoke read x
             2 ok read x 1
             3 invoke read x
             3 ok read x nil
             1 ok write x"
        ),
        Verdict::NotLinearizable
    );
}

#[test]
fn unknown_write_can_explain_a_later_read() {
    assert_eq!(
        verdict(
            "1 invoke write x 1
             1 info write x
             2 invoke read x
             2 ok read x 1
             3 invoke read x
             3 ok read x 1"
        ),
        Verdict::Linearizable
    );
    // Never completed at all: the same.
    assert_eq!(
        verdict(
            "1 invoke write x 1
             2 invoke read x
             2 ok read x 1"
        ),
        Verdict::Linearizable
    );
}

#[test]
fn unknown_write_may_never_happen() {
    assert_eq!(
        verdict(
            "1 invoke write x 1
             1 info write x
             2 invoke read x
             2 ok read x nil"
        ),
        Verdict::Linearizable
    );
}

#[test]
fn unknown_write_cannot_explain_a_read_before_it() {
    assert_eq!(
        verdict(
            "2 invoke read x
             2 ok read x 1
             1 invoke write x 1
             1 info write x"
        ),
        Verdict::NotLinearizable
    );
}

#[test]
fn unknown_write_cannot_take_effect_twice() {
    // Once overwritten, the value of an unknown write cannot come back.
    assert_eq!(
        verdict(
            "1 invoke write x 1
             1 info write x
             2 invoke read x
             2 ok read x 1
             2 invoke write x 2
             2 ok write x
             3 invoke read x
             3 ok read x 1"
        ),
        Verdict::NotLinearizable
    );
}

#[test]
fn failed_write_did_not_happen() {
    assert_eq!(
        verdict(
            "1 invoke write x 1
             1 fail write x
             2 invoke read x
             2 ok read x 1"
        ),
        Verdict::NotLinearizable
    );
}

#[test]
fn keys_are_independent() {
    assert_eq!(
        verdict(
            "1 invoke write x 1
             1 ok write x
             2 invoke read y
             2 ok read y nil
             2 invoke read x
             2 ok read x 1"
        ),
        Verdict::Linearizable
    );
}

#[test]
fn list_order_must_match_reads() {
    let base = "1 invoke append l a
                1 ok append l
                1 invoke append l b
                1 ok append l
                2 invoke read-list l";
    assert_eq!(verdict(&format!("{base}\n2 ok read-list l [a,b]")), Verdict::Linearizable);
    assert_eq!(verdict(&format!("{base}\n2 ok read-list l [b,a]")), Verdict::NotLinearizable);
    assert_eq!(verdict(&format!("{base}\n2 ok read-list l [a]")), Verdict::NotLinearizable);
}

#[test]
fn concurrent_appends_in_either_order() {
    for read in ["[a,b]", "[b,a]", "[a]", "[b]", "[]"] {
        let h = format!(
            "1 invoke append l a
             2 invoke append l b
             3 invoke read-list l
             3 ok read-list l {read}
             1 ok append l
             2 ok append l
             3 invoke read-list l
             3 ok read-list l [b,a]"
        );
        let want =
            if read == "[a,b]" || read == "[a]" { Verdict::NotLinearizable } else { Verdict::Linearizable };
        assert_eq!(verdict(&h), want, "first read {read}");
    }
}

#[test]
fn unknown_append_saves_or_not() {
    // Seen by a read: it happened.
    assert_eq!(
        verdict(
            "1 invoke append l a
             1 info append l
             2 invoke read-list l
             2 ok read-list l [a]"
        ),
        Verdict::Linearizable
    );
    // Not seen: it did not (or not yet).
    assert_eq!(
        verdict(
            "1 invoke append l a
             1 info append l
             2 invoke read-list l
             2 ok read-list l []"
        ),
        Verdict::Linearizable
    );
    // Seen, then gone: no.
    assert_eq!(
        verdict(
            "1 invoke append l a
             1 info append l
             2 invoke read-list l
             2 ok read-list l [a]
             2 invoke read-list l
             2 ok read-list l []"
        ),
        Verdict::NotLinearizable
    );
}

#[test]
fn lost_appends_are_reported_by_value() {
    let h = jsonl::parse(&jl("1 invoke append l a
         1 ok append l
         1 invoke append l b
         1 ok append l
         3 invoke append l c
         3 info append l
         2 invoke read-list l
         2 ok read-list l [a]
         4 invoke read-list m
         4 ok read-list m []
         4 invoke append m z
         4 ok append m"))
    .unwrap();
    let lost = lost_appends(&h);
    assert_eq!(lost.lost.len(), 1, "{lost:?}");
    assert_eq!(lost.lost[0].key, "l");
    assert_eq!(lost.lost[0].value, "b");
    assert_eq!(lost.keys_without_final_read, vec!["m".to_owned()]);
    assert_eq!(lost.final_reads, 1);
    assert!(lost.lost[0].to_string().contains("lost append \"b\""));
}

#[test]
fn violation_names_the_key_and_the_ops() {
    let h = jsonl::parse(&jl("1 invoke write x 1
         1 ok write x
         2 invoke write x 2
         3 invoke read x
         3 ok read x 1
         2 ok write x
         3 invoke read x
         3 ok read x 1"))
    .unwrap();
    let report = check_history(&h, &CheckOptions::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::NotLinearizable);
    let k = &report.keys[0];
    assert_eq!(k.key, "x");
    let v = k.violation.as_ref().unwrap();
    // The write of 2 (lines 3-6) cannot take effect: the register holds 1, which the last read
    // (lines 7-8) still has to return.
    assert_eq!((v.op.call, v.op.ret), (3, Some(6)), "{report}");
    assert_eq!(v.states, vec!["\"1\"".to_owned()], "{report}");
    assert_eq!(v.needed_by.len(), 1, "{report}");
    assert_eq!((v.needed_by[0].call, v.needed_by[0].ret), (7, Some(8)), "{report}");
    let text = report.to_string();
    assert!(text.contains("key \"x\""), "{text}");
    assert!(text.contains("past the completion of: p2 write \"2\" (line 3-6)"), "{text}");
    assert!(text.contains("need it:\n    p3 read -> \"1\" (line 7-8)"), "{text}");
}

#[test]
fn budget_gives_unknown() {
    // Many concurrent writes and a final read that no order explains.
    let mut lines = String::new();
    for p in 0..12 {
        lines.push_str(&format!("{p} invoke write x v{p}\n"));
    }
    for p in 0..12 {
        lines.push_str(&format!("{p} ok write x\n"));
    }
    lines.push_str("20 invoke read x\n20 ok read x v99\n");
    let h = jsonl::parse(&jl(&lines)).unwrap();
    let tiny =
        CheckOptions { budget: Budget { max_steps: 5, ..Budget::default() }, ..CheckOptions::default() };
    let r = check_history(&h, &tiny).unwrap();
    assert_eq!(r.verdict(), Verdict::Unknown);
    assert_eq!(r.keys[0].exhausted, Some(Exhausted::Steps));
    assert_eq!(check_history(&h, &CheckOptions::default()).unwrap().verdict(), Verdict::NotLinearizable);
}

#[test]
fn whole_agrees_with_per_key() {
    let text = jl("1 invoke write x 1
         2 invoke write y 2
         1 ok write x
         2 ok write y
         3 invoke read x
         3 ok read x 1
         3 invoke read y
         3 ok read y 2");
    let h = jsonl::parse(&text).unwrap();
    for partition in [Partition::PerKey, Partition::Whole] {
        let opts = CheckOptions { partition, ..CheckOptions::default() };
        assert_eq!(check_history(&h, &opts).unwrap().verdict(), Verdict::Linearizable);
    }
}

#[test]
fn jepsen_cas_register() {
    let log = "INFO  jepsen.util - 0\t:invoke\t:write\t1
INFO  jepsen.util - 0\t:ok\t:write\t1
INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]
INFO  jepsen.util - 1\t:ok\t:cas\t[1 2]
INFO  jepsen.util - 2\t:invoke\t:cas\t[1 3]
INFO  jepsen.util - 2\t:fail\t:cas\t[1 3]
INFO  jepsen.util - :nemesis\t:info\t:start\tnil
INFO  jepsen.util - 3\t:invoke\t:read\tnil
INFO  jepsen.util - 3\t:ok\t:read\t2
INFO  jepsen.util - 4\t:invoke\t:read\tnil
INFO  jepsen.util - 4\t:fail\t:read\t:timed-out
";
    let h = jepsen::parse(log).unwrap();
    assert_eq!(h.ops.len(), 4);
    let opts = CheckOptions { model: ModelKind::Cas, ..CheckOptions::default() };
    assert_eq!(check_history(&h, &opts).unwrap().verdict(), Verdict::Linearizable);
    // A cas that succeeds from a value the register does not hold: no.
    let bad = log.replace("[1 2]", "[5 2]");
    let h = jepsen::parse(&bad).unwrap();
    assert_eq!(check_history(&h, &opts).unwrap().verdict(), Verdict::NotLinearizable);
}

#[test]
fn edn_kv() {
    let text = r#"{:process 0, :type :invoke, :f :append, :key "k", :value "x"}
{:process 1, :type :invoke, :f :get, :key "k", :value nil}
{:process 0, :type :ok, :f :append, :key "k", :value "x"}
{:process 1, :type :ok, :f :get, :key "k", :value ""}
{:process 1, :type :invoke, :f :get, :key "k", :value nil}
{:process 1, :type :ok, :f :get, :key "k", :value "x"}
{:process 0, :type :invoke, :f :put, :key "k", :value "y"}
{:process 0, :type :ok, :f :put, :key "k", :value "y"}
{:process 0, :type :invoke, :f :append, :key "k", :value "z"}
{:process 0, :type :ok, :f :append, :key "k", :value "z"}
{:process 1, :type :invoke, :f :get, :key "k", :value nil}
{:process 1, :type :ok, :f :get, :key "k", :value "yz"}
"#;
    let h = edn::parse(text).unwrap();
    let opts = CheckOptions { model: ModelKind::Kv, ..CheckOptions::default() };
    assert_eq!(check_history(&h, &opts).unwrap().verdict(), Verdict::Linearizable);
    let bad = text.replace("\"yz\"", "\"xyz\"");
    let h = edn::parse(&bad).unwrap();
    assert_eq!(check_history(&h, &opts).unwrap().verdict(), Verdict::NotLinearizable);
}

#[test]
fn bad_input_is_a_typed_error() {
    let e = jsonl::parse("{\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\nnot json\n").unwrap_err();
    assert!(matches!(e, Error::Parse { line: 2, .. }), "{e}");
    let e = jsonl::parse(&jl("1 ok read x 1")).unwrap_err();
    assert!(matches!(e, Error::Pairing { line: 1, .. }), "{e}");
    let e = jsonl::parse(&jl("1 invoke read x\n1 invoke read x")).unwrap_err();
    assert!(matches!(e, Error::Pairing { line: 2, .. }), "{e}");
    let e = jsonl::parse(&jl("1 invoke read x\n1 ok write x 1")).unwrap_err();
    assert!(matches!(e, Error::Pairing { line: 2, .. }), "{e}");
    let e = jsonl::parse(&jl("1 invoke write x")).unwrap_err();
    assert!(matches!(e, Error::Parse { line: 1, .. }), "{e}");
    // Reads and appends on one key: the model cannot be chosen.
    let h =
        jsonl::parse(&jl("1 invoke read x\n1 ok read x nil\n1 invoke append x a\n1 ok append x")).unwrap();
    let e = check_history(&h, &CheckOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Model { .. }), "{e}");
    assert!(edn::parse("{:process 0, :type :invoke").is_err());
    assert!(jepsen::parse("INFO  jepsen.util - 0\t:frob\t:read\tnil").is_err());
}

#[test]
fn events_round_trip() {
    let text = jl("1 invoke append l a\n1 ok append l\n2 invoke read-list l\n2 ok read-list l [a]");
    let events: Vec<jsonl::Event> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut out = Vec::new();
    for e in &events {
        jsonl::write_event(&mut out, e).unwrap();
    }
    let again = jsonl::parse(std::str::from_utf8(&out).unwrap()).unwrap();
    assert_eq!(again, jsonl::parse(&text).unwrap());
    assert_eq!(again, jsonl::history_from_events(events).unwrap());
}

fn run_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus-lin")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn cli_exit_codes() {
    let dir = std::env::temp_dir().join(format!("chorus-lin-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.jsonl");
    let bad = dir.join("bad.jsonl");
    let lost = dir.join("lost.jsonl");
    let broken = dir.join("broken.jsonl");
    std::fs::write(&good, jl("1 invoke write x 1\n1 ok write x\n2 invoke read x\n2 ok read x 1")).unwrap();
    std::fs::write(&bad, jl("1 invoke write x 1\n1 ok write x\n2 invoke read x\n2 ok read x 2")).unwrap();
    // The final read misses an acknowledged append (not linearizable either).
    std::fs::write(
        &lost,
        jl("1 invoke append l a\n1 ok append l\n2 invoke read-list l\n2 ok read-list l []"),
    )
    .unwrap();
    std::fs::write(&broken, "{\"process\":1}\n").unwrap();
    let p = |f: &std::path::Path| f.to_str().unwrap().to_owned();

    let (code, out) = run_cli(&["check", &p(&good)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("key \"x\" (register): linearizable, 2 ops"), "{out}");

    let (code, out) = run_cli(&["check", &p(&good), &p(&bad)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT linearizable"), "{out}");

    let (code, out) = run_cli(&["check", &p(&lost)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lost append \"a\""), "{out}");

    let (code, out) = run_cli(&["check", &p(&broken)]);
    assert_eq!(code, 2, "{out}");

    let (code, out) = run_cli(&["check", &p(&good), "--max-steps", "0"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown"), "{out}");

    let (code, out) = run_cli(&["check", &p(&good), "--model", "list"]);
    assert_eq!(code, 2, "{out}");

    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/linearizability");
    let (code, out) = run_cli(&["check", &format!("{data}/jepsen-etcd/etcd_002.log")]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run_cli(&["check", &format!("{data}/kv/c10-bad.txt"), "--format", "edn"]);
    assert_eq!(code, 1, "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}
