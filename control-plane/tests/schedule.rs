#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The key schedule driven by an injected clock, in process: a day of rotation and
//! retention in well under a second, no sleeping, no binary.

use std::sync::Arc;

use meshauth_cp::app::App;
use meshauth_cp::clock::FixedClock;
use meshauth_cp::config::Settings;
use meshauth_cp::keys::{KeyState, Keyring};
use meshauth_cp::store::embedded::EmbeddedStore;
use meshauth_cp::store::Store;

fn state_of(ring: &Keyring, kid: &str) -> KeyState {
    ring.get(kid).unwrap().state
}

#[tokio::test]
async fn keys_rotate_publish_first_and_retire_by_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("k.redb");
    let key = "ef".repeat(32);
    let env = |k: &str| (k == "MESHAUTH_MASTER_KEY").then(|| key.clone());
    let settings = Settings::load(None, &env).unwrap();
    let rotation = settings.keys.rotation_interval.as_secs() as i64;
    let prepublish = (settings.keys.jwks_max_age + settings.keys.clock_skew).as_secs() as i64;
    let clock = Arc::new(FixedClock::new(1_900_000_000));
    let store = Arc::new(EmbeddedStore::open(&data).unwrap()) as Arc<dyn Store>;
    let app = App::with_clock(store, settings, clock.clone())
        .await
        .unwrap();
    let first = app.keyring().current().unwrap().clone();
    assert_eq!(
        first.activated_at,
        Some(1_900_000_000),
        "stamped by the clock"
    );

    // Not yet due: nothing is published.
    clock.advance(rotation - prepublish - 1);
    app.key_tick().await.unwrap();
    assert!(app.keyring().next().is_none());
    // Due soon: the next key is published a JWKS max-age (and skew) before it signs.
    clock.advance(1);
    app.key_tick().await.unwrap();
    let next = app.keyring().next().unwrap().clone();
    assert!(
        app.jwks().0.contains(&next.kid),
        "published before it signs"
    );
    let (token, _) = app
        .mint_access("s", "c", "", vec!["a".into()], 600, None)
        .unwrap();
    assert!(app.verify_access(&token).is_some());
    // Due: it signs, and the former key stays published for verification.
    clock.advance(prepublish);
    app.key_tick().await.unwrap();
    let ring = app.keyring();
    assert_eq!(ring.current().unwrap().kid, next.kid);
    assert_eq!(state_of(&ring, &first.kid), KeyState::Previous);
    assert!(
        app.verify_access(&token).is_some(),
        "old tokens still verify"
    );
    // A token signed by the former key expires by the clock, not by the wall.
    clock.advance(600 - prepublish);
    assert!(app.verify_access(&token).is_none(), "expired by the clock");
    // Retention over: the former key retires and leaves the JWKS.
    let retention = app.settings().tokens.max_access_ttl.as_secs() as i64
        + app.settings().keys.clock_skew.as_secs() as i64;
    clock.advance(retention - (600 - prepublish) - 1);
    app.key_tick().await.unwrap();
    assert_eq!(state_of(&app.keyring(), &first.kid), KeyState::Previous);
    clock.advance(1);
    app.key_tick().await.unwrap();
    assert_eq!(state_of(&app.keyring(), &first.kid), KeyState::Retired);
    assert!(!app.jwks().0.contains(&first.kid));
}
