//! Wire formats shared by the meshauth filter and control plane.
//!
//! Everything that crosses between the two halves is defined here once: base64url as
//! JOSE uses it, Ed25519 JWKs and their RFC 7638 thumbprints, and the access-token
//! claims, the sync messages (snapshot, delta, poll query, confirm call, head
//! statement), the error body and the header names. Both sides depend on this crate, so a format can't drift between them.

pub mod b64;
pub mod bloom;
pub mod claims;
pub mod error;
pub mod federation;
pub mod headers;
pub mod jwk;
pub mod limits;
pub mod path_match;
pub mod sync;

pub use claims::{AccessClaims, Actor, ExternalSubject};
pub use jwk::{Jwk, JwkError, JwkSet};

/// JOSE `alg` values for Ed25519 that the filter accepts (RFC 8037 and RFC 9864).
pub const ALG_EDDSA: &str = "EdDSA";
pub const ALG_ED25519: &str = "Ed25519";
/// `typ` of access tokens (RFC 9068).
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";
