//! JWS compact parsing (RFC 7515) for EdDSA access tokens. Signature checks live in
//! `jwks`/`ed25519`; this module only takes a token apart and refuses what it must.

use meshauth_wire::b64;
use serde_json::Value;

use crate::claims::Claims;
use crate::deny::Denial;
use crate::strict_json::{self, StrictError};

/// A token taken apart, not yet verified.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub kid: String,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes that were signed.
    pub signing_input: &'a str,
    pub signature: [u8; 64],
    pub payload: Vec<u8>,
}

/// The bearer token from an `Authorization` value (RFC 6750 §2.1; scheme is case-insensitive).
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    (!token.is_empty()).then_some(token)
}

pub fn parse(token: &str) -> Result<Parsed<'_>, Denial> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Denial::Malformed("expected three dot-separated parts"));
    };
    let header_bytes = b64::decode(h).map_err(|_| Denial::Malformed("header is not base64url"))?;
    let header = strict_json::object(&header_bytes).map_err(|e| match e {
        StrictError::NotAnObject => Denial::Malformed("header is not a JSON object"),
        StrictError::DuplicateMember => Denial::Malformed("header repeats a member name"),
    })?;
    match header.get("alg") {
        Some(Value::String(alg))
            if alg == meshauth_wire::ALG_EDDSA || alg == meshauth_wire::ALG_ED25519 => {}
        Some(_) => return Err(Denial::BadAlgorithm),
        None => return Err(Denial::Malformed("header has no alg")),
    }
    // We implement no JWS extensions, so any critical one must be refused (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(Denial::Malformed("unsupported crit header"));
    }
    // RFC 9068 §4: an access token says so, which keeps ID tokens and other JWTs signed
    // by the same key from passing as access tokens (RFC 8725 §3.11).
    let typ_ok = header.get("typ").and_then(Value::as_str).is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(Denial::Malformed("typ is not at+jwt"));
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => return Err(Denial::Malformed("header has no kid")),
    };
    let signature = b64::decode_array::<64>(s)
        .ok_or(Denial::Malformed("signature is not 64 bytes of base64url"))?;
    let payload = b64::decode(p).map_err(|_| Denial::Malformed("payload is not base64url"))?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(Denial::Malformed("expected three dot-separated parts"))?;
    Ok(Parsed {
        kid,
        signing_input,
        signature,
        payload,
    })
}

impl Parsed<'_> {
    pub fn claims(&self) -> Result<Claims, Denial> {
        Claims::parse(&self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &str) -> String {
        b64::encode(v.as_bytes())
    }

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            enc(header),
            enc(payload),
            b64::encode([0u8; 64])
        )
    }

    const P: &str = r#"{"exp":1,"jti":"a"}"#;

    #[test]
    fn bearer_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn accepts_eddsa_and_ed25519() {
        for alg in ["EdDSA", "Ed25519"] {
            let t = token(&format!(r#"{{"alg":"{alg}","kid":"k","typ":"at+jwt"}}"#), P);
            let parsed = parse(&t).unwrap();
            assert_eq!(parsed.kid, "k");
            assert_eq!(parsed.claims().unwrap().jti.as_deref(), Some("a"));
        }
    }

    #[test]
    fn refuses_other_algorithms() {
        for alg in ["none", "HS256", "RS256", "ES256", "eddsa", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}","kid":"k","typ":"at+jwt"}}"#), P);
            assert_eq!(parse(&t).unwrap_err(), Denial::BadAlgorithm, "{alg}");
        }
        let t = token(r#"{"alg":5,"kid":"k","typ":"at+jwt"}"#, P);
        assert_eq!(parse(&t).unwrap_err(), Denial::BadAlgorithm);
    }

    #[test]
    fn refuses_malformed_headers() {
        let cases = [
            r#"{"kid":"k"}"#,
            r#"{"alg":"EdDSA"}"#,
            r#"{"alg":"EdDSA","kid":""}"#,
            r#"{"alg":"EdDSA","kid":7}"#,
            r#"{"alg":"EdDSA","kid":"k","crit":["exp"]}"#,
            r#"{"alg":"EdDSA","kid":"k","typ":"JWE"}"#,
            r#"{"alg":"EdDSA","kid":"k","typ":"JWT"}"#,
            r#"{"alg":"EdDSA","kid":"k"}"#,
            r#"{"alg":"EdDSA","kid":"k","typ":7}"#,
            r#"{"alg":"EdDSA","kid":"k","typ":"at+jwt","kid":"other"}"#,
            r#"{"alg":"EdDSA","kid":"k","typ":"at+jwt","alg":"none"}"#,
            r#"[]"#,
            r#"not json"#,
        ];
        for h in cases {
            assert!(
                matches!(parse(&token(h, P)), Err(Denial::Malformed(_))),
                "{h}"
            );
        }
    }

    #[test]
    fn refuses_malformed_structure() {
        for t in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "...",
            "e30.e30.",
            "e30=.e30.AAAA",
        ] {
            assert!(matches!(parse(t), Err(Denial::Malformed(_))), "{t}");
        }
        let short_sig = format!(
            "{}.{}.{}",
            enc(r#"{"alg":"EdDSA","kid":"k","typ":"at+jwt"}"#),
            enc(P),
            b64::encode([0u8; 63])
        );
        assert!(matches!(parse(&short_sig), Err(Denial::Malformed(_))));
    }
}
