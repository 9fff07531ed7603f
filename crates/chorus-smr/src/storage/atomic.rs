//! Small files replaced atomically: the node's identity, incarnation, membership record.
//!
//! ```text
//! [magic "chorfile"][len: u32 LE][crc32 of contents: u32 LE][contents]
//! ```

use std::io::{Read, Write};

use super::{Dir, StorageError};

const MAGIC: &[u8; 8] = b"chorfile";
const HEADER: usize = 16;

/// The largest contents [`write_atomic`] stores, so that a damaged length cannot make
/// [`read_atomic`] allocate gigabytes.
pub const MAX_ATOMIC: usize = 1 << 20;

/// Names the log and snapshots use, and the lock.
fn check_atomic_name(name: &str) -> Result<(), StorageError> {
    let bad = |why| Err(StorageError::BadName { name: name.to_owned(), why });
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return bad("use ASCII letters, digits, '-', '_' and '.'");
    }
    if name.starts_with("wal-") || name.starts_with("snap-") || name == "LOCK" || name.ends_with(".tmp") {
        return bad("the names wal-*, snap-*, LOCK and *.tmp are reserved");
    }
    if name.starts_with('.') {
        return bad("a name may not start with '.'");
    }
    Ok(())
}

/// Replaces the file `name` with `bytes` atomically: after a crash it holds either the old
/// contents or the new, never a mix. Written as `{name}.tmp`, synced, then renamed (durably).
pub fn write_atomic(dir: &dyn Dir, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    check_atomic_name(name)?;
    if bytes.len() > MAX_ATOMIC {
        return Err(StorageError::TooLarge {
            what: "atomic file",
            len: bytes.len() as u64,
            max: MAX_ATOMIC as u64,
        });
    }
    let tmp = format!("{name}.tmp");
    let mut data = Vec::with_capacity(HEADER + bytes.len());
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    data.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    data.extend_from_slice(bytes);
    let mut file = dir.create(&tmp).map_err(|e| StorageError::io(&tmp, "create", e))?;
    file.write_all(&data).map_err(|e| StorageError::io(&tmp, "write", e))?;
    file.sync().map_err(|e| StorageError::io(&tmp, "fsync", e))?;
    drop(file);
    dir.rename(&tmp, name).map_err(|e| StorageError::io(&tmp, "rename", e))
}

/// The contents of the file `name` written by [`write_atomic`], or `None` if there is none.
/// A file that fails its checks is [`StorageError::Corrupt`].
pub fn read_atomic(dir: &dyn Dir, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    check_atomic_name(name)?;
    let len = match dir.len(name) {
        Ok(len) => len,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(name, "stat", e)),
    };
    if len > (HEADER + MAX_ATOMIC) as u64 {
        return Err(StorageError::corrupt(
            name,
            0,
            format!("the file is {len} bytes, more than an atomic file can be ({MAX_ATOMIC} + {HEADER})"),
        ));
    }
    let mut data = Vec::with_capacity(len as usize);
    dir.open_read(name)
        .and_then(|f| f.take(len).read_to_end(&mut data))
        .map_err(|e| StorageError::io(name, "read", e))?;
    if data.len() < HEADER {
        return Err(StorageError::corrupt(name, 0, "the file is shorter than its header"));
    }
    if &data[..8] != MAGIC {
        return Err(StorageError::corrupt(name, 0, "not a file written by write_atomic (bad magic)"));
    }
    let stored_len = u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize;
    let stored_crc = u32::from_le_bytes([data[12], data[13], data[14], data[15]]);
    let contents = &data[HEADER..];
    if stored_len != contents.len() {
        return Err(StorageError::corrupt(
            name,
            8,
            format!("the header says {stored_len} bytes but the file holds {}", contents.len()),
        ));
    }
    let actual = crc32fast::hash(contents);
    if actual != stored_crc {
        return Err(StorageError::corrupt(
            name,
            HEADER as u64,
            format!("checksum mismatch (stored {stored_crc:#010x}, computed {actual:#010x})"),
        ));
    }
    Ok(Some(contents.to_vec()))
}
