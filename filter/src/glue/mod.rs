//! proxy-wasm glue: moves bytes between Envoy and the plain-Rust core. `root` owns the
//! lifecycle (configuration, tick) and drives the sync worker; `http` runs one request
//! through the engine; `host` wraps the host calls; `metrics` counts. Decisions live in
//! the engine and in `sync`; nothing here decides.

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

mod host;
mod http;
mod metrics;
mod root;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(root::Root::new(id)) });
}}
