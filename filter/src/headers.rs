//! Request headers that impersonate the identity headers the filter sets.

/// The request's header names to remove before the upstream sees the request: those
/// that are not one of `ours` but read as one once `_` is taken for `-` and case is
/// ignored (many upstreams fold them together: CGI turns both `x_meshauth_sub` and
/// `x-meshauth-sub` into `HTTP_X_MESHAUTH_SUB`), and any spelling of a name under
/// `reserved_prefix` (an identity header the configuration no longer forwards, which an
/// upstream may still trust).
pub fn lookalikes<'a, 'o>(
    names: impl IntoIterator<Item = &'a str>,
    ours: impl Iterator<Item = &'o str> + Clone,
    reserved_prefix: &str,
) -> Vec<String> {
    let folds_to = |name: &str, target: &str, whole: bool| {
        (if whole {
            name.len() == target.len()
        } else {
            name.len() >= target.len()
        }) && name
            .bytes()
            .zip(target.bytes())
            .all(|(a, b)| fold(a) == fold(b))
    };
    names
        .into_iter()
        .filter(|name| ours.clone().all(|our| our != *name))
        .filter(|name| {
            ours.clone().any(|our| folds_to(name, our, true))
                || (!reserved_prefix.is_empty() && folds_to(name, reserved_prefix, false))
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
            lookalikes(names, ours.into_iter(), ""),
            vec!["x_meshauth_sub", "x-meshauth_sub", "X_MESHAUTH_SCOPE"]
        );
    }

    #[test]
    fn the_reserved_prefix_covers_headers_no_longer_forwarded() {
        let ours = ["x-meshauth-sub"];
        let names = [
            "x-meshauth-sub",
            "x-meshauth-tenant",
            "X_MESHAUTH_ROLE",
            "x-other",
        ];
        assert_eq!(
            lookalikes(names, ours.into_iter(), "x-meshauth-"),
            vec!["x-meshauth-tenant", "X_MESHAUTH_ROLE"]
        );
    }
}
