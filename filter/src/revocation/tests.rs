//! Rules, scoped rules, `ext` and the Bloom filter of revoked ids.

use super::*;

fn claims(json: &str) -> Claims {
    Claims::parse(json.as_bytes()).unwrap()
}

fn state(jtis: &[&str], rules: Vec<RevocationRule>) -> Revocations {
    let mut b = Bloom::with_capacity(16, 0.001, 5);
    for j in jtis {
        b.insert(j);
    }
    Revocations::new(b, rules)
}

#[test]
fn rules_revoke_tokens_issued_before_not_before() {
    let r = state(
        &[],
        vec![RevocationRule {
            claim: RuleClaim::Sub,
            value: "alice".into(),
            not_before: 100,
            issuer: None,
        }],
    );
    assert_eq!(
        r.check(
            &claims(r#"{"exp":999,"jti":"a","sub":"alice","iat":99}"#),
            Verifier::Own,
            0
        ),
        Check::Revoked
    );
    assert_eq!(
        r.check(
            &claims(r#"{"exp":999,"jti":"a","sub":"alice","iat":100}"#),
            Verifier::Own,
            0
        ),
        Check::Clear
    );
    assert_eq!(
        r.check(
            &claims(r#"{"exp":999,"jti":"a","sub":"bob","iat":1}"#),
            Verifier::Own,
            0
        ),
        Check::Clear
    );
    // No iat: treated as issued before any rule.
    assert_eq!(
        r.check(
            &claims(r#"{"exp":999,"jti":"a","sub":"alice"}"#),
            Verifier::Own,
            0
        ),
        Check::Revoked
    );
    let r = state(
        &[],
        vec![RevocationRule {
            claim: RuleClaim::Sid,
            value: "s1".into(),
            not_before: 100,
            issuer: None,
        }],
    );
    assert_eq!(
        r.check(
            &claims(r#"{"exp":999,"jti":"a","sid":"s1","iat":5}"#),
            Verifier::Own,
            0
        ),
        Check::Revoked
    );
    let r = state(
        &[],
        vec![RevocationRule {
            claim: RuleClaim::ClientId,
            value: "c".into(),
            not_before: 100,
            issuer: None,
        }],
    );
    assert_eq!(
        r.check(
            &claims(r#"{"exp":999,"jti":"a","client_id":"c","iat":5}"#),
            Verifier::Own,
            0
        ),
        Check::Revoked
    );
}

/// A federated token of an issuer naming its client in `client_id`.
const FED: Verifier<'static> = Verifier::Federated {
    client_claim: "client_id",
};

const IDP: &str = "https://idp.example/";
const OTHER: &str = "https://other.example/";

fn rule(claim: RuleClaim, issuer: Option<&str>, value: &str) -> RevocationRule {
    RevocationRule {
        claim,
        value: value.into(),
        not_before: 100,
        issuer: issuer.map(str::to_owned),
    }
}

fn token(iss: &str, extra: &str) -> Claims {
    claims(&format!(
        r#"{{"exp":999,"jti":"j","iat":50,"iss":"{iss}","sub":"mesh"{extra}}}"#
    ))
}

/// One `sub` string, three issuers: a rule revokes it for its own issuer only.
#[test]
fn a_sub_from_one_issuer_never_revokes_anothers() {
    let own = token("https://cp.example", "");
    let idp = token(IDP, "");
    let other = token(OTHER, "");
    // An unscoped rule: the control plane's own tokens only, never a federated one.
    let r = state(&[], vec![rule(RuleClaim::Sub, None, "mesh")]);
    assert_eq!(r.check(&own, Verifier::Own, 0), Check::Revoked);
    assert_eq!(r.check(&idp, FED, 0), Check::Clear);
    assert_eq!(r.check(&other, FED, 0), Check::Clear);
    // Scoped to one issuer: that issuer's tokens only.
    let r = state(&[], vec![rule(RuleClaim::Sub, Some(IDP), "mesh")]);
    assert_eq!(r.check(&idp, FED, 0), Check::Revoked);
    assert_eq!(r.check(&own, Verifier::Own, 0), Check::Clear);
    assert_eq!(r.check(&other, FED, 0), Check::Clear);
    // An own token that merely claims the issuer's `iss` is not that issuer's: the
    // scope is what verified it, not what it says.
    assert_eq!(r.check(&token(IDP, ""), Verifier::Own, 0), Check::Clear);
    // Session and client rules are scoped the same way, and a delta adds them so.
    let mut r = state(&[], vec![]);
    r.add(
        vec![],
        vec![
            rule(RuleClaim::Sid, Some(IDP), "s1"),
            rule(RuleClaim::ClientId, Some(OTHER), "c1"),
        ],
    );
    assert_eq!(
        r.check(&token(IDP, r#","sid":"s1""#), FED, 0),
        Check::Revoked
    );
    assert_eq!(
        r.check(&token(OTHER, r#","sid":"s1""#), FED, 0),
        Check::Clear
    );
    assert_eq!(
        r.check(
            &token("https://cp.example", r#","sid":"s1""#),
            Verifier::Own,
            0
        ),
        Check::Clear
    );
    assert_eq!(
        r.check(&token(OTHER, r#","client_id":"c1""#), FED, 0),
        Check::Revoked
    );
    assert_eq!(
        r.check(&token(IDP, r#","client_id":"c1""#), FED, 0),
        Check::Clear
    );
}

/// A token minted by exchanging `IDP`'s token for subject `ext-sub` carries
/// `ext`: revoking that external subject revokes it; nothing else does.
#[test]
fn revoking_an_external_subject_revokes_the_tokens_exchanged_for_it() {
    let exchanged = |iss: &str, sub: &str| {
        token(
            "https://cp.example",
            &format!(r#","ext":{{"iss":"{iss}","sub":"{sub}"}}"#),
        )
    };
    let r = state(&[], vec![rule(RuleClaim::Sub, Some(IDP), "ext-sub")]);
    assert_eq!(
        r.check(&exchanged(IDP, "ext-sub"), Verifier::Own, 0),
        Check::Revoked
    );
    assert_eq!(
        r.check(&exchanged(OTHER, "ext-sub"), Verifier::Own, 0),
        Check::Clear
    );
    assert_eq!(
        r.check(&exchanged(IDP, "someone"), Verifier::Own, 0),
        Check::Clear
    );
    // Issued after the rule: not covered.
    let later = claims(&format!(
        r#"{{"exp":999,"jti":"j","iat":100,"sub":"mesh","ext":{{"iss":"{IDP}","sub":"ext-sub"}}}}"#
    ));
    assert_eq!(r.check(&later, Verifier::Own, 0), Check::Clear);
    // An external issuer's own token with an `ext` claim: not ours, not honoured.
    let federated = token(
        OTHER,
        &format!(r#","ext":{{"iss":"{IDP}","sub":"ext-sub"}}"#),
    );
    assert_eq!(r.check(&federated, FED, 0), Check::Clear);
    // A session rule on the subject's name is not on its session; an unscoped rule
    // reaches no `ext`.
    let r = state(
        &[],
        vec![
            rule(RuleClaim::Sid, Some(IDP), "ext-sub"),
            rule(RuleClaim::Sub, None, "ext-sub"),
        ],
    );
    assert_eq!(
        r.check(&exchanged(IDP, "ext-sub"), Verifier::Own, 0),
        Check::Clear
    );
    // A malformed `ext` matches nothing and breaks nothing.
    let r = state(&[], vec![rule(RuleClaim::Sub, Some(IDP), "ext-sub")]);
    for ext in [r#""x""#, r#"{"iss":1,"sub":"ext-sub"}"#, r#"{"iss":"x"}"#] {
        let c = token("https://cp.example", &format!(r#","ext":{ext}"#));
        assert_eq!(r.check(&c, Verifier::Own, 0), Check::Clear, "{ext}");
    }
}

#[test]
fn bloom_hits_need_confirmation_and_answers_are_cached() {
    let mut r = state(&["j1"], vec![]);
    let c = claims(r#"{"exp":999,"jti":"j1"}"#);
    assert_eq!(
        r.check(&c, Verifier::Own, 0),
        Check::Unconfirmed("j1".into())
    );
    r.confirm("j1", true, 999);
    assert_eq!(r.check(&c, Verifier::Own, 0), Check::Revoked);
    let mut r = state(&["j1"], vec![]);
    r.confirm("j1", false, 50);
    assert_eq!(
        r.check(&c, Verifier::Own, 10),
        Check::Clear,
        "a false positive is cleared"
    );
    assert_eq!(
        r.check(&c, Verifier::Own, 60),
        Check::Unconfirmed("j1".into()),
        "until the answer expires"
    );
    assert_eq!(
        r.check(&claims(r#"{"exp":999,"jti":"other"}"#), Verifier::Own, 0),
        Check::Clear
    );
}

#[test]
fn a_new_filter_drops_old_answers() {
    let mut r = state(&["j1"], vec![]);
    r.confirm("j1", false, 999);
    r.replace(state(&["j1", "j2"], vec![]));
    assert_eq!(
        r.check(&claims(r#"{"exp":999,"jti":"j1"}"#), Verifier::Own, 0),
        Check::Unconfirmed("j1".into())
    );
}

/// A client rule scoped to a provider matches the claim that provider names its
/// client in (`azp`, `cid`): before, it read `client_id` for every issuer, and so
/// revoked nothing at Auth0, Keycloak, Google, Entra or Okta.
#[test]
fn a_scoped_client_rule_reads_the_issuers_client_claim() {
    let r = state(&[], vec![rule(RuleClaim::ClientId, Some(IDP), "app")]);
    let azp = Verifier::Federated {
        client_claim: "azp",
    };
    let by_azp = token(IDP, r#","azp":"app""#);
    assert_eq!(r.check(&by_azp, azp, 0), Check::Revoked);
    // The same token where the issuer names its client in `client_id`: no client.
    assert_eq!(r.check(&by_azp, FED, 0), Check::Clear);
    // A `client_id` claim is not the client of an `azp` issuer's token.
    let by_client_id = token(IDP, r#","client_id":"app""#);
    assert_eq!(r.check(&by_client_id, azp, 0), Check::Clear);
    assert_eq!(r.check(&by_client_id, FED, 0), Check::Revoked);
    // Another issuer's `azp`, a later token, a non-string: untouched.
    assert_eq!(
        r.check(&token(OTHER, r#","azp":"app""#), azp, 0),
        Check::Clear
    );
    let later = claims(&format!(
        r#"{{"exp":999,"jti":"j","iat":100,"iss":"{IDP}","azp":"app"}}"#
    ));
    assert_eq!(r.check(&later, azp, 0), Check::Clear);
    assert_eq!(
        r.check(&token(IDP, r#","azp":["app"]"#), azp, 0),
        Check::Clear
    );
    // Our own tokens keep `client_id`, unscoped.
    let r = state(&[], vec![rule(RuleClaim::ClientId, None, "app")]);
    let own = token("https://cp.example", r#","client_id":"app","azp":"x""#);
    assert_eq!(r.check(&own, Verifier::Own, 0), Check::Revoked);
}

/// A token exchanged for a provider's token carries that token's session, client and
/// id in `ext`: session and client rules scoped to the provider, and a revocation of
/// that id, made after the exchange, revoke it at the edge (before, only a `sub` rule
/// did).
#[test]
fn scoped_session_client_and_id_revocations_reach_exchanged_tokens() {
    let exchanged = token(
        "https://cp.example",
        &format!(
            r#","ext":{{"iss":"{IDP}","sub":"alice","sid":"s1","client":"app","jti":"ext-j"}}"#
        ),
    );
    for (claim, value) in [(RuleClaim::Sid, "s1"), (RuleClaim::ClientId, "app")] {
        let r = state(&[], vec![rule(claim, Some(IDP), value)]);
        assert_eq!(
            r.check(&exchanged, Verifier::Own, 0),
            Check::Revoked,
            "{claim:?}"
        );
        // Scoped to another issuer, or unscoped: not this token's.
        let r = state(
            &[],
            vec![rule(claim, Some(OTHER), value), rule(claim, None, value)],
        );
        assert_eq!(
            r.check(&exchanged, Verifier::Own, 0),
            Check::Clear,
            "{claim:?}"
        );
    }
    // The subject token's id, revoked: through a delta (exact) or the Bloom filter
    // (asked about, then remembered).
    let mut r = state(&[], vec![]);
    r.add(vec!["ext-j".into()], vec![]);
    assert_eq!(r.check(&exchanged, Verifier::Own, 0), Check::Revoked);
    let mut r = state(&["ext-j"], vec![]);
    assert_eq!(
        r.check(&exchanged, Verifier::Own, 0),
        Check::Unconfirmed("ext-j".into())
    );
    r.confirm("ext-j", true, 999);
    assert_eq!(r.check(&exchanged, Verifier::Own, 0), Check::Revoked);
    // A known revocation of one id is never hidden behind a question about the other.
    let mut r = state(&["j"], vec![]);
    r.add(vec!["ext-j".into()], vec![]);
    assert_eq!(r.check(&exchanged, Verifier::Own, 0), Check::Revoked);
    // A provider's own token with such an `ext`: not ours, not honoured.
    let r = state(&["ext-j"], vec![rule(RuleClaim::Sid, Some(IDP), "s1")]);
    let federated = token(
        OTHER,
        &format!(r#","ext":{{"iss":"{IDP}","sub":"alice","sid":"s1","jti":"ext-j"}}"#),
    );
    assert_eq!(r.check(&federated, FED, 0), Check::Clear);
    // An `ext` of before (no sid, client or id) still reads.
    let old = token(
        "https://cp.example",
        &format!(r#","ext":{{"iss":"{IDP}","sub":"alice"}}"#),
    );
    assert_eq!(r.check(&old, Verifier::Own, 0), Check::Clear);
}
