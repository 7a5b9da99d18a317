//! Request headers that impersonate the identity headers the filter sets.

/// Client-sent headers to take off a request, found in one pass over its names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Theirs {
    /// Exact copies of `ours`: dropped when the filter does not set them itself.
    pub copies: Vec<String>,
    /// Names that are not one of `ours` but read as one once `_` is taken for `-` and
    /// case is ignored (many upstreams fold them together: CGI turns both
    /// `x_meshauth_sub` and `x-meshauth-sub` into `HTTP_X_MESHAUTH_SUB`), and any
    /// spelling of a name under `reserved_prefix` (an identity header the configuration
    /// no longer forwards, which an upstream may still trust): dropped on every path.
    pub lookalikes: Vec<String>,
}

pub fn theirs<'a, 'o>(
    names: impl IntoIterator<Item = &'a str>,
    ours: impl Iterator<Item = &'o str> + Clone,
    reserved_prefix: &str,
) -> Theirs {
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
    let mut found = Theirs::default();
    for name in names {
        if ours.clone().any(|our| our == name) {
            found.copies.push(name.to_owned());
        } else if ours.clone().any(|our| folds_to(name, our, true))
            || (!reserved_prefix.is_empty() && folds_to(name, reserved_prefix, false))
        {
            found.lookalikes.push(name.to_owned());
        }
    }
    found
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
        let found = theirs(names, ours.into_iter(), "");
        assert_eq!(
            found.lookalikes,
            vec!["x_meshauth_sub", "x-meshauth_sub", "X_MESHAUTH_SCOPE"]
        );
        assert_eq!(found.copies, vec!["x-meshauth-sub"]);
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
        let found = theirs(names, ours.into_iter(), "x-meshauth-");
        assert_eq!(
            found.lookalikes,
            vec!["x-meshauth-tenant", "X_MESHAUTH_ROLE"]
        );
        assert_eq!(found.copies, vec!["x-meshauth-sub"]);
    }
}
