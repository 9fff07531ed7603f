//! `st-bench`: a large checkpoint streamed from a donor to a joiner in the simulator, with the
//! memory each holds measured by a tracking allocator and the CPU cost per byte.
//!
//! ```sh
//! cargo run --release -p chorus-sim --bin st-bench             # 1 GiB
//! cargo run --release -p chorus-sim --bin st-bench -- --mib 64
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering};

use clap::Parser;
use tracking_allocator::{
    AllocationGroupId, AllocationGroupToken, AllocationRegistry, AllocationTracker, Allocator,
};

use chorus_sim::stbench::{run_st_bench, Probe, StBenchOptions};

#[global_allocator]
static GLOBAL: Allocator<std::alloc::System> = Allocator::system();

/// Allocation groups are numbered from 1 (the root); three nodes take the next ones.
const GROUPS: usize = 16;
static CURRENT: [AtomicI64; GROUPS] = [const { AtomicI64::new(0) }; GROUPS];
static PEAK: [AtomicI64; GROUPS] = [const { AtomicI64::new(0) }; GROUPS];

struct Counter;

impl AllocationTracker for Counter {
    fn allocated(&self, _addr: usize, _object_size: usize, wrapped_size: usize, group: AllocationGroupId) {
        let g = group.as_usize().get() % GROUPS;
        let now = CURRENT[g].fetch_add(wrapped_size as i64, Ordering::Relaxed) + wrapped_size as i64;
        PEAK[g].fetch_max(now, Ordering::Relaxed);
    }

    fn deallocated(
        &self,
        _addr: usize,
        _object_size: usize,
        wrapped_size: usize,
        source: AllocationGroupId,
        _current: AllocationGroupId,
    ) {
        CURRENT[source.as_usize().get() % GROUPS].fetch_sub(wrapped_size as i64, Ordering::Relaxed);
    }
}

struct Groups {
    tokens: Vec<AllocationGroupToken>,
}

impl Groups {
    fn slot(&self, who: usize) -> usize {
        self.tokens.get(who).map_or(0, |t| t.id().as_usize().get() % GROUPS)
    }
}

impl Probe for Groups {
    fn within(&mut self, who: usize, f: &mut dyn FnMut()) {
        match self.tokens.get_mut(who) {
            Some(t) => {
                let _guard = t.enter();
                f();
            }
            None => f(),
        }
    }

    fn usage(&self, who: usize) -> (i64, i64) {
        let g = self.slot(who);
        (CURRENT[g].load(Ordering::Relaxed), PEAK[g].load(Ordering::Relaxed))
    }

    fn reset_peaks(&mut self) {
        for g in 0..GROUPS {
            PEAK[g].store(CURRENT[g].load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    fn measures(&self) -> bool {
        true
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "st-bench",
    about = "Stream a large checkpoint to a joiner in the simulator; measure memory and CPU"
)]
struct Cli {
    /// Checkpoint size in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// Piece size the donor writes, in KiB.
    #[arg(long, default_value_t = 256)]
    chunk_kib: usize,
    /// The core's state_window, in MiB.
    #[arg(long, default_value_t = 8)]
    window_mib: u64,
    /// The joiner's application takes its events every LAG network hops (a slow consumer).
    #[arg(long, default_value_t = 4)]
    lag: u32,
}

fn mib(b: i64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if AllocationRegistry::set_global_tracker(Counter).is_err() {
        eprintln!("error: could not install the allocation tracker");
        return ExitCode::from(2);
    }
    let mut tokens = Vec::new();
    for _ in 0..3 {
        match AllocationGroupToken::register() {
            Some(t) => tokens.push(t),
            None => {
                eprintln!("error: could not register allocation groups");
                return ExitCode::from(2);
            }
        }
    }
    AllocationRegistry::enable_tracking();
    let o = StBenchOptions {
        state_bytes: cli.mib << 20,
        chunk: cli.chunk_kib << 10,
        window: cli.window_mib << 20,
        lag: cli.lag,
    };
    println!(
        "state-transfer bench: 3 nodes, node 1 multicasting 64-byte total-order messages all along; node 2 \
         joins and loads a {} MiB checkpoint from node 0 in {} KiB pieces, state_window {} MiB; the \
         joiner's application takes its events every {} hops",
        cli.mib, cli.chunk_kib, cli.window_mib, cli.lag
    );
    let r = match run_st_bench(o, &mut Groups { tokens }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    AllocationRegistry::disable_tracking();
    let limit = 64.0;
    let verdict = |x: f64| if x < limit { "under" } else { "OVER" };
    println!("  bytes loaded and checked    {:>10} ({} MiB)", r.bytes, r.bytes >> 20);
    println!(
        "  peak extra memory, donor    {:>10.1} MiB  ({} the {limit} MiB bound)",
        mib(r.donor_peak),
        verdict(mib(r.donor_peak))
    );
    println!(
        "  peak extra memory, joiner   {:>10.1} MiB  ({} the {limit} MiB bound)",
        mib(r.joiner_peak),
        verdict(mib(r.joiner_peak))
    );
    println!(
        "  CPU                         {:>10.3} s   = {:.3} ns per byte ({:.2} GiB/s of one core)",
        r.cpu.as_secs_f64(),
        r.ns_per_byte(),
        r.bytes as f64 / r.cpu.as_secs_f64().max(1e-9) / (1u64 << 30) as f64
    );
    println!(
        "  vs one memcpy of the bytes  {:>10.1}x  ({:.3} s)",
        r.cpu.as_secs_f64() / r.memcpy_cpu.as_secs_f64().max(1e-9),
        r.memcpy_cpu.as_secs_f64()
    );
    println!("  donor told to wait          {:>10} times (flow control)", r.window_full);
    println!(
        "  delivered at old members    {:>10} multicasts while the transfer streamed",
        r.delivered_during
    );
    println!("  delivered by the joiner     {:>10} new-view multicasts once loaded", r.joiner_delivered);
    if mib(r.donor_peak) < limit && mib(r.joiner_peak) < limit {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
