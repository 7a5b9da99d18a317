#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Tokens, sessions, revocations and OAuth conformance, against the real router over
//! the embedded store (in process). Each test is an attack or a client that a strict
//! OAuth library would be.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use meshauth_cp::app::App;
use meshauth_cp::store::embedded::EmbeddedStore;
use meshauth_cp::store::{Log, Store};
use support::*;

// ---- sessions and revocations ----

#[tokio::test]
async fn revoking_a_session_stops_its_refresh_token() {
    let cp = cp().await;
    let (_, refresh, sid) = cp.session("alice").await;
    let r = cp
        .admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "sid", "value": sid})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(cp.introspect(&refresh).await["active"], false);
    // Past the not-before second, too: the session itself is revoked.
    cp.clock.advance(1);
    let r = cp.refresh(&refresh).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_grant")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn revoking_a_subject_stops_all_its_sessions() {
    let cp = cp().await;
    let (_, r1, _) = cp.session("bob").await;
    let (_, r2, _) = cp.session("bob").await;
    let (_, other, _) = cp.session("carol").await;
    let r = cp.admin_revoke("sub", "bob").await;
    assert_eq!(r.status, 204, "{}", r.body);
    // Past the rule's not-before second.
    cp.clock.advance(1);
    for t in [&r1, &r2] {
        assert_eq!(cp.introspect(t).await["active"], false);
        assert_eq!(cp.refresh(t).await.json()["error"], "invalid_grant");
    }
    assert_eq!(
        cp.introspect(&other).await["active"],
        true,
        "another subject"
    );
    assert_eq!(cp.refresh(&other).await.status, 200);
}

#[tokio::test]
async fn deleting_a_client_revokes_its_tokens() {
    let cp = cp().await;
    let (id, _, auth) = cp.client(&["read"]).await;
    let at = cp.cc_token(&auth).await;
    assert_eq!(cp.introspect(&at).await["active"], true);
    let r = cp
        .admin("DELETE", &format!("/admin/clients/{id}"), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(cp.introspect(&at).await["active"], false);
    let listed = cp.admin("GET", "/admin/revocations", None).await.json();
    assert!(
        listed["revocations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "client_id" && r["value"] == id.as_str()),
        "{listed}"
    );
}

#[tokio::test]
async fn revoking_something_unknown_is_a_404_and_changes_nothing() {
    let cp = cp().await;
    let before = cp.logs().await;
    for (kind, value) in [
        ("client_id", "c-does-not-exist"),
        ("sid", "s-does-not-exist"),
        ("sub", "nobody"),
    ] {
        let r = cp
            .admin(
                "POST",
                "/admin/revocations",
                Some(json!({"kind": kind, "value": value})),
            )
            .await;
        assert_eq!(r.status, 404, "{kind}: {}", r.body);
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(value),
            "{}",
            r.body
        );
    }
    assert_eq!(cp.logs().await, before);
}

#[tokio::test]
async fn a_client_cannot_revoke_another_clients_token() {
    let cp = cp().await;
    let (_, _, victim) = cp.client(&["read"]).await;
    let (_, _, attacker) = cp.client(&["read"]).await;
    let at = cp.cc_token(&victim).await;
    let (_, refresh, _) = cp.session("dave").await;
    for t in [&at, &refresh] {
        let r = cp.rfc7009_revoke(&attacker, t).await;
        assert_eq!(r.status, 200, "RFC 7009 §2.2: 200 all the same");
        assert_eq!(cp.introspect(t).await["active"], true, "left alone");
    }
    // The owner still can.
    let r = cp.rfc7009_revoke(&victim, &at).await;
    assert_eq!(r.status, 200);
    assert_eq!(cp.introspect(&at).await["active"], false);
}

#[tokio::test]
async fn repeating_a_revocation_changes_nothing() {
    let cp = cp().await;
    let (_, _, auth) = cp.client(&["read"]).await;
    let at = cp.cc_token(&auth).await;
    let r = cp.rfc7009_revoke(&auth, &at).await;
    assert_eq!(r.status, 200);
    let (_, refresh, sid) = cp.session("erin").await;
    let by_admin = json!({"kind": "token", "value": refresh});
    let r = cp
        .admin("POST", "/admin/revocations", Some(by_admin.clone()))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let once = cp.logs().await;
    let version = cp.app.sync().version();
    for _ in 0..5 {
        cp.rfc7009_revoke(&auth, &at).await;
        cp.admin("POST", "/admin/revocations", Some(by_admin.clone()))
            .await;
        cp.admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "sid", "value": sid})),
        )
        .await;
    }
    assert_eq!(cp.logs().await, once, "no log grows");
    assert_eq!(cp.app.sync().version(), version);
}

#[tokio::test]
async fn revocation_calls_are_throttled_per_client() {
    let cp = cp().await;
    let (_, _, noisy) = cp.client(&["read"]).await;
    let (_, _, quiet) = cp.client(&["read"]).await;
    let mut limited = 0;
    for i in 0..200 {
        let r = cp
            .form("/oauth2/revoke", &noisy, &format!("token=unknown-{i}"))
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers.get("retry-after").is_some());
            limited += 1;
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert!(limited > 100, "only {limited} of 200 throttled");
    let r = cp.form("/oauth2/revoke", &quiet, "token=x").await;
    assert_eq!(r.status, 200, "another client has its own budget");
}

#[tokio::test]
async fn revocation_list_shows_live_revocations() {
    let cp = cp().await;
    let (_, _, sid) = cp.session("frank").await;
    cp.admin(
        "POST",
        "/admin/revocations",
        Some(json!({"kind": "jti", "value": "old", "exp": 1})),
    )
    .await;
    cp.admin(
        "POST",
        "/admin/revocations",
        Some(json!({"kind": "sid", "value": sid})),
    )
    .await;
    let v = cp.admin("GET", "/admin/revocations", None).await.json();
    let all = v["revocations"].as_array().unwrap();
    assert!(all.iter().any(|r| r["value"] == sid.as_str()), "{v}");
    assert!(
        !all.iter().any(|r| r["jti"] == "old"),
        "an expired jti is not live: {v}"
    );
}

#[tokio::test]
async fn expired_sessions_are_pruned() {
    let cp = cp().await;
    let (_, refresh, _) = cp.session("gina").await;
    assert_eq!(cp.refresh(&refresh).await.status, 200);
    let tables = |app: Arc<App>| async move {
        (
            app.store()
                .list(meshauth_cp::store::Table::RefreshTokens)
                .await
                .unwrap()
                .len(),
            app.store()
                .list(meshauth_cp::store::Table::Families)
                .await
                .unwrap()
                .len(),
        )
    };
    assert_eq!(tables(cp.app.clone()).await, (2, 1));
    let later = cp.app.now() + 365 * 86_400;
    cp.app.prune_sessions(later).await.unwrap();
    assert_eq!(tables(cp.app.clone()).await, (0, 0));
}

#[tokio::test]
async fn the_change_log_is_compacted_and_old_bases_get_a_snapshot() {
    let cp = cp().await;
    for i in 0..40 {
        cp.admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "jti", "value": format!("j{i}")})),
        )
        .await;
    }
    let (head, _) = cp.app.store().log_head(Log::Changes).await.unwrap();
    let dropped = cp.app.compact_changes(10).await.unwrap();
    assert!(dropped > 0);
    let (after, _) = cp.app.store().log_head(Log::Changes).await.unwrap();
    assert_eq!(after, head, "the version stays");
    // Close behind: a delta. Far behind (compacted away): the full snapshot.
    let near = cp
        .send(
            "GET",
            &format!("/sync/v1/snapshot?version={}&delta=1", head - 3),
            &[("authorization", SYNC_BEARER)],
            "",
        )
        .await;
    assert_eq!(payload(&near)["base_version"], head - 3, "{}", near.body);
    let far = cp
        .send(
            "GET",
            "/sync/v1/snapshot?version=1&delta=1",
            &[("authorization", SYNC_BEARER)],
            "",
        )
        .await;
    assert_eq!(far.status, 200);
    let far = payload(&far);
    assert!(
        far.get("base_version").is_none() && far["version"] == head,
        "{far}"
    );
    // Appends continue at the right index.
    cp.admin(
        "POST",
        "/admin/revocations",
        Some(json!({"kind": "jti", "value": "after"})),
    )
    .await;
    assert_eq!(
        cp.app.store().log_head(Log::Changes).await.unwrap().0,
        head + 1
    );
}

// ---- OAuth conformance ----

#[tokio::test]
async fn introspection_token_type_is_bearer() {
    let cp = cp().await;
    let (_, _, auth) = cp.client(&["read"]).await;
    let at = cp.cc_token(&auth).await;
    assert_eq!(cp.introspect(&at).await["token_type"], "Bearer");
}

/// The members of each kind of introspection answer (RFC 7662 §2.2), none more.
#[tokio::test]
async fn introspection_answers_keep_their_members() {
    let cp = cp().await;
    let (_, _, auth) = cp.client(&["read"]).await;
    let at = cp.cc_token(&auth).await;
    let (_, refresh, _) = cp.session("gina").await;
    let keys = |v: serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k.join(" ")
    };
    let access = cp.introspect(&at).await;
    assert_eq!(
        keys(access.clone()),
        "active aud client_id exp iat iss jti nbf scope sid sub token_type"
    );
    assert_eq!(access["sid"], serde_json::Value::Null, "no session");
    assert_eq!(
        keys(cp.introspect(&refresh).await),
        "active client_id exp scope sid sub"
    );
    assert_eq!(cp.introspect("nothing").await, json!({"active": false}));
}

#[tokio::test]
async fn empty_parameters_are_omitted() {
    let cp = cp().await;
    let (_, _, auth) = cp.client(&["read", "write"]).await;
    let r = cp
        .form(
            "/oauth2/token",
            &auth,
            "grant_type=client_credentials&scope=",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], "read write", "the client's defaults");
    let r = cp.form("/oauth2/token", &auth, "grant_type=").await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
}

#[tokio::test]
async fn auth_schemes_are_case_insensitive() {
    let cp = cp().await;
    let (_, _, auth) = cp.client(&["read"]).await;
    let lower = auth.replacen("Basic", "basic", 1);
    let upper = auth.replacen("Basic", "BASIC", 1);
    let at = cp.cc_token(&lower).await;
    let r = cp
        .form("/oauth2/introspect", &upper, &format!("token={at}"))
        .await;
    assert_eq!(r.json()["active"], true, "{}", r.body);
    let bearer = format!("bearer {ADMIN}");
    let r = cp
        .form("/oauth2/introspect", &bearer, &format!("token={at}"))
        .await;
    assert_eq!(r.json()["active"], true, "{}", r.body);
    let r = cp
        .send("GET", "/admin/clients", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = cp.rfc7009_revoke(&lower, &at).await;
    assert_eq!(r.status, 200);
    assert_eq!(cp.introspect(&at).await["active"], false);
}

#[tokio::test]
async fn if_none_match_uses_weak_comparison() {
    let cp = cp().await;
    let r = cp.send("GET", "/.well-known/jwks.json", &[], "").await;
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    for inm in [
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        format!("\"x\",W/{etag}"),
    ] {
        let r = cp
            .send(
                "GET",
                "/.well-known/jwks.json",
                &[("if-none-match", &inm)],
                "",
            )
            .await;
        assert_eq!(r.status, 304, "{inm}");
    }
    let r = cp
        .send(
            "GET",
            "/.well-known/jwks.json",
            &[("if-none-match", "W/\"nope\"")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn error_description_stays_in_the_rfc6749_character_set() {
    let cp = cp().await;
    let (_, _, auth) = cp.client(&["read"]).await;
    for body in [
        "grant_type=client_credentials&scope=%22quoted%22\\x",
        "grant_type=%22weird%5C%E2%82%AC",
        "grant_type=client_credentials&scope=caf%C3%A9",
    ] {
        let r = cp.form("/oauth2/token", &auth, body).await;
        assert_eq!(r.status, 400, "{body}");
        let d = r.json()["error_description"].as_str().unwrap().to_string();
        assert!(
            d.bytes().all(|b| b == 0x20
                || b == 0x21
                || (0x23..=0x5b).contains(&b)
                || (0x5d..=0x7e).contains(&b)),
            "{body}: {d:?}"
        );
    }
}

#[tokio::test]
async fn metadata_advertises_only_what_exists() {
    let cp = cp().await;
    let m = cp
        .send("GET", "/.well-known/oauth-authorization-server", &[], "")
        .await
        .json();
    assert_eq!(m["issuer"], cp.app.settings().issuer.as_str());
    let types = m["response_types_supported"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        types.is_empty() || m.get("authorization_endpoint").is_some(),
        "a response type without an authorization endpoint: {m}"
    );
    assert!(
        m.get("id_token_signing_alg_values_supported").is_none(),
        "no ID tokens: {m}"
    );
    // No OpenID Provider: no discovery document that claims to be one.
    let oidc = cp
        .send("GET", "/.well-known/openid-configuration", &[], "")
        .await;
    assert_eq!(oidc.status, 404);
}

// ---- writes that applied but were not replicated ----

/// The embedded store, but every write that applies while `fail` is set then reports
/// what Redis reports when `WAIT` times out: applied, not replicated.
struct Unreplicated {
    inner: EmbeddedStore,
    fail: std::sync::atomic::AtomicBool,
}

impl Unreplicated {
    fn after<T>(&self, applied: bool, v: T) -> meshauth_cp::store::StoreResult<T> {
        if applied && self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(meshauth_cp::store::StoreError::NotReplicated(
                "write reached 0 of 1 replicas within 1 s".into(),
            ));
        }
        Ok(v)
    }
}

#[async_trait::async_trait]
impl Store for Unreplicated {
    async fn get(
        &self,
        t: meshauth_cp::store::Table,
        k: &str,
    ) -> meshauth_cp::store::StoreResult<Option<Vec<u8>>> {
        self.inner.get(t, k).await
    }
    async fn compare_and_swap(
        &self,
        t: meshauth_cp::store::Table,
        k: &str,
        e: Option<&[u8]>,
        n: Option<&[u8]>,
    ) -> meshauth_cp::store::StoreResult<bool> {
        let ok = self.inner.compare_and_swap(t, k, e, n).await?;
        self.after(ok, ok)
    }
    async fn put(
        &self,
        t: meshauth_cp::store::Table,
        k: &str,
        v: &[u8],
    ) -> meshauth_cp::store::StoreResult<()> {
        self.inner.put(t, k, v).await?;
        self.after(true, ())
    }
    async fn delete(
        &self,
        t: meshauth_cp::store::Table,
        k: &str,
    ) -> meshauth_cp::store::StoreResult<bool> {
        let ok = self.inner.delete(t, k).await?;
        self.after(ok, ok)
    }
    async fn list(
        &self,
        t: meshauth_cp::store::Table,
    ) -> meshauth_cp::store::StoreResult<Vec<(String, Vec<u8>)>> {
        self.inner.list(t).await
    }
    async fn append(
        &self,
        l: Log,
        n: u64,
        e: &[u8],
        h: &[u8],
    ) -> meshauth_cp::store::StoreResult<bool> {
        let ok = self.inner.append(l, n, e, h).await?;
        self.after(ok, ok)
    }
    async fn log_head(&self, l: Log) -> meshauth_cp::store::StoreResult<(u64, Option<Vec<u8>>)> {
        self.inner.log_head(l).await
    }
    async fn read_log(
        &self,
        l: Log,
        from: u64,
        limit: u64,
    ) -> meshauth_cp::store::StoreResult<Vec<Vec<u8>>> {
        self.inner.read_log(l, from, limit).await
    }
    async fn trim_log(&self, l: Log, before: u64) -> meshauth_cp::store::StoreResult<u64> {
        self.inner.trim_log(l, before).await
    }
    async fn lease(&self, n: &str, h: &str, ttl: u64) -> meshauth_cp::store::StoreResult<bool> {
        self.inner.lease(n, h, ttl).await
    }
    async fn ping(&self) -> meshauth_cp::store::StoreResult<()> {
        self.inner.ping().await
    }
    fn kind(&self) -> &'static str {
        "unreplicated"
    }
}

/// A control plane over the `Unreplicated` store (writes apply; while `fail` is set
/// each then reports that no replica confirmed it).
async fn unreplicated_cp() -> (Cp, Arc<Unreplicated>) {
    let mut made = None;
    let cp = cp_over(|data| {
        let store = Arc::new(Unreplicated {
            inner: EmbeddedStore::open(data).unwrap(),
            fail: std::sync::atomic::AtomicBool::new(false),
        });
        made = Some(store.clone());
        store as Arc<dyn Store>
    })
    .await;
    (cp, made.unwrap())
}

fn set_unreplicated(store: &Unreplicated, on: bool) {
    store.fail.store(on, std::sync::atomic::Ordering::SeqCst);
}

/// A revocation whose write applied but was not replicated still reaches the change
/// log (filters following deltas hear of it), and the retry the error invites is a
/// repeat that adds nothing.
#[tokio::test]
async fn an_unreplicated_revocation_still_reaches_the_change_log() {
    let (cp, store) = unreplicated_cp().await;
    let (access, _, _) = cp.session("kai").await;
    let (before, _) = cp.logs().await;
    set_unreplicated(&store, true);
    let r = cp
        .admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "token", "value": access})),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    set_unreplicated(&store, false);
    let (after, _) = cp.logs().await;
    assert_eq!(
        after,
        before + 1,
        "the applied revocation is in the change log"
    );
    let retry = cp
        .admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "token", "value": access})),
        )
        .await;
    assert!(retry.status.is_success(), "{}", retry.body);
    assert_eq!(cp.logs().await.0, after, "the retry is a repeat");
    assert_eq!(cp.introspect(&access).await["active"], false);
}

/// A client deletion that fails partway can be retried to the end, and the client's
/// tokens are revoked whatever step failed.
#[tokio::test]
async fn a_client_deletion_that_fails_partway_can_be_retried() {
    let (cp, store) = unreplicated_cp().await;
    let (id, _, auth) = cp.client(&["read"]).await;
    let token = cp.cc_token(&auth).await;
    set_unreplicated(&store, true);
    let failed = cp
        .admin("DELETE", &format!("/admin/clients/{id}"), None)
        .await;
    assert_eq!(failed.status, 503, "{}", failed.body);
    set_unreplicated(&store, false);
    let retried = cp
        .admin("DELETE", &format!("/admin/clients/{id}"), None)
        .await;
    assert!(retried.status.is_success(), "{}", retried.body);
    assert_eq!(cp.introspect(&token).await["active"], false);
    let gone = cp
        .admin("DELETE", &format!("/admin/clients/{id}"), None)
        .await;
    assert_eq!(gone.status, 404);
}

/// A bounded `exp` for a bare jti: no token of ours outlives its longest TTL, and an
/// unbounded one overflowed the expiry arithmetic.
#[tokio::test]
async fn a_jti_revocation_with_an_absurd_exp_is_refused() {
    let cp = cp().await;
    for exp in [i64::MAX, -1, cp.app.now() + 100 * 365 * 86_400] {
        let r = cp
            .admin(
                "POST",
                "/admin/revocations",
                Some(json!({"kind": "jti", "value": "j-x", "exp": exp})),
            )
            .await;
        assert_eq!(r.status, 400, "{exp}: {}", r.body);
    }
    let ok = cp
        .admin(
            "POST",
            "/admin/revocations",
            Some(json!({"kind": "jti", "value": "j-x"})),
        )
        .await;
    assert!(ok.status.is_success(), "{}", ok.body);
}

#[tokio::test]
async fn a_refresh_retried_after_an_unreplicated_write_keeps_the_session() {
    let (cp, store) = unreplicated_cp().await;
    let (_, r1, _) = cp.session("hana").await;
    set_unreplicated(&store, true);
    let failed = cp.refresh(&r1).await;
    assert_eq!(failed.status, 503, "{}", failed.body);
    let err = failed.json();
    assert_eq!(err["error"]["code"], "not_replicated", "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("applied"),
        "says the write applied: {err}"
    );
    set_unreplicated(&store, false);
    // The client retries the same refresh token: the same answer, not reuse.
    let retried = cp.refresh(&r1).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    let again = cp.refresh(&r1).await;
    assert_eq!(
        again.json(),
        retried.json(),
        "the same answer within the grace"
    );
    let r2 = retried.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let access2 = retried.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(cp.introspect(&access2).await["active"], true);
    let next = cp.refresh(&r2).await;
    assert_eq!(next.status, 200, "the session lives on: {}", next.body);
    // Once the next token was used, replaying the old one is reuse again.
    let reuse = cp.refresh(&r1).await;
    assert_eq!(reuse.json()["error"], "invalid_grant", "{}", reuse.body);
    let r3 = next.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(cp.refresh(&r3).await.json()["error"], "invalid_grant");
}

/// A client refreshing in a loop must not grow the store for the session's whole life:
/// spent refresh tokens leave the store soon after the retry grace, and presenting one
/// afterwards is still detected as reuse (the token proves which session it was for).
/// A token merely naming a session (sids are in access tokens) cannot revoke it.
#[tokio::test]
async fn spent_refresh_tokens_leave_the_store_and_reuse_is_still_detected() {
    let cp = cp().await;
    let (_, r1, sid) = cp.session("ida").await;
    let r2 = cp.refresh(&r1).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r3 = cp.refresh(&r2).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let grace = cp.app.settings().tokens.refresh_retry_grace.as_secs() as i64;
    cp.app
        .prune_sessions(cp.app.now() + grace + 120)
        .await
        .unwrap();
    let left = cp
        .app
        .store()
        .list(meshauth_cp::store::Table::RefreshTokens)
        .await
        .unwrap()
        .len();
    assert_eq!(left, 1, "only the live refresh token is kept");
    // A forged token naming the session: invalid, and the session lives on.
    let forged = r3.rsplit_once('.').map(|(head, _)| format!("{head}.AAAA"));
    for f in [
        forged.unwrap(),
        format!("rt1.{sid}.x.y"),
        format!("{sid}.zz"),
    ] {
        let r = cp.refresh(&f).await;
        assert_eq!(r.json()["error"], "invalid_grant", "{f}: {}", r.body);
    }
    assert_eq!(
        cp.introspect(&r3).await["active"],
        true,
        "not revoked by a forgery"
    );
    // The spent r1, long gone from the store, is still reuse: the session is revoked.
    let reuse = cp.refresh(&r1).await;
    assert!(
        reuse.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{}",
        reuse.body
    );
    assert_eq!(cp.refresh(&r3).await.json()["error"], "invalid_grant");
}

/// `meshauth revoke token X` with something that is no token of ours (mistyped, truncated,
/// expired) says so instead of answering success; a real one is revoked.
#[tokio::test]
async fn revoking_an_unknown_token_through_the_admin_api_is_a_404() {
    let cp = cp().await;
    let (access, refresh, _) = cp.session("jo").await;
    let before = cp.logs().await;
    for bogus in [
        "not-a-token".to_string(),
        access[..access.len() - 4].to_string(),
        format!("{refresh}x"),
    ] {
        let r = cp
            .admin(
                "POST",
                "/admin/revocations",
                Some(json!({"kind": "token", "value": bogus})),
            )
            .await;
        assert_eq!(r.status, 404, "{bogus}: {}", r.body);
    }
    assert_eq!(cp.logs().await, before, "nothing recorded");
    for t in [&access, &refresh] {
        let r = cp
            .admin(
                "POST",
                "/admin/revocations",
                Some(json!({"kind": "token", "value": t})),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.body);
        assert_eq!(cp.introspect(t).await["active"], false);
    }
}

// ---- time, by the injected clock ----

/// Expiry by the control plane's own clock: an access token is active until its `exp`
/// and not a second after, and a refresh token expires with its TTL, with no sleeping.
#[tokio::test]
async fn tokens_expire_by_the_injected_clock() {
    let cp = cp().await;
    let (access, refresh, _) = cp.session("alice").await;
    let access_ttl = cp.app.settings().tokens.access_ttl.as_secs() as i64;
    let refresh_ttl = cp.app.settings().tokens.refresh_ttl.as_secs() as i64;
    assert_eq!(cp.introspect(&access).await["active"], true);
    cp.clock.advance(access_ttl - 1);
    assert_eq!(cp.introspect(&access).await["active"], true);
    cp.clock.advance(1);
    assert_eq!(cp.introspect(&access).await["active"], false);
    assert_eq!(cp.introspect(&refresh).await["active"], true);
    cp.clock.advance(refresh_ttl);
    assert_eq!(cp.introspect(&refresh).await["active"], false);
    let r = cp.refresh(&refresh).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
}

/// Every time the router stamps comes from the injected clock: with the clock ten days
/// ahead of the wall, an admin rule still covers the tokens issued before it (its
/// not-before is the clock's next second, not the wall's) and no token issued after it.
#[tokio::test]
async fn admin_rules_are_stamped_by_the_injected_clock() {
    let cp = cp().await;
    cp.clock.advance(10 * 86_400);
    let (before, _, _) = cp.session("bob").await;
    let r = cp.admin_revoke("sub", "bob").await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(cp.introspect(&before).await["active"], false);
    cp.clock.advance(1);
    let (after, _, _) = cp.session("bob").await;
    assert_eq!(cp.introspect(&after).await["active"], true);
}

/// A corrupt record is one answer wherever it is read: 500 `internal`, never a 503 that
/// invites a retry which cannot help.
#[tokio::test]
async fn a_corrupt_record_answers_500_wherever_it_is_read() {
    use meshauth_cp::store::Table;
    let cp = cp().await;
    for (table, path) in [
        (Table::Clients, "/admin/clients"),
        (Table::Limits, "/admin/limits"),
        (Table::Revocations, "/admin/revocations"),
    ] {
        cp.app
            .store()
            .put(table, "broken", b"{not json")
            .await
            .unwrap();
        let r = cp.admin("GET", path, None).await;
        assert_eq!(r.status, 500, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "internal", "{path}");
        assert!(r.headers.get("retry-after").is_none(), "{path}");
        cp.app.store().delete(table, "broken").await.unwrap();
    }
}
