//! The write-ahead log over the simulated disk: recovery, damage, gaps, full disks.

use std::convert::Infallible;
use std::io::Write;

use super::super::wal::{segment_name, HEADER};
use super::super::{OpenError, OpenReport, StorageError, TornTail, Wal, WalOptions};
use super::*;

fn payload(pos: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| (pos as u8).wrapping_mul(31).wrapping_add(i as u8)).collect()
}

/// Small segments (five 100-byte records each) and no write buffer, so that every append
/// reaches the simulated file at once (unsynced).
fn small() -> WalOptions {
    WalOptions { segment_bytes: 500, max_record: 1 << 16, buffer_bytes: 0 }
}

type Records = Vec<(u64, Vec<u8>)>;

/// Opens the log, collecting what it hands out (also when it then fails).
fn open(
    sim: &SimDir,
    opts: WalOptions,
    after: u64,
    got: &mut Records,
) -> Result<(Wal, OpenReport), OpenError<Infallible>> {
    Wal::open(handle(sim), opts, after, |pos, p| {
        got.push((pos, p.to_vec()));
        Ok(())
    })
}

fn open_ok(sim: &SimDir, opts: WalOptions, after: u64) -> (Wal, OpenReport, Records) {
    let mut got = Vec::new();
    let (wal, report) = open(sim, opts, after, &mut got).unwrap();
    (wal, report, got)
}

fn open_err(sim: &SimDir, opts: WalOptions, after: u64) -> (StorageError, Records) {
    let mut got = Vec::new();
    match open(sim, opts, after, &mut got) {
        Ok(_) => panic!("the log opened, but it is damaged"),
        Err(OpenError::Storage(e)) => (e, got),
        Err(OpenError::Apply { source, .. }) => match source {},
    }
}

/// Appends `range` with 100-byte payloads and syncs.
fn fill(wal: &mut Wal, range: std::ops::RangeInclusive<u64>) {
    for pos in range {
        wal.append(pos, &payload(pos, 100)).unwrap();
    }
    wal.sync().unwrap();
}

fn expected(range: std::ops::RangeInclusive<u64>) -> Records {
    range.map(|pos| (pos, payload(pos, 100))).collect()
}

/// 30 records of 116 bytes in segments starting at 1, 6, 11, 16, 21, 26.
fn thirty() -> SimDir {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    fill(&mut wal, 1..=30);
    assert_eq!(wal.segments(), 6);
    sim
}

#[test]
fn round_trip_across_segments() {
    let sim = SimDir::new();
    let (mut wal, report, got) = open_ok(&sim, small(), 0);
    assert_eq!((report.last_pos, wal.last_pos(), wal.segments(), got.len()), (0, 0, 0, 0));
    let sizes = [0usize, 1, 300, 0, 5000, 17, 100, 0, 2000];
    for (i, &size) in sizes.iter().cycle().take(40).enumerate() {
        let pos = i as u64 + 1;
        wal.append(pos, &payload(pos, size)).unwrap();
    }
    wal.sync().unwrap();
    assert_eq!((wal.last_pos(), wal.synced_pos(), wal.first_pos()), (40, 40, Some(1)));
    assert!(wal.segments() > 5, "segments roll: {}", wal.segments());
    let bytes = wal.bytes();
    assert_eq!(bytes, sim.files().iter().map(|f| sim.contents(f).unwrap().len() as u64).sum::<u64>());
    drop(wal);

    let want: Records = sizes
        .iter()
        .cycle()
        .take(40)
        .enumerate()
        .map(|(i, &s)| (i as u64 + 1, payload(i as u64 + 1, s)))
        .collect();
    let (mut wal, report, got) = open_ok(&sim, small(), 0);
    assert_eq!(got, want);
    assert_eq!((report.replayed, report.last_pos, report.torn.clone()), (40, 40, None));
    assert_eq!(wal.bytes(), bytes);
    wal.append(41, b"more").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, _, got) = open_ok(&sim, small(), 0);
    assert_eq!(got.last(), Some(&(41, b"more".to_vec())));
}

#[test]
fn sync_is_one_fsync_per_batch() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, WalOptions::default(), 0);
    for pos in 1..=1000 {
        wal.append(pos, &payload(pos, 200)).unwrap();
    }
    let before = sim.syncs();
    wal.sync().unwrap();
    assert_eq!(sim.syncs() - before, 1, "a batch of 1000 records costs one fsync");
    wal.sync().unwrap();
    assert_eq!(sim.syncs() - before, 1, "nothing new: no fsync");
    wal.append(1001, b"x").unwrap();
    wal.sync().unwrap();
    assert_eq!(sim.syncs() - before, 2);
}

#[test]
fn appends_wait_in_memory_until_sync() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, WalOptions::default(), 0);
    for pos in 1..=100 {
        wal.append(pos, &payload(pos, 10)).unwrap();
    }
    let seg = segment_name(1);
    assert_eq!(sim.contents(&seg).unwrap().len(), 0, "no write per record");
    assert_eq!((wal.last_pos(), wal.synced_pos()), (100, 0));
    wal.sync().unwrap();
    assert_eq!(sim.contents(&seg).unwrap().len(), 100 * (HEADER + 10));
    assert_eq!(sim.unsynced_len(&seg), Some(0));
}

#[test]
fn torn_tail_is_cut_and_reported() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    fill(&mut wal, 1..=3);
    wal.append(4, &payload(4, 100)).unwrap();
    let seg = segment_name(1);
    assert_eq!(sim.unsynced_len(&seg), Some(116));
    // Half of record 4 reaches the disk: its header and 42 bytes of its payload.
    sim.crash(&mut || 58);
    assert!(wal.sync().is_err(), "a crashed process writes no more");
    drop(wal);

    let (mut wal, report, got) = open_ok(&sim, small(), 0);
    assert_eq!(got, expected(1..=3));
    assert_eq!(report.torn, Some(TornTail { file: seg.clone(), offset: 3 * 116, dropped: 58 }));
    assert_eq!(sim.contents(&seg).unwrap().len(), 3 * 116, "cut back to the last whole record");
    assert_eq!((wal.last_pos(), wal.synced_pos()), (3, 3));
    wal.append(4, b"again").unwrap();
    fill(&mut wal, 5..=7);
    drop(wal);

    let (_, report, got) = open_ok(&sim, small(), 0);
    assert_eq!(report.torn, None);
    assert_eq!(got[3], (4, b"again".to_vec()));
    assert_eq!(got.len(), 7);
}

#[test]
fn torn_header_is_cut() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    fill(&mut wal, 1..=2);
    wal.append(3, &payload(3, 100)).unwrap();
    sim.crash(&mut || 7);
    drop(wal);
    let (wal, report, got) = open_ok(&sim, small(), 0);
    assert_eq!(got, expected(1..=2));
    assert_eq!(report.torn.map(|t| (t.offset, t.dropped)), Some((232, 7)));
    assert_eq!(wal.last_pos(), 2);
}

#[test]
fn flipped_bit_mid_log_is_corrupt() {
    let sim = thirty();
    // Record 7 is the second record of wal-6.
    let seg = segment_name(6);
    sim.flip_bit(&seg, 116 + HEADER as u64 + 50, 3).unwrap();
    let (err, got) = open_err(&sim, small(), 0);
    assert_eq!(got, expected(1..=6), "nothing from the bad record on");
    match &err {
        StorageError::Corrupt { file, offset, why } => {
            assert_eq!((file.as_str(), *offset), (seg.as_str(), 116));
            assert!(why.contains("checksum"), "{why}");
        }
        e => panic!("expected Corrupt, got {e}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("damaged") && msg.contains(&seg) && msg.contains("byte 116"), "{msg}");
}

#[test]
fn flipped_bit_in_last_record_is_corrupt_not_torn() {
    let sim = thirty();
    let seg = segment_name(26);
    // The last record (30) is whole; damage to its payload, its checksum or its position is
    // damage, not a torn write.
    for at in [4 * 116 + 16 + 99, 4 * 116 + 5, 4 * 116 + 9] {
        sim.flip_bit(&seg, at, 0).unwrap();
        let (err, got) = open_err(&sim, small(), 0);
        assert_eq!(got, expected(1..=29));
        assert!(matches!(&err, StorageError::Corrupt { file, offset: 464, .. } if *file == seg), "{err}");
        sim.flip_bit(&seg, at, 0).unwrap();
    }
    let (_, report, got) = open_ok(&sim, small(), 0);
    assert_eq!((got.len(), report.torn), (30, None), "repaired by flipping back");
}

#[test]
fn length_above_the_limit_is_corrupt() {
    let sim = thirty();
    // The length's top bit, in the last record: not taken for a torn write either.
    let seg = segment_name(26);
    sim.flip_bit(&seg, 4 * 116 + 3, 7).unwrap();
    let (err, got) = open_err(&sim, small(), 0);
    assert_eq!(got.len(), 29);
    assert!(matches!(&err, StorageError::Corrupt { offset: 464, why, .. } if why.contains("limit")), "{err}");
}

#[test]
fn cut_short_record_in_an_earlier_segment_is_corrupt() {
    let sim = thirty();
    let seg = segment_name(11);
    sim.truncate(&seg, 5 * 116 - 10).unwrap();
    let (err, got) = open_err(&sim, small(), 0);
    assert_eq!(got, expected(1..=14));
    match &err {
        StorageError::Corrupt { file, offset, why } => {
            assert_eq!((file.as_str(), *offset), (seg.as_str(), 4 * 116));
            assert!(why.contains("not the last"), "{why}");
        }
        e => panic!("expected Corrupt, got {e}"),
    }
}

#[test]
fn missing_segment_is_corrupt() {
    let sim = thirty();
    sim.remove(&segment_name(11)).unwrap();
    let (err, got) = open_err(&sim, small(), 0);
    assert_eq!(got, expected(1..=10));
    assert!(
        matches!(&err, StorageError::Corrupt { file, offset: 0, why } if *file == segment_name(16) && why.contains("ends at position 10")),
        "{err}"
    );
}

#[test]
fn segment_name_must_match_its_first_record() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    fill(&mut wal, 1..=3);
    drop(wal);
    sim.rename(&segment_name(1), &segment_name(2)).unwrap();
    let (err, got) = open_err(&sim, small(), 1);
    assert!(got.is_empty());
    assert!(
        matches!(&err, StorageError::Corrupt { offset: 0, why, .. } if why.contains("position 1 where position 2")),
        "{err}"
    );
}

#[test]
fn gap_between_snapshot_and_log_is_an_error() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    // A replica that installed a snapshot at 100 and logged on from there.
    wal.restart_at(100).unwrap();
    fill(&mut wal, 101..=150);
    drop(wal);

    // The snapshot at 100 is gone: the state starts from nothing, and 1..=100 are missing.
    let (err, got) = open_err(&sim, small(), 0);
    assert!(got.is_empty());
    assert!(matches!(err, StorageError::Gap { after: 0, first: 101, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("missing positions 1 to 100") && msg.contains(&segment_name(101)), "{msg}");
    let (_, _, got) = open_ok(&sim, small(), 100);
    assert_eq!(got, expected(101..=150));
    let (_, _, got) = open_ok(&sim, small(), 120);
    assert_eq!(got, expected(121..=150));
}

#[test]
fn log_behind_the_snapshot_is_dropped() {
    let sim = thirty();
    // A snapshot at 100 installed from another node, and a crash before restart_at.
    let (mut wal, report, got) = open_ok(&sim, small(), 100);
    assert!(got.is_empty());
    assert_eq!((report.stale_segments_removed, report.last_pos), (6, 100));
    assert_eq!((wal.segments(), wal.last_pos(), wal.first_pos()), (0, 100, None));
    assert!(sim.files().is_empty());
    assert!(matches!(wal.append(31, b"x"), Err(StorageError::OutOfOrder { expected: 101, got: 31 })));
    fill(&mut wal, 101..=103);
    drop(wal);
    let (_, _, got) = open_ok(&sim, small(), 100);
    assert_eq!(got, expected(101..=103));
}

#[test]
fn snapshot_covering_part_of_the_log() {
    let sim = thirty();
    let (wal, report, got) = open_ok(&sim, small(), 20);
    assert_eq!(got, expected(21..=30));
    assert_eq!((report.replayed, report.last_pos, wal.first_pos()), (10, 30, Some(1)));
}

#[test]
fn full_disk_fails_sync_and_poisons() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, WalOptions::default(), 0);
    fill(&mut wal, 1..=5);
    sim.set_capacity(Some(sim.used() + 300));
    for pos in 6..=10 {
        wal.append(pos, &payload(pos, 100)).unwrap();
    }
    let err = wal.sync().unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&segment_name(1)) && msg.contains("disk is full"), "{msg}");
    assert_eq!((wal.last_pos(), wal.synced_pos()), (10, 5), "records 6..=10 are not claimed synced");
    assert!(matches!(wal.append(11, b"x"), Err(StorageError::Poisoned(_))));
    let again = wal.sync().unwrap_err();
    assert!(matches!(again, StorageError::Poisoned(_)) && again.is_disk_full(), "{again}");
    assert!(again.to_string().contains("reopened"), "{again}");
    drop(wal);

    sim.set_capacity(None);
    let (mut wal, _, got) = open_ok(&sim, WalOptions::default(), 0);
    assert_eq!(got, expected(1..=5));
    fill(&mut wal, 6..=7);
}

#[test]
fn full_disk_mid_record_leaves_a_torn_tail() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    fill(&mut wal, 1..=2);
    // Room for record 3's header, not its payload.
    sim.set_capacity(Some(sim.used() + 50));
    let err = wal.append(3, &payload(3, 100)).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert_eq!((wal.last_pos(), wal.synced_pos()), (2, 2));
    drop(wal);
    sim.set_capacity(None);
    let (mut wal, report, got) = open_ok(&sim, small(), 0);
    assert_eq!(got, expected(1..=2));
    assert_eq!(report.torn.map(|t| t.dropped), Some(HEADER as u64));
    fill(&mut wal, 3..=4);
}

#[test]
fn truncate_through_removes_covered_segments_only() {
    let sim = thirty();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    wal.truncate_through(12).unwrap();
    assert_eq!((wal.segments(), wal.first_pos()), (4, Some(11)), "wal-11 holds 13..=15 still");
    wal.truncate_through(15).unwrap();
    assert_eq!(wal.first_pos(), Some(16));
    wal.truncate_through(1000).unwrap();
    assert_eq!((wal.segments(), wal.first_pos()), (1, Some(26)), "never the segment being written");
    assert_eq!(sim.files(), vec![segment_name(26)]);
    fill(&mut wal, 31..=31);
    drop(wal);
    let (_, _, got) = open_ok(&sim, small(), 27);
    assert_eq!(got, expected(28..=31));
}

#[test]
fn restart_at_removes_everything() {
    let sim = thirty();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    wal.append(31, b"unsynced").unwrap();
    wal.restart_at(500).unwrap();
    assert_eq!((wal.segments(), wal.bytes(), wal.last_pos(), wal.synced_pos()), (0, 0, 500, 500));
    assert!(sim.files().is_empty());
    fill(&mut wal, 501..=510);
    drop(wal);
    let (_, _, got) = open_ok(&sim, small(), 500);
    assert_eq!(got, expected(501..=510));
}

#[test]
fn caller_mistakes_change_nothing() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 7);
    assert!(matches!(wal.append(1, b"x"), Err(StorageError::OutOfOrder { expected: 8, got: 1 })));
    let big = vec![0u8; (1 << 16) + 1];
    assert!(matches!(wal.append(8, &big), Err(StorageError::TooLarge { len: 65537, max: 65536, .. })));
    wal.append(8, b"fine").unwrap();
    assert!(matches!(wal.append(8, b"x"), Err(StorageError::OutOfOrder { expected: 9, got: 8 })));
    wal.sync().unwrap();
    drop(wal);
    let (_, _, got) = open_ok(&sim, small(), 7);
    assert_eq!(got, vec![(8, b"fine".to_vec())]);
}

#[test]
fn zeroed_tail_is_cut_zeroed_middle_is_corrupt() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    fill(&mut wal, 1..=3);
    drop(wal);
    // A filesystem that extended the file but never wrote the data.
    let seg = segment_name(1);
    let mut f = sim.open_append(&seg).unwrap();
    f.write_all(&[0; 100]).unwrap();
    f.sync().unwrap();
    drop(f);
    let (wal, report, got) = open_ok(&sim, small(), 0);
    assert_eq!(got, expected(1..=3));
    assert_eq!((report.torn, report.zero_tail), (None, 100));
    drop(wal);

    // Zeros followed by data are not a torn tail.
    let mut f = sim.open_append(&seg).unwrap();
    f.write_all(&[0; 20]).unwrap();
    f.write_all(&[1]).unwrap();
    f.sync().unwrap();
    drop(f);
    let (err, got) = open_err(&sim, small(), 0);
    assert_eq!(got.len(), 3);
    assert!(
        matches!(&err, StorageError::Corrupt { offset: 348, why, .. } if why.contains("zeroed")),
        "{err}"
    );
}

#[test]
fn open_syncs_what_a_crashed_process_wrote() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    fill(&mut wal, 1..=2);
    wal.append(3, &payload(3, 100)).unwrap();
    // The process dies; the machine does not: record 3 is in the file, unsynced.
    drop(wal);
    let seg = segment_name(1);
    assert_eq!(sim.unsynced_len(&seg), Some(116));
    let (wal, _, got) = open_ok(&sim, small(), 0);
    assert_eq!(got, expected(1..=3));
    assert_eq!((wal.synced_pos(), sim.unsynced_len(&seg)), (3, Some(0)), "handed out, so made durable");
}

#[test]
fn apply_error_stops_the_replay() {
    let sim = thirty();
    let mut seen = Vec::new();
    let r = Wal::open(handle(&sim), small(), 0, |pos, _| {
        seen.push(pos);
        if pos == 3 {
            Err("bad command")
        } else {
            Ok(())
        }
    });
    match r {
        Err(OpenError::Apply { pos: 3, source: "bad command" }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened"),
    }
    assert_eq!(seen, vec![1, 2, 3]);
}

#[test]
fn empty_segment_left_by_a_crash_is_reused() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    fill(&mut wal, 1..=5);
    // Record 6 starts wal-6; the crash loses all of it.
    wal.append(6, &payload(6, 100)).unwrap();
    sim.crash(&mut || 0);
    drop(wal);
    assert_eq!(sim.contents(&segment_name(6)), Some(Vec::new()));
    let (mut wal, report, got) = open_ok(&sim, small(), 0);
    assert_eq!((got.len(), report.torn, wal.segments()), (5, None, 2));
    fill(&mut wal, 6..=7);
    drop(wal);
    let (_, _, got) = open_ok(&sim, small(), 0);
    assert_eq!(got, expected(1..=7));
}

/// Group commit off the writer's thread: a sync started after record 2 makes 1 and 2 durable,
/// whatever was appended while it ran; the synced position moves only when it is finished.
#[test]
fn a_background_sync_covers_what_was_appended_before_it() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    wal.append(1, &payload(1, 100)).unwrap();
    wal.append(2, &payload(2, 100)).unwrap();
    let job = wal.start_sync().unwrap().expect("a sync to run elsewhere");
    wal.append(3, &payload(3, 100)).unwrap();
    assert_eq!(wal.synced_pos(), 0, "not durable before the sync ran");
    let done = job.run();
    assert_eq!(wal.synced_pos(), 0, "not reported before it is finished");
    wal.finish_sync(done).unwrap();
    assert_eq!((wal.synced_pos(), wal.last_pos()), (2, 3));
    // A power cut loses record 3 (written after the sync began), never 1 or 2.
    sim.crash(&mut || 0);
    drop(wal);
    let (_, _, got) = open_ok(&sim, small(), 0);
    assert_eq!(got, expected(1..=2));
}

#[test]
fn a_background_sync_from_before_a_restart_is_ignored() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    wal.append(1, &payload(1, 100)).unwrap();
    let job = wal.start_sync().unwrap().expect("a sync to run elsewhere");
    // A snapshot from a donor replaces the log: position 50 now.
    wal.restart_at(50).unwrap();
    wal.append(51, &payload(51, 100)).unwrap();
    wal.finish_sync(job.run()).unwrap();
    assert_eq!((wal.synced_pos(), wal.last_pos()), (50, 51), "the old sync says nothing of 51");
}

#[test]
fn a_failed_background_sync_poisons_the_log() {
    let sim = SimDir::new();
    let (mut wal, _, _) = open_ok(&sim, small(), 0);
    wal.append(1, &payload(1, 100)).unwrap();
    let job = wal.start_sync().unwrap().expect("a sync to run elsewhere");
    sim.crash(&mut || 0);
    let err = wal.finish_sync(job.run()).unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
    assert_eq!(wal.synced_pos(), 0);
    assert!(matches!(wal.append(2, &payload(2, 100)), Err(StorageError::Poisoned(_))));
}
