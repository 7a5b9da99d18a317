//! `meshauth serve`: open the store, start the key scheduler, serve HTTP until a
//! signal arrives, then drain.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::App;
use crate::config::{Settings, StoreTarget};
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::store::Store;

pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, String> {
    match &settings.store {
        StoreTarget::Redis {
            target,
            namespace,
            replica_acks,
        } => RedisStore::connect(target.clone(), namespace, *replica_acks)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| e.to_string()),
        StoreTarget::Embedded { path } => EmbeddedStore::open(path)
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| e.to_string()),
    }
}

/// The sockets `run` serves: the public one, and one per separately configured address
/// (`admin_listen`, `sync_listen`, `metrics_listen`), keyed by that address.
pub struct Listeners {
    pub public: TcpListener,
    pub separate: Vec<(String, TcpListener)>,
}

impl Listeners {
    /// Binds every address `settings` names.
    pub async fn bind(settings: &Settings) -> Result<Listeners, String> {
        let public = bind(&settings.listen).await?;
        let mut separate = Vec::new();
        for address in [
            &settings.admin_listen,
            &settings.sync_listen,
            &settings.metrics_listen,
        ]
        .into_iter()
        .flatten()
        {
            separate.push((address.clone(), bind(address).await?));
        }
        Ok(Listeners { public, separate })
    }
}

/// `meshauth serve`: loads the configuration, binds its addresses and serves until
/// SIGTERM or Ctrl-C.
pub async fn serve(config: Option<&Path>) -> Result<(), String> {
    let settings = Settings::load(config, &|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let listeners = Listeners::bind(&settings).await?;
    run(listeners, settings, shutdown_signal()).await
}

/// Serves on `listeners` until `shutdown` completes (or a server fails), then drains
/// open connections. Opens the store and runs the key schedule and the change-log
/// follower meanwhile.
pub async fn run(
    listeners: Listeners,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    if settings.admin_token_hashes.is_empty() {
        tracing::warn!("no admin token configured (MESHAUTH_ADMIN_TOKEN_SHA256): the admin API refuses every call");
    }
    let store = open_store(&settings).await?;
    let app = App::new(store, settings)
        .await
        .map_err(|e| format!("start-up: {e}"))?;
    // The admin API, the sync channel and the metrics may each have a listener of their
    // own, so that network policies can tell who reaches which.
    let mut sockets = listeners.separate;
    let mut separate = Vec::new();
    for (address, routes) in crate::http::separate_routers(&app) {
        let at = sockets
            .iter()
            .position(|(a, _)| *a == address)
            .ok_or_else(|| format!("no listener for {address}"))?;
        separate.push((sockets.swap_remove(at).1, routes));
        tracing::info!(listen = %address, "separate listener");
    }
    let listen = app.settings().listen.clone();
    tracing::info!(listen = %listen, store = app.store().kind(), issuer = %app.settings().issuer, "meshauth control plane serving");
    let background = background_tasks(&app);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (listener, routes) in
        std::iter::once((listeners.public, crate::http::router(app.clone()))).chain(separate)
    {
        // A connection budget per listener: connections to the public port must not
        // shut the admin, sync and metrics listeners out.
        let connections = crate::http::guard::SourceLimiter::new(
            app.settings().server.max_connections,
            app.settings().server.max_connections_per_source,
        );
        let mut stopped = stopped.clone();
        let app = app.clone();
        servers.spawn(async move {
            serve_http(listener, routes, app, connections, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
        });
    }
    // Shutdown, or the first server to end (an error), stops them all.
    let mut result = tokio::select! {
        () = shutdown => Ok(()),
        Some(done) = servers.join_next() => done.map_err(|e| e.to_string()).and_then(|r| r),
    };
    // Parked long polls are answered first (their filters re-poll elsewhere or after
    // the restart), then the servers stop accepting and finish what is in flight.
    tracing::info!("shutting down: answering parked polls, finishing requests");
    app.sync().close();
    let _ = stop.send(true);
    while let Some(done) = servers.join_next().await {
        if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            result = result.and(Err(e));
        }
    }
    for task in background {
        task.abort();
        let _ = task.await;
    }
    result
}

/// How long a stopping server waits for in-flight requests before it ends anyway (a
/// restart must not wait on a slow client).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How often the federated key fetch loop looks for due fetches (each issuer is
/// fetched when its cache lifetime or its circuit breaker says so, not this often).
const FEDERATION_TICK: Duration = Duration::from_secs(1);

/// The key schedule, every `check_interval`, the follower of the shared change log and
/// the federated key fetch loop.
fn background_tasks(app: &Arc<App>) -> [tokio::task::JoinHandle<()>; 3] {
    let ticker = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(app.settings().keys.check_interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = app.key_tick().await {
                    app.metrics().schedule_failures.inc();
                    tracing::warn!(error = %e, "key schedule step failed; will retry");
                }
            }
        })
    };
    let follower = {
        let app = app.clone();
        tokio::spawn(async move { app.sync().follow(app.store().as_ref()).await })
    };
    let federation = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(FEDERATION_TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = app.issuers().woken() => {}
                }
                if let Err(e) = app.fetch_issuer_keys().await {
                    tracing::warn!(error = %e, "federated key fetch step failed; will retry");
                }
            }
        })
    };
    [ticker, follower, federation]
}

/// The HTTP server: an accept loop that closes connections over the caps at once, and
/// HTTP/1 connections whose request heads must arrive within `header_read_timeout` and
/// fit in `max_header_bytes` (431 otherwise). Bodies are timed by the router. On
/// `stop`, stops accepting and lets open connections finish their request, for
/// `DRAIN_LIMIT` at most.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    app: Arc<App>,
    connections: Arc<crate::http::guard::SourceLimiter>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let limits = app.settings().server.clone();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    let (draining, _) = tokio::sync::watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let source = crate::http::guard::source_of(peer.ip());
        let Some(permit) = connections.try_acquire(source) else {
            app.metrics().connections_refused.inc();
            drop(tcp);
            continue;
        };
        // Small answers go out at once (no Nagle delay on long-poll and API replies).
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
        let conn = http.serve_connection(TokioIo::new(tcp), service);
        let mut draining = draining.subscribe();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = async {
                    while !*draining.borrow_and_update() {
                        if draining.changed().await.is_err() {
                            break;
                        }
                    }
                } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    draining.send_replace(true);
    // Wait until this listener's connections are done, for `DRAIN_LIMIT` at most.
    let drained = tokio::time::timeout(DRAIN_LIMIT, async {
        while connections.held() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.held(),
            "connections still open after the drain limit; closing them"
        );
    }
    Ok(())
}

async fn bind(address: &str) -> Result<TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("listen on {address}: {e}"))
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
