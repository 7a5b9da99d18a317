//! The admin API's routes, requests and answers, defined once: the HTTP handlers serve
//! them and the CLI calls them. Answers carry no secret except where the verb is to
//! show one (a new client's secret, shown once).

mod issuers;
mod types;

pub use issuers::*;
pub use types::*;

/// Route templates; `{…}` is one path segment (see [`path`]).
pub mod route {
    pub const KEYS: &str = "/admin/keys";
    pub const KEYS_ROTATE: &str = "/admin/keys/rotate";
    pub const KEY_REVOKE: &str = "/admin/keys/{kid}/revoke";
    pub const CLIENTS: &str = "/admin/clients";
    pub const CLIENT: &str = "/admin/clients/{id}";
    pub const CLIENT_SECRET: &str = "/admin/clients/{id}/secret";
    pub const TOKENS: &str = "/admin/tokens";
    pub const REVOCATIONS: &str = "/admin/revocations";
    pub const LIMITS: &str = "/admin/limits";
    pub const LIMIT: &str = "/admin/limits/{name}";
    pub const AUDIT: &str = "/admin/audit";
    pub const AUDIT_VERIFY: &str = "/admin/audit/verify";
    pub const AUDIT_HEAD: &str = "/admin/audit/head";
    pub const STATUS: &str = "/admin/status";
    pub const ISSUERS: &str = "/admin/issuers";
    pub const ISSUER: &str = "/admin/issuers/{name}";
}

/// `template` with its one `{…}` replaced by `value`, percent-encoded: whatever an id
/// holds (`/`, `?`, `#`, `%`), it stays one segment of this route. `.` and `..` would
/// be resolved as dot segments by URL parsers (in any spelling), so they are refused;
/// no id, kid or policy name the control plane makes or accepts is one.
pub fn path(template: &str, value: &str) -> Result<String, String> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(format!("{value:?} cannot be an id or a name"));
    }
    let (Some(open), Some(close)) = (template.find('{'), template.find('}')) else {
        return Err(format!("{template} has no parameter"));
    };
    let mut out = String::with_capacity(template.len() + 3 * value.len());
    out.push_str(&template[..open]);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(&template[close + 1..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_stay_inside_their_path_segment() {
        assert_eq!(
            path(route::CLIENT_SECRET, "../keys").unwrap(),
            "/admin/clients/..%2Fkeys/secret"
        );
        assert_eq!(
            path(route::CLIENT, "a?b#c%d e").unwrap(),
            "/admin/clients/a%3Fb%23c%25d%20e"
        );
        assert_eq!(
            path(route::KEY_REVOKE, "-uF_q.c~").unwrap(),
            "/admin/keys/-uF_q.c~/revoke"
        );
        assert_eq!(path(route::LIMIT, "é").unwrap(), "/admin/limits/%C3%A9");
        assert_eq!(
            path(route::LIMIT, "x/../../clients/c1").unwrap(),
            "/admin/limits/x%2F..%2F..%2Fclients%2Fc1"
        );
        for dots in ["", ".", ".."] {
            assert!(path(route::CLIENT, dots).is_err(), "{dots:?}");
        }
        assert_eq!(path(route::CLIENT, "...").unwrap(), "/admin/clients/...");
    }
}
