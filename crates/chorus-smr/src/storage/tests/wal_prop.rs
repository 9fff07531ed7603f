//! The log against a model, over random appends, syncs, truncations and crashes: after every
//! reopen the log holds exactly a contiguous prefix of what was appended, containing at least
//! everything synced, with the same payloads, and appends go on from its end.

use std::convert::Infallible;

use proptest::prelude::*;

use super::super::{OpenReport, Wal, WalOptions};
use super::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append a record of this many bytes.
    Append(usize),
    /// Append this many records of a few bytes each (a batch).
    Batch(u8),
    Sync,
    /// A snapshot at this fraction (per 256) of the last position, then truncate_through it.
    Snapshot(u8),
    /// A power cut with this seed, then reopen.
    Crash(u64),
    /// The process exits without syncing (the disk keeps what was written), then reopen.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop_oneof![Just(0usize), 1usize..64, 64usize..600, 2000usize..5000].prop_map(Op::Append),
        2 => (1u8..20).prop_map(Op::Batch),
        3 => Just(Op::Sync),
        1 => any::<u8>().prop_map(Op::Snapshot),
        2 => any::<u64>().prop_map(Op::Crash),
        1 => Just(Op::Restart),
    ]
}

fn payload(pos: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| (pos.wrapping_mul(0x9e37_79b9) >> (i % 7)) as u8 ^ i as u8).collect()
}

/// What the log must hold: `records[p - 1]` is the payload appended at position `p`.
struct Model {
    records: Vec<Vec<u8>>,
    synced: u64,
    /// The position of the (durable, by assumption) snapshot the caller restarts from.
    snapshot: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.records.len() as u64
    }
}

fn reopen(sim: &SimDir, opts: &WalOptions, m: &mut Model) -> Result<Wal, TestCaseError> {
    let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
    let (wal, report): (Wal, OpenReport) = Wal::open(handle(sim), opts.clone(), m.snapshot, |pos, p| {
        got.push((pos, p.to_vec()));
        Ok::<(), Infallible>(())
    })
    .map_err(|e| TestCaseError::fail(format!("reopen failed: {e}")))?;
    // Exactly the records after the snapshot, contiguous, each as appended.
    for (i, (pos, p)) in got.iter().enumerate() {
        prop_assert_eq!(*pos, m.snapshot + 1 + i as u64, "positions contiguous from the snapshot");
        prop_assert!(*pos <= m.last(), "record {} was never appended", pos);
        prop_assert!(*p == m.records[*pos as usize - 1], "payload of {} differs", pos);
    }
    let recovered = m.snapshot + got.len() as u64;
    prop_assert!(recovered >= m.synced.min(m.last()), "synced record lost: {} < {}", recovered, m.synced);
    prop_assert_eq!(report.replayed, got.len() as u64);
    let end = recovered.max(m.snapshot);
    prop_assert_eq!((wal.last_pos(), wal.synced_pos()), (end, end));
    m.records.truncate(end as usize);
    m.synced = end;
    Ok(wal)
}

fn run(ops: &[Op], opts: WalOptions) -> Result<(), TestCaseError> {
    let sim = SimDir::new();
    let mut m = Model { records: Vec::new(), synced: 0, snapshot: 0 };
    let mut wal = reopen(&sim, &opts, &mut m)?;
    let append = |wal: &mut Wal, m: &mut Model, size: usize| -> Result<(), TestCaseError> {
        let pos = m.last() + 1;
        let p = payload(pos, size);
        wal.append(pos, &p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        m.records.push(p);
        Ok(())
    };
    for op in ops {
        match *op {
            Op::Append(size) => append(&mut wal, &mut m, size)?,
            Op::Batch(n) => {
                for i in 0..n {
                    append(&mut wal, &mut m, usize::from(i) * 3)?;
                }
            }
            Op::Sync => {
                wal.sync().map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.synced = m.last();
                prop_assert_eq!(wal.synced_pos(), m.last());
            }
            Op::Snapshot(frac) => {
                let pos = m.last() * u64::from(frac) / 256;
                if pos > m.snapshot {
                    m.snapshot = pos;
                    wal.truncate_through(pos).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if let Some(first) = wal.first_pos() {
                        prop_assert!(first <= pos + 1, "truncated past the snapshot");
                    }
                }
            }
            Op::Crash(seed) => {
                sim.crash(&mut rng(seed));
                drop(wal);
                wal = reopen(&sim, &opts, &mut m)?;
            }
            Op::Restart => {
                drop(wal);
                wal = reopen(&sim, &opts, &mut m)?;
            }
        }
        prop_assert_eq!(wal.last_pos(), m.last().max(m.snapshot));
    }
    // Everything synced: a crash loses nothing.
    wal.sync().map_err(|e| TestCaseError::fail(e.to_string()))?;
    m.synced = m.last();
    drop(wal);
    sim.crash(&mut rng(0));
    let want = m.last();
    let wal = reopen(&sim, &opts, &mut m)?;
    prop_assert_eq!(wal.last_pos(), want.max(m.snapshot));
    Ok(())
}

proptest! {
    #[test]
    fn log_recovers_a_prefix_holding_everything_synced(
        ops in proptest::collection::vec(op(), 1..80),
        segment_bytes in 64u64..4096,
        buffer_bytes in prop_oneof![Just(0usize), 1usize..2048, Just(256usize << 10)],
    ) {
        run(&ops, WalOptions { segment_bytes, max_record: 1 << 16, buffer_bytes })?;
    }
}
