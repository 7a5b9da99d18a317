use super::*;
use meshauth_devkey::DevKey;
use meshauth_wire::bloom::Bloom;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Envoy's shared data as a map: a CAS token per key, bumped on every write.
#[derive(Default)]
pub(super) struct FakeShared(RefCell<BTreeMap<String, (Vec<u8>, u32)>>);

impl SharedData for FakeShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.0.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut map = self.0.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return false;
            }
        }
        map.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        true
    }
}

#[test]
fn leases_change_hands_only_when_expired_and_count_generations() {
    let shared = FakeShared::default();
    assert_eq!(acquire_lease(&shared, "a", 10, 3_000), Some(1));
    assert_eq!(acquire_lease(&shared, "a", 20, 3_000), Some(1), "renew own");
    assert_eq!(acquire_lease(&shared, "b", 30, 3_000), None, "held");
    assert_eq!(
        acquire_lease(&shared, "b", 3_020, 3_000),
        Some(2),
        "expired: taken"
    );
    assert_eq!(acquire_lease(&shared, "a", 3_030, 3_000), None);
    shared.set(LEADER_KEY, b"garbage", None);
    assert_eq!(acquire_lease(&shared, "c", 3_040, 3_000), Some(1));
    assert_eq!(
        Lease::parse(b"w|1-2|5|7"),
        None,
        "three parts exactly, the holder may not hide a number"
    );
    assert_eq!(Lease::parse(b"1-ab|5|7").unwrap().holder, "1-ab");
}

fn published(shared: &FakeShared) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        read_published(shared, SNAPSHOT_KEY).unwrap_or_default(),
        read_published(shared, DELTAS_KEY).unwrap_or_default(),
        read_published(shared, VERSION_KEY).unwrap_or_default(),
    )
}

#[test]
fn a_stalled_former_leader_cannot_overwrite_its_successor() {
    let shared = FakeShared::default();
    let ga = acquire_lease(&shared, "a", 0, 3_000).unwrap();
    let full = Publication::Full {
        body: b"snap-8",
        tag: "e|8",
    };
    publish(&shared, "a", ga, 10, full).unwrap();
    // `a` stalls past its lease; `b` takes over and moves on with a delta.
    let gb = acquire_lease(&shared, "b", 5_000, 3_000).unwrap();
    assert!(gb > ga);
    let delta = Publication::Delta {
        body: b"delta-8-9",
        base: "e|8",
        tag: "e|9",
    };
    publish(&shared, "b", gb, 5_010, delta).unwrap();
    let before = published(&shared);
    assert_eq!(
        before,
        (b"snap-8".to_vec(), b"delta-8-9\n".to_vec(), b"e|9".to_vec())
    );
    // `a` wakes up with an old answer: refused, nothing changes.
    let stale = Publication::Full {
        body: b"snap-7",
        tag: "e|7",
    };
    assert_eq!(
        publish(&shared, "a", ga, 5_020, stale),
        Err(PublishError::Fenced)
    );
    // Even if it believed its lease fresh (its clock), a later generation's values stop it.
    shared.set(
        LEADER_KEY,
        Lease {
            holder: "a".into(),
            expires_ms: 99_999,
            generation: ga,
        }
        .encode()
        .as_bytes(),
        None,
    );
    assert_eq!(
        publish(&shared, "a", ga, 5_030, stale),
        Err(PublishError::Fenced)
    );
    assert_eq!(published(&shared), before);
}

#[test]
fn a_delta_from_another_base_is_not_published() {
    let shared = FakeShared::default();
    let g = acquire_lease(&shared, "a", 0, 3_000).unwrap();
    publish(
        &shared,
        "a",
        g,
        1,
        Publication::Full {
            body: b"s",
            tag: "e|8",
        },
    )
    .unwrap();
    let wrong = Publication::Delta {
        body: b"d-7-9",
        base: "e|7",
        tag: "e|9",
    };
    assert_eq!(
        publish(&shared, "a", g, 2, wrong),
        Err(PublishError::WrongBase)
    );
    let right = Publication::Delta {
        body: b"d-8-9",
        base: "e|8",
        tag: "e|9",
    };
    publish(&shared, "a", g, 3, right).unwrap();
    let next = Publication::Delta {
        body: b"d-9-10",
        base: "e|9",
        tag: "e|10",
    };
    publish(&shared, "a", g, 4, next).unwrap();
    assert_eq!(
        published(&shared),
        (b"s".to_vec(), b"d-8-9\nd-9-10\n".to_vec(), b"e|10".to_vec())
    );
    // A full snapshot restarts the list.
    publish(
        &shared,
        "a",
        g,
        5,
        Publication::Full {
            body: b"s2",
            tag: "f|1",
        },
    )
    .unwrap();
    assert_eq!(
        published(&shared),
        (b"s2".to_vec(), Vec::new(), b"f|1".to_vec())
    );
}

#[test]
fn snapshots_older_than_the_maximum_age_are_stale() {
    let snap = |issued_at| {
        Message::Full(Snapshot {
            epoch: "e".into(),
            version: 1,
            issued_at,
            jwks: Default::default(),
            revoked_jti: Bloom::with_capacity(1, 0.01, 1),
            rules: vec![],
            limits: vec![],
            issuers: vec![],
        })
    };
    assert!(fresh_enough(&snap(1_000), 1_500, 600));
    assert!(!fresh_enough(&snap(1_000), 1_600, 600));
    assert!(
        !fresh_enough(&snap(0), 1_000_000, 86_400),
        "a replayed old one"
    );
}

#[test]
fn a_304_counts_only_with_a_fresh_signed_head_for_the_version_held() {
    let sk = DevKey::seeded(3);
    let pinned = PreparedKey::new(sk.public()).unwrap();
    let head = |epoch: &str, version, issued_at, key: &DevKey| {
        HeadStatement {
            epoch: epoch.into(),
            version,
            issued_at,
        }
        .seal(|m| key.sign_bytes(m))
    };
    let ok = head("e", 7, 1_000, &sk);
    assert!(head_confirms(Some(&ok), ("e", 7), 1_010, 120, &pinned));
    assert!(
        !head_confirms(None, ("e", 7), 1_010, 120, &pinned),
        "a bare 304"
    );
    assert!(!head_confirms(Some(&ok), ("e", 6), 1_010, 120, &pinned));
    assert!(!head_confirms(Some(&ok), ("f", 7), 1_010, 120, &pinned));
    assert!(
        !head_confirms(Some(&ok), ("e", 7), 2_000, 120, &pinned),
        "replayed later"
    );
    let other = DevKey::seeded(4);
    assert!(!head_confirms(
        Some(&head("e", 7, 1_000, &other)),
        ("e", 7),
        1_010,
        120,
        &pinned
    ));
}

#[test]
fn nonces_are_fresh_and_well_formed() {
    let all: std::collections::BTreeSet<String> = (0..1000).map(|_| fresh_nonce()).collect();
    assert_eq!(all.len(), 1000);
    assert!(all
        .iter()
        .all(|n| meshauth_wire::sync::ConfirmRequest::valid_nonce(n)));
}

#[test]
fn confirm_answers_count_only_when_signed_for_this_question() {
    let sk = DevKey::seeded(3);
    let pinned = PreparedKey::new(sk.public()).unwrap();
    let answer = |revoked, jti: &str, nonce: &str, key: &DevKey| {
        let a = ConfirmAnswer {
            jti: jti.into(),
            nonce: nonce.into(),
            revoked,
        };
        serde_json::to_vec(&a.seal(|m| key.sign_bytes(m))).unwrap()
    };
    let nonce = "abcdefghijklmnop0123";
    assert_eq!(
        confirm_verdict(&answer(true, "j", nonce, &sk), "j", nonce, &pinned),
        Some(true)
    );
    assert_eq!(
        confirm_verdict(&answer(false, "j", nonce, &sk), "j", nonce, &pinned),
        Some(false)
    );
    // What a relay on the sync path would answer.
    assert_eq!(
        confirm_verdict(br#"{"jti":"j","revoked":false}"#, "j", nonce, &pinned),
        None
    );
    let other = DevKey::seeded(4);
    assert_eq!(
        confirm_verdict(&answer(false, "j", nonce, &other), "j", nonce, &pinned),
        None
    );
    assert_eq!(
        confirm_verdict(&answer(false, "k", nonce, &sk), "j", nonce, &pinned),
        None
    );
    assert_eq!(
        confirm_verdict(
            &answer(false, "j", "another-nonce-012345", &sk),
            "j",
            nonce,
            &pinned
        ),
        None
    );
    let body: serde_json::Value =
        serde_json::from_str(&meshauth_wire::sync::ConfirmRequest::body("j", nonce)).unwrap();
    assert_eq!(body, serde_json::json!({"jti": "j", "nonce": nonce}));
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    assert!((125..=250).contains(&backoff_ms(0, 12345)));
    assert!((250..=500).contains(&backoff_ms(1, 999)));
    for r in [0, 1, u64::MAX] {
        assert!((2_500..=5_000).contains(&backoff_ms(40, r)));
    }
    assert_ne!(backoff_ms(3, 1), backoff_ms(3, 400));
}

#[test]
fn opens_only_snapshots_signed_by_the_pinned_key() {
    let sk = DevKey::seeded(3);
    let pinned = PreparedKey::new(sk.public()).unwrap();
    let other = PreparedKey::new(DevKey::seeded(4).public()).unwrap();
    let snap = Snapshot {
        epoch: "e".into(),
        version: 3,
        issued_at: 1,
        jwks: Default::default(),
        revoked_jti: Bloom::with_capacity(1, 0.01, 1),
        rules: vec![],
        limits: vec![],
        issuers: vec![],
    };
    let bytes = serde_json::to_vec(&SignedSnapshot::seal(&snap, |p| sk.sign_bytes(p))).unwrap();
    assert_eq!(open(&bytes, &pinned).unwrap(), snap);
    assert_eq!(open(&bytes, &other), Err(SnapshotError::Signature));
    assert!(open(b"not json", &pinned).is_err());
}
