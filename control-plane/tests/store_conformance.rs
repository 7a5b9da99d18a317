#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One suite, every backend: the embedded file store and a real Redis.

use meshauth_tests::control_plane::Redis;

use std::sync::Arc;

use meshauth_cp::store::embedded::EmbeddedStore;
use meshauth_cp::store::redis::{RedisStore, RedisTarget};
use meshauth_cp::store::{Log, Store, Table};

async fn kv_and_cas(s: Arc<dyn Store>) {
    assert_eq!(s.get(Table::Clients, "a").await.unwrap(), None);
    assert!(s
        .compare_and_swap(Table::Clients, "a", None, Some(b"1"))
        .await
        .unwrap());
    assert!(
        !s.compare_and_swap(Table::Clients, "a", None, Some(b"2"))
            .await
            .unwrap(),
        "create over existing"
    );
    assert!(
        !s.compare_and_swap(Table::Clients, "a", Some(b"9"), Some(b"2"))
            .await
            .unwrap(),
        "wrong expectation"
    );
    assert_eq!(
        s.get(Table::Clients, "a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert!(s
        .compare_and_swap(Table::Clients, "a", Some(b"1"), Some(b"2"))
        .await
        .unwrap());
    assert!(s
        .compare_and_swap(Table::Clients, "a", Some(b"2"), None)
        .await
        .unwrap());
    assert_eq!(s.get(Table::Clients, "a").await.unwrap(), None);
    // Tables are separate namespaces.
    s.put(Table::Clients, "k", b"c").await.unwrap();
    s.put(Table::Families, "k", b"f").await.unwrap();
    s.put(Table::Clients, "b", &[0, 255, 7]).await.unwrap();
    let listed = s.list(Table::Clients).await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("b".to_string(), vec![0, 255, 7]),
            ("k".to_string(), b"c".to_vec())
        ]
    );
    assert_eq!(
        s.get(Table::Families, "k").await.unwrap().as_deref(),
        Some(&b"f"[..])
    );
    assert!(s.delete(Table::Clients, "k").await.unwrap());
    assert!(!s.delete(Table::Clients, "k").await.unwrap());
}

async fn concurrent_cas_has_one_winner(s: Arc<dyn Store>) {
    s.put(Table::RefreshTokens, "r", b"unused").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.compare_and_swap(
                Table::RefreshTokens,
                "r",
                Some(b"unused"),
                Some(format!("used-{i}").as_bytes()),
            )
            .await
            .unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

async fn logs_append_conditionally(s: Arc<dyn Store>) {
    assert_eq!(s.log_head(Log::Audit).await.unwrap(), (0, None));
    assert!(s.append(Log::Audit, 0, b"e0", b"h0").await.unwrap());
    assert!(
        !s.append(Log::Audit, 0, b"dup", b"hx").await.unwrap(),
        "stale length must fail"
    );
    assert!(s.append(Log::Audit, 1, b"e1", b"h1").await.unwrap());
    assert!(s.append(Log::Audit, 2, b"e2", b"h2").await.unwrap());
    assert_eq!(
        s.log_head(Log::Audit).await.unwrap(),
        (3, Some(b"h2".to_vec()))
    );
    assert_eq!(
        s.read_log(Log::Audit, 1, 10).await.unwrap(),
        vec![b"e1".to_vec(), b"e2".to_vec()]
    );
    assert_eq!(
        s.read_log(Log::Audit, 0, 1).await.unwrap(),
        vec![b"e0".to_vec()]
    );
    assert_eq!(
        s.read_log(Log::Changes, 0, 10).await.unwrap(),
        Vec::<Vec<u8>>::new()
    );
}

async fn leases_exclude_others_until_expiry(s: Arc<dyn Store>) {
    assert!(s.lease("rotation", "a", 300).await.unwrap());
    assert!(!s.lease("rotation", "b", 300).await.unwrap());
    assert!(
        s.lease("rotation", "a", 300).await.unwrap(),
        "holder renews"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        s.lease("rotation", "b", 300).await.unwrap(),
        "expired lease is free"
    );
    s.ping().await.unwrap();
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod embedded {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let s: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("m.redb")).unwrap());
                    super::$name(s).await;
                }
            )*
        }
        mod redis_backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let redis = Redis::start();
                    let s: Arc<dyn Store> = Arc::new(RedisStore::connect(RedisTarget::Url(redis.url()), "t", 0).await.unwrap());
                    super::$name(s).await;
                }
            )*
        }
    };
}

/// Compaction drops old entries but keeps every index, the length and the head.
async fn trimmed_logs_keep_their_indices(s: Arc<dyn Store>) {
    for i in 0..10u64 {
        assert!(s
            .append(Log::Changes, i, format!("e{i}").as_bytes(), b"h")
            .await
            .unwrap());
    }
    assert_eq!(s.trim_log(Log::Changes, 6).await.unwrap(), 6);
    assert_eq!(s.trim_log(Log::Changes, 6).await.unwrap(), 0, "idempotent");
    assert_eq!(
        s.trim_log(Log::Changes, 3).await.unwrap(),
        0,
        "never backwards"
    );
    assert_eq!(
        s.log_head(Log::Changes).await.unwrap(),
        (10, Some(b"h".to_vec()))
    );
    assert_eq!(
        s.read_log(Log::Changes, 7, 2).await.unwrap(),
        vec![b"e7".to_vec(), b"e8".to_vec()]
    );
    assert!(
        s.read_log(Log::Changes, 5, 3).await.unwrap().is_empty(),
        "a trimmed start reads nothing"
    );
    assert!(!s.append(Log::Changes, 4, b"x", b"h").await.unwrap());
    assert!(s.append(Log::Changes, 10, b"e10", b"h2").await.unwrap());
    assert_eq!(
        s.read_log(Log::Changes, 10, 5).await.unwrap(),
        vec![b"e10".to_vec()]
    );
    // Trimming past the end stops at the length; appends go on from there.
    assert_eq!(s.trim_log(Log::Changes, 100).await.unwrap(), 5);
    assert_eq!(s.log_head(Log::Changes).await.unwrap().0, 11);
    assert!(s.append(Log::Changes, 11, b"e11", b"h3").await.unwrap());
    assert_eq!(
        s.read_log(Log::Changes, 11, 1).await.unwrap(),
        vec![b"e11".to_vec()]
    );
    // The other log is untouched.
    assert_eq!(s.log_head(Log::Audit).await.unwrap().0, 0);
}

suite!(
    kv_and_cas,
    concurrent_cas_has_one_winner,
    logs_append_conditionally,
    leases_exclude_others_until_expiry,
    trimmed_logs_keep_their_indices
);

#[tokio::test]
async fn embedded_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redb");
    {
        let s = EmbeddedStore::open(&path).unwrap();
        s.put(Table::Clients, "c", b"v").await.unwrap();
        assert!(s.append(Log::Audit, 0, b"e", b"h").await.unwrap());
    }
    let s = EmbeddedStore::open(&path).unwrap();
    assert_eq!(
        s.get(Table::Clients, "c").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        s.log_head(Log::Audit).await.unwrap(),
        (1, Some(b"h".to_vec()))
    );
}

#[tokio::test]
async fn redis_survives_a_crash_with_aof() {
    let mut redis = Redis::start();
    {
        let s = RedisStore::connect(RedisTarget::Url(redis.url()), "t", 0)
            .await
            .unwrap();
        s.put(Table::Clients, "c", b"v").await.unwrap();
        assert!(s.append(Log::Audit, 0, b"e", b"h").await.unwrap());
    }
    redis.crash_and_restart();
    let s = RedisStore::connect(RedisTarget::Url(redis.url()), "t", 0)
        .await
        .unwrap();
    assert_eq!(
        s.get(Table::Clients, "c").await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        s.log_head(Log::Audit).await.unwrap(),
        (1, Some(b"h".to_vec()))
    );
}
