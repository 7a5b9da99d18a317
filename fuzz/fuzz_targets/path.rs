//! The path check against an independent normaliser (RFC 3986 §6.2.2 and §5.2.4 plus
//! what Envoy's `merge_slashes` and slash unescaping do): a path the filter passes must
//! be one normalisation leaves unchanged, so routes see what the upstream serves.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshauth_filter::path::{ambiguity, case_folded};
use meshauth_filter::rules::strip_query;

fn normalise(path: &str) -> Option<String> {
    // Decode every %XX that is unreserved, '/' or '\'; refuse invalid encodings.
    let b = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            let v = u8::from_str_radix(h, 16).ok()?;
            if v.is_ascii_alphanumeric() || b"-._~/\\".contains(&v) {
                out.push(v);
            } else {
                out.extend_from_slice(&b[i..i + 3]);
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for seg in text.split('/').skip(1) {
        match seg.split(';').next().unwrap_or(seg) {
            "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(seg),
        }
    }
    let mut joined = String::from("/");
    joined.push_str(&segments.join("/"));
    while joined.contains("//") {
        joined = joined.replace("//", "/");
    }
    Some(joined)
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if ambiguity(path).is_none() {
        let bare = strip_query(path);
        assert_eq!(
            normalise(bare).as_deref(),
            Some(bare),
            "passed a path normalisation changes"
        );
    }
    // Folding only replaces letters: an ASCII path has nothing to fold.
    if let Some(folded) = case_folded(path) {
        assert!(
            !strip_query(path).is_ascii() || path.contains('%'),
            "folded {path:?}"
        );
        assert!(!folded.contains([
            '\u{0130}', '\u{0131}', '\u{017F}', '\u{00DF}', '\u{1E9E}', '\u{212A}', '\u{FB00}',
            '\u{FB01}', '\u{FB02}', '\u{FB03}', '\u{FB04}', '\u{FB05}', '\u{FB06}'
        ]));
    }
});
