//! How a path pattern matches a request path, defined once for the filter's routes and
//! the rate-limit policies. Upstreams commonly ignore ASCII case and a trailing slash
//! (Express by default, many others), so a pattern that did not would let `/ADMIN/x`
//! or `/internal/stats/` escape a rule the upstream then serves anyway.

/// `path` (without its query) equals `pattern`, ignoring one trailing slash on either
/// and, with `ignore_case`, ASCII case.
pub fn exact(path: &str, pattern: &str, ignore_case: bool) -> bool {
    let trim = |p: &'_ str| -> usize {
        if p.len() > 1 && p.ends_with('/') {
            p.len() - 1
        } else {
            p.len()
        }
    };
    let (a, b) = (
        path.get(..trim(path)).unwrap_or(path),
        pattern.get(..trim(pattern)).unwrap_or(pattern),
    );
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// `path` starts with `prefix`, with `ignore_case` ignoring ASCII case.
pub fn prefix(path: &str, prefix: &str, ignore_case: bool) -> bool {
    if ignore_case {
        path.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    } else {
        path.starts_with(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ignores_one_trailing_slash_and_case_when_asked() {
        assert!(exact("/internal/stats", "/internal/stats", false));
        assert!(exact("/internal/stats/", "/internal/stats", false));
        assert!(exact("/internal/stats", "/internal/stats/", false));
        assert!(!exact("/INTERNAL/stats", "/internal/stats", false));
        assert!(exact("/INTERNAL/Stats/", "/internal/stats", true));
        assert!(!exact("/internal/stats//", "/internal/stats", true));
        assert!(!exact("/internal/statsx", "/internal/stats", true));
        assert!(exact("/", "/", true));
        assert!(!exact("/", "/a", true));
    }

    #[test]
    fn prefix_by_case() {
        assert!(prefix("/API/x", "/api/", true));
        assert!(!prefix("/API/x", "/api/", false));
        assert!(prefix("/é/x", "/é", true));
        assert!(!prefix("/é", "/a", true));
        assert!(!prefix("/a", "/ab", true));
    }
}
