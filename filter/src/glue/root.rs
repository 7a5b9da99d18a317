//! The root context: reads the plugin configuration, and on each tick runs the sync
//! worker (sending the poll it asks for and handing the answer back), expires
//! confirmations that outlived their deadline and flushes the metrics.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::host::{self, now_ms, placement_key, HostShared};
use super::http;
use super::metrics::{Counter, Metrics};
use crate::config::Config;
use crate::engine::Engine;
use crate::sync::{self, PollAnswer, Worker};
use meshauth_wire::sync::{HEAD_HEADER, UNKNOWN_KID_PATH};

pub(super) struct Root {
    engine: Option<Rc<RefCell<Engine>>>,
    metrics: Rc<Metrics>,
    pending: http::PendingList,
    sync: Worker,
    last_flush_ms: u64,
}

impl Root {
    pub(super) fn new(context_id: u32) -> Root {
        let random = now_ms() ^ u64::from(context_id).rotate_left(32);
        Root {
            engine: None,
            metrics: Rc::new(Metrics::default()),
            pending: Rc::new(RefCell::new(Vec::new())),
            sync: Worker::new(format!("{context_id}-{random:x}")),
            last_flush_ms: 0,
        }
    }

    /// Sends the poll the worker asked for and tells it how that went.
    fn poll(&mut self, now: u64) {
        let Some(engine) = &self.engine else {
            return;
        };
        let Some(call) = self.sync.tick(&HostShared, &mut engine.borrow_mut(), now) else {
            return;
        };
        let Some(cfg) = engine.borrow().config().sync.clone() else {
            return;
        };
        let headers = sync::call_headers(&cfg, "GET", &call.path);
        let token =
            hostcalls::dispatch_http_call(&cfg.cluster, headers, None, vec![], call.timeout).ok();
        self.sync.sent(token, call.timeout, now);
    }

    /// Sends the unknown-kid reports queued since the last tick. From the root
    /// context, not the request's: Envoy cancels a context's callouts when it ends, and
    /// the request is answered (401) at once. Fire and forget: the answer is not read
    /// (`on_http_call_response` drops every token but the poll's).
    fn report_unknown_kids(&self) {
        let Some(engine) = &self.engine else {
            return;
        };
        let reports = engine.borrow_mut().take_kid_reports();
        if reports.is_empty() {
            return;
        }
        let Some(cfg) = engine.borrow().config().sync.clone() else {
            return;
        };
        let timeout = Duration::from_millis(cfg.callout_timeout_ms);
        for report in reports {
            let headers = sync::call_headers(&cfg, "POST", UNKNOWN_KID_PATH);
            let body = report.body();
            if hostcalls::dispatch_http_call(
                &cfg.cluster,
                headers,
                Some(body.as_bytes()),
                vec![],
                timeout,
            )
            .is_ok()
            {
                self.metrics.bump(Counter::KidReports);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(engine) = self.engine.clone() else {
            return;
        };
        if !self.sync.awaits(token_id) {
            return; // a poll we already gave up on
        }
        // Through `host`: the SDK's getters panic on a header value that is not UTF-8,
        // which anything on the sync path could send.
        let status = host::call_response_header(":status").unwrap_or_default();
        let (body, head);
        let answer = match status.as_str() {
            "200" => {
                body = host::call_response_body(body_size).unwrap_or_default();
                PollAnswer::Body(&body)
            }
            "304" => {
                head = host::call_response_header(HEAD_HEADER);
                PollAnswer::NotModified(head.as_deref())
            }
            other => PollAnswer::Other(other),
        };
        self.sync
            .answered(&HostShared, &mut engine.borrow_mut(), answer, now_ms());
        self.metrics.sync(self.sync.take_tally());
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("meshauth: no plugin configuration; refusing to start");
            return false;
        };
        match Config::from_json(&bytes) {
            Ok(mut config) => {
                let Some(key) = placement_key() else {
                    log::error!("meshauth: the host gave no random bytes for the rate-slot key; refusing to start");
                    return false;
                };
                config.limits.placement_key = key;
                log::info!(
                    "meshauth: configured with {} key(s), {} route(s), sync {}",
                    config.keys.len(),
                    config.routes.routes.len(),
                    if config.sync.is_some() { "on" } else { "off" }
                );
                let tick = config.sync.as_ref().map_or(1_000, |s| s.tick_ms);
                let engine = Rc::new(RefCell::new(Engine::new(config)));
                if !self.metrics.is_defined() {
                    self.metrics = Rc::new(Metrics::define());
                }
                self.set_tick_period(Duration::from_millis(tick));
                // A new worker, or a VM Envoy reloaded after a failure, starts from what
                // the leader already published rather than from its bootstrap keys and
                // no revocations until its first tick.
                self.sync
                    .pick_up(&HostShared, &mut engine.borrow_mut(), now_ms());
                self.metrics.sync(self.sync.take_tally());
                self.engine = Some(engine);
                true
            }
            Err(e) => {
                log::error!("meshauth: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.poll(now);
        self.report_unknown_kids();
        self.metrics.sync(self.sync.take_tally());
        if let Some(engine) = &self.engine {
            // Requests whose confirmation outlived the filter's deadline: finish them now.
            http::expire(&self.pending, engine, &self.metrics, now);
        }
        if now.saturating_sub(self.last_flush_ms) >= 1_000 {
            self.last_flush_ms = now;
            self.metrics.flush();
            if let Some(age) = self.sync.staleness_s(now) {
                self.metrics.staleness(age);
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        Some(Box::new(http::Http {
            context_id,
            engine,
            metrics: self.metrics.clone(),
            pending: self.pending.clone(),
            ratelimit: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
