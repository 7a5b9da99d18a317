//! meshauth's control plane: owns the signing keys, issues tokens, keeps revocations,
//! and serves the JWKS and the admin API. `main.rs` is its CLI.

pub mod access;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod ctx;
pub mod envoy_config;
pub mod error;
pub mod http;
pub mod issuers;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod oauth;
pub mod revocation;
pub mod revocations;
pub mod schedule;
pub mod serve;
pub mod sessions;
pub mod store;
pub mod sync;
pub mod tokens;
