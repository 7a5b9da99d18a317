//! The per-request context: reads the request's headers once, asks the engine, and
//! applies its verdict through [`finish`], the one function that sets or strips identity
//! headers, resumes a paused request or answers it. A confirmation callout pauses the
//! request; whichever comes first, its answer or the filter's own deadline (swept by the
//! root context), finishes it, and the other finds nothing left to do.
//!
//! Host calls go through `host`, never the SDK's helpers: those panic on a status they
//! do not expect (a header set on a request already answered) and on a header value
//! that is not UTF-8, and a panic takes the worker's VM down with it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::host::{self, now_ms, now_ns, HostFacts, SharedSlots};
use super::metrics::{Counter, Metrics};
use crate::deny::{Answer, Denial};
use crate::engine::{CacheUse, Engine, Request, Verdict, Verified};
use crate::headers::Theirs;
use crate::limits::LimitOutcome;
use meshauth_wire::headers::REQUEST_ID;
use meshauth_wire::sync::{ConfirmAnswer, ConfirmRequest, CONFIRM_PATH};

const CALLOUT_BACKSTOP_MS: u64 = 1_000;

/// A request paused on a confirmation callout.
pub(super) struct Pending {
    pub context_id: u32,
    token: u32,
    pub deadline_ms: u64,
    jti: String,
    /// The question's nonce: only an answer signed for it counts.
    nonce: String,
    verified: Rc<Verified>,
    request: RequestFacts,
}

/// What `finish` needs to know about the request beyond the verdict.
#[derive(Clone, Default)]
pub(super) struct RequestFacts {
    correlation_id: String,
    /// Client-sent copies and lookalikes of our identity headers.
    theirs: Theirs,
}

pub(super) type PendingList = Rc<RefCell<Vec<Pending>>>;

/// How a request ends.
pub(super) enum Finish<'a> {
    Allow(&'a Verified),
    Anonymous,
    Refuse(Answer),
}

/// Applies the verdict to the request in the effective context. `paused`: the request
/// is waiting for us (after a callout), so letting it through means resuming it.
pub(super) fn finish(
    engine: &Engine,
    metrics: &Metrics,
    request: &RequestFacts,
    how: Finish<'_>,
    paused: bool,
) -> Action {
    let set = |name: &str, value: Option<&str>| {
        let _ = host::set_header(MapType::HttpRequestHeaders, name, value);
    };
    let pass = match how {
        Finish::Allow(verified) => {
            metrics.bump(Counter::Allowed);
            let sets = |name: &str| verified.headers.iter().any(|(h, _)| h == name);
            // A client's copy of any header some token may set goes, unless this token
            // sets it (setting replaces it). A request paused on a callout may have
            // crossed a snapshot that added headers: then every one is removed.
            if paused {
                for name in engine.forwarded_headers() {
                    if !sets(name) {
                        set(name, None);
                    }
                }
            } else {
                for name in &request.theirs.copies {
                    if !sets(name) {
                        set(name, None);
                    }
                }
            }
            for (name, value) in &verified.headers {
                set(name, Some(value));
            }
            if !engine.config().forward_authorization {
                set("authorization", None);
            }
            true
        }
        Finish::Anonymous => {
            metrics.bump(Counter::Anonymous);
            // Only what the client sent: one host call per header present, not per
            // configured header.
            for name in &request.theirs.copies {
                set(name, None);
            }
            true
        }
        Finish::Refuse(answer) => {
            let headers: Vec<(&str, &str)> = answer
                .headers
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            let _ = host::send_response(answer.status, &headers, answer.body.as_bytes());
            false
        }
    };
    if !pass {
        return Action::Pause;
    }
    for name in &request.theirs.lookalikes {
        set(name, None);
    }
    if paused {
        let _ = host::resume_request();
    }
    Action::Continue
}

/// Finishes a request paused on (or meant for) a confirmation, as the engine settles
/// it: `answer` is the signed verdict, `None` when none counts.
fn settle(
    engine: &RefCell<Engine>,
    metrics: &Metrics,
    p: (&str, &Verified, &RequestFacts),
    answer: Option<bool>,
    paused: bool,
) -> Action {
    let (jti, verified, request) = p;
    let now = i64::try_from(now_ns() / 1_000_000_000).unwrap_or(i64::MAX);
    let settled = engine.borrow_mut().settle(jti, answer, verified, now);
    let engine = engine.borrow();
    let how = match settled {
        Ok(()) => Finish::Allow(verified),
        Err(denial) => refuse(&engine, metrics, &denial, &request.correlation_id),
    };
    finish(&engine, metrics, request, how, paused)
}

fn refuse(
    engine: &Engine,
    metrics: &Metrics,
    denial: &Denial,
    correlation: &str,
) -> Finish<'static> {
    metrics.denied(denial);
    if let Some(note) = denial.operator_note(engine.config().claim_rules.issuer.as_deref()) {
        note_for_operator(&note);
    }
    Finish::Refuse(denial.answer(&engine.config().realm, correlation))
}

thread_local! {
    /// When an operator note was last logged (seconds): a misconfiguration refuses every
    /// request, and one line each ten seconds says it without flooding Envoy's log.
    static NOTED_AT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn note_for_operator(note: &str) {
    let now = now_ns() / 1_000_000_000;
    if NOTED_AT.with(|t| {
        let due = t.get() == 0 || now >= t.get() + 10;
        if due {
            t.set(now.max(1));
        }
        due
    }) {
        log::info!("{note}");
    }
}

/// Root context, on its tick: requests whose confirmation outlived the filter's
/// deadline are finished as unconfirmed. Their callout's late answer then finds no
/// pending entry and is dropped.
pub(super) fn expire(pending: &PendingList, engine: &RefCell<Engine>, metrics: &Metrics, now: u64) {
    let expired: Vec<Pending> = {
        let mut list = pending.borrow_mut();
        // Called on every tick: most ticks have nothing due and should not rebuild the list.
        if list.iter().all(|p| p.deadline_ms > now) {
            return;
        }
        let (due, keep) = std::mem::take(&mut *list)
            .into_iter()
            .partition(|p| p.deadline_ms <= now);
        *list = keep;
        due
    };
    for p in expired {
        // The request may be gone (client hung up): then there is nothing to finish.
        if hostcalls::set_effective_context(p.context_id).is_err() {
            continue;
        }
        settle(
            engine,
            metrics,
            (&p.jti, &p.verified, &p.request),
            None,
            true,
        );
    }
}

pub(super) struct Http {
    pub context_id: u32,
    pub engine: Rc<RefCell<Engine>>,
    pub metrics: Rc<Metrics>,
    pub pending: PendingList,
    /// `RateLimit` for the response, when configured.
    pub ratelimit: Option<String>,
}

impl Http {
    /// Asks the control plane about a Bloom hit; `Err` hands the inputs back when the
    /// call could not be made.
    fn confirm(&mut self, question: Question) -> Result<(), Question> {
        let Some(cfg) = self.engine.borrow().config().sync.clone() else {
            return Err(question);
        };
        let (jti, verified, request) = question;
        let nonce = crate::sync::fresh_nonce();
        let body = ConfirmRequest::body(&jti, &nonce);
        let headers = crate::sync::call_headers(&cfg, "POST", CONFIRM_PATH);
        // The filter's own deadline (swept on the root's tick) decides; Envoy's timeout is
        // only a backstop, set later so the late answer it produces is the one dropped.
        let timeout = Duration::from_millis(cfg.callout_timeout_ms + CALLOUT_BACKSTOP_MS);
        match hostcalls::dispatch_http_call(
            &cfg.cluster,
            headers,
            Some(body.as_bytes()),
            vec![],
            timeout,
        ) {
            Ok(token) => {
                self.metrics.bump(Counter::Confirmations);
                self.pending.borrow_mut().push(Pending {
                    context_id: self.context_id,
                    token,
                    deadline_ms: now_ms() + cfg.callout_timeout_ms,
                    jti,
                    nonce,
                    verified,
                    request,
                });
                Ok(())
            }
            Err(_) => Err((jti, verified, request)),
        }
    }
}

/// A Bloom hit to ask about: the `jti`, the verified token, the request.
type Question = (String, Rc<Verified>, RequestFacts);

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        // Only a request still paused on this very call is finished here; one the
        // deadline already finished has no entry left.
        let entry = {
            let mut list = self.pending.borrow_mut();
            list.iter()
                .position(|p| p.context_id == self.context_id && p.token == token_id)
                .map(|i| list.swap_remove(i))
        };
        let Some(p) = entry else {
            return;
        };
        let ok = host::call_response_header(":status").as_deref() == Some("200");
        let engine = self.engine.clone();
        // Only a 200 signed by the distribution key for this jti and nonce counts; no
        // other status, and no body longer than a real answer, is even read.
        let answer = (ok && body_size <= ConfirmAnswer::max_len(&p.jti, &p.nonce))
            .then(|| host::call_response_body(body_size).ok())
            .flatten()
            .and_then(|b| {
                let cfg = engine.borrow().config().sync.clone()?;
                crate::sync::confirm_verdict(&b, &p.jti, &p.nonce, &cfg.distribution_key)
            });
        settle(
            &engine,
            &self.metrics,
            (&p.jti, &p.verified, &p.request),
            answer,
            true,
        );
    }

    fn on_done(&mut self) -> bool {
        // A request that ends while paused (the client went away) needs no answer.
        self.pending
            .borrow_mut()
            .retain(|p| p.context_id != self.context_id);
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let engine = self.engine.clone();
        // One host call fetches every header: path and method for routes and limits,
        // and the names, to find lookalikes of our identity headers.
        let all = host::headers(MapType::HttpRequestHeaders).unwrap_or_default();
        let find = |name: &str| all.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let method = find(":method").unwrap_or_default();
        let path = find(":path").unwrap_or_default();
        let authorization = find("authorization");
        let request = {
            let e = engine.borrow();
            RequestFacts {
                correlation_id: find(REQUEST_ID).unwrap_or_default().to_string(),
                theirs: crate::headers::theirs(
                    all.iter().map(|(k, _)| k.as_str()),
                    e.forwarded_headers().iter().map(String::as_str),
                    &e.config().reserved_header_prefix,
                ),
            }
        };
        // One clock read serves the token checks (seconds) and the buckets (ns).
        let now_ns = now_ns();
        let now = i64::try_from(now_ns / 1_000_000_000).unwrap_or(i64::MAX);
        let req = Request {
            method,
            path,
            authorization,
            repeated_authorization: all.iter().filter(|(k, _)| k == "authorization").count() > 1,
        };
        let outcome = engine.borrow_mut().check(&req, now);
        match outcome.cache {
            CacheUse::Hit => self.metrics.bump(Counter::CacheHits),
            CacheUse::Miss => self.metrics.bump(Counter::CacheMisses),
            CacheUse::NotUsed => {}
        }
        let e = engine.borrow();
        if e.limits_enabled() {
            let verified = match &outcome.verdict {
                Verdict::Allow(v) | Verdict::Confirm { verified: v, .. } => Some(v.as_ref()),
                Verdict::Anonymous | Verdict::Deny(_) => None,
            };
            if !matches!(outcome.verdict, Verdict::Deny(_)) {
                let facts = HostFacts {
                    headers: all.as_slice(),
                };
                match e.limit(&SharedSlots, &req, outcome.route, verified, &facts, now_ns) {
                    LimitOutcome::Limited(l) => {
                        self.metrics.limited(&l.policy);
                        if l.contended {
                            self.metrics.bump(Counter::RateContended);
                        }
                        let answer = Answer::limited(&l, &request.correlation_id);
                        return finish(&e, &self.metrics, &request, Finish::Refuse(answer), false);
                    }
                    LimitOutcome::Admitted(a) => {
                        self.metrics.add(Counter::RateShared, a.shared);
                        self.ratelimit = a.header;
                    }
                }
            }
        }
        match outcome.verdict {
            Verdict::Allow(verified) => {
                finish(&e, &self.metrics, &request, Finish::Allow(&verified), false)
            }
            Verdict::Anonymous => finish(&e, &self.metrics, &request, Finish::Anonymous, false),
            Verdict::Deny(denial) => {
                let how = refuse(&e, &self.metrics, &denial, &request.correlation_id);
                finish(&e, &self.metrics, &request, how, false)
            }
            Verdict::Confirm { jti, verified } => {
                drop(e);
                match self.confirm((jti, verified, request)) {
                    Ok(()) => Action::Pause,
                    Err((jti, verified, request)) => settle(
                        &engine,
                        &self.metrics,
                        (&jti, &verified, &request),
                        None,
                        false,
                    ),
                }
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(field) = self.ratelimit.take() {
            let _ = host::add_header(MapType::HttpResponseHeaders, "ratelimit", &field);
        }
        Action::Continue
    }
}
