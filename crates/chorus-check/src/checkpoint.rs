//! The reference state machine's checkpoint (the simulator's and `chorus node`'s): a 16-byte
//! header, the state's `applied` count and `hash` (see [`crate::trace::chain`]) in little
//! endian, then filler bytes that are a function of the header. A large checkpoint then streams
//! in many pieces and the loading side can check every byte: a piece lost, repeated or
//! misplaced makes the loaded state differ from the donor's, which G11 catches.

/// Bytes of the header.
pub const HEADER_LEN: u64 = 16;

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Byte `i` of the checkpoint of state (`applied`, `hash`).
pub fn byte(applied: u64, hash: u64, i: u64) -> u8 {
    if i < HEADER_LEN {
        let word = if i < 8 { applied } else { hash };
        return (word >> ((i % 8) * 8)) as u8;
    }
    let f = i - HEADER_LEN;
    (mix(hash ^ applied.rotate_left(32) ^ (f >> 3)) >> ((f & 7) * 8)) as u8
}

/// Bytes `from..to` of the checkpoint of state (`applied`, `hash`).
pub fn piece(applied: u64, hash: u64, from: u64, to: u64) -> Vec<u8> {
    (from..to).map(|i| byte(applied, hash, i)).collect()
}

/// Checks a checkpoint as it arrives, piece by piece, in order.
#[derive(Clone, Debug, Default)]
pub struct Loader {
    got: u64,
    head: [u8; HEADER_LEN as usize],
    intact: bool,
}

impl Loader {
    /// Nothing received yet.
    pub fn new() -> Loader {
        Loader { intact: true, ..Loader::default() }
    }

    /// Bytes received so far.
    pub fn got(&self) -> u64 {
        self.got
    }

    /// Takes the piece at `offset` (which must be where the last one ended).
    pub fn feed(&mut self, offset: u64, data: &[u8]) {
        self.intact &= offset == self.got;
        for b in data {
            let i = self.got;
            if i < HEADER_LEN {
                self.head[i as usize] = *b;
            } else {
                let (applied, hash) = self.header();
                self.intact &= *b == byte(applied, hash, i);
            }
            self.got += 1;
        }
    }

    /// The state the header names.
    pub fn header(&self) -> (u64, u64) {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&self.head[..8]);
        b.copy_from_slice(&self.head[8..]);
        (u64::from_le_bytes(a), u64::from_le_bytes(b))
    }

    /// The checkpoint ended at `len` bytes: the state it holds, and whether every byte checked
    /// out (in order, none missing, none extra).
    pub fn finish(&self, len: u64) -> (u64, u64, bool) {
        let (applied, hash) = self.header();
        (applied, hash, self.intact && self.got == len && self.got >= HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_load_back_and_any_change_shows() {
        let (a, h) = (5, 0xdead_beef);
        let all = piece(a, h, 0, 1000);
        let mut l = Loader::new();
        for (k, c) in all.chunks(7).enumerate() {
            l.feed(k as u64 * 7, c);
        }
        assert_eq!(l.finish(1000), (a, h, true));
        let mut bad = all.clone();
        bad[500] ^= 1;
        let mut l = Loader::new();
        l.feed(0, &bad);
        assert_eq!(l.finish(1000), (a, h, false));
        let mut l = Loader::new();
        l.feed(0, &all[..10]);
        l.feed(20, &all[20..]);
        assert!(!l.finish(1000).2, "a gap shows");
    }
}
