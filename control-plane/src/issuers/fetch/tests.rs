use super::*;

fn fetcher_with(issuer: &TrustedIssuer, kids: &[&str], now: i64) -> Fetcher {
    let f = Fetcher::new(&FederationConfig::default());
    let mut e = Entry::new(issuer.clone(), now);
    e.keys = Arc::new(
        kids.iter()
            .map(|kid| FederatedKey {
                kid: (*kid).to_string(),
                algorithms: vec![meshauth_wire::federation::Alg::RS256],
                material: meshauth_wire::federation::KeyMaterial::Okp {
                    crv: "Ed25519".into(),
                    x: String::new(),
                },
            })
            .collect(),
    );
    // Fetched just now: by its cache lifetime, not due for an hour.
    e.next_at = now + 3_600;
    f.lock().insert(issuer.name().to_string(), e);
    f
}

/// Reports name an issuer by its `iss`: one not trusted is ignored, a kid held
/// fetches nothing, an unknown one makes the entry due at once whatever its cache
/// lifetime, and the next ones within the interval wait.
#[test]
fn unknown_kid_reports_make_an_issuer_due_through_the_gate() {
    let issuer = TrustedIssuer::new(
        crate::issuers::tests::spec(),
        &UrlPolicy { allow_http: false },
        None,
    )
    .unwrap();
    let iss = issuer.issuer().to_string();
    let f = fetcher_with(&issuer, &["k1"], 100);
    let due = |now| f.lock().get(issuer.name()).unwrap().due(now);
    assert!(!due(100));
    assert_eq!(
        f.unknown_kid("https://evil.example", "k2", 100),
        UnknownKidOutcome::Ignored
    );
    assert_eq!(
        f.unknown_kid(&format!("{iss}/"), "k2", 100),
        UnknownKidOutcome::Ignored,
        "the exact iss only"
    );
    assert_eq!(f.unknown_kid(&iss, "k1", 100), UnknownKidOutcome::Held);
    assert!(!due(100), "nothing above makes it due");
    assert_eq!(f.unknown_kid(&iss, "k2", 100), UnknownKidOutcome::Triggered);
    assert!(due(100));
    f.lock()
        .get_mut(issuer.name())
        .unwrap()
        .refetch
        .started(100);
    for kid in ["k3", "k4", "k5"] {
        assert_eq!(f.unknown_kid(&iss, kid, 101), UnknownKidOutcome::Suppressed);
    }
    assert!(!due(104));
    assert!(due(105), "deferred to the end of the interval");
}

/// An open circuit keeps its pace: a report does not add a fetch while it is open
/// or half-open; the breaker's own probe answers it.
#[test]
fn an_open_circuit_still_limits_report_triggered_fetches() {
    let issuer = TrustedIssuer::new(
        crate::issuers::tests::spec(),
        &UrlPolicy { allow_http: false },
        None,
    )
    .unwrap();
    let f = fetcher_with(&issuer, &[], 100);
    {
        let mut entries = f.lock();
        let e = entries.get_mut(issuer.name()).unwrap();
        for _ in 0..super::super::breaker::FAILURE_THRESHOLD {
            e.next_at = e.breaker.on_failure(100, 0.0);
        }
        assert_eq!(e.breaker.state(), CircuitState::Open);
    }
    assert_eq!(
        f.unknown_kid(issuer.issuer(), "k2", 100),
        UnknownKidOutcome::Triggered
    );
    let entries = f.lock();
    let e = entries.get(issuer.name()).unwrap();
    let retry = e.breaker.retry_at().unwrap();
    assert!(retry > 100);
    assert!(!e.due(retry - 1), "not before the breaker allows");
    assert!(e.due(retry));
}

#[test]
fn provider_text_in_errors_is_bounded() {
    assert_eq!(bounded("short".into()), "short");
    let long = bounded("é".repeat(10_000));
    assert_eq!(long.chars().count(), MAX_ERROR_CHARS + 1);
    assert!(long.ends_with('…'));
}
