//! Signing keys: the pure lifecycle (`lifecycle`) and the service that stores the
//! keyring, caches signers and serves the JWKS (`service`).

pub mod lifecycle;
pub mod service;

pub use lifecycle::{FilterGate, KeyEvent, KeyRecord, KeyState, Keyring, LifecyclePolicy};
pub use service::KeyService;
