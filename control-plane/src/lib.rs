//! meshauth's control plane: owns the signing keys, issues tokens, keeps revocations,
//! and serves the JWKS and the admin API. `main.rs` is its CLI.

pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod http;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod serve;
pub mod service;
pub mod store;
pub mod sync;
