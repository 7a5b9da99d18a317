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
    if !path.starts_with('/') {
        return Some("the path does not start with '/'");
    }
    if path.contains('\\') {
        return Some("the path contains a backslash");
    }
    // Headers reach the filter decoded lossily, so U+FFFD stands for raw bytes that are
    // not UTF-8 (HTTP/2 lets them through): raw overlong dots (`\xC0\xAE`) are refused as
    // the encoded ones are below.
    if !path.is_ascii() && path.contains('\u{FFFD}') {
        return Some("the path has raw bytes that are not UTF-8");
    }
    if path.contains("//") {
        return Some("the path contains an empty segment");
    }
    // Servlet containers and Spring drop `;params` from a segment, so `/admin;x/users`
    // is `/admin/users` to them and no prefix route would match it here.
    if path.contains(';') {
        return Some("the path contains ';' (path parameters)");
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            decoded.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).and_then(|c| hex(*c)),
            bytes.get(i + 2).and_then(|c| hex(*c)),
        ) else {
            return Some("the path has an invalid percent-encoding");
        };
        let byte = hi << 4 | lo;
        match byte {
            b'/' | b'\\' => return Some("the path contains an encoded '/' or '\\'"),
            // RFC 3986 §6.2.2.2: an encoded unreserved character (`%2E` for '.', `%61`
            // for 'a') is the same path as the plain one, and normalisation decodes it.
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                return Some("the path encodes a character that needs no encoding")
            }
            0 => return Some("the path contains an encoded NUL"),
            b';' => return Some("the path contains an encoded ';'"),
            // `%25XX` decodes to `%XX`: an upstream that decodes twice sees another path.
            b'%' if bytes.get(i + 3).and_then(|c| hex(*c)).is_some()
                && bytes.get(i + 4).and_then(|c| hex(*c)).is_some() =>
            {
                return Some("the path is encoded twice (%25 before a hex pair)")
            }
            _ => {}
        }
        decoded.push(byte);
        i += 3;
    }
    // Encoded bytes must spell UTF-8: overlong forms (`%C0%AE` for '.') are how
    // lenient decoders were tricked into dot segments.
    let Ok(decoded) = std::str::from_utf8(&decoded) else {
        return Some("the path's encoded bytes are not UTF-8");
    };
    // NFKC turns these into '.', '/' or '\\' for upstreams that normalise Unicode.
    if decoded.contains(LOOKALIKES) {
        return Some("the path contains a look-alike of '.', '/' or '\\'");
    }
    for segment in decoded.split('/') {
        // `.`, `..`, and what Windows servers trim them to (`.. `, `...`).
        if !segment.is_empty() && segment.bytes().all(|b| b == b'.' || b == b' ') {
            return Some("the path contains a '.' or '..' segment");
        }
    }
    None
}

/// Letters that Unicode case mapping turns into ASCII ones, and the ASCII they become:
/// Java's `equalsIgnoreCase` reads `/admın` (dotless ı) and `/admİn` (dotted İ, whose
/// simple lower case is `i`) as `/admin`, `ſ` as `S`, the Kelvin sign as `k`; full case
/// mapping and folding (Java's `String.toUpperCase`, Python's `upper` and `casefold`,
/// ICU) also turn `ß` and `ẞ` into `ss` and the Latin ligatures into their letters
/// (`/internal/ﬆats` is `/INTERNAL/STATS`). The complete list of characters whose upper,
/// lower, title or folded form is all ASCII.
const FOLDS_TO_ASCII: &[(char, &str)] = &[
    ('\u{0130}', "i"),
    ('\u{0131}', "i"),
    ('\u{017F}', "s"),
    ('\u{00DF}', "ss"),
    ('\u{1E9E}', "ss"),
    ('\u{212A}', "k"),
    ('\u{FB00}', "ff"),
    ('\u{FB01}', "fi"),
    ('\u{FB02}', "fl"),
    ('\u{FB03}', "ffi"),
    ('\u{FB04}', "ffl"),
    ('\u{FB05}', "st"),
    ('\u{FB06}', "st"),
];

fn folds_to_ascii(c: char) -> Option<&'static str> {
    FOLDS_TO_ASCII
        .iter()
        .find(|(f, _)| *f == c)
        .map(|(_, ascii)| *ascii)
}

/// The decoded path with those letters replaced by their ASCII ones, when it has any;
/// `None` otherwise (the usual case: no allocation). The caller refuses the request when
/// this path would match another route than the one it sent, so `/adm%C4%B1n/users`
/// cannot slip past `/admin` while `/kullan%C4%B1c%C4%B1` (Turkish) still passes.
pub fn case_folded(path: &str) -> Option<String> {
    let path = crate::rules::strip_query(path);
    if path.is_ascii() && !path.contains('%') {
        return None;
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let pair = (
            bytes.get(i + 1).and_then(|c| hex(*c)),
            bytes.get(i + 2).and_then(|c| hex(*c)),
        );
        match (b, pair) {
            (b'%', (Some(hi), Some(lo))) => {
                decoded.push(hi << 4 | lo);
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded);
    if !decoded.contains(|c| folds_to_ascii(c).is_some()) {
        return None;
    }
    let mut folded = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        match folds_to_ascii(c) {
            Some(ascii) => folded.push_str(ascii),
            None => folded.push(c),
        }
    }
    Some(folded)
}

const LOOKALIKES: &[char] = &[
    '\u{2024}', // one dot leader
    '\u{2025}', // two dot leader
    '\u{2026}', // ellipsis
    '\u{FE52}', // small full stop
    '\u{FF0E}', // fullwidth full stop
    '\u{2044}', // fraction slash
    '\u{2215}', // division slash
    '\u{FF0F}', // fullwidth solidus
    '\u{FE68}', // small reverse solidus
    '\u{FF3C}', // fullwidth reverse solidus
];

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
            "/admin;x/users",
            "/admin;/users",
            "/public/..%3b/admin",
            "/public/..%252fadmin",
            // Raw bytes that were not UTF-8, as the lossy header decoding hands them over.
            &String::from_utf8_lossy(b"/public/\xC0\xAE\xC0\xAE/admin"),
            "/ad\u{FFFD}min",
            "/public/%C0%AE%C0%AE/admin",
            "/public/%EF%BC%8E%EF%BC%8E/admin",
            "/public/..%20/admin",
            "/public/.../admin",
            "/public/%E2%80%A5/admin",
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
            "/a/.hidden",
            "/a/b..c/",
            "/caf%C3%A9",
            "/100%25",
            "/a%25zz",
            "/a%20b/c%2Cd",
        ] {
            assert_eq!(ambiguity(p), None, "{p:?}");
        }
    }

    #[test]
    fn letters_that_fold_to_ascii_are_folded() {
        assert_eq!(
            case_folded("/adm%C4%B1n/users").as_deref(),
            Some("/admin/users")
        );
        assert_eq!(case_folded("/adm%c4%b1n?q=1").as_deref(), Some("/admin"));
        assert_eq!(case_folded("/admın").as_deref(), Some("/admin"));
        assert_eq!(
            case_folded("/%E2%84%AAey/%C5%BFecret").as_deref(),
            Some("/key/secret")
        );
        // Dotted İ (Java's simple lower case), ß and ẞ, the ligatures (full case mapping).
        assert_eq!(case_folded("/adm%C4%B0n").as_deref(), Some("/admin"));
        assert_eq!(case_folded("/pa%C3%9F").as_deref(), Some("/pass"));
        assert_eq!(case_folded("/PA%E1%BA%9E").as_deref(), Some("/PAss"));
        assert_eq!(
            case_folded("/internal/%EF%AC%86ats").as_deref(),
            Some("/internal/stats")
        );
        assert_eq!(case_folded("/con%EF%AC%81g").as_deref(), Some("/config"));
        assert_eq!(case_folded("/admin/users"), None);
        // The list is complete: no other character's upper or lower case (full mapping,
        // also of each other) is all ASCII. İ is listed for its simple mapping.
        for c in (0x80..=0x10FFFF).filter_map(char::from_u32) {
            let upper: String = c.to_uppercase().collect();
            let lower: String = c.to_lowercase().collect();
            let upper_lower: String = upper.chars().flat_map(char::to_lowercase).collect();
            let lower_upper: String = lower.chars().flat_map(char::to_uppercase).collect();
            if [upper, lower, upper_lower, lower_upper]
                .iter()
                .any(|m| m.is_ascii())
            {
                assert!(folds_to_ascii(c).is_some(), "{c:?} U+{:04X}", c as u32);
            }
        }
        assert_eq!(case_folded("/caf%C3%A9"), None);
        assert_eq!(case_folded("/bad%zz%C4"), None);
    }
}
