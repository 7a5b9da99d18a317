//! The names the HTTP layer imported from here before the services were split; each
//! now lives with the service that owns it.

pub use crate::app::App;
pub use crate::clients::{validate_name, validate_scopes, ClientRecord};
pub use crate::oauth::ADMIN_ACTOR;
pub use crate::revocation::Revocation;
pub use crate::schedule::CHANGES_KEPT;
pub use crate::sessions::{FamilyRecord, RefreshRecord};
pub use crate::tokens::TokenResponse;

/// The system time, for HTTP code that has not moved to `App::now` (which follows the
/// injected clock).
pub fn now() -> i64 {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}
