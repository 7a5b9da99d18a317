#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The real control plane with the admin API, the sync channel and the metrics on
//! listeners of their own: what moved is gone from the public port (so a network policy
//! on the ports means something), and served where it moved.

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::free_port;
use meshauth_tests::http::get;

#[test]
fn separate_listeners_take_admin_sync_and_metrics_off_the_public_port() {
    let (admin, sync, metrics) = (free_port(), free_port(), free_port());
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        &format!(
            "admin_listen = \"127.0.0.1:{admin}\"\nsync_listen = \"127.0.0.1:{sync}\"\nmetrics_listen = \"127.0.0.1:{metrics}\""
        ),
    );
    let (k, v) = cp.admin_headers();
    let at = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    // The attack: a pod that may reach only the public port calls the admin API with a
    // (stolen) admin token, reads the metrics, or polls the sync channel.
    for path in ["/admin/status", "/admin/keys"] {
        let a = get(&cp.url(path), &[(&k, &v)]);
        assert_eq!(a.status, 404, "{path} on the public port: {}", a.body);
    }
    for path in [
        "/metrics",
        "/sync/v1/snapshot",
        "/sync/v1/distribution-key",
        "/filter/meshauth.wasm.sha256",
    ] {
        assert_eq!(
            get(&cp.url(path), &[]).status,
            404,
            "{path} on the public port"
        );
    }
    // What stays public.
    assert_eq!(get(&cp.url("/.well-known/jwks.json"), &[]).status, 200);
    assert_eq!(
        get(&cp.url("/.well-known/oauth-authorization-server"), &[]).status,
        200
    );
    assert_eq!(get(&cp.url("/readyz"), &[]).status, 200);
    // Each moved route is served on its own port, and only there.
    assert_eq!(get(&at(admin, "/admin/status"), &[(&k, &v)]).status, 200);
    assert_eq!(get(&at(admin, "/admin/status"), &[]).status, 401);
    assert_eq!(get(&at(admin, "/.well-known/jwks.json"), &[]).status, 404);
    assert_eq!(get(&at(admin, "/metrics"), &[]).status, 404);
    assert_eq!(get(&at(metrics, "/metrics"), &[]).status, 200);
    assert_eq!(get(&at(metrics, "/admin/status"), &[(&k, &v)]).status, 404);
    assert_ne!(get(&at(sync, "/sync/v1/distribution-key"), &[]).status, 404);
    assert_eq!(get(&at(sync, "/admin/status"), &[(&k, &v)]).status, 404);
    assert_eq!(get(&at(sync, "/oauth2/token"), &[]).status, 404);
}

#[test]
fn without_separate_listeners_one_port_serves_everything() {
    // Compatibility: unset keeps today's single listener.
    let cp = ControlPlane::start(StoreKind::Embedded, "");
    let (k, v) = cp.admin_headers();
    assert_eq!(get(&cp.url("/admin/status"), &[(&k, &v)]).status, 200);
    assert_eq!(get(&cp.url("/metrics"), &[]).status, 200);
    assert_ne!(get(&cp.url("/sync/v1/distribution-key"), &[]).status, 404);
}
