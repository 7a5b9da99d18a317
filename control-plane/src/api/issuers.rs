//! Trusted issuers in the admin API: `POST /admin/issuers` takes an `IssuerSpec`;
//! answers show it with what this replica last fetched.

use serde::{Deserialize, Serialize};

pub use crate::issuers::{FetchStatus, IssuerSpec};

/// A trusted issuer as written, and the state of its key fetching on the replica that
/// answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerView {
    #[serde(flatten)]
    pub spec: IssuerSpec,
    pub fetch: FetchStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerList {
    pub issuers: Vec<IssuerView>,
}
