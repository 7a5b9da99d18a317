//! The embedded store: one redb file on local disk, for a single replica. Every write
//! is a transaction committed with fsync before it is acknowledged.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Log, Store, StoreError, StoreResult, Table};

type Doc = TableDefinition<'static, &'static str, &'static [u8]>;
type LogDef = TableDefinition<'static, u64, &'static [u8]>;

const META: Doc = TableDefinition::new("meta");
const CLIENTS: Doc = TableDefinition::new("clients");
const REFRESH: Doc = TableDefinition::new("refresh_tokens");
const FAMILIES: Doc = TableDefinition::new("families");
const REVOCATIONS: Doc = TableDefinition::new("revocations");
const LIMITS: Doc = TableDefinition::new("limits");
const FILTERS: Doc = TableDefinition::new("filters");
const HEADS: Doc = TableDefinition::new("log_heads");
const LEASES: Doc = TableDefinition::new("leases");
const AUDIT: LogDef = TableDefinition::new("log_audit");
const CHANGES: LogDef = TableDefinition::new("log_changes");

fn doc(table: Table) -> Doc {
    match table {
        Table::Meta => META,
        Table::Clients => CLIENTS,
        Table::RefreshTokens => REFRESH,
        Table::Families => FAMILIES,
        Table::Revocations => REVOCATIONS,
        Table::Limits => LIMITS,
        Table::Filters => FILTERS,
    }
}

fn log_def(log: Log) -> LogDef {
    match log {
        Log::Audit => AUDIT,
        Log::Changes => CHANGES,
    }
}

/// Where a log's first kept entry is recorded (beside its head), once it was trimmed.
fn first_key(log: Log) -> &'static str {
    match log {
        Log::Audit => "audit.first",
        Log::Changes => "changes.first",
    }
}

/// A log's first kept index, from the heads table of a read or a write transaction.
fn first_index(
    heads: &impl ReadableTable<&'static str, &'static [u8]>,
    log: Log,
) -> StoreResult<u64> {
    match heads.get(first_key(log)).map_err(err)? {
        Some(v) => std::str::from_utf8(v.value())
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("log start".into())),
        None => Ok(0),
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl EmbeddedStore {
    pub fn open(path: &Path) -> StoreResult<EmbeddedStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        // Create every table up front so readers never meet a missing one.
        let txn = db.begin_write().map_err(err)?;
        for t in Table::ALL {
            txn.open_table(doc(t)).map_err(err)?;
        }
        txn.open_table(HEADS).map_err(err)?;
        txn.open_table(LEASES).map_err(err)?;
        txn.open_table(AUDIT).map_err(err)?;
        txn.open_table(CHANGES).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    /// Runs blocking redb work off the async runtime.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(err)?
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, table: Table, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_string();
        self.run(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(doc(table)).map_err(err)?;
            Ok(t.get(key.as_str())
                .map_err(err)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> StoreResult<bool> {
        let (key, expected, new) = (
            key.to_string(),
            expected.map(<[u8]>::to_vec),
            new.map(<[u8]>::to_vec),
        );
        self.run(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(doc(table)).map_err(err)?;
                let current = t
                    .get(key.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_vec());
                if current != expected {
                    return Ok(false);
                }
                match &new {
                    Some(v) => {
                        t.insert(key.as_str(), v.as_slice()).map_err(err)?;
                    }
                    None => {
                        t.remove(key.as_str()).map_err(err)?;
                    }
                }
            }
            txn.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn put(&self, table: Table, key: &str, value: &[u8]) -> StoreResult<()> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.run(move |db| {
            let txn = db.begin_write().map_err(err)?;
            txn.open_table(doc(table))
                .map_err(err)?
                .insert(key.as_str(), value.as_slice())
                .map_err(err)?;
            txn.commit().map_err(err)
        })
        .await
    }

    async fn delete(&self, table: Table, key: &str) -> StoreResult<bool> {
        let key = key.to_string();
        self.run(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let existed = txn
                .open_table(doc(table))
                .map_err(err)?
                .remove(key.as_str())
                .map_err(err)?
                .is_some();
            txn.commit().map_err(err)?;
            Ok(existed)
        })
        .await
    }

    async fn list(&self, table: Table) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(doc(table)).map_err(err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(err)? {
                let (k, v) = item.map_err(err)?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn append(
        &self,
        log: Log,
        expected_len: u64,
        entry: &[u8],
        head: &[u8],
    ) -> StoreResult<bool> {
        let (entry, head) = (entry.to_vec(), head.to_vec());
        self.run(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let first = first_index(&txn.open_table(HEADS).map_err(err)?, log)?;
                let mut t = txn.open_table(log_def(log)).map_err(err)?;
                if first + t.len().map_err(err)? != expected_len {
                    return Ok(false);
                }
                t.insert(expected_len, entry.as_slice()).map_err(err)?;
                txn.open_table(HEADS)
                    .map_err(err)?
                    .insert(log.name(), head.as_slice())
                    .map_err(err)?;
            }
            txn.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn log_head(&self, log: Log) -> StoreResult<(u64, Option<Vec<u8>>)> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let len = first_index(&txn.open_table(HEADS).map_err(err)?, log)?
                + txn
                    .open_table(log_def(log))
                    .map_err(err)?
                    .len()
                    .map_err(err)?;
            let head = txn
                .open_table(HEADS)
                .map_err(err)?
                .get(log.name())
                .map_err(err)?
                .map(|v| v.value().to_vec());
            Ok((len, head))
        })
        .await
    }

    async fn read_log(&self, log: Log, from: u64, limit: u64) -> StoreResult<Vec<Vec<u8>>> {
        self.run(move |db| {
            let txn = db.begin_read().map_err(err)?;
            if from < first_index(&txn.open_table(HEADS).map_err(err)?, log)? {
                return Ok(Vec::new());
            }
            let t = txn.open_table(log_def(log)).map_err(err)?;
            let mut out = Vec::new();
            for item in t.range(from..from.saturating_add(limit)).map_err(err)? {
                out.push(item.map_err(err)?.1.value().to_vec());
            }
            Ok(out)
        })
        .await
    }

    async fn trim_log(&self, log: Log, before: u64) -> StoreResult<u64> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(err)?;
            let first = first_index(&txn.open_table(HEADS).map_err(err)?, log)?;
            let dropped = {
                let mut t = txn.open_table(log_def(log)).map_err(err)?;
                let end = before.min(first + t.len().map_err(err)?);
                if end <= first {
                    return Ok(0);
                }
                for i in first..end {
                    t.remove(i).map_err(err)?;
                }
                txn.open_table(HEADS)
                    .map_err(err)?
                    .insert(first_key(log), end.to_string().as_bytes())
                    .map_err(err)?;
                end - first
            };
            txn.commit().map_err(err)?;
            Ok(dropped)
        })
        .await
    }

    async fn lease(&self, name: &str, holder: &str, ttl_ms: u64) -> StoreResult<bool> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.run(move |db| {
            let now = now_ms();
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(LEASES).map_err(err)?;
                let current = t
                    .get(name.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_vec());
                if let Some(cur) = current {
                    let text = String::from_utf8_lossy(&cur).to_string();
                    let (who, until) = text.split_once('@').unwrap_or(("", "0"));
                    if who != holder && until.parse::<u64>().unwrap_or(0) > now {
                        return Ok(false);
                    }
                }
                let value = format!("{holder}@{}", now + ttl_ms);
                t.insert(name.as_str(), value.as_bytes()).map_err(err)?;
            }
            txn.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(|db| db.begin_read().map(|_| ()).map_err(err))
            .await
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}
