//! Typed access to the store: a `Doc<T>` names a table and the record type it holds,
//! and is the only place records are encoded and decoded. `Retries` bounds every
//! compare-and-swap loop, so a hot key gives a clear conflict instead of a spin.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Store, StoreError, StoreResult, Table};

/// Attempts of one compare-and-swap loop before it gives up with `Contended`.
pub const CAS_ATTEMPTS: u32 = 16;

/// The retry budget of one compare-and-swap loop: call `attempt` at the top of each attempt.
pub struct Retries {
    left: u32,
    what: &'static str,
}

impl Retries {
    /// `what` names the contended thing in the error ("the keyring").
    pub fn new(what: &'static str) -> Retries {
        Retries {
            left: CAS_ATTEMPTS,
            what,
        }
    }

    pub fn attempt(&mut self) -> StoreResult<()> {
        if self.left == 0 {
            return Err(StoreError::Contended(self.what));
        }
        self.left -= 1;
        Ok(())
    }
}

/// Serde, once: JSON records, a decoding failure named after the record.
pub fn decode<T: DeserializeOwned>(what: &str, raw: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub fn encode<T: Serialize>(what: &str, value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| StoreError::Corrupt(format!("{what}: cannot encode: {e}")))
}

/// The JSON text of a message this process builds (a snapshot, a delta).
pub fn encode_text<T: Serialize>(what: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("{what}: cannot encode: {e}")))
}

/// What an update does with the record it read.
pub enum Change<T, R> {
    /// Leave it; answer `R`.
    Keep(R),
    /// Store this value; answer `R`.
    Set(T, R),
    /// Delete it; answer `R`.
    Remove(R),
}

/// The result of `Doc::update`: the answer, and the record as it now stands (value and
/// encoding) with whether this update wrote it.
pub struct Updated<T, R> {
    pub answer: R,
    pub value: Option<T>,
    pub raw: Option<Vec<u8>>,
    pub written: bool,
}

/// A table holding records of type `T`.
pub struct Doc<T> {
    table: Table,
    what: &'static str,
    /// For records a fresh one replaces: `update` sees an unreadable one as absent.
    replace_unreadable: bool,
    _record: PhantomData<fn() -> T>,
}

impl<T> Clone for Doc<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Doc<T> {}

/// A stored record with the bytes it was read as (the expectation of a later swap).
pub struct Read<T> {
    pub key: String,
    pub raw: Vec<u8>,
    pub value: T,
}

impl<T: Serialize + DeserializeOwned> Doc<T> {
    /// `what` names one record in errors ("client").
    pub const fn new(table: Table, what: &'static str) -> Doc<T> {
        Doc {
            table,
            what,
            replace_unreadable: false,
            _record: PhantomData,
        }
    }

    /// This table, with `update` replacing an unreadable record instead of failing.
    pub const fn replacing_unreadable(self) -> Doc<T> {
        Doc {
            replace_unreadable: true,
            ..self
        }
    }

    pub fn decode(&self, raw: &[u8]) -> StoreResult<T> {
        decode(self.what, raw)
    }

    pub fn encode(&self, value: &T) -> StoreResult<Vec<u8>> {
        encode(self.what, value)
    }

    pub async fn get(&self, store: &dyn Store, key: &str) -> StoreResult<Option<T>> {
        match store.get(self.table, key).await? {
            Some(raw) => Ok(Some(self.decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// The record with the bytes it was read as, for a later `swap`.
    pub async fn read(&self, store: &dyn Store, key: &str) -> StoreResult<Option<Read<T>>> {
        match store.get(self.table, key).await? {
            Some(raw) => Ok(Some(Read {
                key: key.to_string(),
                value: self.decode(&raw)?,
                raw,
            })),
            None => Ok(None),
        }
    }

    pub async fn contains(&self, store: &dyn Store, key: &str) -> StoreResult<bool> {
        Ok(store.get(self.table, key).await?.is_some())
    }

    /// Every record; a corrupt one is an error.
    pub async fn list(&self, store: &dyn Store) -> StoreResult<Vec<T>> {
        store
            .list(self.table)
            .await?
            .iter()
            .map(|(_, raw)| self.decode(raw))
            .collect()
    }

    /// Every readable record with its key and bytes, for sweeps that skip what they
    /// cannot read (a corrupt record must not stop pruning the rest).
    pub async fn scan(&self, store: &dyn Store) -> StoreResult<Vec<Read<T>>> {
        Ok(store
            .list(self.table)
            .await?
            .into_iter()
            .filter_map(|(key, raw)| {
                let value = self.decode(&raw).ok()?;
                Some(Read { key, raw, value })
            })
            .collect())
    }

    pub async fn count(&self, store: &dyn Store) -> StoreResult<usize> {
        Ok(store.list(self.table).await?.len())
    }

    /// Unconditional write.
    pub async fn put(&self, store: &dyn Store, key: &str, value: &T) -> StoreResult<()> {
        store.put(self.table, key, &self.encode(value)?).await
    }

    /// Creates the record only if `key` is free; true when it did.
    pub async fn insert_new(&self, store: &dyn Store, key: &str, value: &T) -> StoreResult<bool> {
        store
            .compare_and_swap(self.table, key, None, Some(&self.encode(value)?))
            .await
    }

    /// Replaces (or with `None` deletes) a record read earlier, only if it is unchanged.
    pub async fn swap(
        &self,
        store: &dyn Store,
        read: &Read<T>,
        new: Option<&T>,
    ) -> StoreResult<bool> {
        let bytes = new.map(|v| self.encode(v)).transpose()?;
        store
            .compare_and_swap(self.table, &read.key, Some(&read.raw), bytes.as_deref())
            .await
    }

    pub async fn delete(&self, store: &dyn Store, key: &str) -> StoreResult<bool> {
        store.delete(self.table, key).await
    }

    /// Read, change, compare-and-swap, within `CAS_ATTEMPTS`. `change` sees the record
    /// as stored (`None`: absent) and may run again after a conflict. Writing back the
    /// same bytes is skipped. An unreadable record is an error, unless this table
    /// `replacing_unreadable`.
    pub async fn update<R>(
        &self,
        store: &dyn Store,
        key: &str,
        contended: &'static str,
        mut change: impl FnMut(Option<T>) -> StoreResult<Change<T, R>>,
    ) -> StoreResult<Updated<T, R>>
    where
        T: Clone,
    {
        let mut retries = Retries::new(contended);
        loop {
            retries.attempt()?;
            let raw = store.get(self.table, key).await?;
            let current = match raw.as_deref().map(|r| self.decode(r)) {
                Some(Ok(v)) => Some(v),
                Some(Err(_)) if self.replace_unreadable => None,
                Some(Err(e)) => return Err(e),
                None => None,
            };
            let (answer, value) = match change(current.clone())? {
                Change::Keep(answer) => {
                    return Ok(Updated {
                        answer,
                        value: current,
                        raw,
                        written: false,
                    })
                }
                Change::Set(v, answer) => (answer, Some(v)),
                Change::Remove(answer) => (answer, None),
            };
            let new_raw = value.as_ref().map(|v| self.encode(v)).transpose()?;
            if new_raw == raw {
                return Ok(Updated {
                    answer,
                    value,
                    raw,
                    written: false,
                });
            }
            if store
                .compare_and_swap(self.table, key, raw.as_deref(), new_raw.as_deref())
                .await?
            {
                return Ok(Updated {
                    answer,
                    value,
                    raw: new_raw,
                    written: true,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use std::sync::atomic::{AtomicU32, Ordering};

    const NUMBERS: Doc<u64> = Doc::new(Table::Meta, "number");

    #[tokio::test]
    async fn updates_swap_skip_repeats_and_give_up_when_contended() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("t.redb")).unwrap();
        let up = NUMBERS
            .update(&store, "n", "n", |cur| {
                Ok(Change::Set(cur.unwrap_or(0) + 1, ()))
            })
            .await
            .unwrap();
        assert!(up.written);
        assert_eq!(NUMBERS.get(&store, "n").await.unwrap(), Some(1));
        // The same value again writes nothing.
        let same = NUMBERS
            .update(&store, "n", "n", |_| Ok(Change::Set(1, ())))
            .await
            .unwrap();
        assert!(!same.written);
        // A record that changes under every attempt: bounded, then `Contended`.
        let attempts = AtomicU32::new(0);
        let raced = NUMBERS
            .update(&store, "n", "the number", |cur| {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                // Another writer moves the value between our read and our swap.
                std::thread::scope(|s| {
                    s.spawn(|| {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap();
                        rt.block_on(NUMBERS.put(&store, "n", &(1000 + u64::from(n))))
                            .unwrap();
                    });
                });
                Ok(Change::Set(cur.unwrap_or(0) + 1, ()))
            })
            .await;
        assert!(matches!(raced, Err(StoreError::Contended("the number"))));
        assert_eq!(attempts.load(Ordering::SeqCst), CAS_ATTEMPTS);
        // A corrupt record is an error naming it, not a default.
        store.put(Table::Meta, "bad", b"{").await.unwrap();
        let e = NUMBERS.get(&store, "bad").await.unwrap_err();
        assert!(e.to_string().contains("number"), "{e}");
        // `update` refuses to build on it, unless the table is `replacing_unreadable`.
        let refused = NUMBERS
            .update(&store, "bad", "bad", |_| Ok(Change::Set(7, ())))
            .await;
        assert!(matches!(refused, Err(StoreError::Corrupt(_))));
        let replaced = NUMBERS
            .replacing_unreadable()
            .update(&store, "bad", "bad", |cur| {
                assert_eq!(cur, None, "seen as absent");
                Ok(Change::Set(7, ()))
            })
            .await
            .unwrap();
        assert!(replaced.written);
        assert_eq!(NUMBERS.get(&store, "bad").await.unwrap(), Some(7));
    }
}
