//! `meshauth serve`: open the store, start the key scheduler, serve HTTP until a
//! signal arrives, then drain.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Settings, StoreConfig};
use crate::service::App;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::RedisStore;
use crate::store::Store;

pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, String> {
    match (&settings.store, &settings.redis) {
        (StoreConfig::Redis { namespace, .. }, Some((target, acks))) => {
            RedisStore::connect(target.clone(), namespace, *acks)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| e.to_string())
        }
        (StoreConfig::Embedded { path }, _) => EmbeddedStore::open(path)
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| e.to_string()),
        (StoreConfig::Redis { .. }, None) => Err("redis store without a target".into()),
    }
}

pub async fn run(config: Option<&Path>) -> Result<(), String> {
    let settings = Settings::load(config, &|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    if settings.admin_token_hashes.is_empty() {
        tracing::warn!("no admin token configured (MESHAUTH_ADMIN_TOKEN_SHA256): the admin API refuses every call");
    }
    let store = open_store(&settings).await?;
    let listen = settings.listen.clone();
    let app = App::new(store, settings)
        .await
        .map_err(|e| format!("start-up: {e}"))?;
    let listener = bind(&listen).await?;
    // The admin API, the sync channel and the metrics may each have a listener of their
    // own, so that network policies can tell who reaches which.
    let mut separate = Vec::new();
    for (address, routes) in crate::http::separate_routers(&app) {
        separate.push((bind(&address).await?, routes));
        tracing::info!(listen = %address, "separate listener");
    }
    tracing::info!(listen = %listen, store = app.store.kind(), issuer = %app.settings.issuer, "meshauth control plane serving");

    let ticker = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(app.settings.keys.check_interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = app.key_tick().await {
                    app.metrics.schedule_failures.inc();
                    tracing::warn!(error = %e, "key schedule step failed; will retry");
                }
            }
        })
    };
    let follower = {
        let app = app.clone();
        tokio::spawn(async move { app.sync.follow(app.store.as_ref()).await })
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (listener, routes) in std::iter::once((listener, crate::http::router(app))).chain(separate)
    {
        let mut stopped = stopped.clone();
        servers.spawn(async move {
            // Small answers go out at once (no Nagle delay on long-poll and API replies).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, routes)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .map_err(|e| e.to_string())
        });
    }
    // A signal, or the first server to end (an error), stops them all.
    let mut result = tokio::select! {
        _ = shutdown() => Ok(()),
        Some(done) = servers.join_next() => done.map_err(|e| e.to_string()).and_then(|r| r),
    };
    let _ = stop.send(true);
    while let Some(done) = servers.join_next().await {
        if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            result = result.and(Err(e));
        }
    }
    ticker.abort();
    follower.abort();
    result
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("listen on {address}: {e}"))
}

async fn shutdown() {
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
