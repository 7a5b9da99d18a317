use super::*;
use crate::store::embedded::EmbeddedStore;
use sha2::{Digest, Sha256};

const KEY: [u8; 32] = [7u8; 32];

fn open(dir: &tempfile::TempDir, name: &str) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&dir.path().join(name)).unwrap())
}

/// Records entries `range`: `action` on `c{i}` at `100 + i`.
async fn record(audit: &Audit, range: std::ops::Range<i64>, action: AuditAction) {
    for i in range {
        audit
            .record(
                "admin",
                action,
                &format!("c{i}"),
                AuditDetail::Nothing {},
                100 + i,
            )
            .await
            .unwrap();
    }
}

/// A keyed log in a store of its own, with entries `0..n` recorded.
async fn log_of(n: i64, action: AuditAction) -> (tempfile::TempDir, Arc<dyn Store>, Audit) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "a.redb");
    let audit = Audit::new(store.clone(), KEY);
    record(&audit, 0..n, action).await;
    (dir, store, audit)
}

/// `entries` appended as they are to `store`, each entry's hash standing as the head.
async fn replay(store: &dyn Store, entries: &[AuditEntry]) {
    for (i, e) in entries.iter().enumerate() {
        store
            .append(
                Log::Audit,
                i as u64,
                &serde_json::to_vec(e).unwrap(),
                e.hash.as_bytes(),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn chain_verifies_and_detects_tampering() {
    let (dir, _, audit) = log_of(5, AuditAction::KeyActivated).await;
    let report = audit.verify(None).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.entries, 5);
    // Edit entry 2's target without fixing the hash.
    let mut entries = audit.read(0, 10).await.unwrap();
    entries[2].target = "forged".into();
    let forged_store = open(&dir, "b.redb");
    replay(&*forged_store, &entries).await;
    let r = Audit::new(forged_store, KEY).verify(None).await.unwrap();
    assert_eq!(
        r.problem.as_deref(),
        Some("entry 2 has been edited (its hash does not match its content)")
    );
    // Drop entry 1 (renumbering the rest is not enough to hide it).
    let removed_store = open(&dir, "c.redb");
    let mut kept = audit.read(0, 10).await.unwrap();
    kept.remove(1);
    for (i, e) in kept.iter_mut().enumerate() {
        e.seq = i as u64;
    }
    replay(&*removed_store, &kept).await;
    let r = Audit::new(removed_store, KEY).verify(None).await.unwrap();
    assert_eq!(
        r.problem.as_deref(),
        Some("entry 1 is missing or out of order")
    );
}

/// Whoever can write the store cuts entries off the end: pointing the head at the
/// new last entry fails on its own; putting back a head saved earlier (a rollback)
/// fails against an anchor recorded later; the untouched log passes with it.
#[tokio::test]
async fn a_truncated_log_fails_and_a_rollback_fails_its_anchor() {
    let (dir, store, audit) = log_of(3, AuditAction::ClientCreated).await;
    let saved = store.log_head(Log::Audit).await.unwrap().1;
    record(&audit, 3..5, AuditAction::ClientCreated).await;
    let entries = audit.read(0, 10).await.unwrap();
    let anchor: Anchor = audit
        .head()
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        (anchor.seq, anchor.hash.as_str()),
        (4, entries[4].hash.as_str())
    );
    let r = audit.verify(Some(&anchor)).await.unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(
        r.head.as_deref(),
        Some(format!("4:{}", entries[4].hash).as_str())
    );
    let truncated = |n: usize, head: Vec<u8>| {
        let entries = entries.clone();
        let path = dir.path().join(format!("t{n}.redb"));
        async move {
            let s: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path).unwrap());
            for (i, e) in entries.iter().take(3).enumerate() {
                let h = if i == 2 {
                    head.clone()
                } else {
                    e.hash.clone().into_bytes()
                };
                s.append(Log::Audit, i as u64, &serde_json::to_vec(e).unwrap(), &h)
                    .await
                    .unwrap();
            }
            Audit::new(s, KEY)
        }
    };
    let cut = truncated(0, entries[2].hash.clone().into_bytes()).await;
    let r = cut.verify(None).await.unwrap();
    assert_eq!(
        r.problem.as_deref(),
        Some("the stored head does not vouch for the log's 3 entries: the log was truncated or its head replaced")
    );
    let rolled_back = truncated(1, saved.unwrap()).await;
    assert!(
        rolled_back.verify(None).await.unwrap().ok,
        "only an anchor sees a rollback"
    );
    let r = rolled_back.verify(Some(&anchor)).await.unwrap();
    assert_eq!(
        r.problem.as_deref(),
        Some("the log has 3 entries but the anchor names entry 4: it was truncated or rolled back")
    );
    // An anchor whose hash differs (the log rewritten, or the wrong anchor).
    let other = Anchor {
        seq: 1,
        hash: "ab".repeat(32),
    };
    let r = audit.verify(Some(&other)).await.unwrap();
    assert_eq!(
        r.problem.as_deref(),
        Some("entry 1 is not the anchored one: the log was rewritten up to there")
    );
    for bad in ["", "4", "x:ab", "4:abc", &format!("-1:{}", "ab".repeat(32))] {
        assert!(bad.parse::<Anchor>().is_err(), "{bad:?}");
    }
}

/// Whoever can write the store puts a copy of an early entry at the end for a while:
/// `audit head`, which operators record on a schedule as the newest anchor, must not
/// print that entry's SEQ:HASH (an anchor every later rollback would pass), nor any
/// last entry the stored head does not vouch for.
#[tokio::test]
async fn head_refuses_a_last_entry_the_stored_head_does_not_vouch_for() {
    let (dir, store, audit) = log_of(3, AuditAction::ClientCreated).await;
    let real = audit.head().await.unwrap().unwrap().unwrap();
    assert!(real.starts_with("2:"), "{real}");
    let entries = audit.read(0, 10).await.unwrap();
    let (_, saved_head) = store.log_head(Log::Audit).await.unwrap();
    // A copy of entry 0 appended, the stored head left as it was.
    let junk = serde_json::to_vec(&entries[0]).unwrap();
    store
        .append(Log::Audit, 3, &junk, &saved_head.unwrap())
        .await
        .unwrap();
    let printed = audit.head().await.unwrap();
    assert_eq!(
        printed,
        Err(AuditProblem::Truncated(4)),
        "not an anchor to record"
    );
    assert!(!audit.verify(None).await.unwrap().ok);
    // A rollback to one entry (its head as saved then) would pass verify with the anchor
    // it printed before.
    let weak: Anchor = format!("0:{}", entries[0].hash).parse().unwrap();
    let r = open(&dir, "r.redb");
    let one = Audit::new(r.clone(), KEY);
    r.append(
        Log::Audit,
        0,
        &serde_json::to_vec(&entries[0]).unwrap(),
        head_value(&KEY, 1, &entries[0].hash).as_bytes(),
    )
    .await
    .unwrap();
    assert!(one.verify(Some(&weak)).await.unwrap().ok);
}

/// Whoever can write the store edits an entry and recomputes the rest of the chain
/// with plain SHA-256 (or with a key of their own): without the key it cannot pass.
#[tokio::test]
async fn an_edit_rehashed_without_the_key_is_detected() {
    let (dir, _, audit) = log_of(4, AuditAction::ClientDeleted).await;
    let plain = |e: &AuditEntry| {
        let canonical =
            serde_json::json!([e.seq, e.at, e.actor, e.action, e.target, e.detail, e.prev])
                .to_string();
        hex::encode(Sha256::digest(canonical.as_bytes()))
    };
    let other_key = |e: &AuditEntry| {
        entry_mac(
            &[9u8; 32], e.seq, e.at, &e.actor, &e.action, &e.target, &e.detail, &e.prev,
        )
    };
    type Rehash<'a> = &'a dyn Fn(&AuditEntry) -> String;
    let rehashers: [(&str, Rehash); 2] = [("plain", &plain), ("other key", &other_key)];
    for (n, (what, rehash)) in rehashers.into_iter().enumerate() {
        let mut entries = audit.read(0, 10).await.unwrap();
        entries[1].target = "c-covered-up".into();
        let mut prev = GENESIS.to_string();
        let forged = open(&dir, &format!("f{n}.redb"));
        for e in entries.iter_mut() {
            e.prev = prev.clone();
            e.hash = rehash(e);
            prev = e.hash.clone();
        }
        replay(&*forged, &entries).await;
        let r = Audit::new(forged, KEY).verify(None).await.unwrap();
        assert!(!r.ok, "{what}: {r:?}");
        assert_eq!(
            r.problem.as_deref(),
            Some("entry 0 has been edited (its hash does not match its content)"),
            "{what}"
        );
    }
}
