//! What every service shares: the store, the clock, the settings, the audit log, the
//! metrics and the sync hub (whose change log each change must reach).

use std::sync::Arc;

use crate::audit::Audit;
use crate::clock::Clock;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::sync::SyncHub;

pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub audit: Audit,
    pub metrics: Metrics,
    pub sync: SyncHub,
}

impl Ctx {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// A duration setting in whole seconds, as the domain counts time.
pub fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}
