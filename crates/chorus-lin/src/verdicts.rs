//! `verdicts.tsv`: the known verdicts of a directory of histories.
//!
//! One line per verdict, tab-separated: file name, `linearizable` or `not-linearizable`, and
//! optionally `per-key` or `whole` (how the verdict was reached). Blank lines and lines
//! starting with `#` are skipped.

use crate::check::{Partition, Verdict};
use crate::error::{Error, Result};

/// One line of a `verdicts.tsv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownVerdict {
    /// The history file, relative to the directory of the `verdicts.tsv`.
    pub file: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// How it was reached, if said.
    pub partition: Option<Partition>,
}

/// Parses a `verdicts.tsv`.
pub fn parse(text: &str) -> Result<Vec<KnownVerdict>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = t.split('\t').map(str::trim).collect();
        let bad = |m: String| Error::Verdicts { line, message: m };
        let (file, verdict, partition) = match cols.as_slice() {
            [f, v] => (*f, *v, None),
            [f, v, p] => (*f, *v, Some(*p)),
            _ => return Err(bad(format!("expected 2 or 3 tab-separated columns: {t:?}"))),
        };
        let verdict = match verdict {
            "linearizable" => Verdict::Linearizable,
            "not-linearizable" => Verdict::NotLinearizable,
            other => return Err(bad(format!("unknown verdict {other:?}"))),
        };
        let partition = match partition {
            None => None,
            Some("per-key") => Some(Partition::PerKey),
            Some("whole") => Some(Partition::Whole),
            Some(other) => return Err(bad(format!("unknown partition {other:?}"))),
        };
        out.push(KnownVerdict { file: file.to_owned(), verdict, partition });
    }
    Ok(out)
}
