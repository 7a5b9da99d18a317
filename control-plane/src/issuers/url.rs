//! URLs the control plane fetches keys from: https (http only when the operator allows
//! it for tests), a host, no userinfo (a credential in a URL ends up in logs and audit
//! entries), no fragment, bounded length.

use std::fmt;

pub const MAX_URL_LEN: usize = 2048;

/// Whether `http://` is allowed (`federation.allow_insecure_http`).
#[derive(Debug, Clone, Copy)]
pub struct UrlPolicy {
    pub allow_http: bool,
}

/// A checked URL, in its normalised spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUrl(String);

impl FetchUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl fmt::Display for FetchUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl UrlPolicy {
    /// `raw` as a URL to fetch; the error names `field` and the rule broken.
    pub fn check(&self, field: &str, raw: &str) -> Result<FetchUrl, String> {
        if raw.is_empty() || raw.len() > MAX_URL_LEN {
            return Err(format!("{field}: a URL of 1-{MAX_URL_LEN} characters"));
        }
        // The parser would quietly drop or escape these; a URL that needs it is a typo
        // or a trick.
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{field}: no spaces or control characters"));
        }
        let url = url::Url::parse(raw).map_err(|e| format!("{field}: not a URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(format!(
                    "{field}: https required (http only with federation.allow_insecure_http, for tests)"
                ))
            }
            other => return Err(format!("{field}: scheme {other:?}: https required")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{field}: no user name or password in the URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{field}: no host"));
        }
        if url.fragment().is_some() {
            return Err(format!("{field}: no fragment (#...)"));
        }
        Ok(FetchUrl(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy { allow_http: false };
    const LAX: UrlPolicy = UrlPolicy { allow_http: true };

    #[test]
    fn hostile_urls_are_refused_with_the_rule_they_break() {
        for (raw, says) in [
            ("http://idp.example/jwks", "https required"),
            ("ftp://idp.example/jwks", "scheme \"ftp\""),
            ("file:///etc/passwd", "scheme \"file\""),
            ("javascript:alert(1)", "scheme \"javascript\""),
            (
                "https://user:pw@idp.example/jwks",
                "no user name or password",
            ),
            ("https://user@idp.example/jwks", "no user name or password"),
            ("https://:pw@idp.example/jwks", "no user name or password"),
            ("https://idp.example/jwks#x", "no fragment"),
            ("https://idp.example/a b", "no spaces"),
            ("https://idp.example/a\nb", "no spaces"),
            ("idp.example/jwks", "not a URL"),
            ("", "a URL of"),
        ] {
            let e = STRICT.check("jwks_uri", raw).unwrap_err();
            assert!(
                e.starts_with("jwks_uri: ") && e.contains(says),
                "{raw:?}: {e}"
            );
        }
        let long = format!("https://idp.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(STRICT.check("jwks_uri", &long).is_err());
        // Userinfo stays refused when http is allowed.
        assert!(LAX.check("j", "http://u:p@127.0.0.1:1/").is_err());
    }

    #[test]
    fn good_urls_are_kept_normalised() {
        let u = STRICT
            .check("j", "https://IdP.Example/realms/a/certs")
            .unwrap();
        assert_eq!(u.as_str(), "https://idp.example/realms/a/certs");
        assert!(u.is_https());
        let h = LAX.check("j", "http://127.0.0.1:8080/jwks?x=1").unwrap();
        assert_eq!(h.as_str(), "http://127.0.0.1:8080/jwks?x=1");
        assert!(!h.is_https());
    }
}
