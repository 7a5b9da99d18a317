//! The Redis store, for several replicas. Atomic updates are Lua scripts; all keys
//! share one hash tag so the scripts also run on Redis Cluster. Durability is Redis's:
//! run it with AOF (`appendfsync always` for nothing acknowledged to be lost).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;

use super::{Log, Store, StoreError, StoreResult, Table};

const TIMEOUT: Duration = Duration::from_secs(3);

const CAS: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
else
  if cur then return 0 end
end
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[5]) else redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
"#;

const APPEND: &str = r#"
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 1
"#;

const HEAD: &str = r#"
return { redis.call('LLEN', KEYS[1]), redis.call('GET', KEYS[2]) }
"#;

const LEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

pub struct RedisStore {
    con: ConnectionManager,
    /// `{namespace}`: a hash tag, so every key lands in one cluster slot.
    prefix: String,
    cas: Script,
    append: Script,
    head: Script,
    lease: Script,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

async fn timed<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .map_err(|_| err("redis timed out"))?
        .map_err(err)
}

impl RedisStore {
    pub async fn connect(url: &str, namespace: &str) -> StoreResult<RedisStore> {
        let client = redis::Client::open(url).map_err(err)?;
        let con = timed(ConnectionManager::new(client)).await?;
        Ok(RedisStore {
            con,
            prefix: format!("{{{namespace}}}"),
            cas: Script::new(CAS),
            append: Script::new(APPEND),
            head: Script::new(HEAD),
            lease: Script::new(LEASE),
        })
    }

    fn table_key(&self, t: Table) -> String {
        format!("{}:t:{}", self.prefix, t.name())
    }

    fn log_key(&self, l: Log) -> String {
        format!("{}:log:{}", self.prefix, l.name())
    }

    fn head_key(&self, l: Log) -> String {
        format!("{}:head:{}", self.prefix, l.name())
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, table: Table, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut con = self.con.clone();
        timed(
            redis::cmd("HGET")
                .arg(self.table_key(table))
                .arg(key)
                .query_async(&mut con),
        )
        .await
    }

    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> StoreResult<bool> {
        let mut con = self.con.clone();
        let mut inv = self.cas.key(self.table_key(table));
        inv.arg(key)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.unwrap_or_default());
        let n: i64 = timed(inv.invoke_async(&mut con)).await?;
        Ok(n == 1)
    }

    async fn put(&self, table: Table, key: &str, value: &[u8]) -> StoreResult<()> {
        let mut con = self.con.clone();
        let _: i64 = timed(
            redis::cmd("HSET")
                .arg(self.table_key(table))
                .arg(key)
                .arg(value)
                .query_async(&mut con),
        )
        .await?;
        Ok(())
    }

    async fn delete(&self, table: Table, key: &str) -> StoreResult<bool> {
        let mut con = self.con.clone();
        let n: i64 = timed(
            redis::cmd("HDEL")
                .arg(self.table_key(table))
                .arg(key)
                .query_async(&mut con),
        )
        .await?;
        Ok(n > 0)
    }

    async fn list(&self, table: Table) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let mut con = self.con.clone();
        let mut all: Vec<(String, Vec<u8>)> = timed(
            redis::cmd("HGETALL")
                .arg(self.table_key(table))
                .query_async(&mut con),
        )
        .await?;
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    async fn append(
        &self,
        log: Log,
        expected_len: u64,
        entry: &[u8],
        head: &[u8],
    ) -> StoreResult<bool> {
        let mut con = self.con.clone();
        let mut inv = self.append.key(self.log_key(log));
        inv.key(self.head_key(log))
            .arg(expected_len)
            .arg(entry)
            .arg(head);
        let n: i64 = timed(inv.invoke_async(&mut con)).await?;
        Ok(n == 1)
    }

    async fn log_head(&self, log: Log) -> StoreResult<(u64, Option<Vec<u8>>)> {
        let mut con = self.con.clone();
        let mut inv = self.head.key(self.log_key(log));
        inv.key(self.head_key(log));
        let (len, head): (u64, Option<Vec<u8>>) = timed(inv.invoke_async(&mut con)).await?;
        Ok((len, head))
    }

    async fn read_log(&self, log: Log, from: u64, limit: u64) -> StoreResult<Vec<Vec<u8>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut con = self.con.clone();
        let end = from.saturating_add(limit - 1);
        timed(
            redis::cmd("LRANGE")
                .arg(self.log_key(log))
                .arg(from)
                .arg(end)
                .query_async(&mut con),
        )
        .await
    }

    async fn lease(&self, name: &str, holder: &str, ttl_ms: u64) -> StoreResult<bool> {
        let mut con = self.con.clone();
        let mut inv = self.lease.key(format!("{}:lease:{name}", self.prefix));
        inv.arg(holder).arg(ttl_ms.max(1));
        let n: i64 = timed(inv.invoke_async(&mut con)).await?;
        Ok(n == 1)
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut con = self.con.clone();
        let _: String = timed(redis::cmd("PING").query_async(&mut con)).await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
