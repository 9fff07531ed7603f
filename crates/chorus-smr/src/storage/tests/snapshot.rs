//! Snapshots over the simulated disk: streaming both ways, crashes, damage, cleanup.

use std::io::{Read, Write};

use super::super::{latest_snapshot, SnapshotInfo, SnapshotReader, SnapshotWriter, StorageError};
use super::*;

/// A body of `len` bytes that is not periodic at any small stride.
fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut next = rng(seed);
    (0..len).map(|_| next() as u8).collect()
}

/// Writes `data` as the snapshot at `pos`, in pieces of varying size.
fn write_snapshot(sim: &SimDir, pos: u64, data: &[u8]) -> SnapshotInfo {
    let mut w = SnapshotWriter::create(handle(sim), pos).unwrap();
    for (i, piece) in data.chunks(1 + 997 * (pos as usize % 7 + 1)).enumerate() {
        if i % 2 == 0 {
            w.write_all(piece).unwrap();
        } else {
            // Pieces of odd sizes through write(), which may take part of them.
            let mut rest = piece;
            while !rest.is_empty() {
                let n = w.write(rest).unwrap();
                rest = &rest[n..];
            }
        }
    }
    assert_eq!(w.body_len(), data.len() as u64);
    w.finish().unwrap()
}

/// Reads the body in 777-byte reads.
fn read_body(sim: &SimDir, info: &SnapshotInfo) -> Result<Vec<u8>, StorageError> {
    let mut r = SnapshotReader::open(sim, info)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 777];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(StorageError::from_read(&info.name, e)),
        }
    }
}

#[test]
fn round_trip_in_pieces() {
    let sim = SimDir::new();
    assert_eq!(latest_snapshot(&sim).unwrap(), None);
    let data = body(300_000, 1);
    let info = write_snapshot(&sim, 10, &data);
    assert_eq!(info, SnapshotInfo { pos: 10, name: "snap-00000000000000000010.snap".into(), size: 300_040 });
    assert_eq!(latest_snapshot(&sim).unwrap(), Some(info.clone()));
    assert_eq!(read_body(&sim, &info).unwrap(), data);
    let mut r = SnapshotReader::open(&sim, &info).unwrap();
    assert_eq!((r.pos(), r.body_len()), (10, 300_000));
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    assert_eq!(all, data);
    SnapshotReader::verify_all(&sim, &info).unwrap();
    assert_eq!(sim.files(), vec![info.name]);
}

#[test]
fn empty_body_round_trip() {
    let sim = SimDir::new();
    let info = write_snapshot(&sim, 1, &[]);
    assert_eq!(read_body(&sim, &info).unwrap(), Vec::<u8>::new());
    SnapshotReader::verify_all(&sim, &info).unwrap();
}

#[test]
fn older_snapshots_are_removed() {
    let sim = SimDir::new();
    write_snapshot(&sim, 10, &body(100, 1));
    write_snapshot(&sim, 20, &body(100, 2));
    let info = write_snapshot(&sim, 30, &body(100, 3));
    assert_eq!(sim.files(), vec![info.name.clone()]);
    assert_eq!(latest_snapshot(&sim).unwrap(), Some(info));
}

#[test]
fn crash_before_finish_keeps_the_previous_snapshot() {
    let sim = SimDir::new();
    let old = body(5000, 1);
    let info = write_snapshot(&sim, 10, &old);
    let mut w = SnapshotWriter::create(handle(&sim), 20).unwrap();
    w.write_all(&body(200_000, 2)).unwrap();
    sim.crash(&mut rng(7));
    drop(w);
    assert!(sim.files().contains(&"snap-00000000000000000020.tmp".to_owned()));
    assert_eq!(latest_snapshot(&sim).unwrap(), Some(info.clone()), "the tmp file is ignored");
    assert_eq!(read_body(&sim, &info).unwrap(), old);

    let new = write_snapshot(&sim, 30, &body(10, 3));
    assert_eq!(sim.files(), vec![new.name], "the leftover tmp and the older snapshot are gone");
}

#[test]
fn abort_removes_the_tmp_file() {
    let sim = SimDir::new();
    let info = write_snapshot(&sim, 10, b"old");
    let mut w = SnapshotWriter::create(handle(&sim), 20).unwrap();
    w.write_all(b"partial").unwrap();
    w.abort().unwrap();
    assert_eq!(sim.files(), vec![info.name.clone()]);
    assert_eq!(latest_snapshot(&sim).unwrap(), Some(info));
}

#[test]
fn a_failed_write_is_never_finished() {
    let sim = SimDir::new();
    let info = write_snapshot(&sim, 10, b"old");
    sim.set_capacity(Some(sim.used() + 100_000));
    let mut w = SnapshotWriter::create(handle(&sim), 20).unwrap();
    let err = w.write_all(&body(200_000, 1)).unwrap_err();
    let err = StorageError::from_read("?", err);
    assert!(err.is_disk_full() && err.to_string().contains("snap-00000000000000000020.tmp"), "{err}");
    // Even if the caller writes on and finishes, no snapshot with a hole appears.
    sim.set_capacity(None);
    assert!(w.write_all(b"more").is_err());
    let err = w.finish().unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(sim.files(), vec![info.name.clone()], "tmp removed");
    assert_eq!(latest_snapshot(&sim).unwrap(), Some(info));
}

#[test]
fn flipped_bit_in_the_body_is_corrupt() {
    let sim = SimDir::new();
    let data = body(100_000, 1);
    let info = write_snapshot(&sim, 10, &data);
    sim.flip_bit(&info.name, 20 + 54_321, 4).unwrap();
    let err = read_body(&sim, &info).unwrap_err();
    match &err {
        StorageError::Corrupt { file, offset, why } => {
            assert_eq!((file, *offset), (&info.name, 20));
            assert!(why.contains("checksum"), "{why}");
        }
        e => panic!("expected Corrupt, got {e}"),
    }
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(matches!(SnapshotReader::verify_all(&sim, &info), Err(StorageError::Corrupt { .. })));
    // A caller that reads exactly the body's length, and no further, learns of it too.
    let mut r = SnapshotReader::open(&sim, &info).unwrap();
    let mut exact = vec![0u8; data.len()];
    assert!(r.read_exact(&mut exact).is_err());
    assert!(r.read(&mut [0; 10]).is_err(), "and it stays failed");
}

#[test]
fn damaged_header_or_trailer_is_corrupt() {
    let sim = SimDir::new();
    let info = write_snapshot(&sim, 10, &body(1000, 1));
    // Magic, version, position; then the trailer's length, checksum, end magic.
    for at in [0u64, 9, 13, 1020, 1029, 1035] {
        sim.flip_bit(&info.name, at, 0).unwrap();
        let r = SnapshotReader::verify_all(&sim, &info);
        assert!(matches!(r, Err(StorageError::Corrupt { .. })), "byte {at}: {r:?}");
        sim.flip_bit(&info.name, at, 0).unwrap();
    }
    SnapshotReader::verify_all(&sim, &info).unwrap();
    let other = SnapshotInfo { pos: 11, ..info };
    assert!(matches!(SnapshotReader::open(&sim, &other), Err(StorageError::Corrupt { offset: 12, .. })));
}

#[test]
fn truncated_file_is_corrupt() {
    let sim = SimDir::new();
    let data = body(50_000, 1);
    let info = write_snapshot(&sim, 10, &data);
    for len in [info.size - 1, info.size - 25, 30_000] {
        sim.truncate(&info.name, len).unwrap();
        let err = read_body(&sim, &info).unwrap_err();
        assert!(matches!(&err, StorageError::Corrupt { file, .. } if *file == info.name), "{len}: {err}");
    }
    sim.truncate(&info.name, 10).unwrap();
    assert!(matches!(SnapshotReader::open(&sim, &info), Err(StorageError::Corrupt { offset: 0, .. })));
}
