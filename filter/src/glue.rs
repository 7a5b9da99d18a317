//! proxy-wasm glue: reads the plugin configuration and request headers from Envoy,
//! asks the engine, and writes its answer back. No decisions are made here.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
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

/// Filter counters. Requests bump plain cells; the root context flushes them to Envoy
/// on its tick, so the hot path makes no metric host calls.
#[derive(Debug, Default)]
struct Metrics {
    counters: Vec<(u32, Cell<i64>)>,
}

/// Indexes into `Metrics::counters`; the denial counters follow these.
const ALLOWED: usize = 0;
const ANONYMOUS: usize = 1;
const CACHE_HITS: usize = 2;
const CACHE_MISSES: usize = 3;
const FIRST_DENIAL: usize = 4;

impl Metrics {
    fn define() -> Metrics {
        let names = [
            "meshauth_requests_allowed".to_string(),
            "meshauth_requests_anonymous".to_string(),
            "meshauth_verify_cache_hits".to_string(),
            "meshauth_verify_cache_misses".to_string(),
        ]
        .into_iter()
        .chain(
            Denial::ALL_CODES
                .iter()
                .map(|c| format!("meshauth_requests_denied_{c}")),
        );
        Metrics {
            counters: names
                .map(|n| {
                    (
                        hostcalls::define_metric(MetricType::Counter, &n).unwrap_or(0),
                        Cell::new(0),
                    )
                })
                .collect(),
        }
    }

    fn bump(&self, index: usize) {
        if let Some((_, c)) = self.counters.get(index) {
            c.set(c.get() + 1);
        }
    }

    fn denied(&self, code: &str) {
        if let Some(i) = Denial::ALL_CODES.iter().position(|c| *c == code) {
            self.bump(FIRST_DENIAL + i);
        }
    }

    fn flush(&self) {
        for (id, c) in &self.counters {
            let n = c.take();
            if n != 0 && *id != 0 {
                let _ = hostcalls::increment_metric(*id, n);
            }
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
                if self.metrics.counters.is_empty() {
                    self.metrics = Rc::new(Metrics::define());
                }
                self.set_tick_period(Duration::from_secs(1));
                true
            }
            Err(e) => {
                log::error!("meshauth: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.metrics.flush();
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
        let engine = self.engine.clone();
        let mut engine = engine.borrow_mut();
        // Host calls dominate a cached request's cost. Without route rules only
        // `Authorization` matters (one call); with them, one call fetches all headers,
        // cheaper than one call per header.
        let all = if engine.config().routes.routes.is_empty() {
            None
        } else {
            Some(self.get_http_request_headers())
        };
        let single = match all {
            None => self.get_http_request_header("authorization"),
            Some(_) => None,
        };
        let find = |name: &str| {
            all.as_ref()
                .and_then(|h| h.iter().find(|(k, _)| k == name))
                .map(|(_, v)| v.as_str())
        };
        let method = find(":method").unwrap_or_default();
        let path = find(":path").unwrap_or_default();
        let authorization = match &all {
            Some(_) => find("authorization"),
            None => single.as_deref(),
        };
        // Unknown (not fetched) counts as present, so a spoofed header is always removed.
        let present = |name: &str| all.is_none() || find(name).is_some();
        let now = self.now();
        let outcome = engine.check(
            &Request {
                method,
                path,
                authorization,
            },
            now,
        );
        match outcome.cache {
            CacheUse::Hit => self.metrics.bump(CACHE_HITS),
            CacheUse::Miss => self.metrics.bump(CACHE_MISSES),
            CacheUse::NotUsed => {}
        }
        match outcome.verdict {
            Verdict::Allow(verified) => {
                self.metrics.bump(ALLOWED);
                // Setting (or removing) each header also drops any client-sent copy.
                for (f, value) in engine.forwarded().iter().zip(&verified.headers) {
                    self.set_http_request_header(&f.header, value.as_deref());
                }
                if !engine.config().forward_authorization {
                    self.set_http_request_header("authorization", None);
                }
                Action::Continue
            }
            Verdict::Anonymous => {
                self.metrics.bump(ANONYMOUS);
                for f in engine.forwarded() {
                    if present(&f.header) {
                        self.set_http_request_header(&f.header, None);
                    }
                }
                Action::Continue
            }
            Verdict::Deny(denial) => self.deny(&denial, &engine.config().realm),
        }
    }
}
