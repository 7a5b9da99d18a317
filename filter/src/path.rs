//! Paths that mean one thing to route matching and another to the upstream.
//!
//! Routes match on the path as Envoy hands it over. If Envoy did not normalise it (the
//! operator left `normalize_path`, `merge_slashes` or `path_with_escaped_slashes_action`
//! off), `/public/..%2Fadmin/users` matches the anonymous `/public/` route while the
//! upstream, after decoding, serves `/admin/users`. The filter must not depend on those
//! settings, so it refuses every path whose normalised form could differ: what Envoy's
//! normalisation would change is exactly what is refused here, and a path Envoy already
//! normalised always passes.

/// Why a path is refused, or `None` when its route cannot change under normalisation.
/// `path` may carry a query string, which is not checked (routes never see it).
pub fn ambiguity(path: &str) -> Option<&'static str> {
    let path = crate::rules::strip_query(path);
    let bytes = path.as_bytes();
    if !path.starts_with('/') {
        return Some("the path does not start with '/'");
    }
    if path.contains('\\') {
        return Some("the path contains a backslash");
    }
    if path.contains("//") {
        return Some("the path contains an empty segment");
    }
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|c| hex(*c)),
                bytes.get(i + 2).and_then(|c| hex(*c)),
            ) else {
                return Some("the path has an invalid percent-encoding");
            };
            let decoded = hi << 4 | lo;
            if decoded == b'/' || decoded == b'\\' {
                return Some("the path contains an encoded '/' or '\\'");
            }
            // RFC 3986 §6.2.2.2: an encoded unreserved character (`%2E` for '.', `%61`
            // for 'a') is the same path as the plain one, and normalisation decodes it.
            if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                return Some("the path encodes a character that needs no encoding");
            }
            if decoded == 0 {
                return Some("the path contains an encoded NUL");
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    for segment in path.split('/') {
        // `..;x` is `..` to servlet containers, which drop path parameters.
        let name = segment.split(';').next().unwrap_or(segment);
        if name == "." || name == ".." {
            return Some("the path contains a '.' or '..' segment");
        }
    }
    None
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_normalisation_would_change() {
        for p in [
            "/public/..%2Fadmin/users",
            "/public/..%2fadmin/users",
            "/public/%2E%2E/admin/users",
            "/public/%2e./admin",
            "/public/../admin/users",
            "/public/./x",
            "/public/..;/admin",
            "/public/..",
            "/a/.",
            "/public\\..\\admin",
            "/public/..%5Cadmin",
            "//admin/users",
            "/admin//users",
            "/%61dmin/users",
            "/admin%2Dx",
            "/a%00b",
            "/a%zz",
            "/a%2",
            "/a%",
            "admin",
            "",
        ] {
            assert!(ambiguity(p).is_some(), "{p:?} passed");
        }
    }

    #[test]
    fn passes_normal_paths() {
        for p in [
            "/",
            "/admin/users",
            "/api/x?next=/../%2F..//",
            "/files/a%20b",
            "/q/%25",
            "/a/...",
            "/a/.hidden",
            "/a/b..c/",
            "/caf%C3%A9",
            "/a;b=c/d",
        ] {
            assert_eq!(ambiguity(p), None, "{p:?}");
        }
    }
}
