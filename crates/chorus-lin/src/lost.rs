//! The lost-write check for list-append histories: every acknowledged append must be in the
//! final reads.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::history::{History, Op, Operation};

/// An acknowledged append missing from a final read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostAppend {
    /// The key.
    pub key: String,
    /// The value appended.
    pub value: String,
    /// The append (its completion was `ok`).
    pub append: Operation,
    /// The line of the completion of the final read that misses it.
    pub final_read_line: u64,
}

impl fmt::Display for LostAppend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {:?}: lost append {:?} ({}), missing from the final read completed at line {}",
            self.key, self.value, self.append, self.final_read_line
        )
    }
}

/// The result of [`lost_appends`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LostReport {
    /// Acknowledged appends missing from a final read, in key then history order.
    pub lost: Vec<LostAppend>,
    /// Keys with acknowledged appends but no final read (nothing could be checked there).
    pub keys_without_final_read: Vec<String>,
    /// How many final reads were checked.
    pub final_reads: usize,
    /// How many acknowledged appends were checked.
    pub appends_checked: usize,
}

impl LostReport {
    /// No acknowledged append is missing.
    pub fn is_ok(&self) -> bool {
        self.lost.is_empty()
    }
}

/// Finds acknowledged (`ok`) appends missing from the final reads of their key.
///
/// The final reads of a key are its `ok` read-lists invoked after every `ok` append on the
/// key had completed (a test ends with one such read per key, after healing the faults and a
/// quiet period). Appends with an unknown outcome are not required to be there; failed ones are
/// not in the history at all.
pub fn lost_appends(history: &History) -> LostReport {
    let mut report = LostReport::default();
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for o in &history.ops {
        by_key.entry(o.key.as_str()).or_default().push(o);
    }
    for (key, ops) in by_key {
        let acked: Vec<(&Operation, &str)> = ops
            .iter()
            .filter_map(|o| match (&o.op, o.ret) {
                (Op::Append { value }, Some(_)) => Some((*o, value.as_str())),
                _ => None,
            })
            .collect();
        if acked.is_empty() {
            continue;
        }
        let last_ack = acked.iter().filter_map(|(o, _)| o.ret).max().unwrap_or(0);
        let finals: Vec<(u64, HashSet<&str>)> = ops
            .iter()
            .filter_map(|o| match (&o.op, o.ret) {
                (Op::ReadList { result: Some(l) }, Some(r)) if o.call > last_ack => {
                    Some((r, l.iter().map(String::as_str).collect()))
                }
                _ => None,
            })
            .collect();
        if finals.is_empty() {
            report.keys_without_final_read.push(key.to_owned());
            continue;
        }
        report.final_reads += finals.len();
        report.appends_checked += acked.len();
        for (append, value) in acked {
            if let Some((line, _)) = finals.iter().find(|(_, seen)| !seen.contains(value)) {
                report.lost.push(LostAppend {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    append: append.clone(),
                    final_read_line: *line,
                });
            }
        }
    }
    report
}
