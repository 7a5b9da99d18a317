//! Prometheus metrics of the control plane.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabel {
    pub grant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// `client` or `admin`: a fixed set, never client input.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabel {
    pub kind: &'static str,
}

/// `snapshot` or `delta`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
    pub method: String,
}

/// A trusted issuer's name: set by an admin, bounded by `federation.max_issuers`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabel {
    pub issuer: String,
}

/// What became of a filter's unknown-kid report: a fixed set, never filter input.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub tokens_issued: Family<GrantLabel, Counter>,
    pub errors: Family<CodeLabel, Counter>,
    pub rotations: Counter,
    pub schedule_failures: Counter,
    pub forced_activations: Counter,
    pub filters_connected: Gauge,
    pub filter_max_lag: Gauge,
    pub sync_unauthorized: Counter,
    pub sync_registry_full: Counter,
    pub sync_epoch_resets: Counter,
    pub key_age: Family<StateLabel, Gauge>,
    pub latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub auth_failures: Family<AuthLabel, Counter>,
    pub auth_throttled: Family<AuthLabel, Counter>,
    pub connections_refused: Counter,
    pub long_polls_refused: Counter,
    pub read_timeouts: Counter,
    pub sync_answers_built: Family<AnswerLabel, Counter>,
    pub federation_fetch_failures: Family<IssuerLabel, Counter>,
    pub federation_circuit_open: Family<IssuerLabel, Gauge>,
    pub federation_keys: Family<IssuerLabel, Gauge>,
    pub federation_kid_reports: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let tokens_issued = Family::<GrantLabel, Counter>::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let rotations = Counter::default();
        let schedule_failures = Counter::default();
        let forced_activations = Counter::default();
        let filters_connected = Gauge::default();
        let filter_max_lag = Gauge::default();
        let sync_unauthorized = Counter::default();
        let sync_registry_full = Counter::default();
        let sync_epoch_resets = Counter::default();
        let key_age = Family::<StateLabel, Gauge>::default();
        let latency =
            Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "meshauth_tokens_issued",
            "Tokens issued, by grant",
            tokens_issued.clone(),
        );
        registry.register(
            "meshauth_http_errors",
            "Error answers, by error code",
            errors.clone(),
        );
        registry.register(
            "meshauth_key_rotations",
            "Signing keys activated",
            rotations.clone(),
        );
        registry.register(
            "meshauth_sync_filters_connected",
            "Filters that polled in the last 90 s (on any replica)",
            filters_connected.clone(),
        );
        registry.register(
            "meshauth_sync_filter_max_lag_versions",
            "The largest gap between the current version and one a connected filter applied",
            filter_max_lag.clone(),
        );
        registry.register(
            "meshauth_sync_unauthorized",
            "Sync calls refused for a missing or wrong fleet credential",
            sync_unauthorized.clone(),
        );
        registry.register(
            "meshauth_sync_registry_full",
            "Polls from a new filter id not recorded because the filter registry is full",
            sync_registry_full.clone(),
        );
        registry.register(
            "meshauth_sync_epoch_resets",
            "New sync epochs started because a filter held a version past the change log (a store restored from a backup)",
            sync_epoch_resets.clone(),
        );
        registry.register(
            "meshauth_key_schedule_failures",
            "Key schedule steps that failed",
            schedule_failures.clone(),
        );
        registry.register(
            "meshauth_key_activations_forced",
            "Keys that started signing before every connected filter had applied them (the cap ran out)",
            forced_activations.clone(),
        );
        registry.register(
            "meshauth_key_age_seconds",
            "Age of the newest key in each state",
            key_age.clone(),
        );
        registry.register(
            "meshauth_http_request_duration_seconds",
            "Request latency, by route",
            latency.clone(),
        );
        let auth_failures = Family::<AuthLabel, Counter>::default();
        let auth_throttled = Family::<AuthLabel, Counter>::default();
        let connections_refused = Counter::default();
        let long_polls_refused = Counter::default();
        let read_timeouts = Counter::default();
        let sync_answers_built = Family::<AnswerLabel, Counter>::default();
        registry.register(
            "meshauth_auth_failures",
            "Failed client or admin authentications",
            auth_failures.clone(),
        );
        registry.register(
            "meshauth_auth_throttled",
            "Authentication attempts refused (429) after too many failures from their source",
            auth_throttled.clone(),
        );
        registry.register(
            "meshauth_http_connections_refused",
            "Connections closed at once: over max_connections or max_connections_per_source",
            connections_refused.clone(),
        );
        registry.register(
            "meshauth_sync_long_polls_refused",
            "Sync long polls answered 503: over max_long_polls or max_long_polls_per_source",
            long_polls_refused.clone(),
        );
        registry.register(
            "meshauth_http_body_read_timeouts",
            "Requests whose body did not arrive within body_read_timeout (408)",
            read_timeouts.clone(),
        );
        registry.register(
            "meshauth_sync_answers_built",
            "Signed sync answers built (each one shared by every poller waiting for it)",
            sync_answers_built.clone(),
        );
        let federation_fetch_failures = Family::<IssuerLabel, Counter>::default();
        let federation_circuit_open = Family::<IssuerLabel, Gauge>::default();
        let federation_keys = Family::<IssuerLabel, Gauge>::default();
        registry.register(
            "meshauth_federation_fetch_failures",
            "Failed discovery or JWKS fetches of a trusted issuer (the last good keys are kept)",
            federation_fetch_failures.clone(),
        );
        registry.register(
            "meshauth_federation_circuit_open",
            "1 while a trusted issuer's fetch circuit is open (its fetches failing)",
            federation_circuit_open.clone(),
        );
        registry.register(
            "meshauth_federation_keys",
            "Verification keys held for a trusted issuer",
            federation_keys.clone(),
        );
        let federation_kid_reports = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "meshauth_federation_unknown_kid_reports",
            "Filters' reports of an unknown kid, by outcome: triggered (a refetch now), suppressed (one ran within refetch_on_unknown_kid_interval), held (the kid is held already), ignored (no such trusted issuer)",
            federation_kid_reports.clone(),
        );
        Metrics {
            registry,
            federation_kid_reports,
            federation_fetch_failures,
            federation_circuit_open,
            federation_keys,
            auth_failures,
            auth_throttled,
            connections_refused,
            long_polls_refused,
            read_timeouts,
            sync_answers_built,
            tokens_issued,
            errors,
            rotations,
            schedule_failures,
            forced_activations,
            filters_connected,
            filter_max_lag,
            sync_unauthorized,
            sync_registry_full,
            sync_epoch_resets,
            key_age,
            latency,
        }
    }

    pub fn issued(&self, grant: &str) {
        self.tokens_issued
            .get_or_create(&GrantLabel {
                grant: grant.into(),
            })
            .inc();
    }

    pub fn error(&self, code: &str) {
        self.errors
            .get_or_create(&CodeLabel { code: code.into() })
            .inc();
    }

    pub fn issuer_fetch_failed(&self, issuer: &str) {
        self.federation_fetch_failures
            .get_or_create(&IssuerLabel {
                issuer: issuer.into(),
            })
            .inc();
    }

    pub fn issuer_state(&self, issuer: &str, open: bool, keys: usize) {
        let label = IssuerLabel {
            issuer: issuer.into(),
        };
        self.federation_circuit_open
            .get_or_create(&label)
            .set(i64::from(open));
        self.federation_keys
            .get_or_create(&label)
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
    }

    /// A deleted issuer's series go with it.
    pub fn forget_issuer(&self, issuer: &str) {
        let label = IssuerLabel {
            issuer: issuer.into(),
        };
        self.federation_fetch_failures.remove(&label);
        self.federation_circuit_open.remove(&label);
        self.federation_keys.remove(&label);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// Every metric the control plane exports is documented, so an operator can alert on
    /// it without reading the code.
    #[test]
    fn every_metric_is_documented() {
        let docs = [
            include_str!("../../docs/control-plane.md"),
            include_str!("../../docs/operations.md"),
            include_str!("../../docs/federation.md"),
        ]
        .concat();
        // Names as the docs spell them, whole words only: `meshauth_sync_polls` is not
        // documented by a line about `meshauth_sync_polls_refused_total`.
        let documented: std::collections::BTreeSet<&str> = docs
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("meshauth_"))
            .collect();
        let exported = super::Metrics::new().encode();
        // A counter's TYPE line names it without the `_total` its samples carry.
        let names: Vec<String> = exported
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                [name, "counter"] => Some(format!("{name}_total")),
                [name, _] => Some(name.to_string()),
                _ => None,
            })
            .collect();
        assert!(names.len() > 10, "{exported}");
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !documented.contains(n.as_str()))
            .collect();
        assert!(missing.is_empty(), "undocumented metrics: {missing:?}");
    }
}
