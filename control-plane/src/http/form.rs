//! OAuth request parameters (RFC 6749 §3.2) and `Authorization: Basic` client
//! credentials (§2.3.1): plain functions over bytes and strings, linear in their input.

use std::collections::HashSet;

use base64::Engine as _;

use crate::error::OAuthError;

/// At most this many form parameters: the OAuth endpoints use a handful, and the cap
/// is checked before anything is decoded.
pub const MAX_PARAMS: usize = 32;
/// Client ids and secrets longer than this are refused before the store is touched.
pub const MAX_CLIENT_CREDENTIAL: usize = 256;
/// Any other parameter (a token, a scope) longer than this is refused.
pub const MAX_PARAM_VALUE: usize = 8 * 1024;

/// The parameters of one request, each present at most once.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Form parameters; each may appear once (RFC 6749 §3.2). Linear in the body: the
    /// count is capped before decoding and repeats are found with a set, so a body of
    /// many short keys costs no more than any other body of its size. The body must be
    /// declared a form (`content_type`; RFC 6749 §4.4.2, RFC 7009 §2.1, RFC 7662 §2.1): a
    /// `text/plain` POST is one a browser sends cross-site without asking first.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Params, OAuthError> {
        let declared_form = content_type
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !declared_form {
            return Err(OAuthError::invalid_request(
                "content-type must be application/x-www-form-urlencoded",
            ));
        }
        let count = body.split(|b| *b == b'&').filter(|p| !p.is_empty()).count();
        if count > MAX_PARAMS {
            return Err(OAuthError::invalid_request(format!(
                "at most {MAX_PARAMS} parameters are accepted"
            )));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
            OAuthError::invalid_request("body must be application/x-www-form-urlencoded")
        })?;
        let mut seen = HashSet::with_capacity(pairs.len());
        for (k, v) in &pairs {
            if !seen.insert(k.as_str()) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} is repeated",
                    shorten(k)
                )));
            }
            let cap = match k.as_str() {
                "client_id" | "client_secret" => MAX_CLIENT_CREDENTIAL,
                _ => MAX_PARAM_VALUE,
            };
            if k.len() > 64 || v.len() > cap {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {} is too long",
                    shorten(k)
                )));
            }
        }
        Ok(Params(pairs))
    }

    /// A parameter's value; an empty one counts as absent (RFC 6749 §3.2).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A parameter the request must carry.
    pub fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    }
}

/// A client-supplied name cut short for an error message.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(32).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// Percent-decoding of one part of a Basic credential (RFC 6749 §2.3.1: each part is
/// form-urlencoded). Unlike a form parser it keeps every byte: `&`, `=` and `;` are
/// data here, so `secret&junk` stays `secret&junk`.
fn form_decode_part(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `Authorization: Basic` per RFC 6749 §2.3.1: base64 of `id:secret`, split at the
/// first `:`, each part form-urlencoded. Anything malformed or over-long is `None`.
pub fn basic_credentials(b: &str) -> Option<(String, String)> {
    // Base64 of two capped, percent-encoded parts: anything longer is refused undecoded.
    if b.len() > 4 * (6 * MAX_CLIENT_CREDENTIAL + 1) / 3 + 4 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (i, s) = text.split_once(':')?;
    let (id, secret) = (form_decode_part(i)?, form_decode_part(s)?);
    if id.is_empty() || id.len() > MAX_CLIENT_CREDENTIAL || secret.len() > MAX_CLIENT_CREDENTIAL {
        return None;
    }
    Some((id, secret))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn the_body_must_be_declared_a_form() {
        let body = b"grant_type=client_credentials";
        for ct in [None, Some("text/plain"), Some("application/json")] {
            assert!(Params::parse(ct, body).is_err(), "{ct:?}");
        }
        let declared = Some("Application/X-WWW-Form-Urlencoded; charset=utf-8");
        assert!(Params::parse(declared, body).is_ok());
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn repeats_overlong_values_and_too_many_parameters_are_refused() {
        assert!(Params::parse(FORM, b"a=1&a=2").is_err());
        // Repeats are found after decoding: a second spelling of the key is a repeat.
        for body in [
            &b"client_id=a&client%5Fid=b"[..],
            b"token=x&tok%65n=y",
            b"client_id=&client_id=victim",
        ] {
            let e = Params::parse(FORM, body).unwrap_err();
            assert!(e.description.contains("repeated"), "{}", e.description);
        }
        let many = (0..=MAX_PARAMS)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>();
        assert!(Params::parse(FORM, many.join("&").as_bytes()).is_err());
        let long_id = format!("client_id={}", "x".repeat(MAX_CLIENT_CREDENTIAL + 1));
        assert!(Params::parse(FORM, long_id.as_bytes()).is_err());
        let long_token = format!("token={}", "x".repeat(MAX_CLIENT_CREDENTIAL + 1));
        assert!(Params::parse(FORM, long_token.as_bytes()).is_ok());
        let e = Params::parse(FORM, format!("{}=1&{0}=2", "k".repeat(100)).as_bytes()).unwrap_err();
        assert!(e.description.contains('…'), "{}", e.description);
    }

    #[test]
    fn empty_parameters_are_absent() {
        let p = Params::parse(FORM, b"scope=&grant_type=client_credentials").unwrap();
        assert_eq!(p.get("scope"), None);
        assert_eq!(p.get("grant_type"), Some("client_credentials"));
        assert_eq!(
            p.required("token").unwrap_err().description,
            "token is required"
        );
    }

    #[test]
    fn basic_parts_are_percent_decoded_and_keep_every_byte() {
        assert_eq!(
            basic_credentials(&b64("my%20id:secret&junk")),
            Some(("my id".into(), "secret&junk".into()))
        );
        assert_eq!(
            basic_credentials(&b64("id:a%3Ab")),
            Some(("id".into(), "a:b".into()))
        );
        for bad in [b64(":secret"), b64("nocolon"), b64("id:%zz"), "!!".into()] {
            assert_eq!(basic_credentials(&bad), None, "{bad}");
        }
        let long = b64(&format!("{}:s", "i".repeat(MAX_CLIENT_CREDENTIAL + 1)));
        assert_eq!(basic_credentials(&long), None);
    }
}
