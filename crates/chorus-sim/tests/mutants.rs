//! The checker is only as good as the bugs it catches. Each `chorus_core::Mutant` breaks one
//! guarantee on purpose; with it switched on in every node, ordinary random seeds must produce
//! a violation of exactly that guarantee within a bounded number of seeds (TESTING §4.0: validate
//! every invariant with a mutant).

#![cfg(feature = "mutants")]

use chorus_check::Guarantee;
use chorus_core::{Mutant, Order};
use chorus_sim::batch::run_batch;
use chorus_sim::{Failure, Settings, SimOptions};

/// Seeds tried per mutant before giving up. The rarest (`InstallWithoutSelf`, which needs a
/// member to hear the install of a view that drops it: a one-way partition) needs a few hundred.
const MAX_SEEDS: usize = 800;

/// Which seeds a mutant is tried on: those whose drawn options can show its bug. Seeds stay
/// ordinary seeds (a catch replays with `replay --seed N --mutant M`); only the choice of seeds
/// is steered.
type Suits = fn(&SimOptions) -> bool;

fn any_seed(_: &SimOptions) -> bool {
    true
}

/// Runs the first `MAX_SEEDS` seeds that suit the mutant, in parallel chunks, until one
/// violates `expected`; returns that seed and what the other failing seeds reported.
fn first_catch(mutant: Mutant, expected: Guarantee, suits: Suits) -> (Option<u64>, Vec<String>) {
    let settings = Settings { mutant: Some(mutant), ..Settings::default() };
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = jobs * 16;
    let all: Vec<u64> = (0..).filter(|s| suits(&SimOptions::from_seed(*s))).take(MAX_SEEDS).collect();
    let mut other = Vec::new();
    for seeds in all.chunks(chunk) {
        let report = run_batch(seeds, jobs, &settings, |_, _, _| {});
        for r in &report.results {
            match &r.failure {
                Some(Failure::Violation(v)) if v.guarantee == expected => return (Some(r.seed), other),
                Some(f) => other.push(format!("seed {}: {f}", r.seed)),
                None => {}
            }
        }
    }
    (None, other)
}

fn assert_caught(mutant: Mutant, expected: Guarantee) {
    assert_caught_on(mutant, expected, any_seed);
}

fn assert_caught_on(mutant: Mutant, expected: Guarantee, suits: Suits) {
    let (seed, other) = first_catch(mutant, expected, suits);
    if let Some(seed) = seed {
        eprintln!("{mutant:?} caught as {expected} at seed {seed}");
    }
    assert!(
        seed.is_some(),
        "{mutant:?} was not caught as {expected} in {MAX_SEEDS} seeds; other failures: {other:#?}"
    );
}

#[test]
fn skip_flush_breaks_virtual_synchrony() {
    assert_caught(Mutant::SkipFlush, Guarantee::G4VirtualSynchrony);
}

#[test]
fn deliver_stale_view_breaks_sending_view_delivery() {
    assert_caught(Mutant::DeliverStaleView, Guarantee::G5SendingView);
}

#[test]
fn drop_fifo_breaks_fifo() {
    assert_caught(Mutant::DropFifo, Guarantee::G7Fifo);
}

#[test]
fn install_minority_breaks_one_history() {
    assert_caught(Mutant::InstallMinority, Guarantee::G2OneHistory);
}

#[test]
fn duplicate_delivery_breaks_integrity() {
    assert_caught(Mutant::DuplicateDelivery, Guarantee::G6Integrity);
}

#[test]
fn split_view_breaks_view_agreement() {
    assert_caught(Mutant::SplitView, Guarantee::G1ViewAgreement);
}

#[test]
fn install_without_self_breaks_self_inclusion() {
    assert_caught(Mutant::InstallWithoutSelf, Guarantee::G3SelfInclusion);
}

#[test]
fn no_retransmit_breaks_liveness() {
    assert_caught(Mutant::NoRetransmit, Guarantee::G12Liveness);
}

/// Causal messages to reorder: a third of the multicasts or more, among three members or more.
fn causal_heavy(o: &SimOptions) -> bool {
    o.orders.share(Order::Causal) >= 0.3 && o.initial_nodes >= 3
}

#[test]
fn ignore_causal_deps_breaks_causal_order() {
    assert_caught_on(Mutant::IgnoreCausalDeps, Guarantee::G8Causal, causal_heavy);
}

/// Total-order messages from several senders arriving in different orders at different members.
fn total_heavy(o: &SimOptions) -> bool {
    o.orders.share(Order::Total) >= 0.3 && o.initial_nodes >= 3
}

#[test]
fn total_by_arrival_breaks_total_order() {
    assert_caught_on(Mutant::TotalByArrival, Guarantee::G9Total, total_heavy);
}

/// Safe messages, and a partition to cut off a member that delivered one before anyone else had
/// it (crashes rarely do it: a crashed sender's frames already on the wire still arrive).
fn safe_and_partitions(o: &SimOptions) -> bool {
    o.orders.share(Order::Safe) >= 0.2 && o.partition_rate > 0.0 && o.initial_nodes >= 3
}

#[test]
fn safe_before_stable_breaks_safe_delivery() {
    assert_caught_on(Mutant::SafeBeforeStable, Guarantee::G10Safe, safe_and_partitions);
}

/// State transfer on, with joiners: a view change that adds members.
fn transfers(o: &SimOptions) -> bool {
    o.state.on && (o.initial_nodes >= 2 || !o.joiners_at.is_empty())
}

/// Transfers under load of total-order messages, so the cut holds messages the donor has not
/// delivered when the view change starts.
fn transfers_under_total_load(o: &SimOptions) -> bool {
    transfers(o) && o.orders.share(Order::Total) + o.orders.share(Order::Safe) >= 0.4 && o.send_rate >= 50.0
}

/// Checkpoints of many chunks on a network that duplicates or breaks links.
fn chunky_lossy_transfers(o: &SimOptions) -> bool {
    transfers(o) && o.state.filler >= 16 << 10 && (o.duplicate_prob > 0.0 || o.break_prob > 0.0)
}

#[test]
fn checkpoint_before_cut_breaks_state_transfer() {
    assert_caught_on(Mutant::CheckpointBeforeCut, Guarantee::G11StateTransfer, transfers_under_total_load);
}

#[test]
fn deliver_before_loaded_breaks_transfer_atomicity() {
    assert_caught_on(Mutant::DeliverBeforeLoaded, Guarantee::ST2TransferAtomicity, transfers);
}

#[test]
fn chunk_out_of_order_breaks_state_transfer() {
    assert_caught_on(Mutant::ChunkOutOfOrder, Guarantee::G11StateTransfer, chunky_lossy_transfers);
}

/// A core that names the wrong sender in a frame: the receiver rejects the frame, and the
/// simulator fails the seed (it used to drop the error as "stale", and retransmission hid it).
#[test]
fn wrong_sender_frames_fail_the_seed() {
    let settings = Settings { mutant: Some(Mutant::WrongSender), ..Settings::default() };
    let report = run_batch(&[1, 2, 3, 4], 2, &settings, |_, _, _| {});
    let rejected =
        report.results.iter().filter(|r| matches!(r.failure, Some(Failure::FrameRejected(_)))).count();
    assert_eq!(rejected, 4, "{:#?}", report.results.iter().map(|r| &r.failure).collect::<Vec<_>>());
}

/// Every mutant has a test above: a new variant fails to compile here until it gets one.
#[test]
fn every_mutant_is_covered() {
    let expected = |m: Mutant| match m {
        Mutant::SkipFlush => Some(Guarantee::G4VirtualSynchrony),
        Mutant::DeliverStaleView => Some(Guarantee::G5SendingView),
        Mutant::DropFifo => Some(Guarantee::G7Fifo),
        Mutant::InstallMinority => Some(Guarantee::G2OneHistory),
        Mutant::DuplicateDelivery => Some(Guarantee::G6Integrity),
        Mutant::SplitView => Some(Guarantee::G1ViewAgreement),
        Mutant::InstallWithoutSelf => Some(Guarantee::G3SelfInclusion),
        Mutant::NoRetransmit => Some(Guarantee::G12Liveness),
        Mutant::IgnoreCausalDeps => Some(Guarantee::G8Causal),
        Mutant::TotalByArrival => Some(Guarantee::G9Total),
        Mutant::SafeBeforeStable => Some(Guarantee::G10Safe),
        Mutant::CheckpointBeforeCut => Some(Guarantee::G11StateTransfer),
        Mutant::DeliverBeforeLoaded => Some(Guarantee::ST2TransferAtomicity),
        Mutant::ChunkOutOfOrder => Some(Guarantee::G11StateTransfer),
        Mutant::WrongSender => None, // Caught as a rejected frame (`wrong_sender_frames_fail_the_seed`).
    };
    for m in chorus_sim::ALL_MUTANTS {
        let _ = expected(m);
        assert_eq!(chorus_sim::mutant_by_name(&format!("{m:?}")), Some(m));
    }
}
