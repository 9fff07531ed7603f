//! The errors of reading and checking a history.

use std::path::PathBuf;

/// Why a history could not be read or checked. A history that *was* checked never produces an
/// error: its verdict (including "unknown, budget exceeded") is in the
/// [`Report`](crate::Report).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line of a history is not in the expected format.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// The events do not form a history: a completion with no invocation, two operations in
    /// flight on one process, a completion whose function differs from its invocation's.
    #[error("line {line}: {message}")]
    Pairing {
        /// 1-based line number of the offending event.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The operations on a key do not fit the chosen model (for example an `append` checked with
    /// the register model, or reads and appends mixed on one key).
    #[error("key {key:?}: {message}")]
    Model {
        /// The key.
        key: String,
        /// What does not fit.
        message: String,
    },
    /// A `verdicts.tsv` line is malformed.
    #[error("verdicts file line {line}: {message}")]
    Verdicts {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn parse(line: u64, message: impl Into<String>) -> Self {
        Error::Parse { line, message: message.into() }
    }

    pub(crate) fn pairing(line: u64, message: impl Into<String>) -> Self {
        Error::Pairing { line, message: message.into() }
    }

    pub(crate) fn model(key: &str, message: impl Into<String>) -> Self {
        Error::Model { key: key.to_owned(), message: message.into() }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
