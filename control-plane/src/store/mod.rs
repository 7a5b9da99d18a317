//! Storage: one interface, two implementations (embedded single file, Redis), one
//! conformance suite (`tests/store_conformance.rs`) run against both.
//!
//! The interface is deliberately small: documents in named tables with atomic
//! compare-and-swap, append-only logs whose append is conditional on their length
//! (the audit chain, the change feed), and leases. Services build every
//! invariant on those three primitives, so both backends give the same guarantees.

pub mod embedded;
pub mod redis;
pub mod typed;

pub use typed::{Change, Doc, Retries};

use async_trait::async_trait;

/// The tables documents live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Singletons: the keyring, settings.
    Meta,
    Clients,
    RefreshTokens,
    Families,
    Revocations,
    Limits,
    /// Filters and the snapshot version each applied.
    Filters,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Meta,
        Table::Clients,
        Table::RefreshTokens,
        Table::Families,
        Table::Revocations,
        Table::Limits,
        Table::Filters,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Clients => "clients",
            Table::RefreshTokens => "refresh_tokens",
            Table::Families => "families",
            Table::Revocations => "revocations",
            Table::Limits => "limits",
            Table::Filters => "filters",
        }
    }
}

/// Append-only logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Log {
    Audit,
    Changes,
}

impl Log {
    pub fn name(self) -> &'static str {
        match self {
            Log::Audit => "audit",
            Log::Changes => "changes",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// The write was applied on the primary, but not confirmed by the replicas it must
    /// reach (Redis `WAIT`): it may be lost if the primary fails now. Retrying is safe.
    #[error("the change was applied but not confirmed by enough replicas ({0}); it may be lost if the primary fails now; retrying is safe")]
    NotReplicated(String),
    /// A compare-and-swap lost `CAS_ATTEMPTS` times in a row; names what was contended.
    #[error("{0} is being changed concurrently; try again")]
    Contended(&'static str),
}

pub type StoreResult<T> = Result<T, StoreError>;

pub type Nudges = std::pin::Pin<Box<dyn futures_util::Stream<Item = ()> + Send>>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, table: Table, key: &str) -> StoreResult<Option<Vec<u8>>>;

    /// Sets `key` to `new` (`None` deletes) only if its value is `expected` (`None`:
    /// absent). True when the swap happened.
    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> StoreResult<bool>;

    /// Unconditional write.
    async fn put(&self, table: Table, key: &str, value: &[u8]) -> StoreResult<()>;

    async fn delete(&self, table: Table, key: &str) -> StoreResult<bool>;

    /// Every entry, sorted by key.
    async fn list(&self, table: Table) -> StoreResult<Vec<(String, Vec<u8>)>>;

    /// Appends `entry` as number `expected_len` (0-based) and records `head` beside the
    /// log, atomically, only if the log holds exactly `expected_len` entries.
    async fn append(
        &self,
        log: Log,
        expected_len: u64,
        entry: &[u8],
        head: &[u8],
    ) -> StoreResult<bool>;

    /// The log's length and its recorded head. Trimmed entries still count: the length
    /// only grows.
    async fn log_head(&self, log: Log) -> StoreResult<(u64, Option<Vec<u8>>)>;

    /// Up to `limit` entries from index `from`; nothing when `from` has been trimmed away.
    async fn read_log(&self, log: Log, from: u64, limit: u64) -> StoreResult<Vec<Vec<u8>>>;

    /// Drops the entries before index `before` (compaction), keeping every index and the
    /// length as they were; how many were dropped. For the change log only: the audit
    /// chain is never trimmed.
    async fn trim_log(&self, log: Log, before: u64) -> StoreResult<u64>;

    /// Takes or renews the lease `name` for `holder` for `ttl_ms`; true if held.
    async fn lease(&self, name: &str, holder: &str, ttl_ms: u64) -> StoreResult<bool>;

    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// A stream that yields soon after any replica appends to the change log (a nudge:
    /// it may skip or merge appends; the log itself is the truth). `None`: this store
    /// has no such channel (one process, or unreachable now).
    async fn change_nudges(&self) -> Option<Nudges> {
        None
    }

    fn kind(&self) -> &'static str;
}
