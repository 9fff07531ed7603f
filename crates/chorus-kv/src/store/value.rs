//! The stored data: keys, values (strings, lists, hashes, sets), entries and tombstones.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use imbl::{OrdMap, OrdSet, Vector};

use super::key_hash;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key {
    pub(super) h: u64,
    pub(super) k: Bytes,
}

impl Key {
    pub(super) fn new(k: &Bytes) -> Key {
        Key { h: key_hash(k), k: k.clone() }
    }
    pub(super) const MIN: Key = Key { h: 0, k: Bytes::new() };
}

#[derive(Clone, Debug)]
pub(super) enum Value {
    Str(Bytes),
    /// Behind an `Arc` to keep entries small (an imbl `Vector` is 64 bytes): a write after a
    /// freeze copies the `List` (a few items, or a long list's root) with `Arc::make_mut`.
    List(Arc<List>),
    Hash(OrdMap<Bytes, Bytes>),
    Set(OrdSet<Bytes>),
}

impl Value {
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }
}

/// A list's items: a `VecDeque` while short, a persistent `Vector` once long. A short one is
/// cheap to copy when a write follows a freeze; a long one then copies only the chunks on the
/// written path. (A `Vector` of even two items holds a 64-slot chunk, about 2 KiB.)
#[derive(Clone, Debug)]
pub(super) enum List {
    Short(VecDeque<Bytes>),
    Long(Vector<Bytes>),
}

/// The most items a list holds as a `VecDeque`; a long list that shrinks to a quarter of this
/// becomes short again (not at once, so a list at the boundary does not flip at every push).
pub(super) const SHORT_LIST: usize = 64;

impl Default for List {
    fn default() -> Self {
        List::Short(VecDeque::new())
    }
}

impl List {
    pub(super) fn len(&self) -> usize {
        match self {
            List::Short(d) => d.len(),
            List::Long(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn push(&mut self, item: Bytes, front: bool) {
        if let List::Short(d) = self {
            if d.len() >= SHORT_LIST {
                *self = List::Long(std::mem::take(d).into_iter().collect());
            }
        }
        match (self, front) {
            (List::Short(d), true) => d.push_front(item),
            (List::Short(d), false) => d.push_back(item),
            (List::Long(v), true) => v.push_front(item),
            (List::Long(v), false) => v.push_back(item),
        }
    }

    pub(super) fn pop(&mut self, front: bool) -> Option<Bytes> {
        let item = match (&mut *self, front) {
            (List::Short(d), true) => d.pop_front(),
            (List::Short(d), false) => d.pop_back(),
            (List::Long(v), true) => v.pop_front(),
            (List::Long(v), false) => v.pop_back(),
        };
        if let List::Long(v) = self {
            if v.len() <= SHORT_LIST / 4 {
                *self = List::Short(v.iter().cloned().collect());
            }
        }
        item
    }

    pub(super) fn get(&self, i: usize) -> Option<&Bytes> {
        match self {
            List::Short(d) => d.get(i),
            List::Long(v) => v.get(i),
        }
    }

    /// The items from `from` to before `to` (both clamped to the list).
    pub(super) fn range(&self, from: usize, to: usize) -> ListIter<'_> {
        let to = to.min(self.len());
        let from = from.min(to);
        match self {
            List::Short(d) => ListIter::Short(d.range(from..to)),
            List::Long(v) => ListIter::Long(v.focus().narrow(from..to).into_iter()),
        }
    }

    pub(super) fn iter(&self) -> ListIter<'_> {
        self.range(0, usize::MAX)
    }

    /// A list of these items, short or long by their number.
    pub(super) fn from_items(items: impl IntoIterator<Item = Bytes>) -> List {
        let d: VecDeque<Bytes> = items.into_iter().collect();
        if d.len() > SHORT_LIST {
            List::Long(d.into_iter().collect())
        } else {
            List::Short(d)
        }
    }

    /// Replaces the item at `i`; false if there is none.
    pub(super) fn set(&mut self, i: usize, item: Bytes) -> bool {
        if i >= self.len() {
            return false;
        }
        match self {
            List::Short(d) => {
                if let Some(x) = d.get_mut(i) {
                    *x = item;
                }
            }
            List::Long(v) => {
                v.set(i, item);
            }
        }
        true
    }
}

pub(super) enum ListIter<'a> {
    Short(std::collections::vec_deque::Iter<'a, Bytes>),
    Long(imbl::vector::Iter<'a, Bytes, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a Bytes;

    fn next(&mut self) -> Option<&'a Bytes> {
        match self {
            ListIter::Short(i) => i.next(),
            ListIter::Long(i) => i.next(),
        }
    }
}

/// What is remembered of a deleted key (by its hash).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) struct Tomb {
    /// The index of the command that deleted it.
    pub(super) index: u64,
    /// Deleted because its expiry had passed: the version it had.
    pub(super) expired: Option<u64>,
}

/// Marks the version of a key that expired (its version before, with this bit set).
pub(super) const EXPIRED_TAG: u64 = 1 << 63;

#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) value: Value,
    /// Unix time in ms after which the key is gone.
    pub(super) expire_at: Option<u64>,
    /// The log index of the last change.
    pub(super) version: u64,
}

impl Entry {
    pub(super) fn expired(&self, now: u64) -> bool {
        self.expire_at.is_some_and(|at| now > at)
    }
}
