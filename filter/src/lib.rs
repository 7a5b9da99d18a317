//! meshauth's proxy-wasm filter.
//!
//! Everything but `glue` is plain Rust with no host calls, tested natively: `jwt`
//! takes tokens apart, `ed25519` and `jwks` verify them (`federated`: tokens of
//! trusted external issuers), `claims` and `rules` decide,
//! `cache` remembers verified signatures, `bucket` and `limits` rate-limit,
//! `engine` ties one request's checks together, `deny` builds every refusal, `config`
//! validates the plugin configuration, `sync` runs the leader/follower protocol over
//! shared data. `glue` (wasm32 only) moves bytes between Envoy and those.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod bucket;
pub mod cache;
pub mod claims;
pub mod config;
pub mod deny;
pub mod ed25519;
pub mod engine;
pub mod federated;
pub mod header_map;
pub mod headers;
pub mod jwks;
pub mod jwt;
pub mod limits;
pub mod p256_comb;
pub mod path;
pub mod revocation;
pub mod rsa_verify;
pub mod rules;
pub mod strict_json;
pub mod sync;

#[cfg(target_arch = "wasm32")]
mod glue;
