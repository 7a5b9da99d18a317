use super::*;

const POLICY: LifecyclePolicy = LifecyclePolicy {
    rotation_interval: 1000,
    prepublish: 100,
    retention: 300,
};

fn factory() -> impl FnMut(i64) -> KeyRecord {
    let mut n = 0;
    move |now| {
        n += 1;
        KeyRecord::fresh(format!("k{n}"), String::new(), String::new(), now)
    }
}

const OPEN: FilterGate = FilterGate::OPEN;

fn states(r: &Keyring) -> Vec<(String, KeyState)> {
    r.keys.iter().map(|k| (k.kid.clone(), k.state)).collect()
}

/// A keyring after its first step, at 0 (`k1` current), and the factory it draws from.
fn started() -> (impl FnMut(i64) -> KeyRecord, Keyring) {
    let mut f = factory();
    let mut r = Keyring::default();
    r.tick(0, &POLICY, &OPEN, &mut f);
    (f, r)
}

#[test]
fn scheduled_rotation_prepublishes_then_retains() {
    let (mut f, mut r) = started();
    assert_eq!(states(&r), vec![("k1".into(), KeyState::Current)]);
    r.tick(899, &POLICY, &OPEN, &mut f);
    assert!(r.next().is_none());
    // Published one pre-publication window before it is due.
    r.tick(900, &POLICY, &OPEN, &mut f);
    assert_eq!(r.next().map(|k| k.kid.as_str()), Some("k2"));
    assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k1"));
    r.tick(1000, &POLICY, &OPEN, &mut f);
    assert_eq!(
        states(&r),
        vec![
            ("k1".into(), KeyState::Previous),
            ("k2".into(), KeyState::Current)
        ]
    );
    // The previous key verifies until every token it signed has expired.
    r.tick(1299, &POLICY, &OPEN, &mut f);
    assert_eq!(r.get("k1").map(|k| k.state), Some(KeyState::Previous));
    r.tick(1300, &POLICY, &OPEN, &mut f);
    assert_eq!(r.get("k1").map(|k| k.state), Some(KeyState::Retired));
    assert_eq!(
        r.jwks().keys.len(),
        0,
        "test records have no public key bytes"
    );
}

#[test]
fn a_key_never_signs_before_its_prepublication() {
    let (mut f, mut r) = started();
    r.rotation_requested = true;
    r.tick(10, &POLICY, &OPEN, &mut f);
    assert_eq!(
        r.current().map(|k| k.kid.as_str()),
        Some("k1"),
        "k2 just published"
    );
    r.tick(109, &POLICY, &OPEN, &mut f);
    assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k1"));
    r.tick(110, &POLICY, &OPEN, &mut f);
    assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k2"));
    assert!(!r.rotation_requested);
}

#[test]
fn revoking_the_current_key_replaces_it_at_once() {
    let (mut f, mut r) = started();
    let events = r.revoke("k1", 5, &mut f).unwrap();
    assert!(events.contains(&KeyEvent::Revoked("k1".into())));
    assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k2"));
    assert!(r.published().all(|k| k.kid != "k1"));
    assert!(r.revoke("k1", 6, &mut f).is_none(), "already gone");
    assert!(r.revoke("nope", 6, &mut f).is_none());
}

#[test]
fn activation_waits_for_connected_filters_up_to_a_cap() {
    let (mut f, mut r) = started();
    r.rotation_requested = true;
    // Published at version 7's step; noted at the next step with the head then (8).
    let gate = |min: Option<u64>| FilterGate {
        head: 8,
        min_applied: min,
        max_wait: 50,
    };
    let events = r.tick(10, &POLICY, &gate(Some(7)), &mut f);
    assert_eq!(events, vec![KeyEvent::Published("k2".into())]);
    assert_eq!(r.next().and_then(|n| n.published_version), None);
    r.tick(11, &POLICY, &gate(Some(7)), &mut f);
    assert_eq!(r.next().and_then(|n| n.published_version), Some(8));
    // Pre-publication over, but a filter still holds version 7: wait.
    assert!(r.tick(110, &POLICY, &gate(Some(7)), &mut f).is_empty());
    assert_eq!(r.current().map(|k| k.kid.as_str()), Some("k1"));
    // Every connected filter has 8: it signs.
    let events = r.tick(111, &POLICY, &gate(Some(8)), &mut f);
    assert!(
        events.contains(&KeyEvent::Activated("k2".into())),
        "{events:?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, KeyEvent::ActivatedPastLaggingFilters(_))));

    // A filter that never catches up delays activation by the cap, then it is forced.
    r.rotation_requested = true;
    r.tick(200, &POLICY, &gate(Some(3)), &mut f);
    r.tick(201, &POLICY, &gate(Some(3)), &mut f);
    assert!(r.tick(349, &POLICY, &gate(Some(3)), &mut f).is_empty());
    let events = r.tick(350, &POLICY, &gate(Some(3)), &mut f);
    assert!(
        events.contains(&KeyEvent::Activated("k3".into())),
        "{events:?}"
    );
    assert!(events.contains(&KeyEvent::ActivatedPastLaggingFilters("k3".into())));

    // No filter connected: nothing to wait for.
    r.rotation_requested = true;
    r.tick(400, &POLICY, &gate(None), &mut f);
    r.tick(401, &POLICY, &gate(None), &mut f);
    let events = r.tick(500, &POLICY, &gate(None), &mut f);
    assert!(
        events.contains(&KeyEvent::Activated("k4".into())),
        "{events:?}"
    );
}
