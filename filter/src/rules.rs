//! Per-route policy: which requests need a token and what the token must carry.
//! Routes are tried in order; the first whose path and method match decides.

use meshauth_wire::path_match;

use crate::claims::Claims;
use crate::deny::Denial;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRule {
    /// Every listed scope is required.
    All(Vec<String>),
    /// At least one listed scope is required.
    Any(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    pub scopes: Option<ScopeRule>,
    /// Each claim must carry one of its permitted values.
    pub claims: Vec<(String, Vec<String>)>,
    /// The issuers whose tokens the route admits: trusted issuers' names, `self` for
    /// the control plane's own. `None`: any the filter verifies.
    pub issuers: Option<Vec<String>>,
}

/// Who issued a verified token, as route rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedBy<'a> {
    /// The control plane (`self`).
    Own,
    /// A trusted external issuer, by the name it was registered under (`None`: it came
    /// without one, and no route that requires issuers admits it).
    Federated(Option<&'a str>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Anonymous,
    Token(Requirements),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub path: PathMatch,
    /// Upper-case methods; `None` matches any.
    pub methods: Option<Vec<String>>,
    /// Match the path without regard to ASCII case: upstreams that treat `/ADMIN` as
    /// `/admin` must not let it escape the `/admin` route.
    pub ignore_case: bool,
    pub policy: Policy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub routes: Vec<Route>,
    pub default: Policy,
}

impl Route {
    fn matches(&self, method: &str, path: &str) -> bool {
        let path_ok = match &self.path {
            PathMatch::Exact(p) => path_match::exact(path, p, self.ignore_case),
            PathMatch::Prefix(p) => path_match::prefix(path, p, self.ignore_case),
        };
        path_ok
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

impl RouteTable {
    /// The policy for a request. `path` may carry a query string; it is ignored.
    pub fn policy_for(&self, method: &str, path: &str) -> &Policy {
        self.policy(self.find(method, path))
    }

    /// The index of the first matching route; `None`: the default applies.
    pub fn find(&self, method: &str, path: &str) -> Option<usize> {
        let path = strip_query(path);
        self.routes.iter().position(|r| r.matches(method, path))
    }

    pub fn policy(&self, route: Option<usize>) -> &Policy {
        route
            .and_then(|i| self.routes.get(i))
            .map_or(&self.default, |r| &r.policy)
    }

    /// The route's name as rate-limit keys see it (`default` for none).
    pub fn name(&self, route: Option<usize>) -> &str {
        route
            .and_then(|i| self.routes.get(i))
            .map_or("default", |r| r.name.as_str())
    }
}

/// The path without its query string or fragment.
pub fn strip_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

impl Requirements {
    pub fn check(&self, claims: &Claims, by: IssuedBy<'_>) -> Result<(), Denial> {
        if let Some(admitted) = &self.issuers {
            let name = match by {
                IssuedBy::Own => Some(meshauth_wire::federation::SELF_ISSUER),
                IssuedBy::Federated(name) => name,
            };
            if !name.is_some_and(|n| admitted.iter().any(|a| a == n)) {
                return Err(Denial::IssuerNotAllowed);
            }
        }
        let (ok, listed) = match &self.scopes {
            Some(ScopeRule::All(all)) => (all.iter().all(|s| claims.has_scope(s)), all),
            Some(ScopeRule::Any(any)) => (any.iter().any(|s| claims.has_scope(s)), any),
            None => (true, &Vec::new()),
        };
        if !ok {
            return Err(Denial::InsufficientScope {
                required: listed.join(" "),
            });
        }
        for (claim, permitted) in &self.claims {
            if !claims.values(claim).iter().any(|v| permitted.contains(v)) {
                return Err(Denial::ClaimMismatch {
                    claim: claim.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable {
            routes: vec![
                Route {
                    name: "health".into(),
                    path: PathMatch::Exact("/healthz".into()),
                    methods: None,
                    ignore_case: false,
                    policy: Policy::Anonymous,
                },
                Route {
                    name: "admin-read".into(),
                    path: PathMatch::Prefix("/admin/".into()),
                    methods: Some(vec!["GET".into()]),
                    ignore_case: true,
                    policy: Policy::Token(Requirements {
                        scopes: Some(ScopeRule::Any(vec!["admin".into(), "audit".into()])),
                        claims: vec![],
                        issuers: None,
                    }),
                },
                Route {
                    name: "admin".into(),
                    path: PathMatch::Prefix("/admin/".into()),
                    methods: None,
                    ignore_case: true,
                    policy: Policy::Token(Requirements {
                        scopes: Some(ScopeRule::All(vec!["admin".into(), "write".into()])),
                        claims: vec![("tenant".into(), vec!["a".into()])],
                        issuers: None,
                    }),
                },
                Route {
                    name: "public".into(),
                    path: PathMatch::Prefix("/public/".into()),
                    methods: None,
                    ignore_case: true,
                    policy: Policy::Anonymous,
                },
            ],
            default: Policy::Token(Requirements::default()),
        }
    }

    fn name_of<'a>(t: &'a RouteTable, method: &str, path: &str) -> Option<&'a str> {
        let p = t.policy_for(method, path);
        t.routes
            .iter()
            .find(|r| std::ptr::eq(&r.policy, p))
            .map(|r| r.name.as_str())
    }

    #[test]
    fn first_match_wins_and_default_applies() {
        let t = table();
        assert_eq!(name_of(&t, "GET", "/healthz"), Some("health"));
        assert_eq!(name_of(&t, "GET", "/healthz?x=1"), Some("health"));
        assert_eq!(name_of(&t, "GET", "/healthz/x"), None);
        assert_eq!(name_of(&t, "get", "/admin/users"), Some("admin-read"));
        assert_eq!(name_of(&t, "POST", "/admin/users"), Some("admin"));
        assert_eq!(name_of(&t, "GET", "/admin"), None);
        assert_eq!(name_of(&t, "GET", "/public/x"), Some("public"));
        assert_eq!(t.policy_for("GET", "/other"), &t.default);
    }

    #[test]
    fn case_variants_of_a_prefix_stay_on_its_route() {
        let t = table();
        for p in ["/ADMIN/users", "/Admin/users", "/aDmIn/x"] {
            assert_eq!(name_of(&t, "POST", p), Some("admin"), "{p}");
        }
        // The exact route here was set case-sensitive; a trailing slash still matches.
        assert_eq!(name_of(&t, "GET", "/HEALTHZ"), None);
        assert_eq!(name_of(&t, "GET", "/healthz/"), Some("health"));
    }

    fn claims(json: &str) -> Claims {
        Claims::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn scope_and_claim_requirements() {
        let t = table();
        let Policy::Token(read) = t.policy_for("GET", "/admin/x") else {
            panic!()
        };
        let Policy::Token(write) = t.policy_for("POST", "/admin/x") else {
            panic!()
        };
        let audit = claims(r#"{"exp":1,"jti":"j","scope":"audit"}"#);
        assert_eq!(read.check(&audit, IssuedBy::Own), Ok(()));
        assert!(matches!(
            write.check(&audit, IssuedBy::Own),
            Err(Denial::InsufficientScope { .. })
        ));
        let admin_b = claims(r#"{"exp":1,"jti":"j","scope":"write admin","tenant":"b"}"#);
        assert_eq!(
            write.check(&admin_b, IssuedBy::Own),
            Err(Denial::ClaimMismatch {
                claim: "tenant".into()
            })
        );
        let admin_a = claims(r#"{"exp":1,"jti":"j","scope":"write admin","tenant":["c","a"]}"#);
        assert_eq!(write.check(&admin_a, IssuedBy::Own), Ok(()));
    }

    /// A route that requires issuers admits their tokens only: another provider's, ours
    /// when `self` is not listed, and one whose issuer came without a name, are refused
    /// before any scope is looked at.
    #[test]
    fn a_route_can_require_issuers() {
        let only_idp = Requirements {
            scopes: Some(ScopeRule::All(vec!["read".into()])),
            issuers: Some(vec!["idp".into()]),
            ..Default::default()
        };
        let c = claims(r#"{"exp":1,"jti":"j","scope":"read"}"#);
        assert_eq!(only_idp.check(&c, IssuedBy::Federated(Some("idp"))), Ok(()));
        for by in [
            IssuedBy::Own,
            IssuedBy::Federated(Some("other")),
            IssuedBy::Federated(None),
            IssuedBy::Federated(Some("self")),
        ] {
            assert_eq!(
                only_idp.check(&c, by),
                Err(Denial::IssuerNotAllowed),
                "{by:?}"
            );
        }
        let none = claims(r#"{"exp":1,"jti":"j"}"#);
        assert_eq!(
            only_idp.check(&none, IssuedBy::Own),
            Err(Denial::IssuerNotAllowed)
        );
        let own_or_idp = Requirements {
            issuers: Some(vec!["self".into(), "idp".into()]),
            ..Default::default()
        };
        assert_eq!(own_or_idp.check(&c, IssuedBy::Own), Ok(()));
        assert_eq!(
            own_or_idp.check(&c, IssuedBy::Federated(Some("idp"))),
            Ok(())
        );
        assert_eq!(
            own_or_idp.check(&c, IssuedBy::Federated(Some("x"))),
            Err(Denial::IssuerNotAllowed)
        );
        // No requirement: any verified token.
        let any = Requirements::default();
        assert_eq!(any.check(&c, IssuedBy::Federated(None)), Ok(()));
    }
}
