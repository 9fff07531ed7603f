//! The storage layer over real files: the data directory's lock, the log (including a torn
//! tail made by cutting the real file), snapshots and atomic files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

use chorus_smr::storage::{
    latest_snapshot, read_atomic, write_atomic, DataDir, SnapshotReader, SnapshotWriter, StorageError, Wal,
    WalOptions,
};

type Records = Vec<(u64, Vec<u8>)>;

fn opts() -> WalOptions {
    WalOptions { segment_bytes: 4096, ..WalOptions::default() }
}

fn payload(pos: u64) -> Vec<u8> {
    vec![pos as u8; (pos as usize * 37) % 700]
}

fn open(path: &Path, after: u64) -> (DataDir, Wal, Records, Option<u64>) {
    let data = DataDir::open(path).unwrap();
    let mut got = Vec::new();
    let (wal, report) = Wal::open(data.dir(), opts(), after, |pos, p| {
        got.push((pos, p.to_vec()));
        Ok::<(), Infallible>(())
    })
    .unwrap();
    (data, wal, got, report.torn.map(|t| t.dropped))
}

#[test]
fn log_round_trip_and_torn_tail_on_real_files() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("node-1").join("data");
    let (data, mut wal, got, _) = open(&path, 0);
    assert!(got.is_empty());
    for pos in 1..=200 {
        wal.append(pos, &payload(pos)).unwrap();
    }
    wal.sync().unwrap();
    assert!(wal.segments() > 3, "{}", wal.segments());
    drop((wal, data));

    let (data, wal, got, torn) = open(&path, 0);
    assert_eq!(got, (1..=200).map(|p| (p, payload(p))).collect::<Records>());
    assert_eq!(torn, None);

    // Cut the last segment inside its last record, as a crash can.
    let last = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("wal-"))
        .max()
        .unwrap();
    drop((wal, data));
    let file = OpenOptions::new().write(true).open(path.join(&last)).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - 5).unwrap();
    drop(file);

    let (data, mut wal, got, torn) = open(&path, 0);
    assert_eq!(got.len(), 199);
    assert_eq!(torn, Some(len - 5 - (len - 16 - payload(200).len() as u64)));
    wal.append(200, b"again").unwrap();
    wal.sync().unwrap();
    drop((wal, data));
    let (_data, _wal, got, torn) = open(&path, 0);
    assert_eq!((got.len(), got.last().cloned(), torn), (200, Some((200, b"again".to_vec())), None));
}

/// The last segment's name and its records' (offset, payload length), read by hand.
fn last_segment_records(path: &Path) -> (String, Vec<(u64, u32)>) {
    let last = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("wal-"))
        .max()
        .unwrap();
    let bytes = std::fs::read(path.join(&last)).unwrap();
    let mut records = Vec::new();
    let mut at = 0usize;
    while at + 16 <= bytes.len() && bytes[at..at + 16] != [0; 16] {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        records.push((at as u64, len));
        at += 16 + len as usize;
    }
    (last, records)
}

/// Overwrites the length field of the record at `offset` of `file`.
fn set_record_len(file: &Path, offset: u64, len: u32) {
    use std::io::{Seek, SeekFrom};
    let mut f = OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&len.to_le_bytes()).unwrap();
    f.sync_all().unwrap();
}

/// A record's length is not under its checksum: a damaged one sends the reader past the end of
/// the file, as a torn write does. Cutting the log there would drop that record and all after
/// it, synced and acknowledged; it must be an error naming the file and offset instead.
#[test]
fn a_damaged_record_length_is_not_taken_for_a_torn_write() {
    let write = |path: &Path| {
        let (data, mut wal, _, _) = open(path, 0);
        for pos in 1..=200 {
            wal.append(pos, &payload(pos)).unwrap();
        }
        wal.sync().unwrap();
        drop((wal, data));
    };
    let corrupt_at = |path: &Path| -> (String, u64) {
        let data = DataDir::open(path).unwrap();
        let err = Wal::open(data.dir(), opts(), 0, |_, _| Ok::<(), Infallible>(())).unwrap_err();
        match err {
            chorus_smr::storage::OpenError::Storage(StorageError::Corrupt { file, offset, why }) => {
                assert!(why.contains("not a torn write"), "{why}");
                (file, offset)
            }
            other => panic!("expected the damage to be reported, got {other:?}"),
        }
    };
    let tmp = tempfile::tempdir().unwrap();

    // One bit flipped high in the length of a record in the middle of the last segment: the
    // records after it follow, whole.
    let path = tmp.path().join("flip-middle");
    write(&path);
    let (last, records) = last_segment_records(&path);
    assert!(records.len() >= 3, "{records:?}");
    let (offset, len) = records[1];
    set_record_len(&path.join(&last), offset, len ^ (1 << 25));
    assert_eq!(corrupt_at(&path), (last.clone(), offset));

    // Garbage (not one bit off) in the same place: a whole record still follows.
    let path = tmp.path().join("garbage-middle");
    write(&path);
    set_record_len(&path.join(&last), offset, 10_000_000);
    assert_eq!(corrupt_at(&path), (last.clone(), offset));

    // One bit flipped in the length of the very last record: nothing follows it, but its
    // checksum holds for the length one bit away.
    let path = tmp.path().join("flip-last");
    write(&path);
    let (_, records) = last_segment_records(&path);
    let (offset, len) = *records.last().unwrap();
    set_record_len(&path.join(&last), offset, len ^ (1 << 20));
    assert_eq!(corrupt_at(&path), (last.clone(), offset));

    // And the log without damage still opens whole, as the cases above would have.
    let path = tmp.path().join("whole");
    write(&path);
    let (_data, _wal, got, torn) = open(&path, 0);
    assert_eq!((got.len(), torn), (200, None));
}

#[test]
fn the_log_reserves_zeros_ahead_of_its_records_and_cuts_them_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data");
    let segments = |path: &Path| {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
            .map(|e| (e.file_name().into_string().unwrap(), e.metadata().unwrap().len()))
            .collect();
        v.sort();
        v
    };
    let (data, mut wal, _, _) = open(&path, 0);
    for pos in 1..=50 {
        wal.append(pos, &payload(pos)).unwrap();
        wal.sync().unwrap();
    }
    let records = wal.bytes();
    let on_disk: u64 = segments(&path).iter().map(|(_, len)| len).sum();
    assert!(on_disk > records, "the last segment is extended with zeros: {on_disk} bytes for {records}");
    drop((wal, data)); // A crash: the zeros stay.

    let data = DataDir::open(&path).unwrap();
    let mut got = Vec::new();
    let (mut wal, report) = Wal::open(data.dir(), opts(), 0, |pos, p| {
        got.push((pos, p.to_vec()));
        Ok::<(), Infallible>(())
    })
    .unwrap();
    assert_eq!(got, (1..=50).map(|p| (p, payload(p))).collect::<Records>());
    assert!(report.torn.is_none() && report.zero_tail > 0, "{report:?}");
    let cut: u64 = segments(&path).iter().map(|(_, len)| len).sum();
    assert_eq!(cut, records, "the zeros are cut at open; earlier segments never had any");
    // Appends go on after the last record, not after the zeros.
    for pos in 51..=80 {
        wal.append(pos, &payload(pos)).unwrap();
        wal.sync().unwrap();
    }
    drop((wal, data));
    let (_data, _wal, got, torn) = open(&path, 0);
    assert_eq!((got.len(), torn), (80, None));
    assert_eq!(got, (1..=80).map(|p| (p, payload(p))).collect::<Records>());
}

#[test]
fn snapshots_and_atomic_files_on_real_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::open(tmp.path()).unwrap();
    let dir = data.dir();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for pos in [10, 20] {
        let mut w = SnapshotWriter::create(dir.clone(), pos).unwrap();
        for piece in body.chunks(9_999) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
    }
    let info = latest_snapshot(&*dir).unwrap().unwrap();
    assert_eq!(info.pos, 20);
    let mut back = Vec::new();
    SnapshotReader::open(&*dir, &info).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(back, body);
    let mut names: Vec<_> = dir.list().unwrap();
    names.sort();
    assert_eq!(names, vec!["LOCK".to_owned(), info.name.clone()]);

    // Damage on disk is caught.
    let mut f = OpenOptions::new().read(true).write(true).open(tmp.path().join(&info.name)).unwrap();
    let mut b = [0u8; 1];
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1000)).unwrap();
    f.read_exact(&mut b).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(1000)).unwrap();
    f.write_all(&[b[0] ^ 1]).unwrap();
    drop(f);
    let err = SnapshotReader::verify_all(&*dir, &info).unwrap_err();
    assert!(matches!(&err, StorageError::Corrupt { file, .. } if *file == info.name), "{err}");

    assert_eq!(read_atomic(&*dir, "incarnation").unwrap(), None);
    write_atomic(&*dir, "incarnation", b"3").unwrap();
    write_atomic(&*dir, "incarnation", b"4").unwrap();
    assert_eq!(read_atomic(&*dir, "incarnation").unwrap(), Some(b"4".to_vec()));
    assert!(!tmp.path().join("incarnation.tmp").exists());
}

#[test]
fn one_process_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let first = DataDir::open(tmp.path()).unwrap();
    let err = DataDir::open(tmp.path()).unwrap_err();
    assert!(matches!(&err, StorageError::Locked { path } if path == tmp.path()), "{err}");
    assert!(err.to_string().contains("another process is using this data directory"), "{err}");

    // A handle on the directory (a Wal holds one) keeps the lock after the DataDir goes.
    let handle = first.dir();
    drop(first);
    assert!(matches!(DataDir::open(tmp.path()), Err(StorageError::Locked { .. })));
    drop(handle);
    let again = DataDir::open(tmp.path()).unwrap();
    assert_eq!(again.path(), tmp.path());
}
