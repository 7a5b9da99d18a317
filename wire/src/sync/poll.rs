//! The long poll's query string (`GET /sync/v1/snapshot?...`): the filter builds it,
//! the control plane parses it, with one definition of each parameter.

/// What a filter says when it polls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollQuery {
    /// The version the filter holds (0: none).
    pub version: u64,
    /// The epoch of that version.
    pub epoch: Option<String>,
    /// How long to hold the poll when nothing is newer, in ms (the control plane caps it).
    pub wait_ms: u64,
    /// The filter's identity, for `meshauth status`.
    pub filter: Option<String>,
    /// The version it has applied (defaults to `version`).
    pub applied: Option<u64>,
    /// The filter applies deltas, so a revocation-only change may come as one.
    pub deltas: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollQueryError {
    #[error("the query string is longer than {MAX_QUERY_BYTES} bytes")]
    TooLong,
    #[error("unknown query parameter {0:?}")]
    Unknown(String),
    #[error("query parameter {0} is repeated")]
    Repeated(&'static str),
    #[error("query parameter {0} has an invalid value")]
    Invalid(&'static str),
}

/// A poll's query is a handful of short parameters.
pub const MAX_QUERY_BYTES: usize = 1024;
/// The longest `epoch` or `filter` value (the control plane's bound on names).
pub const MAX_ID_BYTES: usize = 256;

impl PollQuery {
    /// The path and query of the poll. Ids are percent-encoded outside the unreserved
    /// characters (the base64url ids filters send need none), so whatever `parse`
    /// accepts builds back to the same query.
    pub fn path(&self) -> String {
        let mut p = format!("{}?version={}", super::SNAPSHOT_PATH, self.version);
        if let Some(epoch) = &self.epoch {
            p.push_str("&epoch=");
            encode_into(&mut p, epoch);
        }
        p.push_str(&format!("&wait_ms={}", self.wait_ms));
        if let Some(filter) = &self.filter {
            p.push_str("&filter=");
            encode_into(&mut p, filter);
        }
        if let Some(applied) = self.applied {
            p.push_str(&format!("&applied={applied}"));
        }
        if self.deltas {
            p.push_str("&delta=1");
        }
        p
    }

    /// Parses a query string (without the `?`). Unknown and repeated parameters are
    /// refused, as are numbers that do not fit and ids that are too long or hold a
    /// control character.
    pub fn parse(query: &str) -> Result<PollQuery, PollQueryError> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(PollQueryError::TooLong);
        }
        let mut q = PollQuery::default();
        let mut seen = [false; 6];
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).ok_or(PollQueryError::Invalid("name"))?;
            let (index, name) = match key.as_str() {
                "version" => (0, "version"),
                "epoch" => (1, "epoch"),
                "wait_ms" => (2, "wait_ms"),
                "filter" => (3, "filter"),
                "applied" => (4, "applied"),
                "delta" => (5, "delta"),
                _ => return Err(PollQueryError::Unknown(truncated(&key))),
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(PollQueryError::Repeated(name));
            }
            let value = decode(raw).ok_or(PollQueryError::Invalid(name))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| PollQueryError::Invalid(name))
            };
            let id = || {
                (value.len() <= MAX_ID_BYTES && !value.chars().any(char::is_control))
                    .then(|| value.clone())
                    .ok_or(PollQueryError::Invalid(name))
            };
            match index {
                0 => q.version = number()?,
                1 => q.epoch = Some(id()?),
                2 => q.wait_ms = number()?,
                3 => q.filter = Some(id()?),
                4 => q.applied = Some(number()?),
                _ => {
                    q.deltas = match value.as_str() {
                        "0" => false,
                        "1" => true,
                        _ => return Err(PollQueryError::Invalid(name)),
                    }
                }
            }
        }
        Ok(q)
    }
}

/// Form decoding (`+` is a space, `%XX` a byte); `None` for a bad escape or bytes
/// that are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                u8::try_from(hi * 16 + lo).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

fn encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// An unknown name echoed in an error, kept short.
fn truncated(s: &str) -> String {
    s.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn query_of(path: &str) -> &str {
        path.split_once('?').map_or("", |(_, q)| q)
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_and_what_parses_builds_back(
            text in "((version|epoch|wait_ms|filter|applied|delta|x)(=[0-9a-f%+=.~ -]{0,6})?&?){0,7}|.{0,100}"
        ) {
            if let Ok(q) = PollQuery::parse(&text) {
                prop_assert_eq!(PollQuery::parse(query_of(&q.path())), Ok(q));
            }
        }

        #[test]
        fn any_query_round_trips(
            version in any::<u64>(),
            epoch in proptest::option::of("[^\\p{Cc}]{0,64}"),
            wait_ms in any::<u64>(),
            filter in proptest::option::of("[^\\p{Cc}]{0,64}"),
            applied in proptest::option::of(any::<u64>()),
            deltas in any::<bool>(),
        ) {
            let q = PollQuery { version, epoch, wait_ms, filter, applied, deltas };
            let path = q.path();
            let parsed = PollQuery::parse(query_of(&path));
            if query_of(&path).len() <= MAX_QUERY_BYTES {
                prop_assert_eq!(parsed, Ok(q));
            } else {
                prop_assert_eq!(parsed, Err(PollQueryError::TooLong));
            }
        }
    }

    fn full() -> PollQuery {
        PollQuery {
            version: 7,
            epoch: Some("AbC-_9".into()),
            wait_ms: 25_000,
            filter: Some("3-1f2e".into()),
            applied: Some(7),
            deltas: true,
        }
    }

    #[test]
    fn round_trips() {
        for q in [full(), PollQuery::default()] {
            let path = q.path();
            let (p, query) = path.split_once('?').unwrap();
            assert_eq!(p, crate::sync::SNAPSHOT_PATH);
            assert_eq!(PollQuery::parse(query), Ok(q));
        }
        assert_eq!(PollQuery::parse(""), Ok(PollQuery::default()));
        // What filters already deployed send: pinned.
        assert_eq!(
            full().path(),
            "/sync/v1/snapshot?version=7&epoch=AbC-_9&wait_ms=25000&filter=3-1f2e&applied=7&delta=1"
        );
    }

    #[test]
    fn reads_what_filters_and_tools_send() {
        let q =
            PollQuery::parse("version=3&epoch=e&wait_ms=0&filter=f%2D1+%C3%A9&applied=2&delta=0")
                .unwrap();
        assert_eq!(q.version, 3);
        assert_eq!(q.filter.as_deref(), Some("f-1 é"));
        assert!(!q.deltas);
        assert_eq!(
            PollQuery::parse("&version=3&&").map(|q| q.version),
            Ok(3),
            "empty pairs are skipped"
        );
    }

    #[test]
    fn refuses_hostile_queries_whole() {
        let refused = [
            ("version=1&version=2", PollQueryError::Repeated("version")),
            ("version=-1", PollQueryError::Invalid("version")),
            (
                "version=18446744073709551616",
                PollQueryError::Invalid("version"),
            ),
            ("version", PollQueryError::Invalid("version")),
            ("wait_ms=1e3", PollQueryError::Invalid("wait_ms")),
            ("delta=2", PollQueryError::Invalid("delta")),
            ("epoch=%zz", PollQueryError::Invalid("epoch")),
            ("epoch=%ff", PollQueryError::Invalid("epoch")),
            ("epoch=%0a", PollQueryError::Invalid("epoch")),
            ("epoch=%C2%85", PollQueryError::Invalid("epoch")),
            ("epoch=a%", PollQueryError::Invalid("epoch")),
            ("filter=a%0D%0Ab", PollQueryError::Invalid("filter")),
            ("filter=%7F", PollQueryError::Invalid("filter")),
            ("admin=1", PollQueryError::Unknown("admin".into())),
        ];
        for (query, want) in refused {
            assert_eq!(PollQuery::parse(query), Err(want), "{query}");
        }
        let long = format!("filter={}", "a".repeat(MAX_ID_BYTES + 1));
        assert_eq!(
            PollQuery::parse(&long),
            Err(PollQueryError::Invalid("filter"))
        );
        let huge = "delta=1&".repeat(200);
        assert_eq!(PollQuery::parse(&huge), Err(PollQueryError::TooLong));
        let unknown = format!("{}=1", "x".repeat(500));
        assert!(matches!(
            PollQuery::parse(&unknown),
            Err(PollQueryError::Unknown(n)) if n.len() == 32
        ));
    }
}
