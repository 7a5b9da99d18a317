//! proxy-wasm glue: reads the plugin configuration and request headers from Envoy,
//! asks the engine, and writes its answer back. No decisions are made here.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

use crate::config::Config;
use crate::deny::Denial;
use crate::engine::{CacheUse, Engine, Request, Verdict};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Counter ids; 0 when a metric could not be defined (increments then fail quietly).
#[derive(Debug, Default, Clone)]
struct Metrics {
    allowed: u32,
    anonymous: u32,
    cache_hits: u32,
    cache_misses: u32,
    denied: Vec<(&'static str, u32)>,
}

fn counter(name: &str) -> u32 {
    hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0)
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            allowed: counter("meshauth_requests_allowed"),
            anonymous: counter("meshauth_requests_anonymous"),
            cache_hits: counter("meshauth_verify_cache_hits"),
            cache_misses: counter("meshauth_verify_cache_misses"),
            denied: Denial::ALL_CODES
                .iter()
                .map(|code| (*code, counter(&format!("meshauth_requests_denied_{code}"))))
                .collect(),
        }
    }

    fn bump(id: u32) {
        if id != 0 {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn denied(&self, code: &str) {
        if let Some((_, id)) = self.denied.iter().find(|(c, _)| *c == code) {
            Self::bump(*id);
        }
    }
}

#[derive(Default)]
struct Root {
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Rc<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("meshauth: no plugin configuration; refusing to start");
            return false;
        };
        match Config::from_json(&bytes) {
            Ok(config) => {
                log::info!(
                    "meshauth: configured with {} key(s), {} route(s)",
                    config.keys.len(),
                    config.routes.routes.len()
                );
                self.engine = Some(Rc::new(RefCell::new(Engine::new(config))));
                if self.metrics.denied.is_empty() {
                    self.metrics = Rc::new(Metrics::define());
                }
                true
            }
            Err(e) => {
                log::error!("meshauth: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        Some(Box::new(Http {
            engine,
            metrics: self.metrics.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    engine: Rc<RefCell<Engine>>,
    metrics: Rc<Metrics>,
}

impl Context for Http {}

impl Http {
    fn now(&self) -> i64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    fn deny(&self, denial: &Denial, realm: &str) -> Action {
        self.metrics.denied(denial.code());
        let correlation = self
            .get_http_request_header("x-request-id")
            .unwrap_or_default();
        let challenge = denial.challenge(realm);
        self.send_http_response(
            denial.status(),
            vec![
                ("www-authenticate", challenge.as_str()),
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            Some(denial.body(&correlation).as_bytes()),
        );
        Action::Pause
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let method = self.get_http_request_header(":method").unwrap_or_default();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let authorization = self.get_http_request_header("authorization");
        let now = self.now();
        let engine = self.engine.clone();
        let mut engine = engine.borrow_mut();
        let outcome = engine.check(
            &Request {
                method: &method,
                path: &path,
                authorization: authorization.as_deref(),
            },
            now,
        );
        match outcome.cache {
            CacheUse::Hit => Metrics::bump(self.metrics.cache_hits),
            CacheUse::Miss => Metrics::bump(self.metrics.cache_misses),
            CacheUse::NotUsed => {}
        }
        match outcome.verdict {
            Verdict::Allow(claims) => {
                Metrics::bump(self.metrics.allowed);
                // Setting (or removing) each header also drops any client-sent copy.
                for f in engine.forwarded() {
                    self.set_http_request_header(
                        &f.header,
                        claims.header_value(&f.claim).as_deref(),
                    );
                }
                if !engine.config().forward_authorization {
                    self.set_http_request_header("authorization", None);
                }
                Action::Continue
            }
            Verdict::Anonymous => {
                Metrics::bump(self.metrics.anonymous);
                for f in engine.forwarded() {
                    self.set_http_request_header(&f.header, None);
                }
                Action::Continue
            }
            Verdict::Deny(denial) => self.deny(&denial, &engine.config().realm),
        }
    }
}
