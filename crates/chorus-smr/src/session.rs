//! Client sessions: the last request of each client and its output, so that a retried request
//! is answered from memory instead of being applied twice.

use std::collections::BTreeMap;

/// The sessions table. Replicated: every replica updates it at the same commands, and evicts
/// the same least recently used session when it is full.
#[derive(Debug, Clone)]
pub(crate) struct Sessions<O> {
    max: usize,
    /// session -> (last request number, index it was applied at, its output)
    by_id: BTreeMap<u64, (u64, u64, O)>,
    /// index of last use -> session
    by_use: BTreeMap<u64, u64>,
}

impl<O: Clone> Sessions<O> {
    pub(crate) fn new(max: usize) -> Self {
        Sessions { max: max.max(1), by_id: BTreeMap::new(), by_use: BTreeMap::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The session's last request number and output.
    pub(crate) fn get(&self, session: u64) -> Option<(u64, &O)> {
        self.by_id.get(&session).map(|(seq, _, out)| (*seq, out))
    }

    /// Records request `seq` of `session`, applied at `index` (increasing) with `out`.
    pub(crate) fn put(&mut self, session: u64, seq: u64, index: u64, out: O) {
        // One lookup for a known session (the common case: a client's next request).
        if let Some(e) = self.by_id.get_mut(&session) {
            let used = std::mem::replace(e, (seq, index, out)).1;
            self.by_use.remove(&used);
            self.by_use.insert(index, session);
            return;
        }
        if self.by_id.len() >= self.max {
            if let Some((_, oldest)) = self.by_use.pop_first() {
                self.by_id.remove(&oldest);
            }
        }
        self.by_id.insert(session, (seq, index, out));
        self.by_use.insert(index, session);
    }

    pub(crate) fn entries(&self) -> Vec<(u64, u64, u64, O)> {
        self.by_id.iter().map(|(s, (seq, idx, out))| (*s, *seq, *idx, out.clone())).collect()
    }

    pub(crate) fn from_entries(max: usize, entries: Vec<(u64, u64, u64, O)>) -> Self {
        let mut s = Sessions::new(max);
        let mut sorted = entries;
        sorted.sort_by_key(|e| e.2);
        for (session, seq, idx, out) in sorted {
            s.put(session, seq, idx, out);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut s = Sessions::new(2);
        s.put(1, 1, 1, "a");
        s.put(2, 1, 2, "b");
        s.put(1, 2, 3, "c"); // session 1 used again
        s.put(3, 1, 4, "d"); // evicts session 2
        assert!(s.get(2).is_none());
        assert_eq!(s.get(1), Some((2, &"c")));
        assert_eq!(s.get(3), Some((1, &"d")));
        let back = Sessions::from_entries(2, s.entries());
        assert_eq!(back.entries(), s.entries());
    }
}
