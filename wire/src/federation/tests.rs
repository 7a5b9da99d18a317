use super::*;

pub(crate) fn rsa_key(kid: &str) -> FederatedKey {
    FederatedKey {
        kid: kid.into(),
        algorithms: vec![Alg::RS256],
        material: KeyMaterial::Rsa {
            n: b64::encode([0xc5u8; 256]),
            e: "AQAB".into(),
        },
    }
}

pub(crate) fn ec_key(kid: &str) -> FederatedKey {
    FederatedKey {
        kid: kid.into(),
        algorithms: vec![Alg::ES256],
        material: KeyMaterial::Ec {
            crv: "P-256".into(),
            x: b64::encode([1u8; 32]),
            y: b64::encode([2u8; 32]),
        },
    }
}

pub(crate) fn issuer() -> FederatedIssuer {
    FederatedIssuer {
        name: Some("idp".into()),
        issuer: "https://idp.example".into(),
        audiences: vec!["api".into()],
        algorithms: vec![Alg::RS256, Alg::ES256],
        typ: None,
        required_claims: BTreeMap::new(),
        clock_skew_seconds: 60,
        scope_claim: "realm_access.roles".into(),
        forward_claims: BTreeMap::new(),
        id_claim: None,
        id_optional: false,
        client_claim: None,
        max_token_lifetime_seconds: DEFAULT_TOKEN_LIFETIME_SECONDS,
        keys: vec![rsa_key("r1"), ec_key("e1")],
    }
}

#[test]
fn a_valid_issuer_passes() {
    assert_eq!(validate_all(&[issuer()]), Ok(()));
    // The token-id settings are omitted at their defaults (what older filters read)...
    let json = serde_json::to_value(issuer()).unwrap();
    assert!(json.get("id_claim").is_none() && json.get("id_optional").is_none());
    // ...and carried when set.
    let mut entra = issuer();
    entra.id_claim = Some("uti".into());
    entra.id_optional = true;
    assert_eq!(validate_all(std::slice::from_ref(&entra)), Ok(()));
    let back: FederatedIssuer =
        serde_json::from_value(serde_json::to_value(&entra).unwrap()).unwrap();
    assert_eq!((back.id_claim(), back.id_optional), ("uti", true));
}

/// Client rules read the issuer's client claim: `client_id` unless it names another
/// (older control planes send none), carried only when set, and never a claim with
/// rules of its own.
#[test]
fn the_client_claim_defaults_to_client_id_and_is_bounded() {
    let json = serde_json::to_value(issuer()).unwrap();
    assert!(json.get("client_claim").is_none());
    assert_eq!(issuer().client_claim(), "client_id");
    let mut okta = issuer();
    okta.client_claim = Some("cid".into());
    assert_eq!(validate_all(std::slice::from_ref(&okta)), Ok(()));
    let back: FederatedIssuer =
        serde_json::from_value(serde_json::to_value(&okta).unwrap()).unwrap();
    assert_eq!(back.client_claim(), "cid");
    for bad in ["", "sub", "iss", "a.b", "a b", &"c".repeat(65)] {
        let mut i = issuer();
        i.client_claim = Some(bad.into());
        assert!(
            validate_all(&[i]).is_err_and(|e| e.contains("client_claim")),
            "{bad:?}"
        );
    }
}

/// An issuer of a control plane older than the setting has none: it opens with the
/// default; the default is omitted when sent (older filters refuse unknown members),
/// another value carried; both ends of the range are accepted.
#[test]
fn the_token_lifetime_defaults_for_older_snapshots_and_is_bounded() {
    let mut old = serde_json::to_value(issuer()).unwrap();
    assert!(old.get("max_token_lifetime_seconds").is_none(), "{old}");
    old.as_object_mut()
        .unwrap()
        .remove("max_token_lifetime_seconds");
    let read: FederatedIssuer = serde_json::from_value(old).unwrap();
    assert_eq!(read.max_token_lifetime_seconds, 86_400);
    assert_eq!(read.validate(), Ok(()));
    for ok in [
        MIN_TOKEN_LIFETIME_SECONDS,
        3_600,
        MAX_TOKEN_LIFETIME_SECONDS,
    ] {
        let mut i = issuer();
        i.max_token_lifetime_seconds = ok;
        assert_eq!(i.validate(), Ok(()), "{ok}");
        let back: FederatedIssuer =
            serde_json::from_value(serde_json::to_value(&i).unwrap()).unwrap();
        assert_eq!(back.max_token_lifetime_seconds, ok);
    }
    let mut long = issuer();
    long.max_token_lifetime_seconds = MAX_TOKEN_LIFETIME_SECONDS + 1;
    let e = long.validate().unwrap_err();
    assert!(e.contains("max_token_lifetime_seconds"), "{e}");
}

/// Each bound, broken alone, is refused.
#[test]
fn out_of_bounds_issuers_are_refused() {
    type Break = fn(&mut FederatedIssuer);
    let cases: Vec<(&str, Break)> = vec![
        ("no keys", |i| i.keys.clear()),
        ("too many keys", |i| {
            i.keys = (0..=MAX_KEYS).map(|n| rsa_key(&format!("k{n}"))).collect()
        }),
        ("duplicate kid", |i| i.keys[1].kid = "r1".into()),
        ("empty kid", |i| i.keys[0].kid = String::new()),
        ("long kid", |i| i.keys[0].kid = "k".repeat(MAX_KID_LEN + 1)),
        ("no audience", |i| i.audiences.clear()),
        ("too many audiences", |i| {
            i.audiences = (0..=MAX_AUDIENCES).map(|n| n.to_string()).collect()
        }),
        ("no algorithms", |i| i.algorithms.clear()),
        ("a key's alg not the issuer's", |i| {
            i.algorithms = vec![Alg::ES256]
        }),
        ("EC key claiming RS256", |i| {
            i.keys[1].algorithms = vec![Alg::RS256]
        }),
        ("RSA key claiming ES256", |i| {
            i.keys[0].algorithms = vec![Alg::ES256]
        }),
        ("P-384 key for ES256", |i| {
            i.keys[1].material = KeyMaterial::Ec {
                crv: "P-384".into(),
                x: b64::encode([1u8; 48]),
                y: b64::encode([2u8; 48]),
            }
        }),
        ("short RSA", |i| {
            i.keys[0].material = KeyMaterial::Rsa {
                n: b64::encode([0xc5u8; 255]),
                e: "AQAB".into(),
            }
        }),
        ("huge RSA", |i| {
            i.keys[0].material = KeyMaterial::Rsa {
                n: b64::encode([0xc5u8; MAX_RSA_BITS / 8 + 1]),
                e: "AQAB".into(),
            }
        }),
        ("even exponent", |i| {
            i.keys[0].material = KeyMaterial::Rsa {
                n: b64::encode([0xc5u8; 256]),
                e: "AQAA".into(),
            }
        }),
        ("short EC coordinate", |i| {
            i.keys[1].material = KeyMaterial::Ec {
                crv: "P-256".into(),
                x: b64::encode([1u8; 31]),
                y: b64::encode([2u8; 32]),
            }
        }),
        ("skew", |i| i.clock_skew_seconds = MAX_SKEW_SECONDS + 1),
        ("scope path", |i| i.scope_claim = "a..b".into()),
        ("deep scope path", |i| i.scope_claim = "a.b.c.d.e".into()),
        ("forward to a reserved header", |i| {
            i.forward_claims
                .insert("sub".into(), "authorization".into());
        }),
        // A client could send it while the issuer is not in a filter's snapshot.
        ("forward outside x-meshauth-", |i| {
            i.forward_claims.insert("sub".into(), "x-user".into());
        }),
        // Folds onto x-meshauth-client-id upstream (CGI: HTTP_X_MESHAUTH_CLIENT_ID).
        ("forward with an underscore", |i| {
            i.forward_claims
                .insert("sub".into(), "x-meshauth-client_id".into());
        }),
        ("forward to the bare prefix", |i| {
            i.forward_claims.insert("sub".into(), "x-meshauth-".into());
        }),
        ("forward to a sync header", |i| {
            i.forward_claims
                .insert("sub".into(), "x-meshauth-version".into());
        }),
        ("two claims in one header", |i| {
            i.forward_claims
                .insert("sub".into(), "x-meshauth-idp".into());
            i.forward_claims
                .insert("email".into(), "x-meshauth-idp".into());
        }),
        ("issuer with a space", |i| i.issuer = "https://a b".into()),
        ("a name routes use for the control plane", |i| {
            i.name = Some(SELF_ISSUER.into())
        }),
        ("an upper-case name", |i| i.name = Some("IdP".into())),
        ("required claim without values", |i| {
            i.required_claims.insert("tenant".into(), vec![]);
        }),
        ("id claim that is a path", |i| {
            i.id_claim = Some("a.b".into())
        }),
        ("id claim checked elsewhere", |i| {
            i.id_claim = Some("sub".into())
        }),
        ("empty id claim", |i| i.id_claim = Some(String::new())),
        ("lifetime under a minute", |i| {
            i.max_token_lifetime_seconds = MIN_TOKEN_LIFETIME_SECONDS - 1
        }),
        ("lifetime over a week", |i| {
            i.max_token_lifetime_seconds = MAX_TOKEN_LIFETIME_SECONDS + 1
        }),
        ("no lifetime", |i| i.max_token_lifetime_seconds = 0),
    ];
    for (what, break_it) in cases {
        let mut i = issuer();
        break_it(&mut i);
        assert!(validate_all(&[i]).is_err(), "{what} was accepted");
    }
}

#[test]
fn an_issuer_listed_twice_or_too_many_is_refused() {
    assert!(validate_all(&[issuer(), issuer()]).is_err());
    // Two issuers under one name: a route requiring it would admit either.
    let other = FederatedIssuer {
        issuer: "https://other.example".into(),
        ..issuer()
    };
    assert!(validate_all(&[issuer(), other.clone()]).is_err());
    // Unnamed (from a control plane that did not send names): fine, however many.
    let unnamed = |i: FederatedIssuer| FederatedIssuer { name: None, ..i };
    assert!(validate_all(&[unnamed(issuer()), unnamed(other)]).is_ok());
    let many: Vec<FederatedIssuer> = (0..=MAX_ISSUERS)
        .map(|n| FederatedIssuer {
            name: Some(format!("idp{n}")),
            issuer: format!("https://idp{n}.example"),
            ..issuer()
        })
        .collect();
    assert!(validate_all(&many[..MAX_ISSUERS]).is_ok());
    assert!(validate_all(&many).is_err());
}

/// Two issuers forwarding into one header: the upstream could not tell which one
/// asserted the value it reads.
#[test]
fn two_issuers_never_share_a_forwarded_header() {
    let with = |name: &str, header: &str| {
        let mut i = FederatedIssuer {
            name: Some(name.into()),
            issuer: format!("https://{name}.example"),
            ..issuer()
        };
        i.forward_claims.insert("sub".into(), header.into());
        i
    };
    let a = with("a", "x-meshauth-a-sub");
    assert!(validate_all(&[a.clone(), with("b", "x-meshauth-b-sub")]).is_ok());
    assert!(validate_all(&[a, with("b", "x-meshauth-a-sub")]).is_err());
}

/// A key or issuer with a member this filter does not know is refused, not skipped.
#[test]
fn unknown_members_are_refused() {
    let mut v = serde_json::to_value(issuer()).unwrap();
    assert!(serde_json::from_value::<FederatedIssuer>(v.clone()).is_ok());
    v["keys"][0]["material"]["d"] = "AQAB".into();
    assert!(serde_json::from_value::<FederatedIssuer>(v).is_err());
    let mut v = serde_json::to_value(issuer()).unwrap();
    v["keys"][0]["x5c"] = serde_json::json!([]);
    assert!(serde_json::from_value::<FederatedIssuer>(v).is_err());
    let mut v = serde_json::to_value(issuer()).unwrap();
    v["algorithms"] = serde_json::json!(["HS256"]);
    assert!(serde_json::from_value::<FederatedIssuer>(v).is_err());
}

#[test]
fn typ_is_compared_as_a_media_type() {
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        assert!(typ_matches(Some(typ), "at+jwt"), "{typ}");
    }
    for typ in [
        None,
        Some(""),
        Some("jwt"),
        Some("application/"),
        Some("xapplication/at+jwt"),
        Some("at+jwt "),
    ] {
        assert!(!typ_matches(typ, "at+jwt"), "{typ:?}");
    }
}
