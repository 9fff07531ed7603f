//! The binaries' log: `CHORUS_LOG` chooses what is written (a level such as `info`, or
//! tracing's filter syntax, e.g. `warn,chorus::runtime=debug`), `CHORUS_LOG_FORMAT=json` writes
//! one JSON object per line instead of text. Standard error; colours only on a terminal.

/// Sets up the log; `default` is the filter when `CHORUS_LOG` is unset (a node logs `info`:
/// its views, suspicions, transfers, quorum; tools log `warn`).
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHORUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let json = std::env::var("CHORUS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        // A log file or journald gets plain text.
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
}
