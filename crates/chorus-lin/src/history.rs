//! Histories: operations with an invocation time, a completion time (or none, when the outcome
//! is unknown) and their observed results; and the pairing of invoke/complete events into them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::error::{Error, Result};

/// One operation with what it observed. A result of `None` means the outcome is unknown: the
/// operation may have taken effect at any time after its invocation, or never, and its result is
/// unconstrained.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read a register (GET): `Some(None)` read nil / a missing key, `Some(Some(v))` read `v`.
    /// In the `kv` model a missing key reads as the empty string, so `nil` and `""` are the same.
    Read {
        /// What was read; `None` if unknown.
        result: Option<Option<String>>,
    },
    /// Write a register (SET / put).
    Write {
        /// The value written.
        value: String,
    },
    /// Compare-and-set: if the register holds `from`, set it to `to`.
    Cas {
        /// Expected value.
        from: String,
        /// New value.
        to: String,
        /// Whether it swapped; `None` if unknown.
        swapped: Option<bool>,
    },
    /// Append: RPUSH of one element in the `list` model, string concatenation in the `kv` model.
    Append {
        /// The element (list) or the suffix (kv).
        value: String,
    },
    /// Read a whole list (LRANGE 0 -1).
    ReadList {
        /// The elements read; `None` if unknown.
        result: Option<Vec<String>>,
    },
}

impl Op {
    /// The name of the operation's function, as in the JSONL format.
    pub fn function(&self) -> Function {
        match self {
            Op::Read { .. } => Function::Read,
            Op::Write { .. } => Function::Write,
            Op::Cas { .. } => Function::Cas,
            Op::Append { .. } => Function::Append,
            Op::ReadList { .. } => Function::ReadList,
        }
    }
}

/// A string, quoted, cut in the middle if long.
pub(crate) fn abbreviate(s: &str) -> String {
    const KEEP: usize = 40;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 2 * KEEP + 10 {
        return format!("{s:?}");
    }
    let head: String = chars[..KEEP].iter().collect();
    let tail: String = chars[chars.len() - KEEP..].iter().collect();
    format!("{head:?}..({} chars)..{tail:?}", chars.len())
}

fn show_opt(v: &Option<String>) -> String {
    match v {
        Some(s) => abbreviate(s),
        None => "nil".to_owned(),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Read { result: Some(r) } => write!(f, "read -> {}", show_opt(r)),
            Op::Read { result: None } => write!(f, "read -> ?"),
            Op::Write { value } => write!(f, "write {}", abbreviate(value)),
            Op::Cas { from, to, swapped } => {
                let r = match swapped {
                    Some(true) => "ok",
                    Some(false) => "false",
                    None => "?",
                };
                write!(f, "cas {} -> {}: {r}", abbreviate(from), abbreviate(to))
            }
            Op::Append { value } => write!(f, "append {}", abbreviate(value)),
            Op::ReadList { result: Some(r) } => write!(f, "read-list -> {}", show_list(r)),
            Op::ReadList { result: None } => write!(f, "read-list -> ?"),
        }
    }
}

/// A list, abbreviated to its last elements if long.
pub(crate) fn show_list(items: &[String]) -> String {
    const SHOW: usize = 6;
    let shown: Vec<String> =
        items.iter().skip(items.len().saturating_sub(SHOW)).map(|s| abbreviate(s)).collect();
    if items.len() > SHOW {
        format!("[..{} more, {}]", items.len() - SHOW, shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}

/// The function of an event, as named in the JSONL format (`read-list` in kebab case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    /// [`Op::Read`].
    Read,
    /// [`Op::Write`].
    Write,
    /// [`Op::Cas`] (Jepsen and EDN histories only).
    Cas,
    /// [`Op::Append`].
    Append,
    /// [`Op::ReadList`].
    ReadList,
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Function::Read => "read",
            Function::Write => "write",
            Function::Cas => "cas",
            Function::Append => "append",
            Function::ReadList => "read-list",
        })
    }
}

/// The type of an event (Jepsen's `:type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation starts.
    Invoke,
    /// It happened, with this result.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown: it may happen at any time after its invocation, or never.
    Info,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client process that ran it.
    pub process: u64,
    /// The key it is on (`""` for histories of one object, such as the Jepsen etcd logs).
    pub key: String,
    /// What it did and observed.
    pub op: Op,
    /// When it was invoked: the 1-based line (event) number in the history file. Only the order
    /// of these times matters.
    pub call: u64,
    /// When it completed; `None` if its outcome is unknown (an `info` completion, or no
    /// completion at all): it then counts as completing after everything else.
    pub ret: Option<u64>,
}

impl Operation {
    /// Whether the outcome is unknown.
    pub fn is_unknown(&self) -> bool {
        self.ret.is_none()
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{} {} (line {}", self.process, self.op, self.call)?;
        match self.ret {
            Some(r) => write!(f, "-{r})"),
            None => write!(f, ", outcome unknown)"),
        }
    }
}

/// A history: the operations in the order of their invocations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The operations. Failed operations (those that certainly did not happen) are not here.
    pub ops: Vec<Operation>,
}

impl History {
    /// The indices of the operations on each key, keys in sorted order.
    pub fn by_key(&self) -> BTreeMap<&str, Vec<usize>> {
        let mut m: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, o) in self.ops.iter().enumerate() {
            m.entry(o.key.as_str()).or_default().push(i);
        }
        m
    }

    /// Builds a history from events in real-time order (see [`RawEvent`]).
    pub fn from_events(events: impl IntoIterator<Item = RawEvent>, opts: PairOptions) -> Result<Self> {
        let mut p = Pairer::new(opts);
        for e in events {
            p.push(e)?;
        }
        Ok(p.finish())
    }
}

/// A value carried by an event, whatever the file format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawValue {
    /// nil / null / absent.
    Nil,
    /// A string (numbers are carried as their decimal text).
    Str(String),
    /// A list of strings.
    List(Vec<String>),
    /// A pair (the `[from to]` of a cas).
    Pair(String, String),
    /// Anything else (`:timed-out`); ignored where a result is not needed.
    Other(String),
}

impl RawValue {
    fn describe(&self) -> String {
        match self {
            RawValue::Nil => "nil".to_owned(),
            RawValue::Str(s) => format!("{s:?}"),
            RawValue::List(l) => format!("{l:?}"),
            RawValue::Pair(a, b) => format!("[{a:?} {b:?}]"),
            RawValue::Other(o) => o.clone(),
        }
    }
}

/// One event of a history, whatever the file format: what the parsers produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// 1-based line number (used as the event's time: only the order matters).
    pub line: u64,
    /// The client process.
    pub process: u64,
    /// invoke / ok / fail / info.
    pub kind: EventType,
    /// The function.
    pub f: Function,
    /// The key, if the format has keys; a completion may leave it out.
    pub key: Option<String>,
    /// The value: the argument on an invocation, the result on a completion.
    pub value: RawValue,
}

/// How failed operations are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PairOptions {
    /// If true, a `fail` completion of a cas means "the compare failed" (Jepsen's etcd and
    /// Knossos-style cas clients, and Porcupine's reading of those logs): a completed cas that
    /// returned false. If false, a failed cas did not happen and is dropped, like every other
    /// failed operation.
    pub fail_cas_is_compare_false: bool,
}

struct Open {
    line: u64,
    f: Function,
    key: Option<String>,
    value: RawValue,
}

struct Pairer {
    opts: PairOptions,
    open: HashMap<u64, Open>,
    ops: Vec<Operation>,
}

fn need_str(line: u64, what: &str, v: &RawValue) -> Result<String> {
    match v {
        RawValue::Str(s) => Ok(s.clone()),
        other => Err(Error::parse(line, format!("{what} needs a string value, got {}", other.describe()))),
    }
}

impl Pairer {
    fn new(opts: PairOptions) -> Self {
        Pairer { opts, open: HashMap::new(), ops: Vec::new() }
    }

    fn push(&mut self, e: RawEvent) -> Result<()> {
        if e.kind == EventType::Invoke {
            if let Some(o) = self.open.get(&e.process) {
                return Err(Error::pairing(
                    e.line,
                    format!(
                        "process {} invokes {} while its {} from line {} has not completed",
                        e.process, e.f, o.f, o.line
                    ),
                ));
            }
            // Check the argument now, so that errors point at the invocation.
            match e.f {
                Function::Write | Function::Append => {
                    need_str(e.line, &e.f.to_string(), &e.value)?;
                }
                Function::Cas => {
                    if !matches!(e.value, RawValue::Pair(..)) {
                        return Err(Error::parse(
                            e.line,
                            format!("cas needs [from to], got {}", e.value.describe()),
                        ));
                    }
                }
                Function::Read | Function::ReadList => {}
            }
            self.open.insert(e.process, Open { line: e.line, f: e.f, key: e.key, value: e.value });
            return Ok(());
        }
        let Some(inv) = self.open.remove(&e.process) else {
            return Err(Error::pairing(
                e.line,
                format!("process {} completes a {} it never invoked", e.process, e.f),
            ));
        };
        if inv.f != e.f {
            return Err(Error::pairing(
                e.line,
                format!(
                    "process {} completes a {} but invoked a {} at line {}",
                    e.process, e.f, inv.f, inv.line
                ),
            ));
        }
        let key = match (inv.key, e.key) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::pairing(
                    e.line,
                    format!("completion on key {b:?} but invocation (line {}) on key {a:?}", inv.line),
                ))
            }
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => String::new(),
        };
        let ret = match e.kind {
            EventType::Ok => Some(e.line),
            EventType::Info => None,
            EventType::Fail => {
                if inv.f == Function::Cas && self.opts.fail_cas_is_compare_false {
                    Some(e.line)
                } else {
                    return Ok(()); // did not happen
                }
            }
            EventType::Invoke => None, // handled above
        };
        let known = ret.is_some();
        let op = match inv.f {
            Function::Read => Op::Read {
                result: if known {
                    Some(match e.value {
                        RawValue::Nil => None,
                        RawValue::Str(s) => Some(s),
                        other => {
                            return Err(Error::parse(
                                e.line,
                                format!("a read returns a string or nil, got {}", other.describe()),
                            ))
                        }
                    })
                } else {
                    None
                },
            },
            Function::ReadList => Op::ReadList {
                result: if known {
                    Some(match e.value {
                        RawValue::Nil => Vec::new(),
                        RawValue::List(l) => l,
                        other => {
                            return Err(Error::parse(
                                e.line,
                                format!("a read-list returns a list of strings, got {}", other.describe()),
                            ))
                        }
                    })
                } else {
                    None
                },
            },
            Function::Write => Op::Write { value: need_str(inv.line, "write", &inv.value)? },
            Function::Append => Op::Append { value: need_str(inv.line, "append", &inv.value)? },
            Function::Cas => {
                let RawValue::Pair(from, to) = inv.value else {
                    return Err(Error::parse(inv.line, "cas needs [from to]"));
                };
                Op::Cas { from, to, swapped: if known { Some(e.kind == EventType::Ok) } else { None } }
            }
        };
        self.ops.push(Operation { process: e.process, key, op, call: inv.line, ret });
        Ok(())
    }

    fn finish(mut self) -> History {
        let mut left: Vec<(u64, Open)> = self.open.drain().collect();
        left.sort_by_key(|(_, o)| o.line);
        for (process, inv) in left {
            let op = match (inv.f, inv.value) {
                (Function::Read, _) => Op::Read { result: None },
                (Function::ReadList, _) => Op::ReadList { result: None },
                (Function::Write, RawValue::Str(value)) => Op::Write { value },
                (Function::Append, RawValue::Str(value)) => Op::Append { value },
                (Function::Cas, RawValue::Pair(from, to)) => Op::Cas { from, to, swapped: None },
                // Arguments were checked at invocation.
                _ => continue,
            };
            self.ops.push(Operation {
                process,
                key: inv.key.unwrap_or_default(),
                op,
                call: inv.line,
                ret: None,
            });
        }
        self.ops.sort_by_key(|o| o.call);
        History { ops: self.ops }
    }
}
