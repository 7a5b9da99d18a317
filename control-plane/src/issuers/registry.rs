//! The registry of trusted issuers as stored (one document), and why an issuer cannot
//! join it.

use serde::{Deserialize, Serialize};

use super::model::{same_issuer, TrustedIssuer};
use crate::error::ServiceError;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Registry {
    pub(super) issuers: Vec<TrustedIssuer>,
}

/// Why `new` cannot join `reg`, if it cannot.
pub(super) fn refusal(reg: &Registry, new: &TrustedIssuer, max: usize) -> Option<ServiceError> {
    if let Some(same) = reg.issuers.iter().find(|i| i.name() == new.name()) {
        return Some(ServiceError::Conflict(format!(
            "trusted issuer {:?} exists; delete it first to change it",
            same.name()
        )));
    }
    if let Some(same) = reg
        .issuers
        .iter()
        .find(|i| same_issuer(i.issuer(), new.issuer()))
    {
        return Some(ServiceError::Conflict(format!(
            "issuer {:?} is already trusted as {:?}: two entries for one issuer would be ambiguous",
            new.issuer(),
            same.name()
        )));
    }
    // One issuer per header: the upstream knows who asserted what it reads.
    for (_, header) in new.forward_claims() {
        if let Some(other) = reg
            .issuers
            .iter()
            .find(|i| i.forward_claims().iter().any(|(_, h)| h == header))
        {
            return Some(ServiceError::Conflict(format!(
                "header {header:?} already carries claims of trusted issuer {:?}: give each issuer headers of its own",
                other.name()
            )));
        }
    }
    if reg.issuers.len() >= max {
        return Some(ServiceError::Invalid(format!(
            "at most {max} trusted issuers (federation.max_issuers)"
        )));
    }
    None
}
