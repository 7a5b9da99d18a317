//! The Redis store, for several replicas. Atomic updates are Lua scripts; all keys
//! share one hash tag so the scripts also run on Redis Cluster. Durability is Redis's:
//! run it with AOF (`appendfsync always` for nothing acknowledged to be lost).
//!
//! With Sentinel the store asks the sentinels for the master, checks its `ROLE`, and
//! asks again whenever a call fails or every second, so a failover is followed within
//! about a second of the sentinels electing the new master. Replication is
//! asynchronous, so with Sentinel every write is acknowledged only once `replica_acks`
//! replicas have it (`WAIT`): a failover then cannot lose an acknowledged write.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{IntoConnectionInfo, Script};

use super::{Log, Store, StoreError, StoreResult, Table};

/// The most any one call may take, reconnection included.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Connecting, and each answer, must take no longer (WAIT asks for 1 s at most).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1500);

/// A connection manager that fails fast while Redis is away and is back within a call
/// of its return. The library's defaults retry a lost connection six times with a
/// backoff growing to a minute, and no timeouts: calls hang meanwhile, and a short
/// outage becomes minutes of refusals. Here a reconnection is one attempt (failing at
/// once when refused, within `CONNECT_TIMEOUT` when Redis hangs) and the next call
/// starts the next attempt, so there is no backoff to wait out.
async fn manager(client: redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_max_delay(1000)
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    ConnectionManager::new_with_config(client, config).await
}

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

// KEYS[3] holds the index of the first kept entry once the log was trimmed: indices
// and the length stay what they were.
const APPEND: &str = r#"
local first = tonumber(redis.call('GET', KEYS[3]) or '0')
if redis.call('LLEN', KEYS[1]) + first ~= tonumber(ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[1] + 1) end
return 1
"#;

const HEAD: &str = r#"
local first = tonumber(redis.call('GET', KEYS[3]) or '0')
return { redis.call('LLEN', KEYS[1]) + first, redis.call('GET', KEYS[2]) }
"#;

const READ: &str = r#"
local first = tonumber(redis.call('GET', KEYS[2]) or '0')
local from = tonumber(ARGV[1])
if from < first then return {} end
return redis.call('LRANGE', KEYS[1], from - first, from - first + tonumber(ARGV[2]) - 1)
"#;

const TRIM: &str = r#"
local first = tonumber(redis.call('GET', KEYS[2]) or '0')
local len = redis.call('LLEN', KEYS[1])
local target = math.min(tonumber(ARGV[1]), first + len)
if target <= first then return 0 end
redis.call('LTRIM', KEYS[1], target - first, -1)
redis.call('SET', KEYS[2], target)
return target - first
"#;

const LEASE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// Where the data lives.
#[derive(Clone)]
pub enum RedisTarget {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`).
    Url(String),
    Sentinel {
        /// `host:port` of each sentinel.
        sentinels: Vec<String>,
        master_name: String,
        /// Password of the master and replicas.
        password: Option<String>,
        /// Password of the sentinels, if they have one.
        sentinel_password: Option<String>,
    },
}

impl std::fmt::Debug for RedisTarget {
    // Passwords stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Url(_) => f.write_str("Url(..)"),
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                ..
            } => write!(f, "Sentinel({master_name} via {})", sentinels.join(",")),
        }
    }
}

pub struct RedisStore {
    con: RwLock<ConnectionManager>,
    /// The client `con` came from, for pub/sub connections.
    client: RwLock<redis::Client>,
    target: RedisTarget,
    /// Replicas that must hold a write before it is acknowledged (0: don't wait).
    replica_acks: u32,
    /// The master in use and when it was last looked up (Sentinel only).
    master: tokio::sync::Mutex<(String, Instant)>,
    /// `{namespace}`: a hash tag, so every key lands in one cluster slot.
    prefix: String,
    cas: Script,
    append: Script,
    head: Script,
    read: Script,
    trim: Script,
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

/// A client for `host:port` with an optional password (not spliced into a URL, so any
/// character may be in it).
fn client_for(address: &str, password: Option<&str>) -> StoreResult<redis::Client> {
    let mut info = format!("redis://{address}")
        .into_connection_info()
        .map_err(err)?;
    info.redis.password = password.map(str::to_owned);
    redis::Client::open(info).map_err(err)
}

/// Asks each sentinel in turn for the master's address and checks that it is one.
async fn find_master(
    sentinels: &[String],
    master_name: &str,
    password: Option<&str>,
    sentinel_password: Option<&str>,
) -> StoreResult<(String, redis::Client)> {
    let mut last = String::from("no sentinel configured");
    for s in sentinels {
        let attempt = async {
            let mut con =
                timed(client_for(s, sentinel_password)?.get_multiplexed_async_connection()).await?;
            let addr: Option<(String, u16)> = timed(
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(master_name)
                    .query_async(&mut con),
            )
            .await?;
            let (host, port) =
                addr.ok_or_else(|| err(format!("sentinel {s} does not know {master_name:?}")))?;
            let address = format!("{host}:{port}");
            let client = client_for(&address, password)?;
            let mut con = timed(client.get_multiplexed_async_connection()).await?;
            let role: Vec<redis::Value> = timed(redis::cmd("ROLE").query_async(&mut con)).await?;
            match role.first() {
                Some(redis::Value::BulkString(r)) if r.as_slice() == b"master" => {
                    Ok((address, client))
                }
                _ => Err(err(format!(
                    "{address} (from sentinel {s}) is not a master yet"
                ))),
            }
        };
        match attempt.await {
            Ok(found) => return Ok(found),
            Err(e) => last = e.to_string(),
        }
    }
    Err(err(format!(
        "no master {master_name:?} found through the sentinels: {last}"
    )))
}

impl RedisStore {
    pub async fn connect(
        target: RedisTarget,
        namespace: &str,
        replica_acks: u32,
    ) -> StoreResult<RedisStore> {
        let (address, client) = match &target {
            RedisTarget::Url(url) => (
                String::new(),
                redis::Client::open(url.as_str()).map_err(err)?,
            ),
            RedisTarget::Sentinel {
                sentinels,
                master_name,
                password,
                sentinel_password,
            } => {
                find_master(
                    sentinels,
                    master_name,
                    password.as_deref(),
                    sentinel_password.as_deref(),
                )
                .await?
            }
        };
        let con = timed(manager(client.clone())).await?;
        Ok(RedisStore {
            con: RwLock::new(con),
            client: RwLock::new(client),
            target,
            replica_acks,
            master: tokio::sync::Mutex::new((address, Instant::now())),
            prefix: format!("{{{namespace}}}"),
            cas: Script::new(CAS),
            append: Script::new(APPEND),
            head: Script::new(HEAD),
            read: Script::new(READ),
            trim: Script::new(TRIM),
            lease: Script::new(LEASE),
        })
    }

    /// Connects and follows the master found through Sentinel, once a second at most.
    pub fn follows_sentinel(&self) -> bool {
        matches!(self.target, RedisTarget::Sentinel { .. })
    }

    fn con(&self) -> ConnectionManager {
        match self.con.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Asks the sentinels where the master is; reconnects if it moved. `force` skips
    /// the once-a-second limit (after a failed call).
    pub async fn refresh_master(&self, force: bool) -> StoreResult<()> {
        let RedisTarget::Sentinel {
            sentinels,
            master_name,
            password,
            sentinel_password,
        } = &self.target
        else {
            return Ok(());
        };
        let mut current = self.master.lock().await;
        if !force && current.1.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        if force && current.1.elapsed() < Duration::from_millis(100) {
            return Ok(()); // a burst of failures asks once
        }
        current.1 = Instant::now();
        let (address, client) = find_master(
            sentinels,
            master_name,
            password.as_deref(),
            sentinel_password.as_deref(),
        )
        .await?;
        if address != current.0 {
            let con = timed(manager(client.clone())).await?;
            match self.con.write() {
                Ok(mut c) => *c = con,
                Err(poisoned) => *poisoned.into_inner() = con,
            }
            match self.client.write() {
                Ok(mut c) => *c = client,
                Err(poisoned) => *poisoned.into_inner() = client,
            }
            tracing::warn!(master = %address, previous = %current.0, "redis master moved; following it");
            current.0 = address;
        }
        Ok(())
    }

    /// Runs one call; a failure makes the store look for the master again.
    async fn run<T, F>(&self, f: impl FnOnce(ConnectionManager) -> F) -> StoreResult<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let result = timed(f(self.con())).await;
        if result.is_err() && self.follows_sentinel() {
            if let Err(e) = self.refresh_master(true).await {
                tracing::warn!(error = %e, "redis master lookup failed");
            }
        }
        result
    }

    /// After a write: wait until `replica_acks` replicas hold it. The write has applied
    /// either way, so a failure here is `NotReplicated`, never "unavailable".
    async fn replicated(&self) -> StoreResult<()> {
        if self.replica_acks == 0 {
            return Ok(());
        }
        let acks: u32 = self
            .run(|mut con| async move {
                redis::cmd("WAIT")
                    .arg(self.replica_acks)
                    .arg(1_000)
                    .query_async(&mut con)
                    .await
            })
            .await
            .map_err(|e| StoreError::NotReplicated(format!("WAIT failed: {e}")))?;
        if acks < self.replica_acks {
            return Err(StoreError::NotReplicated(format!(
                "reached {acks} of {} replicas within 1 s",
                self.replica_acks
            )));
        }
        Ok(())
    }

    /// A plain command.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        self.run(|mut con| async move { cmd.query_async(&mut con).await })
            .await
    }

    /// `NAME hash key`: a command on one record of a table (a field of its hash).
    fn on_field(&self, name: &str, table: Table, key: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(name);
        cmd.arg(self.table_key(table)).arg(key);
        cmd
    }

    /// `changed`: the write did something, so it is replicated before it is reported.
    async fn replicated_if(&self, changed: bool) -> StoreResult<bool> {
        if changed {
            self.replicated().await?;
        }
        Ok(changed)
    }

    fn table_key(&self, t: Table) -> String {
        format!("{}:t:{}", self.prefix, t.name())
    }

    /// The pub/sub channel that nudges followers of a log (only the change log has one).
    fn nudge_channel(&self, l: Log) -> String {
        match l {
            Log::Changes => format!("{}:nudge:{}", self.prefix, l.name()),
            Log::Audit => String::new(),
        }
    }

    fn log_key(&self, l: Log) -> String {
        format!("{}:log:{}", self.prefix, l.name())
    }

    fn head_key(&self, l: Log) -> String {
        format!("{}:head:{}", self.prefix, l.name())
    }

    fn first_key(&self, l: Log) -> String {
        format!("{}:first:{}", self.prefix, l.name())
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn get(&self, table: Table, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.query(&self.on_field("HGET", table, key)).await
    }

    async fn compare_and_swap(
        &self,
        table: Table,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> StoreResult<bool> {
        let mut inv = self.cas.key(self.table_key(table));
        inv.arg(key)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.unwrap_or_default());
        let n: i64 = self
            .run(|mut con| async move { inv.invoke_async(&mut con).await })
            .await?;
        self.replicated_if(n == 1).await
    }

    async fn put(&self, table: Table, key: &str, value: &[u8]) -> StoreResult<()> {
        let _: i64 = self
            .query(self.on_field("HSET", table, key).arg(value))
            .await?;
        self.replicated().await
    }

    async fn delete(&self, table: Table, key: &str) -> StoreResult<bool> {
        let n: i64 = self.query(&self.on_field("HDEL", table, key)).await?;
        self.replicated_if(n > 0).await
    }

    async fn list(&self, table: Table) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let mut all: Vec<(String, Vec<u8>)> = self
            .query(redis::cmd("HGETALL").arg(self.table_key(table)))
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
        let mut inv = self.append.key(self.log_key(log));
        inv.key(self.head_key(log))
            .key(self.first_key(log))
            .arg(expected_len)
            .arg(entry)
            .arg(head)
            .arg(self.nudge_channel(log));
        let n: i64 = self
            .run(|mut con| async move { inv.invoke_async(&mut con).await })
            .await?;
        self.replicated_if(n == 1).await
    }

    async fn log_head(&self, log: Log) -> StoreResult<(u64, Option<Vec<u8>>)> {
        // Replicas poll the change log all the time: a cheap place to notice, within a
        // second, that Sentinel moved the master.
        if let Err(e) = self.refresh_master(false).await {
            tracing::warn!(error = %e, "redis master lookup failed");
        }
        let mut inv = self.head.key(self.log_key(log));
        inv.key(self.head_key(log)).key(self.first_key(log));
        let (len, head): (u64, Option<Vec<u8>>) = self
            .run(|mut con| async move { inv.invoke_async(&mut con).await })
            .await?;
        Ok((len, head))
    }

    async fn read_log(&self, log: Log, from: u64, limit: u64) -> StoreResult<Vec<Vec<u8>>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = self.read.key(self.log_key(log));
        inv.key(self.first_key(log)).arg(from).arg(limit);
        self.run(|mut con| async move { inv.invoke_async(&mut con).await })
            .await
    }

    async fn trim_log(&self, log: Log, before: u64) -> StoreResult<u64> {
        let mut inv = self.trim.key(self.log_key(log));
        inv.key(self.first_key(log)).arg(before);
        let n: u64 = self
            .run(|mut con| async move { inv.invoke_async(&mut con).await })
            .await?;
        self.replicated_if(n > 0).await?;
        Ok(n)
    }

    async fn lease(&self, name: &str, holder: &str, ttl_ms: u64) -> StoreResult<bool> {
        let mut inv = self.lease.key(format!("{}:lease:{name}", self.prefix));
        inv.arg(holder).arg(ttl_ms.max(1));
        let n: i64 = self
            .run(|mut con| async move { inv.invoke_async(&mut con).await })
            .await?;
        self.replicated_if(n == 1).await
    }

    async fn ping(&self) -> StoreResult<()> {
        // Also the once-a-second check that the master has not moved under us.
        self.refresh_master(false).await?;
        let _: String = self
            .run(|mut con| async move { redis::cmd("PING").query_async(&mut con).await })
            .await?;
        Ok(())
    }

    async fn change_nudges(&self) -> Option<super::Nudges> {
        use futures_util::StreamExt;
        let client = match self.client.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut pubsub = timed(client.get_async_pubsub()).await.ok()?;
        timed(pubsub.subscribe(self.nudge_channel(Log::Changes)))
            .await
            .ok()?;
        Some(Box::pin(pubsub.into_on_message().map(|_| ())))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
