//! The simulated disk itself: what survives a crash, capacity, handles.

use std::io::{self, Read, Write};

use super::*;

fn write(sim: &SimDir, name: &str, synced: &[u8], unsynced: &[u8]) -> Box<dyn super::super::DirFile> {
    let mut f = sim.create(name).unwrap();
    f.write_all(synced).unwrap();
    f.sync().unwrap();
    f.write_all(unsynced).unwrap();
    f
}

#[test]
fn crash_keeps_synced_bytes_and_a_prefix_of_the_rest() {
    let sim = SimDir::new();
    let _a = write(&sim, "a", b"abc", b"defgh");
    let _b = write(&sim, "b", b"", b"xyz");
    assert_eq!(sim.contents("a").unwrap(), b"abcdefgh");
    let mut draws = vec![2u64, 100].into_iter();
    // 2 % 6 = 2 bytes of a's 5 survive; 100 % 4 = 0 of b's 3.
    sim.crash(&mut || draws.next().unwrap());
    assert_eq!(sim.contents("a").unwrap(), b"abcde");
    assert_eq!(sim.contents("b").unwrap(), b"");
    assert_eq!((sim.unsynced_len("a"), sim.syncs()), (Some(0), 2));
}

#[test]
fn crash_is_deterministic() {
    let run = |seed| {
        let sim = SimDir::new();
        let _files: Vec<_> = (0..5).map(|i| write(&sim, &format!("f{i}"), b"12", &[7; 50])).collect();
        sim.crash(&mut rng(seed));
        sim.files().iter().map(|f| sim.contents(f).unwrap().len()).collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn handles_opened_before_a_crash_are_dead() {
    let sim = SimDir::new();
    let mut w = write(&sim, "a", b"abc", b"");
    let mut r = sim.open_read("a").unwrap();
    sim.crash(&mut || 0);
    assert!(w.write_all(b"x").is_err());
    assert!(w.sync().is_err());
    assert!(r.read(&mut [0; 4]).is_err());
    assert_eq!(sim.contents("a").unwrap(), b"abc");
    let mut w = sim.open_append("a").unwrap();
    w.write_all(b"d").unwrap();
    let mut s = String::new();
    sim.open_read("a").unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "abcd");
}

#[test]
fn capacity_refuses_whole_writes() {
    let sim = SimDir::new();
    let mut w = write(&sim, "a", b"12345", b"");
    sim.set_capacity(Some(8));
    let err = w.write(b"6789").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(sim.contents("a").unwrap(), b"12345", "nothing written");
    w.write_all(b"678").unwrap();
    assert!(sim.set_len("a", 9).is_err());
    sim.set_capacity(None);
    sim.set_len("a", 10).unwrap();
    assert_eq!(sim.contents("a").unwrap(), b"12345678\0\0");
    assert_eq!(sim.unsynced_len("a"), Some(0), "set_len is durable");
}

#[test]
fn rename_remove_create_and_names() {
    let sim = SimDir::new();
    let mut w = write(&sim, "a", b"old", b"");
    let _b = write(&sim, "b", b"gone", b"");
    sim.rename("a", "b").unwrap();
    // The handle follows its file.
    w.write_all(b"+").unwrap();
    assert_eq!((sim.files(), sim.contents("b").unwrap()), (vec!["b".to_owned()], b"old+".to_vec()));
    let _c = sim.create("b").unwrap();
    assert_eq!(sim.contents("b").unwrap(), b"", "create truncates");
    sim.remove("b").unwrap();
    assert!(sim.files().is_empty());
    assert_eq!(sim.remove("b").unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(sim.len("b").unwrap_err().kind(), io::ErrorKind::NotFound);
    for bad in ["", ".", "..", "../x", "a/b"] {
        assert_eq!(sim.create(bad).err().map(|e| e.kind()), Some(io::ErrorKind::InvalidInput), "{bad:?}");
    }
}

#[test]
fn damage_helpers() {
    let sim = SimDir::new();
    let _w = write(&sim, "a", b"\x00\x00", b"\x00");
    sim.flip_bit("a", 0, 1).unwrap();
    sim.flip_bit("a", 2, 7).unwrap();
    assert_eq!(sim.contents("a").unwrap(), b"\x02\x00\x80");
    assert!(sim.flip_bit("a", 3, 0).is_err());
    sim.truncate("a", 1).unwrap();
    assert_eq!(sim.contents("a").unwrap(), b"\x02");
}
