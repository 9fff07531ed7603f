//! Classifying requests: connection-level commands (the server's), reads (a [`Query`], never
//! replicated) and writes (a [`WriteCmd`], encoded by [`encode_write`] and replicated).
//!
//! Arity and the command's name are checked first ([`Classified::Reject`], which flags a
//! transaction as Redis does); then the arguments are parsed into a typed [`Cmd`], and argument
//! errors Redis reports when the command runs ([`Classified::Invalid`]) are found here too, so
//! they cost no round trip. Inside MULTI such a command is queued as [`Cmd::Fail`], which yields
//! the same error inside EXEC's reply, as in Redis.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::reply::{Reply, NOT_INTEGER, SYNTAX};
use crate::resp::parse_i64;

/// A command handled by the server itself, not by the store.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConnCmd {
    /// `PING [message]`
    Ping,
    /// ECHO message
    Echo,
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`
    Hello,
    /// `AUTH [user] pass`
    Auth,
    /// SELECT db (0 only)
    Select,
    /// CLIENT subcommand
    Client,
    /// QUIT
    Quit,
    /// `COMMAND [subcommand]`
    Command,
    /// `INFO [section...]`
    Info,
    /// CONFIG GET/SET/RESETSTAT
    Config,
    /// MULTI
    Multi,
    /// EXEC
    Exec,
    /// DISCARD
    Discard,
    /// WATCH key...
    Watch,
    /// UNWATCH
    Unwatch,
    /// READONLY: local reads on this connection.
    ReadOnly,
    /// READWRITE: linearizable reads on this connection.
    ReadWrite,
    /// `PROMOTE [node]`: make a standby (this node, or the given node id) active.
    Promote,
    /// RESET
    Reset,
    /// TIME
    Time,
    /// SAVE: write a snapshot now.
    Save,
    /// BGSAVE: write a snapshot in the background.
    BgSave,
    /// LASTSAVE: when the last snapshot was written.
    LastSave,
    /// `WAIT numreplicas timeout`: how many replicas hold this connection's writes.
    Wait,
}

/// What a command is, per the table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Handled by the server.
    Conn(ConnCmd),
    /// A read of the store.
    Read,
    /// A write of the store.
    Write,
}

/// One entry of the command table.
#[derive(Debug, PartialEq, Eq)]
pub struct Spec {
    /// The lowercase name.
    pub name: &'static str,
    /// Redis's arity: `n` exactly, or `-n` at least `n` (the name included).
    pub arity: i32,
    /// Its kind.
    pub kind: Kind,
    /// The first key argument, the last (-1: the last argument), the step (0: no keys).
    pub keys: (i32, i32, i32),
    /// Its group (for COMMAND DOCS).
    pub group: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i32,
    kind: Kind,
    keys: (i32, i32, i32),
    group: &'static str,
    summary: &'static str,
) -> Spec {
    Spec { name, arity, kind, keys, group, summary }
}

use Kind::{Read as R, Write as W};
const K1: (i32, i32, i32) = (1, 1, 1);
const KALL: (i32, i32, i32) = (1, -1, 1);
const K0: (i32, i32, i32) = (0, 0, 0);
const fn c(cmd: ConnCmd) -> Kind {
    Kind::Conn(cmd)
}

/// Every command this server knows.
pub static COMMANDS: &[Spec] = &[
    spec("get", 2, R, K1, "string", "Returns the string value of a key."),
    spec(
        "set",
        -3,
        W,
        K1,
        "string",
        "Sets the string value of a key, with an optional expiry and condition.",
    ),
    spec("setnx", 3, W, K1, "string", "Sets the string value of a key only when the key doesn't exist."),
    spec("setex", 4, W, K1, "string", "Sets the string value and the expiry in seconds of a key."),
    spec("psetex", 4, W, K1, "string", "Sets the string value and the expiry in milliseconds of a key."),
    spec("getset", 3, W, K1, "string", "Returns the previous string value of a key after setting it."),
    spec("getdel", 2, W, K1, "string", "Returns the string value of a key after deleting the key."),
    spec(
        "getex",
        -2,
        W,
        K1,
        "string",
        "Returns the string value of a key after setting its expiration time.",
    ),
    spec("getrange", 4, R, K1, "string", "Returns a substring of the string stored at a key."),
    spec("substr", 4, R, K1, "string", "Returns a substring from a string value."),
    spec(
        "setrange",
        4,
        W,
        K1,
        "string",
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
    ),
    spec("mget", -2, R, KALL, "string", "Returns the string values of one or more keys."),
    spec("mset", -3, W, (1, -1, 2), "string", "Sets the string values of one or more keys."),
    spec("msetnx", -3, W, (1, -1, 2), "string", "Sets the string values of keys only when none exists."),
    spec("incr", 2, W, K1, "string", "Increments the integer value of a key by one."),
    spec("decr", 2, W, K1, "string", "Decrements the integer value of a key by one."),
    spec("incrby", 3, W, K1, "string", "Increments the integer value of a key by a number."),
    spec("decrby", 3, W, K1, "string", "Decrements the integer value of a key by a number."),
    spec("append", 3, W, K1, "string", "Appends a string to the value of a key."),
    spec("strlen", 2, R, K1, "string", "Returns the length of a string value."),
    spec("del", -2, W, KALL, "generic", "Deletes one or more keys."),
    spec("unlink", -2, W, KALL, "generic", "Deletes one or more keys."),
    spec("exists", -2, R, KALL, "generic", "Counts how many of the keys exist."),
    spec("expire", -3, W, K1, "generic", "Sets a key's time to live in seconds."),
    spec("pexpire", -3, W, K1, "generic", "Sets a key's time to live in milliseconds."),
    spec("expireat", -3, W, K1, "generic", "Sets a key's expiry to a Unix time in seconds."),
    spec("pexpireat", -3, W, K1, "generic", "Sets a key's expiry to a Unix time in milliseconds."),
    spec("ttl", 2, R, K1, "generic", "Returns a key's time to live in seconds."),
    spec("pttl", 2, R, K1, "generic", "Returns a key's time to live in milliseconds."),
    spec("expiretime", 2, R, K1, "generic", "Returns a key's expiry as a Unix time in seconds."),
    spec("pexpiretime", 2, R, K1, "generic", "Returns a key's expiry as a Unix time in milliseconds."),
    spec("persist", 2, W, K1, "generic", "Removes a key's expiry."),
    spec("rename", 3, W, (1, 2, 1), "generic", "Renames a key and overwrites the destination."),
    spec("renamenx", 3, W, (1, 2, 1), "generic", "Renames a key only when the target key name doesn't exist."),
    spec("copy", -3, W, (1, 2, 1), "generic", "Copies the value of a key to a new key."),
    spec(
        "touch",
        -2,
        R,
        KALL,
        "generic",
        "Returns the number of existing keys out of those specified after updating the time they were last accessed.",
    ),
    spec("type", 2, R, K1, "generic", "Returns the type of the value of a key."),
    spec("keys", 2, R, K0, "generic", "Returns the keys matching a pattern."),
    spec("scan", -2, R, K0, "generic", "Iterates over the keys."),
    spec("dbsize", 1, R, K0, "server", "Returns the number of keys."),
    spec("flushall", -1, W, K0, "server", "Removes all keys."),
    spec("flushdb", -1, W, K0, "server", "Removes all keys."),
    spec("lpush", -3, W, K1, "list", "Prepends elements to a list."),
    spec("rpush", -3, W, K1, "list", "Appends elements to a list."),
    spec("lpushx", -3, W, K1, "list", "Prepends elements to a list only when it exists."),
    spec("rpushx", -3, W, K1, "list", "Appends elements to a list only when it exists."),
    spec("lpop", -2, W, K1, "list", "Removes and returns the first elements of a list."),
    spec("rpop", -2, W, K1, "list", "Removes and returns the last elements of a list."),
    spec("lrange", 4, R, K1, "list", "Returns a range of elements of a list."),
    spec("llen", 2, R, K1, "list", "Returns the length of a list."),
    spec("lindex", 3, R, K1, "list", "Returns an element of a list by its index."),
    spec("lset", 4, W, K1, "list", "Sets the value of an element in a list by its index."),
    spec(
        "ltrim",
        4,
        W,
        K1,
        "list",
        "Removes elements from both ends a list. Deletes the list if all elements were trimmed.",
    ),
    spec("lrem", 4, W, K1, "list", "Removes elements from a list. Deletes the list if the last element was removed."),
    spec("linsert", 5, W, K1, "list", "Inserts an element before or after another element in a list."),
    spec("lpos", -3, R, K1, "list", "Returns the index of matching elements in a list."),
    spec(
        "lmove",
        5,
        W,
        (1, 2, 1),
        "list",
        "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.",
    ),
    spec(
        "rpoplpush",
        3,
        W,
        (1, 2, 1),
        "list",
        "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.",
    ),
    spec("hset", -4, W, K1, "hash", "Sets fields of a hash."),
    spec("hmset", -4, W, K1, "hash", "Sets fields of a hash."),
    spec("hsetnx", 4, W, K1, "hash", "Sets a field of a hash only when it doesn't exist."),
    spec("hget", 3, R, K1, "hash", "Returns the value of a field of a hash."),
    spec("hmget", -3, R, K1, "hash", "Returns the values of fields of a hash."),
    spec("hdel", -3, W, K1, "hash", "Deletes fields of a hash."),
    spec("hgetall", 2, R, K1, "hash", "Returns all fields and values of a hash."),
    spec("hkeys", 2, R, K1, "hash", "Returns all fields of a hash."),
    spec("hvals", 2, R, K1, "hash", "Returns all values of a hash."),
    spec("hexists", 3, R, K1, "hash", "Says whether a field exists in a hash."),
    spec("hincrby", 4, W, K1, "hash", "Increments the integer value of a field of a hash."),
    spec("hlen", 2, R, K1, "hash", "Returns the number of fields of a hash."),
    spec("hstrlen", 3, R, K1, "hash", "Returns the length of the value of a field of a hash."),
    spec("sadd", -3, W, K1, "set", "Adds members to a set."),
    spec("srem", -3, W, K1, "set", "Removes members from a set."),
    spec("smembers", 2, R, K1, "set", "Returns all members of a set."),
    spec("sismember", 3, R, K1, "set", "Says whether a member belongs to a set."),
    spec("smismember", -3, R, K1, "set", "Says whether each member belongs to a set."),
    spec("scard", 2, R, K1, "set", "Returns the number of members of a set."),
    spec("sinter", -2, R, KALL, "set", "Returns the intersect of multiple sets."),
    spec("sunion", -2, R, KALL, "set", "Returns the union of multiple sets."),
    spec("sdiff", -2, R, KALL, "set", "Returns the difference of multiple sets."),
    spec("sinterstore", -3, W, KALL, "set", "Stores the intersect of multiple sets in a key."),
    spec("sunionstore", -3, W, KALL, "set", "Stores the union of multiple sets in a key."),
    spec("sdiffstore", -3, W, KALL, "set", "Stores the difference of multiple sets in a key."),
    spec("smove", 4, W, (1, 2, 1), "set", "Moves a member from one set to another."),
    spec("sintercard", -3, R, K0, "set", "Returns the number of members of the intersect of multiple sets."),
    spec("ping", -1, c(ConnCmd::Ping), K0, "connection", "Returns the server's liveliness response."),
    spec("echo", 2, c(ConnCmd::Echo), K0, "connection", "Returns the given string."),
    spec("hello", -1, c(ConnCmd::Hello), K0, "connection", "Handshakes: protocol version, authentication."),
    spec("auth", -2, c(ConnCmd::Auth), K0, "connection", "Authenticates the connection."),
    spec("select", 2, c(ConnCmd::Select), K0, "connection", "Selects the database (0 only)."),
    spec("client", -2, c(ConnCmd::Client), K0, "connection", "The connection's name and id."),
    spec("quit", -1, c(ConnCmd::Quit), K0, "connection", "Closes the connection."),
    spec("reset", 1, c(ConnCmd::Reset), K0, "connection", "Resets the connection."),
    spec("command", -1, c(ConnCmd::Command), K0, "server", "Returns information about commands."),
    spec("info", -1, c(ConnCmd::Info), K0, "server", "Returns information about the server and its group."),
    spec("config", -2, c(ConnCmd::Config), K0, "server", "Returns configuration parameters."),
    spec("time", 1, c(ConnCmd::Time), K0, "server", "Returns the server time."),
    spec("save", 1, c(ConnCmd::Save), K0, "server", "Writes a snapshot of the state to the data directory."),
    spec("bgsave", -1, c(ConnCmd::BgSave), K0, "server", "Writes a snapshot in the background."),
    spec("lastsave", 1, c(ConnCmd::LastSave), K0, "server", "Unix time of the last snapshot written."),
    spec(
        "wait",
        3,
        c(ConnCmd::Wait),
        K0,
        "generic",
        "Replicas holding this connection's writes (every member of the view: they are replicated before they are acknowledged).",
    ),
    spec("multi", 1, c(ConnCmd::Multi), K0, "transactions", "Starts a transaction."),
    spec("exec", 1, c(ConnCmd::Exec), K0, "transactions", "Executes the queued commands atomically."),
    spec("discard", 1, c(ConnCmd::Discard), K0, "transactions", "Discards a transaction."),
    spec("watch", -2, c(ConnCmd::Watch), KALL, "transactions", "Watches keys for an optimistic transaction."),
    spec("unwatch", 1, c(ConnCmd::Unwatch), K0, "transactions", "Forgets the watched keys."),
    spec("readonly", 1, c(ConnCmd::ReadOnly), K0, "cluster", "Serves this connection's reads locally."),
    spec("readwrite", 1, c(ConnCmd::ReadWrite), K0, "cluster", "Makes this connection's reads linearizable."),
    spec(
        "promote",
        -1,
        c(ConnCmd::Promote),
        K0,
        "cluster",
        "Makes a standby replica (this node, or the node id given) active.",
    ),
];

/// Finds a command by name, ignoring case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    lookup_index(name).map(|i| &COMMANDS[i])
}

/// Finds a command's index in [`COMMANDS`] by name, ignoring case.
pub fn lookup_index(name: &[u8]) -> Option<usize> {
    if name.len() > 16 {
        return None;
    }
    COMMANDS.iter().position(|s| s.name.len() == name.len() && s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// The Redis version that introduced the command (COMMAND DOCS' `since`), as redis-server
/// 7.0's own COMMAND DOCS gives it; `None` for commands Redis does not have (PROMOTE).
pub fn since(name: &str) -> Option<&'static str> {
    Some(match name {
        "get" | "set" | "setnx" | "getset" | "mget" | "incr" | "decr" | "incrby" | "decrby" | "del"
        | "exists" | "expire" | "ttl" | "type" | "keys" | "dbsize" | "flushall" | "flushdb" | "lpush"
        | "rpush" | "lpop" | "rpop" | "lrange" | "llen" | "lindex" | "sadd" | "srem" | "smembers"
        | "sismember" | "scard" | "ping" | "echo" | "auth" | "select" | "quit" | "info" | "save"
        | "bgsave" | "lastsave" => "1.0.0",
        "mset" | "msetnx" => "1.0.1",
        "expireat" | "multi" | "exec" => "1.2.0",
        "setex" | "append" | "hset" | "hmset" | "hsetnx" | "hget" | "hmget" | "hdel" | "hgetall"
        | "hkeys" | "hvals" | "hexists" | "hincrby" | "hlen" | "config" | "discard" => "2.0.0",
        "strlen" | "persist" | "lpushx" | "rpushx" | "watch" | "unwatch" => "2.2.0",
        "client" => "2.4.0",
        "psetex" | "pexpire" | "pexpireat" | "pttl" | "time" => "2.6.0",
        "scan" => "2.8.0",
        "command" => "2.8.13",
        "wait" | "readonly" | "readwrite" => "3.0.0",
        "hstrlen" => "3.2.0",
        "unlink" => "4.0.0",
        "hello" => "6.0.0",
        "getdel" | "smismember" | "reset" | "getex" | "copy" => "6.2.0",
        "rename" | "renamenx" | "substr" | "lset" | "ltrim" | "lrem" => "1.0.0",
        "rpoplpush" => "1.2.0",
        "sinter" | "sunion" | "sdiff" | "sinterstore" | "sunionstore" | "sdiffstore" | "smove" => "1.0.0",
        "sintercard" => "7.0.0",
        "linsert" => "2.2.0",
        "lpos" => "6.0.6",
        "lmove" => "6.2.0",
        "getrange" => "2.4.0",
        "setrange" => "2.2.0",
        "touch" => "3.2.1",
        "expiretime" | "pexpiretime" => "7.0.0",
        _ => return None,
    })
}

/// Whether `n` arguments (the name included) satisfy `arity`.
pub fn arity_ok(arity: i32, n: usize) -> bool {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let a = i64::from(arity);
    if a >= 0 {
        n == a
    } else {
        n >= -a
    }
}

/// `ERR wrong number of arguments for 'name' command`.
pub fn wrong_arity(name: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// Redis's text for an unknown command.
pub fn unknown_command(args: &[Bytes]) -> Reply {
    let name = args.first().map(|a| String::from_utf8_lossy(&a[..a.len().min(128)])).unwrap_or_default();
    let mut rest = String::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let text = String::from_utf8_lossy(&a[..a.len().min(room)]);
        rest.push('\'');
        rest.push_str(&text);
        rest.push_str("' ");
    }
    Reply::error(format!("ERR unknown command '{name}', with args beginning with: {rest}"))
}

/// A condition on a write (NX / XX).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cond {
    /// Unconditional.
    Always,
    /// Only if the key does not exist.
    Nx,
    /// Only if the key exists.
    Xx,
}

/// The conditions of EXPIRE (NX / XX / GT / LT), each checked on its own as Redis does.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireCond {
    /// Only if the key has no expiry.
    pub nx: bool,
    /// Only if the key has an expiry.
    pub xx: bool,
    /// Only if the new expiry is later (no expiry counts as infinite).
    pub gt: bool,
    /// Only if the new expiry is earlier (no expiry counts as infinite).
    pub lt: bool,
}

/// An expiry given with a write.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// Milliseconds after the command's time.
    RelMs(i64),
    /// A Unix time in milliseconds.
    AbsMs(i64),
}

/// Which command an expiry came with (for the text of its error).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpName {
    /// set
    Set,
    /// setex
    SetEx,
    /// psetex
    PSetEx,
    /// expire
    Expire,
    /// pexpire
    PExpire,
    /// expireat
    ExpireAt,
    /// pexpireat
    PExpireAt,
    /// getex
    GetEx,
}

impl ExpName {
    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            ExpName::Set => "set",
            ExpName::SetEx => "setex",
            ExpName::PSetEx => "psetex",
            ExpName::Expire => "expire",
            ExpName::PExpire => "pexpire",
            ExpName::ExpireAt => "expireat",
            ExpName::PExpireAt => "pexpireat",
            ExpName::GetEx => "getex",
        }
    }

    /// `ERR invalid expire time in '<name>' command`.
    pub fn error(self) -> Reply {
        Reply::error(format!("ERR invalid expire time in '{}' command", self.name()))
    }
}

/// GETEX's option. Its time is judged when the command runs, after the key's type, as Redis
/// does (`GETEX missing EX 0` is nil, not an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GetExOpt {
    /// No option: GET.
    Keep,
    /// PERSIST: drop the expiry.
    Persist,
    /// EX, PX, EXAT, PXAT: `n` in `unit` ms (None: not an integer), from now or `absolute`.
    Expire {
        /// 1000 (EX, EXAT) or 1 (PX, PXAT).
        unit: i64,
        /// EXAT / PXAT.
        absolute: bool,
        /// The time given.
        n: Option<i64>,
    },
}

/// SET and its variants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetArgs {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// EX / PX / EXAT / PXAT.
    pub expire: Option<Expiry>,
    /// NX / XX.
    pub cond: Cond,
    /// GET: reply with the old value.
    pub get: bool,
    /// KEEPTTL.
    pub keep_ttl: bool,
    /// For error texts.
    pub name: ExpName,
}

/// A data command, typed. Reads and writes alike: a transaction carries both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmd {
    /// An error found when parsing, reported when the command runs (queued in MULTI).
    Fail(String),
    /// GET key
    Get(Bytes),
    /// SET and SETEX, PSETEX, GETSET.
    Set(SetArgs),
    /// SETNX key value
    SetNx(Bytes, Bytes),
    /// GETDEL key
    GetDel(Bytes),
    /// MGET key...
    MGet(Vec<Bytes>),
    /// MSET (false) / MSETNX (true)
    MSet(Vec<(Bytes, Bytes)>, bool),
    /// INCR, DECR, INCRBY, DECRBY
    IncrBy(Bytes, i64),
    /// APPEND key value
    Append(Bytes, Bytes),
    /// STRLEN key
    Strlen(Bytes),
    /// DEL / UNLINK key...
    Del(Vec<Bytes>),
    /// EXISTS key...
    Exists(Vec<Bytes>),
    /// EXPIRE family: the time in milliseconds (relative unless `absolute`).
    Expire {
        /// The key.
        key: Bytes,
        /// Milliseconds.
        ms: i64,
        /// EXPIREAT / PEXPIREAT.
        absolute: bool,
        /// NX / XX / GT / LT.
        cond: ExpireCond,
        /// For error texts.
        name: ExpName,
    },
    /// TTL (ms=false), PTTL (ms=true); EXPIRETIME / PEXPIRETIME with `absolute`.
    Ttl {
        /// The key.
        key: Bytes,
        /// In milliseconds.
        ms: bool,
        /// As a Unix time.
        absolute: bool,
    },
    /// PERSIST key
    Persist(Bytes),
    /// TYPE key
    Type(Bytes),
    /// KEYS pattern
    Keys(Bytes),
    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`
    Scan {
        /// Where to go on from (0: the start).
        cursor: u64,
        /// MATCH.
        pattern: Option<Bytes>,
        /// COUNT (default 10).
        count: u64,
        /// TYPE.
        typ: Option<Bytes>,
    },
    /// DBSIZE
    DbSize,
    /// FLUSHALL / FLUSHDB
    Flush,
    /// LPUSH / RPUSH / LPUSHX / RPUSHX
    Push {
        /// The key.
        key: Bytes,
        /// The elements.
        values: Vec<Bytes>,
        /// At the head.
        left: bool,
        /// Only if the list exists (the X forms).
        existing: bool,
    },
    /// `LPOP` / `RPOP [count]`
    Pop {
        /// The key.
        key: Bytes,
        /// From the head.
        left: bool,
        /// The count, if given.
        count: Option<u64>,
    },
    /// LRANGE key start stop
    LRange(Bytes, i64, i64),
    /// LLEN key
    LLen(Bytes),
    /// LINDEX key index (None: not an integer, reported after the type check, as Redis).
    LIndex(Bytes, Option<i64>),
    /// HSET (false) / HMSET (true: replies OK)
    HSet(Bytes, Vec<(Bytes, Bytes)>, bool),
    /// HSETNX key field value
    HSetNx(Bytes, Bytes, Bytes),
    /// HGET key field
    HGet(Bytes, Bytes),
    /// HMGET key field...
    HMGet(Bytes, Vec<Bytes>),
    /// HDEL key field...
    HDel(Bytes, Vec<Bytes>),
    /// HGETALL key
    HGetAll(Bytes),
    /// HKEYS key
    HKeys(Bytes),
    /// HVALS key
    HVals(Bytes),
    /// HEXISTS key field
    HExists(Bytes, Bytes),
    /// HINCRBY key field increment
    HIncrBy(Bytes, Bytes, i64),
    /// HLEN key
    HLen(Bytes),
    /// HSTRLEN key field
    HStrlen(Bytes, Bytes),
    /// SADD key member...
    SAdd(Bytes, Vec<Bytes>),
    /// SREM key member...
    SRem(Bytes, Vec<Bytes>),
    /// SMEMBERS key
    SMembers(Bytes),
    /// SISMEMBER key member
    SIsMember(Bytes, Bytes),
    /// SMISMEMBER key member...
    SMIsMember(Bytes, Vec<Bytes>),
    /// SCARD key
    SCard(Bytes),
    /// WATCH's read: each key's modification version (internal).
    Versions(Vec<Bytes>),
    /// INFO's read: the number of keys and of keys with an expiry (internal).
    KeyspaceStats,
    // New commands go below: the replicated log encodes a command by its variant's position,
    // so a variant inserted above would change what logs already written mean.
    /// RENAME (false) / RENAMENX (true) source destination
    Rename(Bytes, Bytes, bool),
    /// COPY source destination [REPLACE]
    Copy(Bytes, Bytes, bool),
    /// TOUCH key...
    Touch(Vec<Bytes>),
    /// GETRANGE / SUBSTR key start end
    GetRange(Bytes, i64, i64),
    /// SETRANGE key offset value
    SetRange(Bytes, i64, Bytes),
    /// GETEX key [EX|PX|EXAT|PXAT t | PERSIST]
    GetEx(Bytes, GetExOpt),
    /// LSET key index element (None: not an integer, reported after the key's checks).
    LSet(Bytes, Option<i64>, Bytes),
    /// LTRIM key start stop
    LTrim(Bytes, i64, i64),
    /// LREM key count element
    LRem(Bytes, i64, Bytes),
    /// LINSERT key BEFORE (true) | AFTER pivot element
    LInsert(Bytes, bool, Bytes, Bytes),
    /// `LPOS key element [RANK r] [COUNT n] [MAXLEN m]`
    LPos {
        /// The key.
        key: Bytes,
        /// The element looked for.
        element: Bytes,
        /// Which match first (1: the first; negative: from the tail).
        rank: i64,
        /// COUNT, if given (0: every match).
        count: Option<u64>,
        /// MAXLEN (0: the whole list).
        maxlen: u64,
    },
    /// LMOVE source destination LEFT|RIGHT LEFT|RIGHT (true: LEFT); RPOPLPUSH is RIGHT LEFT.
    LMove(Bytes, Bytes, bool, bool),
    /// SINTER / SUNION / SDIFF key...
    SetOp(SetOp, Vec<Bytes>),
    /// SINTERSTORE / SUNIONSTORE / SDIFFSTORE destination key...
    SetOpStore(SetOp, Bytes, Vec<Bytes>),
    /// SMOVE source destination member
    SMove(Bytes, Bytes, Bytes),
    /// SINTERCARD numkeys key... [LIMIT n] (0: no limit)
    SInterCard(Vec<Bytes>, u64),
}

/// The set algebra of SINTER, SUNION, SDIFF and their STORE forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetOp {
    /// Members in every set (a missing key is an empty set).
    Inter,
    /// Members in any set.
    Union,
    /// Members of the first set in none of the others.
    Diff,
}

impl Cmd {
    /// Whether the command may change the store.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Cmd::Fail(_)
                | Cmd::Get(_)
                | Cmd::MGet(_)
                | Cmd::Strlen(_)
                | Cmd::Exists(_)
                | Cmd::Ttl { .. }
                | Cmd::Type(_)
                | Cmd::Keys(_)
                | Cmd::Scan { .. }
                | Cmd::DbSize
                | Cmd::LRange(..)
                | Cmd::LLen(_)
                | Cmd::LIndex(..)
                | Cmd::HGet(..)
                | Cmd::HMGet(..)
                | Cmd::HGetAll(_)
                | Cmd::HKeys(_)
                | Cmd::HVals(_)
                | Cmd::HExists(..)
                | Cmd::HLen(_)
                | Cmd::HStrlen(..)
                | Cmd::SMembers(_)
                | Cmd::SIsMember(..)
                | Cmd::SMIsMember(..)
                | Cmd::SCard(_)
                | Cmd::Versions(_)
                | Cmd::KeyspaceStats
                | Cmd::Touch(_)
                | Cmd::GetRange(..)
                | Cmd::LPos { .. }
                | Cmd::SetOp(..)
                | Cmd::SInterCard(..)
        )
    }
}

/// A read-only request, run with `StateMachine::query` (never replicated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query(pub(crate) Cmd);

impl Query {
    /// The read that the request `args` is; an error reply for anything else (a write, a
    /// connection command, bad arguments).
    pub fn from_args(args: &[Bytes]) -> Result<Query, Reply> {
        match classify(args) {
            Classified::Read(cmd) => Ok(Query(cmd)),
            Classified::Reject(r) | Classified::Invalid(r) => Err(r),
            Classified::Write(_) | Classified::Conn(..) => Err(Reply::err("ERR not a read-only command")),
        }
    }

    /// WATCH's read of the keys' versions: an array of integers.
    pub fn versions(keys: Vec<Bytes>) -> Query {
        Query(Cmd::Versions(keys))
    }

    /// INFO's read: `[keys, keys with an expiry]`.
    pub fn keyspace_stats() -> Query {
        Query(Cmd::KeyspaceStats)
    }
}

/// A replicated write: one command, or a whole transaction (EXEC), applied atomically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteCmd {
    /// One command.
    One(Cmd),
    /// MULTI ... EXEC: aborted (a null reply) if any watched key's version changed.
    Exec {
        /// WATCHed keys and the versions read then.
        watched: Vec<(Bytes, u64)>,
        /// The queued commands, reads included.
        cmds: Vec<Cmd>,
    },
}

/// The format version that leads every encoded write.
const WRITE_FORMAT: u8 = 1;

/// Encodes a write for replication (a format byte, then postcard).
pub fn encode_write(w: &WriteCmd) -> Bytes {
    // Room for a small command at once: growing from one byte cost 4% of a node under
    // pipelined SETs (reallocations).
    let mut out = Vec::with_capacity(64);
    out.push(WRITE_FORMAT);
    // Serializing into a Vec cannot fail for these types.
    match postcard::to_extend(w, out) {
        Ok(v) => Bytes::from(v),
        Err(_) => Bytes::from_static(&[0]),
    }
}

/// Decodes a replicated write; any bytes are handled (an error for what is not a write).
pub fn decode_write(b: &[u8]) -> Result<WriteCmd, String> {
    match b.split_first() {
        Some((&WRITE_FORMAT, rest)) => {
            let (w, left) = postcard::take_from_bytes::<WriteCmd>(rest).map_err(|e| e.to_string())?;
            if !left.is_empty() {
                return Err("trailing bytes".to_owned());
            }
            Ok(w)
        }
        Some((v, _)) => Err(format!("unknown write format {v}")),
        None => Err("empty write".to_owned()),
    }
}

/// What a request is.
#[derive(Clone, Debug, PartialEq)]
pub enum Classified {
    /// Handled by the server (arity checked).
    Conn(ConnCmd, &'static Spec),
    /// A read of the store.
    Read(Cmd),
    /// A write of the store.
    Write(Cmd),
    /// An unknown command or a wrong number of arguments (flags a transaction as dirty).
    Reject(Reply),
    /// Bad arguments, reported when the command runs in Redis (queued in a transaction).
    Invalid(Reply),
}

/// Classifies the request `args` (the name first).
pub fn classify(args: &[Bytes]) -> Classified {
    classify_indexed(args).0
}

/// [`classify`], also giving the command's index in [`COMMANDS`] (None if unknown).
pub fn classify_indexed(args: &[Bytes]) -> (Classified, Option<usize>) {
    let Some(name) = args.first() else { return (Classified::Reject(unknown_command(args)), None) };
    let Some(index) = lookup_index(name) else { return (Classified::Reject(unknown_command(args)), None) };
    (classify_spec(&COMMANDS[index], args), Some(index))
}

fn classify_spec(spec: &'static Spec, args: &[Bytes]) -> Classified {
    if !arity_ok(spec.arity, args.len()) {
        return Classified::Reject(wrong_arity(spec.name));
    }
    match spec.kind {
        Kind::Conn(cc) => Classified::Conn(cc, spec),
        Kind::Read | Kind::Write => match parse(spec.name, args) {
            Ok(cmd) if cmd.is_write() => Classified::Write(cmd),
            Ok(cmd) => Classified::Read(cmd),
            Err(r) => Classified::Invalid(r),
        },
    }
}

fn int(b: &[u8]) -> Result<i64, Reply> {
    parse_i64(b).ok_or(Reply::err(NOT_INTEGER))
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fn pairs(args: &[Bytes]) -> Vec<(Bytes, Bytes)> {
    args.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect()
}

/// Parses SET's options (`args` from the first option on).
fn parse_set(key: &Bytes, value: &Bytes, opts: &[Bytes]) -> Result<Cmd, Reply> {
    let (mut nx, mut xx, mut get, mut keep) = (false, false, false, false);
    // (unit in ms, absolute, argument)
    let mut exp: Option<(i64, bool, &Bytes)> = None;
    let mut kind: Option<&str> = None;
    let mut j = 0;
    while j < opts.len() {
        let a = &opts[j][..];
        let next = opts.get(j + 1);
        if eq(a, "nx") && !xx {
            nx = true;
        } else if eq(a, "xx") && !nx {
            xx = true;
        } else if eq(a, "get") {
            get = true;
        } else if eq(a, "keepttl") && exp.is_none() {
            keep = true;
        } else if let (Some(n), Some(next)) = (["ex", "px", "exat", "pxat"].iter().find(|n| eq(a, n)), next) {
            if keep || kind.is_some_and(|k| k != *n) {
                return Err(Reply::err(SYNTAX));
            }
            kind = Some(n);
            exp = Some(match *n {
                "ex" => (1000, false, next),
                "px" => (1, false, next),
                "exat" => (1000, true, next),
                _ => (1, true, next),
            });
            j += 1;
        } else {
            return Err(Reply::err(SYNTAX));
        }
        j += 1;
    }
    let expire = match exp {
        None => None,
        Some((unit, abs, arg)) => Some(parse_expire(arg, unit, abs, ExpName::Set)?),
    };
    let cond = if nx {
        Cond::Nx
    } else if xx {
        Cond::Xx
    } else {
        Cond::Always
    };
    Ok(Cmd::Set(SetArgs {
        key: key.clone(),
        value: value.clone(),
        expire,
        cond,
        get,
        keep_ttl: keep,
        name: ExpName::Set,
    }))
}

/// Parses the expiry argument of SET, SETEX, PSETEX: positive, in range.
fn parse_expire(arg: &[u8], unit: i64, abs: bool, name: ExpName) -> Result<Expiry, Reply> {
    let n = int(arg)?;
    if n <= 0 || (unit == 1000 && n > i64::MAX / 1000) {
        return Err(name.error());
    }
    let ms = n * unit;
    Ok(if abs { Expiry::AbsMs(ms) } else { Expiry::RelMs(ms) })
}

/// GETEX's options: EX, PX, EXAT, PXAT (with a time) or PERSIST; two different ones are a
/// syntax error, the same one again replaces the first (as Redis parses them).
fn parse_getex(key: Bytes, opts: &[Bytes]) -> Result<Cmd, Reply> {
    let mut opt = GetExOpt::Keep;
    let mut kind: Option<&str> = None;
    let mut j = 0;
    while j < opts.len() {
        let a = &opts[j][..];
        if eq(a, "persist") && kind.is_none_or(|k| k == "persist") {
            kind = Some("persist");
            opt = GetExOpt::Persist;
        } else if let (Some(n), Some(next)) =
            (["ex", "px", "exat", "pxat"].iter().find(|n| eq(a, n)), opts.get(j + 1))
        {
            if kind.is_some_and(|k| k != *n) {
                return Err(Reply::err(SYNTAX));
            }
            kind = Some(n);
            let (unit, absolute) = match *n {
                "ex" => (1000, false),
                "px" => (1, false),
                "exat" => (1000, true),
                _ => (1, true),
            };
            opt = GetExOpt::Expire { unit, absolute, n: parse_i64(next) };
            j += 1;
        } else {
            return Err(Reply::err(SYNTAX));
        }
        j += 1;
    }
    Ok(Cmd::GetEx(key, opt))
}

fn set_op(name: &str) -> SetOp {
    if name.starts_with("sinter") {
        SetOp::Inter
    } else if name.starts_with("sunion") {
        SetOp::Union
    } else {
        SetOp::Diff
    }
}

/// LPOS's options, checked as Redis checks them (before the key).
fn parse_lpos(key: Bytes, element: Bytes, opts: &[Bytes]) -> Result<Cmd, Reply> {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0u64);
    let positive = |b: &Bytes, what: &str| match parse_i64(b) {
        Some(n) if n >= 0 => Ok(n as u64),
        _ => Err(Reply::error(format!("ERR {what} can't be negative"))),
    };
    let mut j = 0;
    while j < opts.len() {
        let more = j + 1 < opts.len();
        if eq(&opts[j], "rank") && more {
            rank = int(&opts[j + 1])?;
            if rank == i64::MIN {
                return Err(Reply::err(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                ));
            }
            if rank == 0 {
                return Err(Reply::err(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if eq(&opts[j], "count") && more {
            count = Some(positive(&opts[j + 1], "COUNT")?);
        } else if eq(&opts[j], "maxlen") && more {
            maxlen = positive(&opts[j + 1], "MAXLEN")?;
        } else {
            return Err(Reply::err(SYNTAX));
        }
        j += 2;
    }
    Ok(Cmd::LPos { key, element, rank, count, maxlen })
}

fn parse_expire_cmd(args: &[Bytes], unit: i64, absolute: bool, name: ExpName) -> Result<Cmd, Reply> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in &args[3..] {
        if eq(o, "nx") {
            nx = true;
        } else if eq(o, "xx") {
            xx = true;
        } else if eq(o, "gt") {
            gt = true;
        } else if eq(o, "lt") {
            lt = true;
        } else {
            return Err(Reply::error(format!("ERR Unsupported option {}", String::from_utf8_lossy(o))));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Reply::err("ERR NX and XX, GT or LT options at the same time are not compatible"));
    }
    if gt && lt {
        return Err(Reply::err("ERR GT and LT options at the same time are not compatible"));
    }
    let cond = ExpireCond { nx, xx, gt, lt };
    let when = int(&args[2])?;
    if unit == 1000 && !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
        return Err(name.error());
    }
    Ok(Cmd::Expire { key: args[1].clone(), ms: when * unit, absolute, cond, name })
}

fn parse(name: &str, a: &[Bytes]) -> Result<Cmd, Reply> {
    let k = || a[1].clone();
    Ok(match name {
        "get" => Cmd::Get(k()),
        "set" => parse_set(&a[1], &a[2], &a[3..])?,
        "setnx" => Cmd::SetNx(k(), a[2].clone()),
        "setex" | "psetex" => {
            let (unit, n) = if name == "setex" { (1000, ExpName::SetEx) } else { (1, ExpName::PSetEx) };
            let expire = parse_expire(&a[2], unit, false, n)?;
            Cmd::Set(SetArgs {
                key: k(),
                value: a[3].clone(),
                expire: Some(expire),
                cond: Cond::Always,
                get: false,
                keep_ttl: false,
                name: n,
            })
        }
        "getset" => Cmd::Set(SetArgs {
            key: k(),
            value: a[2].clone(),
            expire: None,
            cond: Cond::Always,
            get: true,
            keep_ttl: false,
            name: ExpName::Set,
        }),
        "getdel" => Cmd::GetDel(k()),
        "getex" => parse_getex(k(), &a[2..])?,
        "getrange" | "substr" => Cmd::GetRange(k(), int(&a[2])?, int(&a[3])?),
        "setrange" => {
            let offset = int(&a[2])?;
            if offset < 0 {
                return Err(Reply::err("ERR offset is out of range"));
            }
            Cmd::SetRange(k(), offset, a[3].clone())
        }
        "rename" | "renamenx" => Cmd::Rename(k(), a[2].clone(), name == "renamenx"),
        "copy" => {
            let mut replace = false;
            let mut j = 3;
            while j < a.len() {
                if eq(&a[j], "replace") {
                    replace = true;
                } else if eq(&a[j], "db") && j + 1 < a.len() {
                    // One database, as SELECT: only 0 exists.
                    match parse_i64(&a[j + 1]) {
                        Some(0) => {}
                        Some(_) => return Err(Reply::err("ERR DB index is out of range")),
                        None => return Err(Reply::err(NOT_INTEGER)),
                    }
                    j += 1;
                } else {
                    return Err(Reply::err(SYNTAX));
                }
                j += 1;
            }
            Cmd::Copy(k(), a[2].clone(), replace)
        }
        "touch" => Cmd::Touch(a[1..].to_vec()),
        "mget" => Cmd::MGet(a[1..].to_vec()),
        "mset" | "msetnx" => {
            if a.len().is_multiple_of(2) {
                return Err(wrong_arity(name));
            }
            Cmd::MSet(pairs(&a[1..]), name == "msetnx")
        }
        "incr" => Cmd::IncrBy(k(), 1),
        "decr" => Cmd::IncrBy(k(), -1),
        "incrby" => Cmd::IncrBy(k(), int(&a[2])?),
        "decrby" => {
            let n = int(&a[2])?;
            if n == i64::MIN {
                return Err(Reply::err("ERR decrement would overflow"));
            }
            Cmd::IncrBy(k(), -n)
        }
        "append" => Cmd::Append(k(), a[2].clone()),
        "strlen" => Cmd::Strlen(k()),
        "del" | "unlink" => Cmd::Del(a[1..].to_vec()),
        "exists" => Cmd::Exists(a[1..].to_vec()),
        "expire" => parse_expire_cmd(a, 1000, false, ExpName::Expire)?,
        "pexpire" => parse_expire_cmd(a, 1, false, ExpName::PExpire)?,
        "expireat" => parse_expire_cmd(a, 1000, true, ExpName::ExpireAt)?,
        "pexpireat" => parse_expire_cmd(a, 1, true, ExpName::PExpireAt)?,
        "ttl" => Cmd::Ttl { key: k(), ms: false, absolute: false },
        "pttl" => Cmd::Ttl { key: k(), ms: true, absolute: false },
        "expiretime" => Cmd::Ttl { key: k(), ms: false, absolute: true },
        "pexpiretime" => Cmd::Ttl { key: k(), ms: true, absolute: true },
        "persist" => Cmd::Persist(k()),
        "type" => Cmd::Type(k()),
        "keys" => Cmd::Keys(k()),
        "scan" => parse_scan(a)?,
        "dbsize" => Cmd::DbSize,
        "flushall" | "flushdb" => {
            if a.len() > 2 || (a.len() == 2 && !eq(&a[1], "async") && !eq(&a[1], "sync")) {
                return Err(Reply::err(SYNTAX));
            }
            Cmd::Flush
        }
        "lpush" | "rpush" | "lpushx" | "rpushx" => Cmd::Push {
            key: k(),
            values: a[2..].to_vec(),
            left: name.starts_with('l'),
            existing: name.ends_with('x'),
        },
        "lpop" | "rpop" => {
            if a.len() > 3 {
                return Err(wrong_arity(name));
            }
            let count = match a.get(2) {
                None => None,
                Some(c) => {
                    let n = int(c).map_err(|_| Reply::err("ERR value is out of range, must be positive"))?;
                    if n < 0 {
                        return Err(Reply::err("ERR value is out of range, must be positive"));
                    }
                    Some(n as u64)
                }
            };
            Cmd::Pop { key: k(), left: name == "lpop", count }
        }
        "lrange" => Cmd::LRange(k(), int(&a[2])?, int(&a[3])?),
        "llen" => Cmd::LLen(k()),
        "lindex" => Cmd::LIndex(k(), parse_i64(&a[2])),
        "lset" => Cmd::LSet(k(), parse_i64(&a[2]), a[3].clone()),
        "ltrim" => Cmd::LTrim(k(), int(&a[2])?, int(&a[3])?),
        "lrem" => Cmd::LRem(k(), int(&a[2])?, a[3].clone()),
        "linsert" => {
            let before = if eq(&a[2], "before") {
                true
            } else if eq(&a[2], "after") {
                false
            } else {
                return Err(Reply::err(SYNTAX));
            };
            Cmd::LInsert(k(), before, a[3].clone(), a[4].clone())
        }
        "lpos" => parse_lpos(k(), a[2].clone(), &a[3..])?,
        "lmove" => {
            let side = |b: &Bytes| {
                if eq(b, "left") {
                    Ok(true)
                } else if eq(b, "right") {
                    Ok(false)
                } else {
                    Err(Reply::err(SYNTAX))
                }
            };
            Cmd::LMove(k(), a[2].clone(), side(&a[3])?, side(&a[4])?)
        }
        "rpoplpush" => Cmd::LMove(k(), a[2].clone(), false, true),
        "hset" | "hmset" => {
            if !a.len().is_multiple_of(2) {
                return Err(wrong_arity(name));
            }
            Cmd::HSet(k(), pairs(&a[2..]), name == "hmset")
        }
        "hsetnx" => Cmd::HSetNx(k(), a[2].clone(), a[3].clone()),
        "hget" => Cmd::HGet(k(), a[2].clone()),
        "hmget" => Cmd::HMGet(k(), a[2..].to_vec()),
        "hdel" => Cmd::HDel(k(), a[2..].to_vec()),
        "hgetall" => Cmd::HGetAll(k()),
        "hkeys" => Cmd::HKeys(k()),
        "hvals" => Cmd::HVals(k()),
        "hexists" => Cmd::HExists(k(), a[2].clone()),
        "hincrby" => Cmd::HIncrBy(k(), a[2].clone(), int(&a[3])?),
        "hlen" => Cmd::HLen(k()),
        "hstrlen" => Cmd::HStrlen(k(), a[2].clone()),
        "sadd" => Cmd::SAdd(k(), a[2..].to_vec()),
        "srem" => Cmd::SRem(k(), a[2..].to_vec()),
        "smembers" => Cmd::SMembers(k()),
        "sismember" => Cmd::SIsMember(k(), a[2].clone()),
        "smismember" => Cmd::SMIsMember(k(), a[2..].to_vec()),
        "scard" => Cmd::SCard(k()),
        "sinter" | "sunion" | "sdiff" => Cmd::SetOp(set_op(name), a[1..].to_vec()),
        "sinterstore" | "sunionstore" | "sdiffstore" => Cmd::SetOpStore(set_op(name), k(), a[2..].to_vec()),
        "smove" => Cmd::SMove(k(), a[2].clone(), a[3].clone()),
        "sintercard" => {
            let numkeys_err = || Reply::err("ERR numkeys should be greater than 0");
            let n = match parse_i64(&a[1]) {
                Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(numkeys_err()),
            };
            if n > a.len() - 2 {
                return Err(Reply::err("ERR Number of keys can't be greater than number of args"));
            }
            let mut limit = 0;
            let mut j = 2 + n;
            while j < a.len() {
                if eq(&a[j], "limit") && j + 1 < a.len() {
                    limit = match parse_i64(&a[j + 1]) {
                        Some(l) if l >= 0 => l as u64,
                        _ => return Err(Reply::err("ERR LIMIT can't be negative")),
                    };
                    j += 2;
                } else {
                    return Err(Reply::err(SYNTAX));
                }
            }
            Cmd::SInterCard(a[2..2 + n].to_vec(), limit)
        }
        _ => return Err(unknown_command(a)),
    })
}

fn parse_scan(a: &[Bytes]) -> Result<Cmd, Reply> {
    let cursor = std::str::from_utf8(&a[1])
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(Reply::err("ERR invalid cursor"))?;
    let (mut pattern, mut count, mut typ) = (None, 10u64, None);
    let mut j = 2;
    while j < a.len() {
        let rest = a.len() - j - 1;
        if eq(&a[j], "count") && rest >= 1 {
            let n = int(&a[j + 1])?;
            if n < 1 {
                return Err(Reply::err(SYNTAX));
            }
            count = n as u64;
        } else if eq(&a[j], "match") && rest >= 1 {
            pattern = Some(a[j + 1].clone());
        } else if eq(&a[j], "type") && rest >= 1 {
            typ = Some(a[j + 1].clone());
        } else {
            return Err(Reply::err(SYNTAX));
        }
        j += 2;
    }
    Ok(Cmd::Scan { cursor, pattern, count, typ })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
    }

    fn err_text(c: Classified) -> String {
        match c {
            Classified::Reject(Reply::Error(e)) | Classified::Invalid(Reply::Error(e)) => e.into_owned(),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn classify_basics() {
        assert!(matches!(classify(&args("GET k")), Classified::Read(Cmd::Get(_))));
        assert!(matches!(classify(&args("set k v")), Classified::Write(Cmd::Set(_))));
        assert!(matches!(classify(&args("PING")), Classified::Conn(ConnCmd::Ping, _)));
        assert_eq!(err_text(classify(&args("get"))), "ERR wrong number of arguments for 'get' command");
        assert_eq!(
            err_text(classify(&args("foo bar baz"))),
            "ERR unknown command 'foo', with args beginning with: 'bar' 'baz' "
        );
        assert_eq!(err_text(classify(&args("set k v ex 0"))), "ERR invalid expire time in 'set' command");
        assert_eq!(err_text(classify(&args("set k v nx xx"))), "ERR syntax error");
        assert_eq!(err_text(classify(&args("set k v keepttl ex 1"))), "ERR syntax error");
        assert_eq!(err_text(classify(&args("set k v ex 1 px 1"))), "ERR syntax error");
        assert!(matches!(classify(&args("set k v ex 1 ex 2")), Classified::Write(_)));
        assert_eq!(err_text(classify(&args("incrby k x"))), NOT_INTEGER);
        assert_eq!(
            err_text(classify(&args("decrby k -9223372036854775808"))),
            "ERR decrement would overflow"
        );
        assert_eq!(err_text(classify(&args("mset a"))), "ERR wrong number of arguments for 'mset' command");
        assert_eq!(
            err_text(classify(&args("lpop k 1 2"))),
            "ERR wrong number of arguments for 'lpop' command"
        );
        assert_eq!(err_text(classify(&args("lpop k -1"))), "ERR value is out of range, must be positive");
        assert_eq!(err_text(classify(&args("scan x"))), "ERR invalid cursor");
        assert_eq!(err_text(classify(&args("scan 0 count 0"))), "ERR syntax error");
        assert_eq!(
            err_text(classify(&args("expire k 10 nx xx"))),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(err_text(classify(&args("expire k 10 foo"))), "ERR Unsupported option foo");
        assert_eq!(
            err_text(classify(&args("expire k 9223372036854775807"))),
            "ERR invalid expire time in 'expire' command"
        );
        assert!(matches!(classify(&args("lindex k x")), Classified::Read(Cmd::LIndex(_, None))));
    }

    #[test]
    fn every_redis_command_has_its_since() {
        // A command added to the table without its version would silently lose `since`.
        let ours = ["promote"];
        for s in COMMANDS {
            assert_eq!(since(s.name).is_none(), ours.contains(&s.name), "since({})", s.name);
        }
        assert_eq!(since("get"), Some("1.0.0"));
        assert_eq!(since("getdel"), Some("6.2.0"));
    }

    #[test]
    fn writes_round_trip() {
        let w = WriteCmd::Exec {
            watched: vec![(Bytes::from_static(b"k"), 7)],
            cmds: vec![Cmd::IncrBy(Bytes::from_static(b"k"), 2), Cmd::Get(Bytes::from_static(b"k"))],
        };
        let b = encode_write(&w);
        assert_eq!(decode_write(&b).unwrap(), w);
        assert!(decode_write(&[]).is_err());
        assert!(decode_write(&[9, 1, 2]).is_err());
        for cut in 0..b.len() {
            assert!(decode_write(&b[..cut]).is_err());
        }
    }
}
