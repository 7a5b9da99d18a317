//! A real OpenID Provider for the federation tests: `oidc-provider` (npm), run by
//! tests/idp/provider.mjs on loopback. Tokens come from its token endpoint
//! (client_credentials, JWT access tokens), never from a signer of ours.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::http::{request, Answer};
use crate::process::Process;

pub struct Idp {
    process: Process,
    /// `http://127.0.0.1:PORT`: its `iss` and base URL.
    pub issuer: String,
}

/// The resource (and so the `aud` and signing algorithm) of a token the provider issues.
#[derive(Clone, Copy, Debug)]
pub enum Resource {
    Rs256,
    Es256,
    Es384,
    EdDsa,
    /// RS256, an audience no issuer rule accepts.
    Other,
}

impl Resource {
    pub fn audience(self) -> &'static str {
        match self {
            Resource::Rs256 => "http://api.test/rs256",
            Resource::Es256 => "http://api.test/es256",
            Resource::Es384 => "http://api.test/es384",
            Resource::EdDsa => "http://api.test/eddsa",
            Resource::Other => "http://api.test/other",
        }
    }
}

impl Idp {
    pub fn start() -> Idp {
        let dir = crate::workspace_root().join("tests/idp");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed in tests/idp (run scripts/setup.sh)"
        );
        let mut cmd = Command::new("node");
        cmd.arg("provider.mjs")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start node tests/idp/provider.mjs");
        let stdout = child.stdout.take().expect("provider stdout");
        let process = Process::from_child(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("provider's first line");
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("provider did not start ({e}): {line:?}"));
        Idp {
            process,
            issuer: ready["issuer"].as_str().expect("issuer").to_string(),
        }
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// The token endpoint's whole answer to a client_credentials request.
    pub fn token_answer(&self, resource: Resource, scope: &str) -> Answer {
        let body = format!(
            "grant_type=client_credentials&client_id=mesh&client_secret=mesh-secret&resource={}&scope={}",
            resource.audience(),
            scope
        );
        request(
            "POST",
            &format!("{}/token", self.issuer),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(&body),
        )
    }

    /// A JWT access token for `resource` with `scope`.
    pub fn token(&self, resource: Resource, scope: &str) -> String {
        let a = self.token_answer(resource, scope);
        assert_eq!(a.status, 200, "token endpoint: {}", a.body);
        a.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// New signing keys for every algorithm (the old ones stay published); their kids.
    pub fn rotate(&self) -> Vec<String> {
        let a = request(
            "POST",
            &format!("{}/_test/rotate", self.issuer),
            &[],
            Some(""),
        );
        assert_eq!(a.status, 200, "{}", a.body);
        serde_json::from_value(a.json()["kids"].clone()).expect("kids")
    }

    /// What its JWKS endpoint serves: "normal", "empty" (`{"keys": []}`) or "garbage".
    pub fn serve_jwks(&self, mode: &str) {
        let url = format!("{}/_test/jwks?mode={mode}", self.issuer);
        assert_eq!(request("POST", &url, &[], Some("")).status, 200);
    }

    /// How many times its JWKS has been fetched.
    pub fn jwks_fetches(&self) -> u64 {
        let a = request("GET", &format!("{}/_test/stats", self.issuer), &[], None);
        a.json()["jwks_fetches"].as_u64().expect("jwks_fetches")
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// The JOSE header of a compact JWS, decoded (for its `kid` and `alg`).
pub fn jose_header(token: &str) -> serde_json::Value {
    use base64::Engine;
    let head = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .expect("base64url header");
    serde_json::from_slice(&bytes).expect("JSON header")
}
