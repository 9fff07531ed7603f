//! Small atomic files.

use super::super::{read_atomic, write_atomic, StorageError, MAX_ATOMIC};
use super::*;

#[test]
fn round_trip_overwrite_and_absent() {
    let sim = SimDir::new();
    assert_eq!(read_atomic(&sim, "identity").unwrap(), None);
    write_atomic(&sim, "identity", b"node 7").unwrap();
    assert_eq!(read_atomic(&sim, "identity").unwrap().as_deref(), Some(&b"node 7"[..]));
    write_atomic(&sim, "identity", b"").unwrap();
    assert_eq!(read_atomic(&sim, "identity").unwrap().as_deref(), Some(&b""[..]));
    assert_eq!(sim.files(), vec!["identity".to_owned()], "no tmp left");
    // Synced before the rename: a crash keeps it.
    write_atomic(&sim, "incarnation", &42u64.to_le_bytes()).unwrap();
    sim.crash(&mut || 0);
    assert_eq!(read_atomic(&sim, "incarnation").unwrap(), Some(42u64.to_le_bytes().to_vec()));
}

#[test]
fn a_leftover_tmp_is_ignored() {
    let sim = SimDir::new();
    write_atomic(&sim, "membership", b"v1").unwrap();
    let mut f = sim.create("membership.tmp").unwrap();
    std::io::Write::write_all(&mut f, b"half of v2").unwrap();
    sim.crash(&mut || 3);
    assert_eq!(read_atomic(&sim, "membership").unwrap().as_deref(), Some(&b"v1"[..]));
    write_atomic(&sim, "membership", b"v2").unwrap();
    assert_eq!(read_atomic(&sim, "membership").unwrap().as_deref(), Some(&b"v2"[..]));
}

#[test]
fn damage_is_corrupt_naming_the_file() {
    let sim = SimDir::new();
    write_atomic(&sim, "identity", b"node 7").unwrap();
    for (offset, bit) in [(18u64, 2u8), (0, 0), (8, 0), (13, 5)] {
        sim.flip_bit("identity", offset, bit).unwrap();
        let err = read_atomic(&sim, "identity").unwrap_err();
        assert!(matches!(&err, StorageError::Corrupt { file, .. } if file == "identity"), "{err}");
        assert!(err.to_string().contains("identity"), "{err}");
        sim.flip_bit("identity", offset, bit).unwrap();
    }
    sim.truncate("identity", 20).unwrap();
    assert!(matches!(read_atomic(&sim, "identity"), Err(StorageError::Corrupt { .. })));
    sim.truncate("identity", 5).unwrap();
    assert!(matches!(read_atomic(&sim, "identity"), Err(StorageError::Corrupt { .. })));
    // A file far larger than any atomic file is refused before it is read.
    sim.truncate("identity", (MAX_ATOMIC + 17) as u64).unwrap();
    let err = read_atomic(&sim, "identity").unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { offset: 0, why, .. } if why.contains("more than")),
        "{err}"
    );
}

#[test]
fn limits_and_reserved_names() {
    let sim = SimDir::new();
    let big = vec![0u8; MAX_ATOMIC + 1];
    assert!(matches!(write_atomic(&sim, "x", &big), Err(StorageError::TooLarge { .. })));
    write_atomic(&sim, "x", &big[1..]).unwrap();
    for bad in ["", "LOCK", "wal-1", "snap-x", "a.tmp", "a/b", ".hidden", "é"] {
        assert!(matches!(write_atomic(&sim, bad, b"x"), Err(StorageError::BadName { .. })), "{bad:?}");
        assert!(matches!(read_atomic(&sim, bad), Err(StorageError::BadName { .. })), "{bad:?}");
    }
}
