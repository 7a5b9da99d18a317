//! Request headers that impersonate the identity headers the filter sets.

/// The request's header names that are not one of `ours` but read as one once `_` is
/// taken for `-` and case is ignored. Many upstreams fold them together (CGI turns
/// both into `HTTP_X_MESHAUTH_SUB`), so `x_meshauth_sub: admin` would pass for the
/// filter's own `x-meshauth-sub` unless it is removed as well.
pub fn lookalikes<'a>(names: impl IntoIterator<Item = &'a str>, ours: &[&str]) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| {
            ours.iter().any(|our| {
                *name != *our
                    && name.len() == our.len()
                    && name
                        .bytes()
                        .zip(our.bytes())
                        .all(|(a, b)| fold(a) == fold(b))
            })
        })
        .map(str::to_owned)
        .collect()
}

fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_underscore_and_case_spellings_only() {
        let ours = ["x-meshauth-sub", "x-meshauth-scope"];
        let names = [
            "x_meshauth_sub",
            "x-meshauth_sub",
            "X_MESHAUTH_SCOPE",
            "x-meshauth-sub",
            "x-meshauth-subx",
            "x-meshauth-scop",
            "authorization",
        ];
        assert_eq!(
            lookalikes(names, &ours),
            vec!["x_meshauth_sub", "x-meshauth_sub", "X_MESHAUTH_SCOPE"]
        );
    }
}
