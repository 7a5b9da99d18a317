//! Shared fixtures for the fuzz targets: one fixed signing key (the targets sign what
//! they build, so mutations reach the parsers behind signature checks) and an engine
//! configured the way the end-to-end tests configure the filter.

use ed25519_dalek::{Signer, SigningKey};
use meshauth_filter::config::Config;
use meshauth_filter::engine::Engine;
use meshauth_wire::{b64, Jwk};

pub const NOW: i64 = 1_800_000_000;

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

pub fn kid() -> String {
    Jwk::from_ed25519(&key().verifying_key().to_bytes()).thumbprint()
}

pub fn public_b64() -> String {
    b64::encode(key().verifying_key().to_bytes())
}

/// `header.claims.signature`, with `KID` in the header replaced by the key's kid, so
/// hand-written seeds name the right key.
pub fn sign_token(header: &[u8], claims: &[u8]) -> String {
    let header = String::from_utf8_lossy(header).replace("KID", &kid());
    let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(claims));
    let sig = key().sign(input.as_bytes());
    format!("{input}.{}", b64::encode(sig.to_bytes()))
}

/// The envelope a control plane would send for `payload` (any bytes), signed.
pub fn sign_envelope(payload: &[u8]) -> Vec<u8> {
    let payload = b64::encode(payload);
    let sig = key().sign(payload.as_bytes());
    serde_json::json!({"payload": payload, "signature": b64::encode(sig.to_bytes())})
        .to_string()
        .into_bytes()
}

/// A fresh engine per input (so a crash reproduces from its input alone), over one
/// configuration built once: preparing a key's tables costs milliseconds.
pub fn engine() -> Engine {
    thread_local! {
        static CONFIG: Config = config();
    }
    CONFIG.with(|c| Engine::new(c.clone()))
}

fn config() -> Config {
    let config = serde_json::json!({
        "issuer": "https://issuer",
        "audiences": ["api"],
        "bootstrap_jwks": {"keys": [Jwk::from_ed25519(&key().verifying_key().to_bytes())]},
        "forward_claims": [{"claim": "sub", "header": "x-sub"}, {"claim": "scope", "header": "x-scope"}],
        "routes": [
            {"path_prefix": "/public/", "auth": "anonymous"},
            {"path_prefix": "/admin/", "scopes_all": ["admin"]},
            {"path_exact": "/t", "claims": {"tenant": ["a"]}}
        ],
        "sync": {"cluster": "cp", "distribution_key": public_b64(), "before_first_snapshot": "bootstrap"},
        "rate_limits": {"policies": [
            {"name": "u", "key": ["claim:sub", "header:x-k"], "rate": 5, "burst": 2,
             "overrides": {"alice|": {"rate": 9, "burst": 9}}}
        ]}
    });
    match Config::from_json(config.to_string().as_bytes()) {
        Ok(c) => c,
        Err(e) => panic!("the fixture's configuration is invalid: {e}"),
    }
}

/// Splits `data` at the first NUL: (before, after).
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Rate-limit slots in a map, as shared data keeps them (a CAS token per write).
#[derive(Default)]
pub struct MapSlots(
    std::cell::RefCell<std::collections::HashMap<u32, (meshauth_filter::limits::Slot, u32)>>,
);

impl meshauth_filter::limits::Slots for MapSlots {
    fn read(&self, index: u32) -> (Option<meshauth_filter::limits::Slot>, Option<u32>) {
        match self.0.borrow().get(&index) {
            Some((s, c)) => (Some(*s), Some(*c)),
            None => (None, None),
        }
    }

    fn write(
        &self,
        index: u32,
        slot: meshauth_filter::limits::Slot,
        cas: Option<u32>,
    ) -> Result<(), meshauth_filter::limits::Conflict> {
        let mut map = self.0.borrow_mut();
        let current = map.get(&index).map(|(_, c)| *c);
        if cas.is_some() && current.is_some() && cas != current {
            return Err(meshauth_filter::limits::Conflict);
        }
        map.insert(index, (slot, current.unwrap_or(0) + 1));
        Ok(())
    }
}

/// Request facts from a fixed header list.
pub struct Facts<'a>(pub &'a str);

impl meshauth_filter::limits::Facts for Facts<'_> {
    fn header(&self, name: &str) -> Option<String> {
        (name == "x-k").then(|| self.0.to_string())
    }
    fn client_address(&self) -> Option<String> {
        Some("10.0.0.1:5555".into())
    }
}
