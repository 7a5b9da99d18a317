#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The CLI's client verbs against an in-process control plane on a loopback socket.

mod support;

use clap::Parser;
use meshauth_cp::cli::{run_client, Cli};
use meshauth_tests::control_plane::per_user_limit;
use support::*;

/// Runs `meshauth ARGS` against `cp` served on a loopback socket.
async fn meshauth(cp: &Cp, args: &[&str]) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = meshauth_cp::http::router(cp.app.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut argv = vec!["meshauth", "--url", &url, "--admin-token", ADMIN];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let result = tokio::task::spawn_blocking(move || run_client(cli.conn, cli.cmd))
        .await
        .unwrap();
    server.abort();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_cannot_steer_a_verb_to_another_route() {
    let cp = cp().await;
    // Unencoded, `../keys/rotate?` would resolve to POST /admin/keys/rotate.
    let e = meshauth(&cp, &["clients", "rotate-secret", "../keys/rotate?"])
        .await
        .unwrap_err();
    assert!(e.starts_with("404: client"), "{e}");
    assert!(
        !cp.app.keyring().rotation_requested,
        "no rotation was asked for"
    );
    let e = meshauth(&cp, &["keys", "revoke", "../rotate#"])
        .await
        .unwrap_err();
    assert!(e.starts_with("404:"), "{e}");
    assert!(!cp.app.keyring().rotation_requested);
    let e = meshauth(&cp, &["clients", "delete", ".."])
        .await
        .unwrap_err();
    assert!(e.contains("cannot be an id or a name"), "{e}");
    // An id that needs encoding still reaches its client.
    let (id, _, _) = cp.client(&[]).await;
    meshauth(&cp, &["clients", "rotate-secret", &id])
        .await
        .unwrap();
    meshauth(&cp, &["clients", "delete", &id]).await.unwrap();
    let e = meshauth(&cp, &["clients", "delete", &id])
        .await
        .unwrap_err();
    assert!(e.starts_with("404:"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_send_typed_bodies_the_server_accepts() {
    let cp = cp().await;
    meshauth(
        &cp,
        &per_user_limit(
            "5",
            "5",
            &[
                "--path-prefix",
                "/api",
                "--method",
                "GET",
                "--override",
                "alice=10/10/60",
            ],
        ),
    )
    .await
    .unwrap();
    let p = cp.app.limits().await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].name, "per-user");
    assert_eq!(p[0].overrides["alice"].window_seconds, 60);
    assert_eq!(p[0].matches.path_prefix.as_deref(), Some("/api"));
    let e = meshauth(
        &cp,
        &[
            "limits", "set", "bad", "--key", "nope", "--rate", "1", "--burst", "1",
        ],
    )
    .await
    .unwrap_err();
    assert!(e.starts_with("400: key[0]: unknown key part"), "{e}");
    meshauth(
        &cp,
        &[
            "token", "issue", "--sub", "alice", "--scope", "a b", "--ttl", "5m",
        ],
    )
    .await
    .unwrap();
    meshauth(&cp, &["revoke", "subject", "alice"])
        .await
        .unwrap();
    let live = cp.app.live_revocations().await.unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    meshauth(&cp, &["audit", "verify"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_are_added_listed_shown_and_deleted_from_the_cli() {
    let cp = cp().await;
    let add = [
        "issuers",
        "add",
        "auth0",
        "--issuer",
        "https://t.auth0.example/",
        "--jwks-uri",
        "https://t.auth0.example/.well-known/jwks.json",
        "--audience",
        "api",
        "--alg",
        "RS256",
        "--scope-claim",
        "permissions",
    ];
    meshauth(&cp, &add).await.unwrap();
    let stored = cp.app.issuers().get("auth0").await.unwrap();
    assert_eq!(stored.issuer(), "https://t.auth0.example/");
    assert_eq!(stored.scope_claim().dotted(), "permissions");
    let e = meshauth(&cp, &add).await.unwrap_err();
    assert!(e.starts_with("409: trusted issuer \"auth0\" exists"), "{e}");
    let mut bad = add.to_vec();
    bad[2] = "other";
    bad[10] = "HS256";
    let e = meshauth(&cp, &bad).await.unwrap_err();
    assert!(e.starts_with("400: algorithms: \"HS256\""), "{e}");
    meshauth(&cp, &["issuers", "list"]).await.unwrap();
    meshauth(&cp, &["issuers", "show", "auth0"]).await.unwrap();
    meshauth(&cp, &["issuers", "delete", "auth0"])
        .await
        .unwrap();
    let e = meshauth(&cp, &["issuers", "show", "auth0"])
        .await
        .unwrap_err();
    assert!(e.starts_with("404: trusted issuer"), "{e}");
}
