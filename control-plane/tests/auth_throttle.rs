#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The failed-authentication throttle against the real router (in process, one router
//! for all requests so its guards persist), with the peer address set per request as
//! the server's socket layer sets it. Each test is an attack from behind a shared
//! address (NAT, proxy) or from one address spraying identities.

mod support;

use axum::http::StatusCode;
use support::{basic, ADMIN};

const BURST: u32 = 3;

/// The control plane with a small failure budget that does not refill during a test.
struct Cp(support::Cp);

async fn cp() -> Cp {
    Cp(support::cp_with(|s| {
        s.server.auth_failure_burst = BURST;
        s.server.auth_failure_interval = std::time::Duration::from_secs(3600);
    })
    .await)
}

impl Cp {
    async fn send(
        &self,
        from: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, String) {
        let r = self
            .0
            .send_from(Some(from), method, path, headers, body)
            .await;
        (r.status, r.body)
    }

    async fn client(&self) -> (String, String) {
        let (id, secret, _) = self.0.client(&["read"]).await;
        (id, secret)
    }

    async fn token(&self, from: &str, auth: &str) -> StatusCode {
        self.send(
            from,
            "POST",
            "/oauth2/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", auth),
            ],
            "grant_type=client_credentials",
        )
        .await
        .0
    }

    /// The client-credentials grant with client_secret_post.
    async fn token_post(&self, from: &str, id: &str, secret: &str) -> StatusCode {
        let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
        self.send(
            from,
            "POST",
            "/oauth2/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await
        .0
    }

    async fn admin_keys(&self, from: &str, token: &str) -> StatusCode {
        let bearer = format!("Bearer {token}");
        self.send(
            from,
            "GET",
            "/admin/keys",
            &[("authorization", &bearer)],
            "",
        )
        .await
        .0
    }
}

/// Behind one NAT address, a client with a wrong secret uses up its own failures; the
/// other clients behind the same address, and the admin, keep working.
#[tokio::test]
async fn a_nat_neighbours_failures_do_not_lock_out_valid_clients() {
    let cp = cp().await;
    let nat = "192.0.2.7";
    let (good, good_secret) = cp.client().await;
    let (fresh, fresh_secret) = cp.client().await;
    let (bad, _) = cp.client().await;
    assert_eq!(cp.token(nat, &basic(&good, &good_secret)).await, 200);
    for _ in 0..BURST {
        assert_eq!(cp.token(nat, &basic(&bad, "wrong")).await, 401);
    }
    assert_eq!(
        cp.token(nat, &basic(&bad, "wrong")).await,
        429,
        "the failing client id is throttled"
    );
    assert_eq!(
        cp.token(nat, &basic(&good, &good_secret)).await,
        200,
        "a client that authenticated from here before is not locked out"
    );
    assert_eq!(
        cp.token(nat, &basic(&fresh, &fresh_secret)).await,
        200,
        "nor is a client new to this address"
    );
    // The same with client_secret_post.
    assert_eq!(
        cp.token_post(nat, &bad, "wrong").await,
        429,
        "the id is throttled whichever way it is sent"
    );
    // The admin API: a neighbour's wrong tokens do not lock out the admin.
    for _ in 0..BURST {
        assert_eq!(cp.admin_keys(nat, "wrong").await, 401);
    }
    assert_eq!(cp.admin_keys(nat, "wrong").await, 429);
    assert_eq!(cp.admin_keys(nat, ADMIN).await, 200);
}

/// One address trying many client ids (a different id each time, so no one id's budget
/// runs out) is still slowed by the budget of its address; a client that authenticated
/// from that address before keeps working. IPv6 addresses count by their /64.
#[tokio::test]
async fn spraying_client_ids_from_one_address_is_slowed() {
    let cp = cp().await;
    let (good, good_secret) = cp.client().await;
    for (attacker, next_door) in [
        ("198.51.100.9", "198.51.100.9"),
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"),
    ] {
        assert_eq!(cp.token(attacker, &basic(&good, &good_secret)).await, 200);
        let mut refused_at = None;
        for i in 0..100 {
            let status = cp
                .token(next_door, &basic(&format!("guess-{i}"), "x"))
                .await;
            if status == 429 {
                refused_at = Some(i);
                break;
            }
            assert_eq!(status, 401);
        }
        let refused_at = refused_at.expect("spraying ids was never throttled");
        assert!(
            refused_at > BURST,
            "more than one id's budget: {refused_at}"
        );
        assert_eq!(
            cp.token(next_door, &basic("yet-another-id", "x")).await,
            429,
            "a new id from the same address is refused before it is checked"
        );
        assert_eq!(
            cp.token(attacker, &basic(&good, &good_secret)).await,
            200,
            "a client known to this address is not locked out"
        );
        // Client ids spend the budget for client credentials only: an admin token is
        // still checked (and this wrong one fails).
        assert_eq!(cp.admin_keys(next_door, "guess").await, 401);
    }
    // Another address is not affected.
    assert_eq!(cp.token("203.0.113.1", &basic("other", "x")).await, 401);
}

/// Client ids are not secret (tokens carry them, logs name them): a NAT neighbour who
/// knows one fails with it on purpose, with wrong secrets, to lock its owner out. The
/// owner, who authenticated from that address before and presents the right secret,
/// must keep working: only failures with its own credential may count against it.
#[tokio::test]
async fn a_nat_neighbour_claiming_a_clients_id_does_not_lock_it_out() {
    let cp = cp().await;
    let nat = "192.0.2.8";
    let (victim, secret) = cp.client().await;
    assert_eq!(cp.token(nat, &basic(&victim, &secret)).await, 200);
    for i in 0..BURST {
        assert_eq!(
            cp.token(nat, &basic(&victim, &format!("guess-{i}"))).await,
            401
        );
    }
    assert_eq!(
        cp.token(nat, &basic(&victim, &secret)).await,
        200,
        "the owner of the id, with its secret, is not locked out by a neighbour's guesses"
    );
    // Guessing the victim's secret stays slowed: by the address's budget.
    let mut refused = false;
    for i in 0..(BURST * 4 + 1) {
        let status = cp.token(nat, &basic(&victim, &format!("more-{i}"))).await;
        refused |= status == 429;
    }
    assert!(refused, "guessing one id's secret was never throttled");
    // The same wrong secret, however it is sent, counts as one identity.
    assert_eq!(cp.token_post(nat, &victim, "guess-0").await, 429);
    assert_eq!(cp.token(nat, &basic(&victim, &secret)).await, 200);
}

/// The public port is open to every client; the admin port is not. A client spraying
/// client ids from an address (a NAT, a proxy in front) spends that address's budget for
/// client credentials only: the admin, never seen from there since the control plane
/// started, still gets in; guessed admin tokens spend the admin budget.
#[tokio::test]
async fn spraying_client_ids_does_not_refuse_the_admin_from_that_address() {
    let cp = cp().await;
    let nat = "192.0.2.9";
    for i in 0..(BURST * 4 + 1) {
        cp.token(nat, &basic(&format!("spray-{i}"), "x")).await;
    }
    assert_eq!(cp.token(nat, &basic("one-more", "x")).await, 429);
    assert_eq!(
        cp.admin_keys(nat, ADMIN).await,
        200,
        "client-id spraying locked out the admin"
    );
    let mut refused = false;
    for i in 0..(BURST * 4 + 1) {
        refused |= cp.admin_keys(nat, &format!("guess-{i}")).await == 429;
    }
    assert!(refused, "guessing admin tokens was never throttled");
}
