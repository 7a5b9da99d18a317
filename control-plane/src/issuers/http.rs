//! The one place the control plane fetches from a provider: a GET with bounded
//! connect and overall timeouts (a body that trickles in is cut at the deadline), no
//! redirects, and a body capped while it is read.

use std::io::Read;
use std::time::Duration;

use super::jwks::MAX_BODY_BYTES;

/// What a GET answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `304`: the cached copy (named by its `ETag`) is current.
    NotModified { cache_control: Option<String> },
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        cache_control: Option<String>,
    },
}

#[derive(Clone)]
pub struct Getter {
    agent: ureq::Agent,
}

impl Getter {
    pub fn new(timeout: Duration) -> Getter {
        Getter {
            agent: ureq::AgentBuilder::new()
                .timeout_connect(timeout)
                .timeout(timeout)
                .redirects(0)
                .user_agent(concat!("meshauth/", env!("CARGO_PKG_VERSION")))
                .build(),
        }
    }

    /// GET `url` (blocking), with `If-None-Match: etag` when given.
    pub fn get(&self, url: &str, etag: Option<&str>) -> Result<Answer, String> {
        let mut req = self.agent.get(url).set("accept", "application/json");
        if let Some(tag) = etag {
            req = req.set("if-none-match", tag);
        }
        let res = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => return Err(format!("HTTP {code}")),
            Err(e) => return Err(format!("unreachable: {}", e.kind())),
        };
        let cache_control = res.header("cache-control").map(str::to_owned);
        match res.status() {
            304 => return Ok(Answer::NotModified { cache_control }),
            200 => {}
            other => return Err(format!("HTTP {other}")),
        }
        let declared = res
            .header("content-length")
            .and_then(|l| l.trim().parse::<u64>().ok());
        if declared.is_some_and(|l| l > MAX_BODY_BYTES as u64) {
            return Err(format!("body over {MAX_BODY_BYTES} bytes"));
        }
        let etag = res
            .header("etag")
            .filter(|t| t.len() <= 256 && t.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .map(str::to_owned);
        let mut bytes = Vec::new();
        res.into_reader()
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading the body: {}", e.kind()))?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(format!("body over {MAX_BODY_BYTES} bytes"));
        }
        Ok(Answer::Body {
            bytes,
            etag,
            cache_control,
        })
    }
}
