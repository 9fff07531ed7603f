//! The sequential specifications, each prepared for the operations of one key (or, with
//! [`Whole`], of several keys at once). Values are interned, so a state is an integer or two.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::history::{abbreviate, show_list, Op, Operation};
use crate::wgl::{FxHashMap, Model};

/// Strings to dense ids.
#[derive(Debug, Default)]
struct Interner {
    ids: FxHashMap<String, u32>,
    strings: Vec<String>,
    bytes: usize,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.to_owned());
        self.ids.insert(s.to_owned(), id);
        self.bytes += 2 * s.len() + 64;
        id
    }

    fn get(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("?", String::as_str)
    }
}

#[derive(Debug, Clone, Copy)]
enum RegOp {
    Read(Option<u32>),
    Any,
    Write(u32),
    Cas { from: u32, to: u32, swapped: Option<bool> },
}

/// A register that starts as nil: `read` / `write`, and compare-and-set. The model of the
/// Jepsen etcd histories (`cas`) and of Redis GET/SET on one key (`register`).
#[derive(Debug)]
pub struct RegisterModel {
    values: Interner,
    ops: Vec<RegOp>,
    /// Per value id: how many operations may write it.
    writers: Vec<u32>,
}

impl RegisterModel {
    /// Prepares the model for these operations (of one key).
    ///
    /// On a key without cas, all values that no read returned are one state ("a value never
    /// read"): no later operation can tell them apart, and merging them lets the memo see that
    /// the orders of unread writes do not matter.
    pub fn new<'a>(key: &str, ops: impl IntoIterator<Item = &'a Operation>) -> Result<Self> {
        let ops: Vec<&Operation> = ops.into_iter().collect();
        let mut values = Interner::default();
        let has_cas = ops.iter().any(|o| matches!(o.op, Op::Cas { .. }));
        let mut read_values: HashSet<&str> = HashSet::new();
        for o in &ops {
            if let Op::Read { result: Some(Some(v)) } = &o.op {
                read_values.insert(v.as_str());
            }
        }
        let mut prepared = Vec::new();
        for o in &ops {
            prepared.push(match &o.op {
                Op::Read { result: Some(r) } => RegOp::Read(r.as_deref().map(|v| values.intern(v))),
                Op::Read { result: None } => RegOp::Any,
                Op::Write { value } if !has_cas && !read_values.contains(value.as_str()) => {
                    RegOp::Write(UNREAD)
                }
                Op::Write { value } => RegOp::Write(values.intern(value)),
                Op::Cas { from, to, swapped } => {
                    RegOp::Cas { from: values.intern(from), to: values.intern(to), swapped: *swapped }
                }
                other => {
                    return Err(Error::model(key, format!("the register model has no {}", other.function())))
                }
            });
        }
        let mut writers = vec![0u32; values.strings.len()];
        for op in &prepared {
            let v = match *op {
                RegOp::Write(v) => v,
                RegOp::Cas { to, swapped: Some(true) | None, .. } => to,
                _ => continue,
            };
            if let Some(w) = writers.get_mut(v as usize) {
                *w += 1;
            }
        }
        Ok(RegisterModel { values, ops: prepared, writers })
    }
}

/// The id of the merged state of [`RegisterModel`] (never an interned value's id).
const UNREAD: u32 = u32::MAX;

impl Model for RegisterModel {
    type State = Option<u32>;

    fn init(&mut self) -> Option<u32> {
        None
    }

    fn step(&mut self, state: &Option<u32>, op: usize) -> Option<Option<u32>> {
        match *self.ops.get(op)? {
            RegOp::Read(v) => (v == *state).then_some(*state),
            RegOp::Any => Some(*state),
            RegOp::Write(v) => Some(Some(v)),
            RegOp::Cas { from, to, swapped } => {
                let matches = *state == Some(from);
                match swapped {
                    Some(true) => matches.then_some(Some(to)),
                    Some(false) => (!matches).then_some(*state),
                    None => Some(if matches { Some(to) } else { *state }),
                }
            }
        }
    }

    fn is_read_only(&self, op: usize) -> bool {
        matches!(
            self.ops.get(op),
            Some(RegOp::Read(_) | RegOp::Any | RegOp::Cas { swapped: Some(false), .. })
        )
    }

    fn class(&self, op: usize) -> Option<u64> {
        match self.ops.get(op)? {
            RegOp::Write(v) => Some(u64::from(*v)),
            _ => None,
        }
    }

    /// Nil (tag 0) never comes back after a write; a value written by one operation (tag
    /// id + 1) never comes back once overwritten.
    fn tag(&self, state: &Option<u32>) -> Option<u32> {
        match *state {
            None => Some(0),
            Some(v) if self.writers.get(v as usize) == Some(&1) => Some(v + 1),
            Some(_) => None,
        }
    }

    fn needs(&self, op: usize) -> Option<u32> {
        match *self.ops.get(op)? {
            RegOp::Read(None) => Some(0),
            RegOp::Read(Some(v)) => Some(v + 1),
            RegOp::Cas { from, swapped: Some(true), .. } => Some(from + 1),
            _ => None,
        }
    }

    fn describe(&self, state: &Option<u32>) -> String {
        match state {
            None => "nil".to_owned(),
            Some(UNREAD) => "<a value no read returned>".to_owned(),
            Some(v) => abbreviate(self.values.get(*v)),
        }
    }

    fn model_bytes(&self) -> usize {
        self.values.bytes + self.ops.len() * std::mem::size_of::<RegOp>()
    }
}

#[derive(Debug, Clone, Copy)]
enum KvOp {
    /// Read this string (an id into `KvModel::strings`).
    Get(u32),
    Any,
    Put(u32),
    Append(u32),
}

/// A string as a chain of chunks: `parent`'s string followed by chunk `chunk`, with the length
/// and a polynomial hash of the whole, so that comparing with a read is O(1) but for a
/// verification when they match (cached).
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    chunk: u32,
    len: u64,
    hash: u64,
}

const HASH_BASE: u64 = 0x0000_0100_0000_01b3;

fn poly_hash(s: &str) -> u64 {
    s.bytes().fold(0u64, |h, b| h.wrapping_mul(HASH_BASE).wrapping_add(u64::from(b) + 1))
}

fn pow_base(mut e: u64) -> u64 {
    let (mut r, mut b) = (1u64, HASH_BASE);
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    r
}

/// One key of a string key-value store: `get` (a missing key reads as the empty string), `put`,
/// and `append` (string concatenation). The model of the Porcupine kv histories.
///
/// A state is a node of a trie of appended chunks (so the long strings that appends build are
/// never copied); two nodes may spell the same string, which only costs the memo a little.
#[derive(Debug)]
pub struct KvModel {
    strings: Interner,
    /// (len, hash, base^len) of each interned string.
    shape: Vec<(u64, u64, u64)>,
    nodes: Vec<Node>,
    children: FxHashMap<(u32, u32), u32>,
    verified: FxHashMap<(u32, u32), bool>,
    ops: Vec<KvOp>,
}

impl KvModel {
    /// Prepares the model for these operations (of one key).
    pub fn new<'a>(key: &str, ops: impl IntoIterator<Item = &'a Operation>) -> Result<Self> {
        let mut m = KvModel {
            strings: Interner::default(),
            shape: Vec::new(),
            nodes: vec![Node { parent: 0, chunk: 0, len: 0, hash: 0 }],
            children: FxHashMap::default(),
            verified: FxHashMap::default(),
            ops: Vec::new(),
        };
        m.intern("");
        for o in ops {
            let p = match &o.op {
                Op::Read { result: Some(r) } => KvOp::Get(m.intern(r.as_deref().unwrap_or(""))),
                Op::Read { result: None } => KvOp::Any,
                Op::Write { value } => KvOp::Put(m.intern(value)),
                Op::Append { value } => KvOp::Append(m.intern(value)),
                other => return Err(Error::model(key, format!("the kv model has no {}", other.function()))),
            };
            m.ops.push(p);
        }
        Ok(m)
    }

    fn intern(&mut self, s: &str) -> u32 {
        let id = self.strings.intern(s);
        if id as usize == self.shape.len() {
            let len = s.len() as u64;
            self.shape.push((len, poly_hash(s), pow_base(len)));
        }
        id
    }

    fn child(&mut self, node: u32, chunk: u32) -> u32 {
        let Some(&(clen, chash, cpow)) = self.shape.get(chunk as usize) else {
            return node;
        };
        if clen == 0 {
            return node;
        }
        if let Some(&c) = self.children.get(&(node, chunk)) {
            return c;
        }
        let Some(&p) = self.nodes.get(node as usize) else {
            return node;
        };
        let c = self.nodes.len() as u32;
        self.nodes.push(Node {
            parent: node,
            chunk,
            len: p.len + clen,
            hash: p.hash.wrapping_mul(cpow).wrapping_add(chash),
        });
        self.children.insert((node, chunk), c);
        c
    }

    /// Whether node `node` spells string `s`.
    fn spells(&mut self, node: u32, s: u32) -> bool {
        let (Some(n), Some(&(len, hash, _))) = (self.nodes.get(node as usize), self.shape.get(s as usize))
        else {
            return false;
        };
        if n.len != len || n.hash != hash {
            return false;
        }
        if let Some(&v) = self.verified.get(&(node, s)) {
            return v;
        }
        // Walk the chunks back from the end of the string.
        let target = self.strings.get(s).as_bytes();
        let mut end = target.len();
        let mut cur = node;
        let mut ok = true;
        while cur != 0 {
            let Some(n) = self.nodes.get(cur as usize) else {
                ok = false;
                break;
            };
            let chunk = self.strings.get(n.chunk).as_bytes();
            if chunk.len() > end || &target[end - chunk.len()..end] != chunk {
                ok = false;
                break;
            }
            end -= chunk.len();
            cur = n.parent;
        }
        ok &= end == 0;
        self.verified.insert((node, s), ok);
        ok
    }

    fn spell(&self, node: u32) -> String {
        let mut parts = Vec::new();
        let mut cur = node;
        while cur != 0 {
            let Some(n) = self.nodes.get(cur as usize) else {
                break;
            };
            parts.push(self.strings.get(n.chunk));
            cur = n.parent;
        }
        parts.reverse();
        parts.concat()
    }
}

impl Model for KvModel {
    type State = u32;

    fn init(&mut self) -> u32 {
        0
    }

    fn step(&mut self, state: &u32, op: usize) -> Option<u32> {
        match *self.ops.get(op)? {
            KvOp::Get(s) => self.spells(*state, s).then_some(*state),
            KvOp::Any => Some(*state),
            KvOp::Put(v) => Some(self.child(0, v)),
            KvOp::Append(v) => Some(self.child(*state, v)),
        }
    }

    fn is_read_only(&self, op: usize) -> bool {
        matches!(self.ops.get(op), Some(KvOp::Get(_) | KvOp::Any))
    }

    fn class(&self, op: usize) -> Option<u64> {
        match self.ops.get(op)? {
            KvOp::Put(v) => Some(u64::from(*v)),
            KvOp::Append(v) => Some(u64::from(*v) | 1 << 32),
            _ => None,
        }
    }

    fn describe(&self, state: &u32) -> String {
        abbreviate(&self.spell(*state))
    }

    fn model_bytes(&self) -> usize {
        self.strings.bytes
            + self.shape.len() * 24
            + self.nodes.len() * std::mem::size_of::<Node>()
            + (self.children.len() + self.verified.len()) * 24
            + self.ops.len() * 8
    }
}

#[derive(Debug, Clone, Copy)]
enum ListOp {
    Append(u32),
    Read(u32),
    Any,
}

/// One Redis list: `append` (RPUSH of one element) and `read-list` (LRANGE 0 -1), starting
/// empty. A state is a node of a trie of lists, so equal lists are equal integers.
#[derive(Debug)]
pub struct ListModel {
    values: Interner,
    /// Node 0 is the empty list; node k > 0 is `nodes[k].0` followed by value `nodes[k].1`.
    nodes: Vec<(u32, u32)>,
    children: FxHashMap<(u32, u32), u32>,
    ops: Vec<ListOp>,
    /// Nodes below this id are lists some read returned.
    read_nodes: u32,
    /// Per value: appended once and returned by a read.
    constrained: Vec<bool>,
}

impl ListModel {
    /// Prepares the model for these operations (of one key).
    ///
    /// The lists that reads returned form a trie. An append of a value that is appended once
    /// and that some read returned must extend the state into a node of that trie: that read
    /// shows exactly which list the append extended (lists only grow, the value is unique). So
    /// appends are taken in the order the reads show, instead of in every order.
    pub fn new<'a>(key: &str, ops: impl IntoIterator<Item = &'a Operation>) -> Result<Self> {
        let ops: Vec<&Operation> = ops.into_iter().collect();
        let mut m = ListModel {
            values: Interner::default(),
            nodes: vec![(0, 0)],
            children: FxHashMap::default(),
            ops: Vec::new(),
            read_nodes: 0,
            constrained: Vec::new(),
        };
        let mut read_node = vec![0u32; ops.len()];
        let mut observed: Vec<bool> = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            if let Op::ReadList { result: Some(list) } = &o.op {
                let mut node = 0;
                for v in list {
                    let v = m.values.intern(v);
                    if observed.len() <= v as usize {
                        observed.resize(v as usize + 1, false);
                    }
                    observed[v as usize] = true;
                    node = m.child(node, v);
                }
                read_node[i] = node;
            }
        }
        m.read_nodes = m.nodes.len() as u32;
        let mut appends: Vec<u32> = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            let p = match &o.op {
                Op::Append { value } => {
                    let v = m.values.intern(value);
                    if appends.len() <= v as usize {
                        appends.resize(v as usize + 1, 0);
                    }
                    appends[v as usize] += 1;
                    ListOp::Append(v)
                }
                Op::ReadList { result: Some(_) } => ListOp::Read(read_node[i]),
                Op::ReadList { result: None } => ListOp::Any,
                other => {
                    return Err(Error::model(key, format!("the list model has no {}", other.function())))
                }
            };
            m.ops.push(p);
        }
        m.constrained = (0..m.values.strings.len())
            .map(|v| observed.get(v) == Some(&true) && appends.get(v) == Some(&1))
            .collect();
        Ok(m)
    }

    fn child(&mut self, node: u32, v: u32) -> u32 {
        if let Some(&c) = self.children.get(&(node, v)) {
            return c;
        }
        let c = self.nodes.len() as u32;
        self.nodes.push((node, v));
        self.children.insert((node, v), c);
        c
    }
}

impl Model for ListModel {
    type State = u32;

    fn init(&mut self) -> u32 {
        0
    }

    fn step(&mut self, state: &u32, op: usize) -> Option<u32> {
        match *self.ops.get(op)? {
            ListOp::Append(v) if self.constrained.get(v as usize) == Some(&true) => {
                self.children.get(&(*state, v)).copied().filter(|&c| c < self.read_nodes)
            }
            ListOp::Append(v) => Some(self.child(*state, v)),
            ListOp::Read(node) => (node == *state).then_some(*state),
            ListOp::Any => Some(*state),
        }
    }

    fn is_read_only(&self, op: usize) -> bool {
        matches!(self.ops.get(op), Some(ListOp::Read(_) | ListOp::Any))
    }

    fn class(&self, op: usize) -> Option<u64> {
        match self.ops.get(op)? {
            ListOp::Append(v) => Some(u64::from(*v)),
            _ => None,
        }
    }

    /// A list some read returned: lists only grow, so once left it never comes back.
    fn tag(&self, state: &u32) -> Option<u32> {
        (*state < self.read_nodes).then_some(*state)
    }

    fn needs(&self, op: usize) -> Option<u32> {
        match *self.ops.get(op)? {
            ListOp::Read(node) => Some(node),
            _ => None,
        }
    }

    fn describe(&self, state: &u32) -> String {
        let mut items = Vec::new();
        let mut node = *state;
        while node != 0 {
            let Some(&(parent, v)) = self.nodes.get(node as usize) else {
                break;
            };
            items.push(self.values.get(v).to_owned());
            node = parent;
        }
        items.reverse();
        show_list(&items)
    }

    fn model_bytes(&self) -> usize {
        self.values.bytes + self.nodes.len() * 8 + self.children.len() * 24 + self.ops.len() * 8
    }
}

/// Several keys checked as one object (a map of key to sub-model), for comparing against a
/// verdict reached on a whole history; per key checking is equivalent and much faster.
#[derive(Debug)]
pub struct Whole<M> {
    names: Vec<String>,
    parts: Vec<M>,
    /// For each operation: (part, index of the operation within the part).
    route: Vec<(u32, u32)>,
}

impl<M: Model> Whole<M> {
    /// `parts[k]` is the model of key `names[k]`; `route[i]` says where operation `i` goes.
    pub fn new(names: Vec<String>, parts: Vec<M>, route: Vec<(u32, u32)>) -> Self {
        Whole { names, parts, route }
    }
}

impl<M: Model> Model for Whole<M> {
    type State = Box<[M::State]>;

    fn init(&mut self) -> Self::State {
        self.parts.iter_mut().map(|m| m.init()).collect()
    }

    fn step(&mut self, state: &Self::State, op: usize) -> Option<Self::State> {
        let &(part, local) = self.route.get(op)?;
        let m = self.parts.get_mut(part as usize)?;
        let next = m.step(state.get(part as usize)?, local as usize)?;
        let mut s = state.clone();
        if let Some(slot) = s.get_mut(part as usize) {
            *slot = next;
        }
        Some(s)
    }

    fn is_read_only(&self, op: usize) -> bool {
        self.route.get(op).is_some_and(|&(part, local)| {
            self.parts.get(part as usize).is_some_and(|m| m.is_read_only(local as usize))
        })
    }

    fn class(&self, op: usize) -> Option<u64> {
        let &(part, local) = self.route.get(op)?;
        let c = self.parts.get(part as usize)?.class(local as usize)?;
        // Classes of different keys must differ: fold the part into the high bits.
        Some(c ^ (u64::from(part) << 40))
    }

    fn describe(&self, state: &Self::State) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .zip(state.iter())
            .zip(&self.names)
            .map(|((m, s), k)| format!("{k:?}: {}", m.describe(s)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    fn state_heap_bytes(&self, state: &Self::State) -> usize {
        std::mem::size_of_val(&**state)
    }

    fn model_bytes(&self) -> usize {
        self.parts.iter().map(Model::model_bytes).sum::<usize>() + self.route.len() * 8
    }
}
