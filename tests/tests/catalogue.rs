#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The attack catalogue: malformed and hostile inputs for the edge, the OAuth endpoints,
//! the admin API, the CLI and the sync channel, each with the answer it must get. The
//! lists below are the single source: `edge_catalogue` and `control_plane_catalogue` run
//! every case against one Envoy and one control plane and report every case whose answer
//! differs; `the_docs_list_every_case` checks that docs/security.md's catalogue table is
//! exactly what these lists say (`MESHAUTH_WRITE_CATALOGUE=1` rewrites it), and that every
//! case covered by another test names a test that exists.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use meshauth_tests::control_plane::{ControlPlane, StoreKind};
use meshauth_tests::envoy::{edge_plugin_config, unhardened_template, Envoy, Options};
use meshauth_tests::tokens::{claims, now, DevKey};
use meshauth_wire::b64;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------
// What a case sends and what it gets back
// ---------------------------------------------------------------------------------

/// What came back: a status (0 when the connection or the HTTP/2 stream was closed
/// without an answer), the headers and the body.
#[derive(Debug, Default)]
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The error code of a JSON error body: `{"error": {"code"}}` (filter, admin and
    /// sync API) or `{"error": "..."}` (OAuth, RFC 6749 §5.2).
    fn code(&self) -> Option<String> {
        let v = self.json();
        v["error"]["code"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .map(str::to_owned)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// What the echoing upstream saw (`{"method","path","headers"}`), if it answered.
    fn upstream(&self) -> Option<Value> {
        let v = self.json();
        v.get("headers").is_some().then_some(v)
    }
}

/// A request as bytes on the wire.
enum Req {
    /// HTTP/1.1, byte for byte.
    H1(Vec<u8>),
    /// HTTP/2 with prior knowledge (h2c): one HEADERS block of these fields, in order,
    /// each sent as an HPACK literal (no client library would send most of them).
    H2(Vec<(Vec<u8>, Vec<u8>)>),
}

/// An HTTP/1.1 request: `connection: close` and `content-length` are added.
fn h1(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Req {
    let mut text = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        text.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    Req::H1(text.into_bytes())
}

fn get(path: &str, headers: &[(&str, &str)]) -> Req {
    h1("GET", path, headers, "")
}

/// Bytes as given; they should ask for `connection: close`.
fn raw(bytes: &[u8]) -> Req {
    Req::H1(bytes.to_vec())
}

fn send(port: u16, req: &Req) -> Got {
    match req {
        Req::H1(bytes) => send_h1(port, bytes),
        Req::H2(fields) => send_h2(port, fields),
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{port}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    s
}

fn send_h1(port: u16, bytes: &[u8]) -> Got {
    let mut s = connect(port);
    // A server may answer and close before it has read everything: that is an answer.
    let _ = s.write_all(bytes);
    let head_only = bytes.starts_with(b"HEAD ");
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // Read until the answer is complete rather than until the server closes: Envoy
    // holds a closing connection open for its delayed-close timeout (1 s).
    while !complete(&all, head_only) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    parse_h1(&all)
}

/// Whether `all` holds a whole HTTP/1.1 answer (by its length or its last chunk).
fn complete(all: &[u8], head_only: bool) -> bool {
    let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    if head_only {
        return true;
    }
    let head = String::from_utf8_lossy(&all[..end]).to_ascii_lowercase();
    let body = &all[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(n) => body.len() >= n,
        None => false,
    }
}

fn parse_h1(all: &[u8]) -> Got {
    let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Got::default();
    };
    let head = String::from_utf8_lossy(&all[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = all[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

// ---- a minimal HTTP/2 client (h2c, prior knowledge) ----

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with a 7-bit prefix (RFC 7541 §5.1), high bit clear (no Huffman).
fn hpack_len(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// One request on stream 1: the fields as "literal without indexing, new name" entries.
fn send_h2(port: u16, fields: &[(Vec<u8>, Vec<u8>)]) -> Got {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0);
        hpack_len(&mut block, name.len());
        block.extend_from_slice(name);
        hpack_len(&mut block, value.len());
        block.extend_from_slice(value);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(frame(0x1, 0x1 | 0x4, 1, &block));
    let mut s = connect(port);
    if s.write_all(&out).is_err() {
        return Got::default();
    }
    let mut got = Got::default();
    let read_exact = |s: &mut TcpStream, n: usize| -> Option<Vec<u8>> {
        let mut b = vec![0u8; n];
        s.read_exact(&mut b).ok().map(|_| b)
    };
    loop {
        let Some(h) = read_exact(&mut s, 9) else {
            return got;
        };
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
        let Some(payload) = read_exact(&mut s, len) else {
            return got;
        };
        match (kind, stream) {
            // SETTINGS from the server: acknowledge.
            (0x4, 0) if flags & 0x1 == 0 => {
                let _ = s.write_all(&frame(0x4, 0x1, 0, &[]));
            }
            (0x1, 1) => {
                got.status = h2_status(&payload).unwrap_or(0);
                if flags & 0x1 != 0 {
                    return got;
                }
            }
            (0x0, 1) => {
                got.body.push_str(&String::from_utf8_lossy(&payload));
                if flags & 0x1 != 0 {
                    return got;
                }
            }
            // RST_STREAM of our stream, or GOAWAY: no answer.
            (0x3, 1) | (0x7, _) => return Got::default(),
            _ => {}
        }
    }
}

/// `:status` from the first field of a response HEADERS block: a static-table index
/// (RFC 7541 Appendix A) or a literal whose value may be Huffman-coded digits.
fn h2_status(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    if first & 0x80 != 0 {
        return match first & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let name_index = if first & 0xc0 == 0x40 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if !(8..=14).contains(&name_index) {
        return None;
    }
    let h = *block.get(1)?;
    let value = block.get(2..2 + usize::from(h & 0x7f))?;
    let text = if h & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Huffman-coded ASCII digits (RFC 7541 Appendix B: `0`-`2` take 5 bits, `3`-`9` 6).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let take = |at: usize, n: usize| -> Option<u8> {
        bits.get(at..at + n)
            .map(|s| s.iter().fold(0u8, |a, b| (a << 1) | b))
    };
    let (mut out, mut at) = (String::new(), 0);
    while out.len() < 3 {
        let five = take(at, 5)?;
        if five <= 2 {
            out.push(char::from(b'0' + five));
            at += 5;
        } else {
            let six = take(at, 6)?;
            if !(0x19..=0x1f).contains(&six) {
                return None;
            }
            out.push(char::from(b'3' + six - 0x19));
            at += 6;
        }
    }
    Some(out)
}

/// An h2c request: the usual pseudo-headers for `GET path`, then `extra` as given.
fn h2(pseudo: &[(&str, &str)], extra: &[(&[u8], &[u8])]) -> Req {
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = pseudo
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    fields.extend(extra.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
    Req::H2(fields)
}

/// An h2c GET whose `:path` is raw bytes (not necessarily UTF-8), with an
/// `authorization` value unless empty.
fn h2_raw_path(path: &[u8], authorization: &str) -> Req {
    let mut fields = vec![
        (b":method".to_vec(), b"GET".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":authority".to_vec(), b"127.0.0.1".to_vec()),
        (b":path".to_vec(), path.to_vec()),
    ];
    if !authorization.is_empty() {
        fields.push((b"authorization".to_vec(), authorization.as_bytes().to_vec()));
    }
    Req::H2(fields)
}

const H2_GET_API: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":authority", "127.0.0.1"),
    (":path", "/api/x"),
];

// ---------------------------------------------------------------------------------
// Expected answers
// ---------------------------------------------------------------------------------

/// The answer a case must get: a status (0: the connection or stream is closed without
/// one), an error code when the body carries one, and a description of any further
/// check, which `check` performs.
struct Expect {
    status: u16,
    code: Option<&'static str>,
    also: &'static str,
}

const fn refused(status: u16, code: &'static str) -> Expect {
    Expect {
        status,
        code: Some(code),
        also: "",
    }
}

const fn status(status: u16) -> Expect {
    Expect {
        status,
        code: None,
        also: "",
    }
}

const fn with(status: u16, code: Option<&'static str>, also: &'static str) -> Expect {
    Expect { status, code, also }
}

impl Expect {
    fn text(&self) -> String {
        let mut s = match self.status {
            0 => "closed, no answer".to_string(),
            n => n.to_string(),
        };
        if let Some(c) = self.code {
            s.push_str(&format!(" `{c}`"));
        }
        if !self.also.is_empty() {
            s.push_str(&format!("; {}", self.also));
        }
        s
    }

    fn differs(&self, got: &Got) -> Option<String> {
        let code = got.code();
        if got.status != self.status || (self.code.is_some() && code.as_deref() != self.code) {
            return Some(format!(
                "got {} {:?} (want {}): {}",
                got.status,
                code,
                self.text(),
                got.body.chars().take(300).collect::<String>()
            ));
        }
        None
    }
}

type Check = fn(&Got) -> Result<(), String>;

/// The upstream answered and saw `name` with `want` (None: not at all), and no header
/// spelled like `x_meshauth_*` or under the reserved prefix except the forwarded ones.
fn upstream_saw(got: &Got, name: &str, want: Option<&str>) -> Result<(), String> {
    let seen = got.upstream().ok_or("the upstream did not answer")?;
    let headers = seen["headers"].as_object().cloned().unwrap_or_default();
    let value = headers.get(name).and_then(Value::as_str);
    if value != want {
        return Err(format!("upstream saw {name}: {value:?}, want {want:?}"));
    }
    for k in headers.keys() {
        let folded = k.replace('_', "-");
        if folded.starts_with("x-meshauth-") && !(k == "x-meshauth-sub" || k == "x-meshauth-scope")
        {
            return Err(format!("a lookalike reached the upstream: {k}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The edge: one Envoy (no listener hardening) with the filter and an echoing upstream
// ---------------------------------------------------------------------------------

struct EdgeCase {
    id: &'static str,
    area: &'static str,
    input: &'static str,
    req: fn(&DevKey) -> Req,
    expect: Expect,
    check: Option<Check>,
}

fn edge_config(key: &DevKey) -> Value {
    edge_plugin_config(
        key,
        json!([
            {"name": "public", "path_prefix": "/public/", "auth": "anonymous"},
            {"name": "admin", "path_prefix": "/admin/", "scopes_all": ["admin"]},
            {"name": "stats", "path_exact": "/internal/stats", "scopes_all": ["admin"]},
            {"name": "tenant", "path_prefix": "/tenant-a/", "claims": {"tenant": ["a"]}}
        ]),
    )
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn token(k: &DevKey) -> String {
    k.sign(&claims("alice", json!({})))
}

fn with_token(k: &DevKey, path: &str, claims_: Value) -> Req {
    get(path, &[("authorization", &bearer(&k.sign(&claims_)))])
}

fn header_json(k: &DevKey, extra: Value) -> String {
    let mut h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": k.kid()});
    if let (Some(h), Some(e)) = (h.as_object_mut(), extra.as_object()) {
        for (name, v) in e {
            if v.is_null() {
                h.remove(name);
            } else {
                h.insert(name.clone(), v.clone());
            }
        }
    }
    h.to_string()
}

/// A token signed by the key whose claims carry `claim` written as the raw JSON `text`.
fn raw_claim(k: &DevKey, claim: &str, text: &str) -> Req {
    let mut c = claims("alice", json!({}));
    c[claim] = json!("@RAW@");
    let payload = c.to_string().replace("\"@RAW@\"", text);
    let t = k.sign_raw(&header_json(k, json!({})), &payload);
    get("/api/x", &[("authorization", &bearer(&t))])
}

/// A token signed by the key with this header and the usual claims.
fn raw_header(k: &DevKey, header: &str) -> Req {
    let t = k.sign_raw(header, &claims("alice", json!({})).to_string());
    get("/api/x", &[("authorization", &bearer(&t))])
}

fn authz(value: &str) -> Req {
    get("/api/x", &[("authorization", value)])
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// HMAC-SHA256 (RFC 2104) over sha2, for the HS256-with-the-public-key token.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn ok_alice(got: &Got) -> Result<(), String> {
    upstream_saw(got, "x-meshauth-sub", Some("alice"))
}

fn ok_anonymous(got: &Got) -> Result<(), String> {
    upstream_saw(got, "x-meshauth-sub", None)
}

fn no_upstream(got: &Got) -> Result<(), String> {
    match got.upstream() {
        Some(u) => Err(format!("reached the upstream: {u}")),
        None => Ok(()),
    }
}

static EDGE: &[EdgeCase] = &[
    // ---- headers ----
    EdgeCase { id: "E01", area: "headers", input: "no `Authorization` on a token route",
        req: |_| get("/api/x", &[]), expect: refused(401, "missing_token"), check: Some(no_upstream) },
    EdgeCase { id: "E02", area: "headers", input: "two `Authorization` headers (own token, then a forged one)",
        req: |k| { let forged = DevKey::random().sign(&claims("root", json!({"scope": "admin"})));
            get("/api/x", &[("authorization", &bearer(&token(k))), ("authorization", &bearer(&forged))]) },
        expect: refused(401, "malformed_token"), check: Some(no_upstream) },
    EdgeCase { id: "E03", area: "headers", input: "`Authorization` and `AUTHORIZATION` (a case variant of the same header)",
        req: |k| get("/api/x", &[("authorization", &bearer(&token(k))), ("AUTHORIZATION", &bearer(&token(k)))]),
        expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E04", area: "headers", input: "`authorization_x`/`authorization` underscore twin carrying a forged token next to a valid one",
        req: |k| { let forged = DevKey::random().sign(&claims("root", json!({})));
            get("/api/x", &[("authorization", &bearer(&token(k))), ("x_authorization", &bearer(&forged))]) },
        expect: with(200, None, "upstream sees `x-meshauth-sub: alice`"), check: Some(ok_alice) },
    EdgeCase { id: "E05", area: "headers", input: "`x-meshauth-sub: admin` sent by the client with a valid token",
        req: |k| get("/api/x", &[("authorization", &bearer(&token(k))), ("x-meshauth-sub", "admin")]),
        expect: with(200, None, "upstream sees `alice`, not `admin`"), check: Some(ok_alice) },
    EdgeCase { id: "E06", area: "headers", input: "`x_meshauth_sub`, `x-meshauth_sub`, `X_MESHAUTH_SUB` on an anonymous route",
        req: |_| get("/public/x", &[("x_meshauth_sub", "admin"), ("x-meshauth_sub", "admin"), ("X_MESHAUTH_SUB", "admin")]),
        expect: with(200, None, "none of them reaches the upstream"), check: Some(ok_anonymous) },
    EdgeCase { id: "E07", area: "headers", input: "`X-MeshAuth-Scope: admin` and `x-meshauth-tenant` (reserved prefix) on an anonymous route",
        req: |_| get("/public/x", &[("X-MeshAuth-Scope", "admin"), ("x-meshauth-tenant", "a")]),
        expect: with(200, None, "neither reaches the upstream"), check: Some(|g| { ok_anonymous(g)?;
            upstream_saw(g, "x-meshauth-scope", None) }) },
    EdgeCase { id: "E08", area: "headers", input: "`x_meshauth_sub` underscore spelling with a valid token",
        req: |k| get("/api/x", &[("authorization", &bearer(&token(k))), ("x_meshauth_sub", "root")]),
        expect: with(200, None, "upstream sees only `x-meshauth-sub: alice`"), check: Some(ok_alice) },
    EdgeCase { id: "E09", area: "headers", input: "a header value that is not UTF-8 (`x-junk: \\xff\\xfe`), no token, anonymous route",
        req: |_| raw(b"GET /public/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-junk: \xff\xfe\r\n\r\n"),
        expect: with(200, None, "the worker keeps serving"), check: Some(ok_anonymous) },
    EdgeCase { id: "E10", area: "headers", input: "`x-meshauth-sub: \\xc0\\xaf` (not UTF-8) with a valid token",
        req: |k| { let mut r = format!("GET /api/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {}\r\nx-meshauth-sub: ", token(k)).into_bytes();
            r.extend_from_slice(b"\xc0\xaf\r\n\r\n"); Req::H1(r) },
        expect: with(200, None, "upstream sees `alice`"), check: Some(ok_alice) },
    EdgeCase { id: "E11", area: "headers", input: "`Authorization: Bearer \\xff\\xfe` (not UTF-8)",
        req: |_| raw(b"GET /api/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer \xff\xfe\r\n\r\n"),
        expect: refused(401, "malformed_token"), check: Some(no_upstream) },
    EdgeCase { id: "E12", area: "headers", input: "bare CR inside a header value (`x-a: b\\rx-meshauth-sub: root`), anonymous route",
        req: |_| raw(b"GET /public/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-a: b\rx-meshauth-sub: root\r\n\r\n"),
        expect: with(200, None, "Envoy keeps it inside `x-a`; no `x-meshauth-sub` reaches the upstream"), check: Some(ok_anonymous) },
    EdgeCase { id: "E13", area: "headers", input: "obsolete line folding: `x-a: b` then ` x-meshauth-sub: root` on a continuation line",
        req: |_| raw(b"GET /public/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-a: b\r\n x-meshauth-sub: root\r\n\r\n"),
        expect: with(200, None, "Envoy unfolds it into `x-a`; no `x-meshauth-sub` reaches the upstream"), check: Some(ok_anonymous) },
    EdgeCase { id: "E14", area: "headers", input: "whitespace before the colon: `authorization : Bearer <valid>`",
        req: |k| Req::H1(format!("GET /api/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization : Bearer {}\r\n\r\n", token(k)).into_bytes()),
        expect: with(400, None, "Envoy's codec refuses it"), check: Some(no_upstream) },
    EdgeCase { id: "E15", area: "headers", input: "`Content-Length` and `Transfer-Encoding: chunked` together (request smuggling)",
        req: |_| raw(b"POST /public/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/users HTTP/1.1\r\nhost: x\r\n\r\n"),
        expect: with(400, None, "Envoy refuses it; the smuggled request never runs"), check: Some(no_upstream) },
    EdgeCase { id: "E16", area: "headers", input: "a 100 KiB header (over `max_request_headers_kb: 96`)",
        req: |_| get("/public/x", &[("x-big", &"a".repeat(100 * 1024))]),
        expect: with(431, None, "Envoy's answer"), check: Some(no_upstream) },
    EdgeCase { id: "E17", area: "headers", input: "150 `x-meshauth-sub` headers (over Envoy's 100-header limit)",
        req: |_| { let h: Vec<(&str, &str)> = (0..150).map(|_| ("x-meshauth-sub", "root")).collect(); get("/public/x", &h) },
        expect: with(431, None, "Envoy's answer"), check: Some(no_upstream) },
    EdgeCase { id: "E18", area: "headers", input: "90 repeated `x-meshauth-sub: root` headers on an anonymous route",
        req: |_| { let h: Vec<(&str, &str)> = (0..90).map(|_| ("x-meshauth-sub", "root")).collect(); get("/public/x", &h) },
        expect: with(200, None, "none reaches the upstream"), check: Some(ok_anonymous) },
    // ---- tokens: shape ----
    EdgeCase { id: "E19", area: "tokens", input: "`Authorization: Bearer` with no token", req: |_| authz("Bearer"),
        expect: refused(401, "missing_token"), check: None },
    EdgeCase { id: "E20", area: "tokens", input: "`Authorization: Basic Zm9vOmJhcg==` (another scheme)", req: |_| authz("Basic Zm9vOmJhcg=="),
        expect: refused(401, "missing_token"), check: None },
    EdgeCase { id: "E21", area: "tokens", input: "`bearer <valid>` (scheme in lower case, RFC 9110 §11.1)",
        req: |k| authz(&format!("bearer {}", token(k))), expect: with(200, None, "upstream sees `alice`"), check: Some(ok_alice) },
    EdgeCase { id: "E22", area: "tokens", input: "`Bearer  <valid>` (two spaces, RFC 6750 `1*SP`) and a trailing tab (OWS)",
        req: |k| authz(&format!("Bearer  {}\t", token(k))), expect: with(200, None, "accepted"), check: Some(ok_alice) },
    EdgeCase { id: "E23", area: "tokens", input: "two segments (`header.payload`)",
        req: |k| { let t = token(k); authz(&bearer(t.rsplit_once('.').unwrap().0)) }, expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E24", area: "tokens", input: "four segments (a valid token + `.e30`)",
        req: |k| authz(&bearer(&format!("{}.e30", token(k)))), expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E25", area: "tokens", input: "empty signature segment (`h.p.`)",
        req: |k| { let t = token(k); authz(&bearer(&format!("{}.", t.rsplit_once('.').unwrap().0))) }, expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E26", area: "tokens", input: "signature cut short by 4 characters",
        req: |k| { let t = token(k); authz(&bearer(&t[..t.len() - 4])) }, expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E27", area: "tokens", input: "base64 `+` and `/` instead of base64url in the payload",
        req: |k| { let t = token(k); let mut p: Vec<String> = t.split('.').map(String::from).collect();
            p[1] = p[1].replace('-', "+").replace('_', "/") + "+/"; authz(&bearer(&p.join("."))) }, expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E28", area: "tokens", input: "`=` padding on the header segment",
        req: |k| { let t = token(k); let (h, rest) = t.split_once('.').unwrap(); authz(&bearer(&format!("{h}==.{rest}"))) }, expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E29", area: "tokens", input: "a payload that is not JSON (`bm90IGpzb24`), validly signed",
        req: |k| { let t = k.sign_raw(&header_json(k, json!({})), "not json"); authz(&bearer(&t)) }, expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E30", area: "tokens", input: "claims that are a JSON array, validly signed",
        req: |k| { let t = k.sign_raw(&header_json(k, json!({})), "[1,2]"); authz(&bearer(&t)) }, expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E31", area: "tokens", input: "claims nested 1,500 deep (`\"x\":[[[…]]]`), validly signed",
        req: |k| { let mut c = claims("alice", json!({})); c["x"] = json!("@N@");
            let p = c.to_string().replace("\"@N@\"", &nested(1_500)); authz(&bearer(&k.sign_raw(&header_json(k, json!({})), &p))) },
        expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E32", area: "tokens", input: "header nested 1,500 deep, validly signed",
        req: |k| { let h = header_json(k, json!({"x": "@N@"})).replace("\"@N@\"", &nested(1_500)); raw_header(k, &h) },
        expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E33", area: "tokens", input: "a 40 KiB claim, validly signed (under Envoy's header limit)",
        req: |k| with_token(k, "/api/x", claims("alice", json!({"pad": "p".repeat(40 * 1024)}))),
        expect: refused(401, "token_too_large"), check: None },
    EdgeCase { id: "E34", area: "tokens", input: "a repeated claim (`\"sub\":\"alice\",…,\"sub\":\"root\"`), validly signed",
        req: |k| { let base = claims("alice", json!({})).to_string(); let dup = format!("{},\"sub\":\"root\"}}", base.trim_end_matches('}'));
            authz(&bearer(&k.sign_raw(&header_json(k, json!({})), &dup))) }, expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E35", area: "tokens", input: "a repeated header member (`\"alg\":\"EdDSA\",\"alg\":\"none\"`)",
        req: |k| raw_header(k, &format!("{{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"{}\",\"alg\":\"none\"}}", k.kid())),
        expect: refused(401, "malformed_token"), check: None },
    // ---- tokens: algorithm and key ----
    EdgeCase { id: "E36", area: "tokens", input: "`alg: none` with an empty signature",
        req: |k| { let h = header_json(k, json!({"alg": "none"})); authz(&bearer(&format!("{}.{}.", b64::encode(&h), b64::encode(claims("alice", json!({})).to_string())))) },
        expect: refused(401, "bad_algorithm"), check: None },
    EdgeCase { id: "E37", area: "tokens", input: "`alg: HS256` with an HMAC keyed by the public key (alg confusion)",
        req: |k| { let h = header_json(k, json!({"alg": "HS256"})); let input = format!("{}.{}", b64::encode(&h), b64::encode(claims("root", json!({"scope": "admin"})).to_string()));
            let pk = b64::decode(k.jwk().x.as_str()).unwrap(); let sig = hmac_sha256(&pk, input.as_bytes());
            authz(&bearer(&format!("{input}.{}", b64::encode(sig)))) },
        expect: refused(401, "bad_algorithm"), check: None },
    EdgeCase { id: "E38", area: "tokens", input: "`alg: RS256`, signed with the Ed25519 key",
        req: |k| raw_header(k, &header_json(k, json!({"alg": "RS256"}))), expect: refused(401, "bad_algorithm"), check: None },
    EdgeCase { id: "E39", area: "tokens", input: "`alg: eddsa` (wrong case)",
        req: |k| raw_header(k, &header_json(k, json!({"alg": "eddsa"}))), expect: refused(401, "bad_algorithm"), check: None },
    EdgeCase { id: "E40", area: "tokens", input: "no `kid`", req: |k| raw_header(k, &header_json(k, json!({"kid": null}))),
        expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E41", area: "tokens", input: "unknown `kid`", req: |k| raw_header(k, &header_json(k, json!({"kid": "nope"}))),
        expect: refused(401, "unknown_key"), check: None },
    EdgeCase { id: "E42", area: "tokens", input: "`kid: ../../etc/passwd`", req: |k| raw_header(k, &header_json(k, json!({"kid": "../../etc/passwd"}))),
        expect: refused(401, "unknown_key"), check: None },
    EdgeCase { id: "E43", area: "tokens", input: "`kid` as a number", req: |k| raw_header(k, &header_json(k, json!({"kid": 1}))),
        expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E44", area: "tokens", input: "an attacker's key embedded in the header (`jwk`) under its own `kid`",
        req: |_| { let evil = DevKey::random(); let h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": evil.kid(), "jwk": evil.jwk()}).to_string();
            authz(&bearer(&evil.sign_raw(&h, &claims("root", json!({})).to_string()))) }, expect: refused(401, "unknown_key"), check: None },
    EdgeCase { id: "E45", area: "tokens", input: "right `kid`, signed by another key", req: |k| { let h = header_json(k, json!({}));
            authz(&bearer(&DevKey::random().sign_raw(&h, &claims("root", json!({})).to_string()))) }, expect: refused(401, "bad_signature"), check: None },
    EdgeCase { id: "E46", area: "tokens", input: "`typ: JWT`", req: |k| raw_header(k, &header_json(k, json!({"typ": "JWT"}))),
        expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E47", area: "tokens", input: "no `typ`", req: |k| raw_header(k, &header_json(k, json!({"typ": null}))),
        expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E48", area: "tokens", input: "`typ: AT+JWT` (case variant, RFC 9068 §4 compares without case)",
        req: |k| raw_header(k, &header_json(k, json!({"typ": "AT+JWT"}))), expect: with(200, None, "accepted"), check: Some(ok_alice) },
    EdgeCase { id: "E49", area: "tokens", input: "`crit: [\"exp\"]` (a critical extension the filter does not implement, RFC 7515 §4.1.11)",
        req: |k| raw_header(k, &header_json(k, json!({"crit": ["exp"]}))), expect: refused(401, "malformed_token"), check: None },
    // ---- tokens: numbers ----
    EdgeCase { id: "E50", area: "token numbers", input: "`exp` as a float (`now + 600.5`; RFC 7519 NumericDate allows fractions)",
        req: |k| raw_claim(k, "exp", &format!("{}.5", now() + 600)), expect: with(200, None, "accepted"), check: Some(ok_alice) },
    EdgeCase { id: "E51", area: "token numbers", input: "`exp: 1e308`", req: |k| raw_claim(k, "exp", "1e308"),
        expect: refused(401, "bad_claim"), check: None },
    EdgeCase { id: "E52", area: "token numbers", input: "`exp: -1`", req: |k| raw_claim(k, "exp", "-1"),
        expect: refused(401, "token_expired"), check: None },
    EdgeCase { id: "E53", area: "token numbers", input: "`exp` as a string of a future time", req: |k| raw_claim(k, "exp", &format!("\"{}\"", now() + 600)),
        expect: refused(401, "bad_claim"), check: None },
    EdgeCase { id: "E54", area: "token numbers", input: "`exp: 18446744073709551616000` (past u64)", req: |k| raw_claim(k, "exp", "18446744073709551616000"),
        expect: refused(401, "bad_claim"), check: None },
    EdgeCase { id: "E55", area: "token numbers", input: "`exp: 9223372036854775807` (i64::MAX; overflow with the skew added)", req: |k| raw_claim(k, "exp", "9223372036854775807"),
        expect: with(200, None, "accepted: validly signed, the arithmetic saturates"), check: Some(ok_alice) },
    EdgeCase { id: "E56", area: "token numbers", input: "`exp: null`", req: |k| raw_claim(k, "exp", "null"),
        expect: refused(401, "bad_claim"), check: None },
    EdgeCase { id: "E57", area: "token numbers", input: "`nbf: 1e308`", req: |k| raw_claim(k, "nbf", "1e308"),
        expect: refused(401, "bad_claim"), check: None },
    EdgeCase { id: "E58", area: "token numbers", input: "`nbf: -9223372036854775808` (i64::MIN)", req: |k| raw_claim(k, "nbf", "-9223372036854775808"),
        expect: with(200, None, "accepted: long valid, no underflow"), check: Some(ok_alice) },
    EdgeCase { id: "E59", area: "token numbers", input: "`nbf` as a string", req: |k| raw_claim(k, "nbf", "\"0\""),
        expect: refused(401, "bad_claim"), check: None },
    EdgeCase { id: "E60", area: "token numbers", input: "`iat` as a float", req: |k| raw_claim(k, "iat", &format!("{}.25", now())),
        expect: with(200, None, "accepted"), check: Some(ok_alice) },
    EdgeCase { id: "E61", area: "token numbers", input: "`iat: \"yesterday\"`", req: |k| raw_claim(k, "iat", "\"yesterday\""),
        expect: refused(401, "bad_claim"), check: None },
    // ---- claims: Unicode confusables and injection ----
    EdgeCase { id: "E62", area: "claims", input: "scope `ɑdmin` (Latin alpha) on the `admin` route",
        req: |k| with_token(k, "/admin/users", claims("alice", json!({"scope": "\u{0251}dmin"}))), expect: refused(403, "insufficient_scope"), check: None },
    EdgeCase { id: "E63", area: "claims", input: "scope `аdmin` (Cyrillic a) and `ADMIN`",
        req: |k| with_token(k, "/admin/users", claims("alice", json!({"scope": "\u{0430}dmin ADMIN"}))), expect: refused(403, "insufficient_scope"), check: None },
    EdgeCase { id: "E64", area: "claims", input: "tenant `а` (Cyrillic) where the route needs `a`",
        req: |k| with_token(k, "/tenant-a/x", claims("alice", json!({"tenant": "\u{0430}"}))), expect: refused(403, "claim_mismatch"), check: None },
    EdgeCase { id: "E65", area: "claims", input: "issuer with a Cyrillic `е` (`https://meshauth.tеst`)",
        req: |k| with_token(k, "/api/x", claims("alice", json!({"iss": "https://meshauth.t\u{0435}st"}))), expect: refused(401, "bad_issuer"), check: None },
    EdgeCase { id: "E66", area: "claims", input: "audience `API` (case variant of `api`)",
        req: |k| with_token(k, "/api/x", claims("alice", json!({"aud": ["API"]}))), expect: refused(401, "bad_audience"), check: None },
    EdgeCase { id: "E67", area: "claims", input: "`sub: \"alice\\r\\nx-meshauth-scope: admin\"` (header injection through a forwarded claim)",
        req: |k| with_token(k, "/api/x", claims("alice\r\nx-meshauth-scope: admin", json!({}))),
        expect: refused(401, "bad_claim"), check: Some(no_upstream) },
    EdgeCase { id: "E68", area: "claims", input: "`sub` with a NUL byte", req: |k| with_token(k, "/api/x", claims("alice\u{0}root", json!({}))),
        expect: refused(401, "bad_claim"), check: Some(no_upstream) },
    EdgeCase { id: "E69", area: "claims", input: "`sub` as an object (`{\"id\":\"root\"}`)",
        req: |k| with_token(k, "/api/x", claims("alice", json!({"sub": {"id": "root"}}))), expect: refused(401, "bad_claim"), check: Some(no_upstream) },
    EdgeCase { id: "E70", area: "claims", input: "`scope` as an array `[\"admin\"]` (RFC 9068: a space-separated string)",
        req: |k| with_token(k, "/admin/users", claims("alice", json!({"scope": ["admin"]}))), expect: refused(401, "bad_claim"), check: None },
    // ---- paths ----
    EdgeCase { id: "E71", area: "paths", input: "`/public/..%2Fadmin/users`, no token", req: |_| get("/public/..%2Fadmin/users", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E72", area: "paths", input: "`/public/%2e%2e/admin/users`", req: |_| get("/public/%2e%2e/admin/users", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E73", area: "paths", input: "`/public/..;/admin/users`", req: |_| get("/public/..;/admin/users", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E74", area: "paths", input: "`/public/..%5Cadmin/users` (encoded backslash)", req: |_| get("/public/..%5Cadmin/users", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E75", area: "paths", input: "`/public/..%252fadmin` (double encoding)", req: |_| get("/public/..%252fadmin", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E76", area: "paths", input: "`/public/%C0%AE%C0%AE/admin` (overlong UTF-8 dots)", req: |_| get("/public/%C0%AE%C0%AE/admin", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E77", area: "paths", input: "`/public/%EF%BC%8E%EF%BC%8E/admin` (fullwidth dots)", req: |_| get("/public/%EF%BC%8E%EF%BC%8E/admin", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E78", area: "paths", input: "`/public/%E2%88%95admin` (U+2215 division slash)", req: |_| get("/public/..%E2%88%95admin", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E79", area: "paths", input: "`/public/x%00` (encoded NUL)", req: |_| get("/public/x%00", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E80", area: "paths", input: "`/admin;x/users` (path parameter)", req: |_| get("/admin;x/users", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E81", area: "paths", input: "`//admin/users` (empty segment)", req: |_| get("//admin/users", &[]),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E82", area: "paths", input: "`/ADMIN/users` with a `read` token", req: |k| with_token(k, "/ADMIN/users", claims("bob", json!({"scope": "read"}))),
        expect: refused(403, "insufficient_scope"), check: None },
    EdgeCase { id: "E83", area: "paths", input: "`/internal/stats/` (trailing slash on an exact route) with a `read` token",
        req: |k| with_token(k, "/internal/stats/", claims("bob", json!({"scope": "read"}))), expect: refused(403, "insufficient_scope"), check: None },
    EdgeCase { id: "E84", area: "paths", input: "raw UTF-8 bytes in the path (`/public/\\xc3\\xa9`)",
        req: |_| raw(b"GET /public/\xc3\xa9 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"), expect: with(400, None, "Envoy's codec refuses it"), check: Some(no_upstream) },
    EdgeCase { id: "E85", area: "paths", input: "absolute-form target `GET http://evil/admin/users`, no token",
        req: |_| raw(b"GET http://evil/admin/users HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"), expect: refused(401, "missing_token"), check: Some(no_upstream) },
    EdgeCase { id: "E86", area: "paths", input: "`/public/x?next=/../admin` (a query is not a path)", req: |_| get("/public/x?next=/../admin", &[]),
        expect: with(200, None, "anonymous route"), check: Some(ok_anonymous) },
    EdgeCase { id: "E87", area: "paths", input: "`/public/x#/../../admin/users` (a fragment on the wire)", req: |_| get("/public/x#/../../admin/users", &[]),
        expect: with(400, None, "Envoy refuses it"), check: Some(no_upstream) },
    EdgeCase { id: "E111", area: "paths", input: "`/adm%C4%B1n/users` (dotless `ı`, which Unicode case folding some upstreams use maps to `I`) with a `read` token (folded it is `/admin/users`)",
        req: |k| with_token(k, "/adm%C4%B1n/users", claims("bob", json!({"scope": "read"}))),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E117", area: "paths", input: "`/api/kullan%C4%B1c%C4%B1` (Turkish, dotless `ı`; folded it matches the same route) with a valid token",
        req: |k| get("/api/kullan%C4%B1c%C4%B1", &[("authorization", &bearer(&token(k)))]),
        expect: with(200, None, "reaches the upstream as `alice`"), check: Some(ok_alice) },
    EdgeCase { id: "E118", area: "paths", input: "`/adm%C4%B0n/users` (dotted `İ`, whose simple lower case Java's `equalsIgnoreCase` reads as `i`) with a `read` token",
        req: |k| with_token(k, "/adm%C4%B0n/users", claims("bob", json!({"scope": "read"}))),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E119", area: "paths", input: "`/internal/%EF%AC%86ats` (ligature `ﬆ`, which full case mapping turns into `ST`) with a `read` token (folded it is the exact route `/internal/stats`)",
        req: |k| with_token(k, "/internal/%EF%AC%86ats", claims("bob", json!({"scope": "read"}))),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    // ---- methods ----
    EdgeCase { id: "E88", area: "methods", input: "made-up method `FOO /admin/users`, no token", req: |_| h1("FOO", "/admin/users", &[], ""),
        expect: with(400, None, "Envoy refuses the method"), check: Some(no_upstream) },
    EdgeCase { id: "E89", area: "methods", input: "`OPTIONS /admin/users` (pre-flight), no token", req: |_| h1("OPTIONS", "/admin/users", &[], ""),
        expect: refused(401, "missing_token"), check: Some(no_upstream) },
    EdgeCase { id: "E90", area: "methods", input: "`HEAD /admin/users`, no token", req: |_| h1("HEAD", "/admin/users", &[], ""),
        expect: status(401), check: None },
    EdgeCase { id: "E91", area: "methods", input: "lower-case method `get /admin/users`", req: |_| h1("get", "/admin/users", &[], ""),
        expect: with(400, None, "Envoy refuses the method"), check: Some(no_upstream) },
    EdgeCase { id: "E92", area: "methods", input: "`CONNECT 127.0.0.1:80`, no token", req: |_| raw(b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nhost: 127.0.0.1:80\r\n\r\n"),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    // ---- HTTP/2 (h2c, prior knowledge) ----
    EdgeCase { id: "E93", area: "HTTP/2", input: "h2c `GET /api/x` with no token (the codec works)", req: |_| h2(H2_GET_API, &[]),
        expect: status(401), check: None },
    EdgeCase { id: "E94", area: "HTTP/2", input: "h2c with two `:path` pseudo-headers (`/public/x`, `/admin/users`)",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/public/x"), (":path", "/admin/users")], &[]),
        expect: with(0, None, "Envoy resets the stream"), check: None },
    EdgeCase { id: "E95", area: "HTTP/2", input: "h2c with a pseudo-header after a regular header",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x")], &[(b"x-a", b"1"), (b":path", b"/admin/users")]),
        expect: with(0, None, "Envoy resets the stream"), check: None },
    EdgeCase { id: "E96", area: "HTTP/2", input: "h2c with an upper-case header name (`X-MESHAUTH-SUB`)",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/public/x")], &[(b"X-MESHAUTH-SUB", b"root")]),
        expect: with(0, None, "Envoy resets the stream"), check: None },
    EdgeCase { id: "E97", area: "HTTP/2", input: "h2c with CR LF inside a header value (`x-a: b\\r\\nx-meshauth-sub: root`)",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/public/x")], &[(b"x-a", b"b\r\nx-meshauth-sub: root")]),
        expect: with(0, None, "Envoy resets the stream"), check: None },
    EdgeCase { id: "E98", area: "HTTP/2", input: "h2c with a connection-specific header (`transfer-encoding: chunked`)",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/public/x")], &[(b"transfer-encoding", b"chunked")]),
        expect: with(0, None, "Envoy resets the stream"), check: None },
    EdgeCase { id: "E99", area: "HTTP/2", input: "h2c with two `authorization` fields (own token, forged)",
        req: |k| { let forged = bearer(&DevKey::random().sign(&claims("root", json!({})))); let own = bearer(&token(k));
            h2(H2_GET_API, &[(b"authorization", own.as_bytes()), (b"authorization", forged.as_bytes())]) },
        expect: refused(401, "malformed_token"), check: None },
    EdgeCase { id: "E100", area: "HTTP/2", input: "h2c `:path /public/..%2Fadmin/users`, no token",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/public/..%2Fadmin/users")], &[]),
        expect: refused(400, "bad_path"), check: None },
    EdgeCase { id: "E101", area: "HTTP/2", input: "h2c `x_meshauth_sub: root` on an anonymous route",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/public/x")], &[(b"x_meshauth_sub", b"root")]),
        expect: with(200, None, "it does not reach the upstream"), check: Some(ok_anonymous) },
    EdgeCase { id: "E120", area: "HTTP/2", input: "h2c `:path` with raw UTF-8 `/adm\\xc4\\xb0n/users` (dotted `İ`, not percent-encoded: HTTP/2 lets raw bytes through) with a `read` token",
        req: |k| h2_raw_path(b"/adm\xc4\xb0n/users", &bearer(&k.sign(&claims("bob", json!({"scope": "read"}))))),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E121", area: "HTTP/2", input: "h2c `:path` with raw overlong UTF-8 dots `/public/\\xc0\\xae\\xc0\\xae/admin/users` (lenient decoders read `/public/../admin/users`), no token",
        req: |_| h2_raw_path(b"/public/\xc0\xae\xc0\xae/admin/users", ""),
        expect: refused(400, "bad_path"), check: Some(no_upstream) },
    EdgeCase { id: "E112", area: "HTTP/2", input: "h2c `:path admin/users` (no leading slash), no token",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "admin/users")], &[]),
        expect: with(0, None, "Envoy resets the stream"), check: None },
    EdgeCase { id: "E113", area: "HTTP/2", input: "h2c without `:path`",
        req: |_| h2(&[(":method", "GET"), (":scheme", "http"), (":authority", "x")], &[]),
        expect: with(0, None, "Envoy resets the stream"), check: None },
    EdgeCase { id: "E114", area: "HTTP/2", input: "h2c `:method` `FOO` on `/admin/users`, no token",
        req: |_| h2(&[(":method", "FOO"), (":scheme", "http"), (":authority", "x"), (":path", "/admin/users")], &[]),
        expect: refused(401, "missing_token"), check: None },
    EdgeCase { id: "E115", area: "headers", input: "two `content-length` headers that differ",
        req: |_| raw(b"POST /public/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 1\r\ncontent-length: 30\r\n\r\nx"),
        expect: with(400, None, "Envoy refuses it"), check: Some(no_upstream) },
    EdgeCase { id: "E116", area: "headers", input: "`Transfer-Encoding: chunked, identity` (an encoding list proxies read differently)",
        req: |_| raw(b"POST /public/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        expect: with(501, None, "Envoy refuses it"), check: Some(no_upstream) },
];

#[test]
fn edge_catalogue() {
    let key = DevKey::random();
    let envoy = Envoy::with_echo(
        &edge_config(&key),
        Options {
            template: Some(unhardened_template()),
            ..Default::default()
        },
    );
    let mut wrong = Vec::new();
    for c in EDGE {
        let started = std::time::Instant::now();
        let got = send(envoy.port, &(c.req)(&key));
        if started.elapsed() > Duration::from_secs(1) {
            eprintln!("{} took {:?}", c.id, started.elapsed());
        }
        let mut problem = c.expect.differs(&got);
        if problem.is_none() {
            if let Some(check) = c.check {
                problem = check(&got).err();
            }
        }
        // Every refusal of the filter is uncacheable (HTTP/2 answers are read for their
        // status and body only).
        let h1_answer = !got.headers.is_empty();
        if problem.is_none()
            && h1_answer
            && got.code().is_some()
            && got.header("cache-control").is_none()
        {
            problem = Some("a refusal without cache-control".into());
        }
        if let Some(p) = problem {
            wrong.push(format!("{} {}: {p}", c.id, c.input));
        }
    }
    // Every worker still serves a valid token afterwards (fresh connections spread).
    for _ in 0..8 {
        let a = send(
            envoy.port,
            &get("/api/x", &[("authorization", &bearer(&token(&key)))]),
        );
        if a.status != 200 {
            wrong.push(format!(
                "after the catalogue a valid token got {}",
                a.status
            ));
            break;
        }
    }
    let log = envoy.log();
    if log.contains("panicked") {
        wrong.push(format!("the filter panicked:\n{log}"));
    }
    assert!(
        wrong.is_empty(),
        "{} edge cases differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// The control plane: OAuth endpoints, admin API, sync channel and CLI, one process
// ---------------------------------------------------------------------------------

/// The control plane with two clients, A and B, and an access token of A's.
struct Cp {
    cp: ControlPlane,
    a_id: String,
    a_secret: String,
    b_id: String,
    b_secret: String,
    a_token: String,
}

enum Act {
    Http(Req),
    /// CLI arguments and environment overrides (MESHAUTH_URL and MESHAUTH_ADMIN_TOKEN
    /// point at this control plane unless overridden).
    Cli(Vec<String>, Vec<(&'static str, String)>),
}

type CpCheck = fn(&Cp, &Got) -> Result<(), String>;

struct CpCase {
    id: &'static str,
    area: &'static str,
    input: &'static str,
    act: fn(&Cp) -> Act,
    expect: Expect,
    /// The clients, revocations, limits, keys, audit length and sync version are the
    /// same afterwards.
    unchanged: bool,
    check: Option<CpCheck>,
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("content-type", "application/json");

fn basic_of(credentials: &[u8]) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

fn basic(id: &str, secret: &str) -> String {
    basic_of(format!("{id}:{secret}").as_bytes())
}

impl Cp {
    fn a(&self) -> String {
        basic(&self.a_id, &self.a_secret)
    }
    fn b(&self) -> String {
        basic(&self.b_id, &self.b_secret)
    }
    fn admin(&self) -> String {
        format!("Bearer {}", self.cp.admin_token)
    }
    fn sync(&self) -> String {
        format!("Bearer {}", self.cp.sync_credential)
    }
}

fn form(path: &str, body: &str, auth: Option<&str>) -> Act {
    let mut h = vec![FORM];
    if let Some(a) = auth {
        h.push(("authorization", a));
    }
    Act::Http(h1("POST", path, &h, body))
}

fn admin_req(c: &Cp, method: &str, path: &str, body: &str) -> Act {
    Act::Http(h1(
        method,
        path,
        &[("authorization", &c.admin()), JSON],
        body,
    ))
}

fn sync_get(c: &Cp, query: &str) -> Act {
    Act::Http(get(
        &format!("/sync/v1/snapshot?{query}"),
        &[("authorization", &c.sync())],
    ))
}

fn confirm(c: &Cp, body: &str) -> Act {
    Act::Http(h1(
        "POST",
        "/sync/v1/confirm",
        &[("authorization", &c.sync()), JSON],
        body,
    ))
}

fn cli(args: &[&str]) -> Act {
    Act::Cli(args.iter().map(|s| s.to_string()).collect(), Vec::new())
}

fn cli_env(args: &[&str], env: &[(&'static str, &str)]) -> Act {
    Act::Cli(
        args.iter().map(|s| s.to_string()).collect(),
        env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    )
}

fn policy_with(field: &str, text: &str) -> String {
    let mut p = json!({"key": ["claim:sub"], "rate": 10, "burst": 5, "window_seconds": 1});
    p[field] = json!("@RAW@");
    p.to_string().replace("\"@RAW@\"", text)
}

/// Introspection by B says A's token is still active.
fn a_token_active(c: &Cp, _: &Got) -> Result<(), String> {
    let body = format!("token={}", c.a_token);
    let Act::Http(req) = form("/oauth2/introspect", &body, Some(&c.b())) else {
        unreachable!()
    };
    let got = send(c.cp.port, &req);
    match got.json()["active"].as_bool() {
        Some(true) => Ok(()),
        _ => Err(format!("A's token is no longer active: {}", got.body)),
    }
}

/// A's credentials still work (its secret was not rotated).
fn a_credentials_work(c: &Cp, _: &Got) -> Result<(), String> {
    let Act::Http(req) = form(
        "/oauth2/token",
        "grant_type=client_credentials",
        Some(&c.a()),
    ) else {
        unreachable!()
    };
    let got = send(c.cp.port, &req);
    (got.status == 200)
        .then_some(())
        .ok_or_else(|| format!("A's credentials no longer work: {}", got.body))
}

fn inactive(_: &Cp, got: &Got) -> Result<(), String> {
    (got.json() == json!({"active": false}))
        .then_some(())
        .ok_or_else(|| format!("want {{\"active\": false}}, got {}", got.body))
}

fn cli_said(got: &Got, what: &str) -> Result<(), String> {
    (got.body.contains(what) && !got.body.contains("panicked"))
        .then_some(())
        .ok_or_else(|| format!("stderr does not say {what:?}: {}", got.body))
}

static CP_CASES: &[CpCase] = &[
    // ---- OAuth: /oauth2/token ----
    CpCase { id: "O01", area: "oauth", input: "`grant_type` twice (`client_credentials`, `refresh_token`)",
        act: |c| form("/oauth2/token", "grant_type=client_credentials&grant_type=refresh_token", Some(&c.a())),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O02", area: "oauth", input: "empty `grant_type=`",
        act: |c| form("/oauth2/token", "grant_type=", Some(&c.a())), expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O03", area: "oauth", input: "unknown grant `password`",
        act: |c| form("/oauth2/token", "grant_type=password&username=a&password=b", Some(&c.a())),
        expect: refused(400, "unsupported_grant_type"), unchanged: true, check: None },
    CpCase { id: "O04", area: "oauth", input: "no `grant_type`", act: |c| form("/oauth2/token", "scope=read", Some(&c.a())),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O05", area: "oauth", input: "`grant_type=client_credentials%00` (NUL)",
        act: |c| form("/oauth2/token", "grant_type=client_credentials%00", Some(&c.a())),
        expect: refused(400, "unsupported_grant_type"), unchanged: true, check: None },
    CpCase { id: "O06", area: "oauth", input: "Basic credentials that are not base64 (`!!!`)",
        act: |_| form("/oauth2/token", "grant_type=client_credentials", Some("Basic !!!")),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O07", area: "oauth", input: "Basic credentials without a `:`",
        act: |c| form("/oauth2/token", "grant_type=client_credentials", Some(&basic_of(c.a_id.as_bytes()))),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O08", area: "oauth", input: "Basic credentials that decode to bytes that are not UTF-8",
        act: |_| form("/oauth2/token", "grant_type=client_credentials", Some(&basic_of(b"\xff\xfe:\xc0\xaf"))),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O09", area: "oauth", input: "Basic credentials with a broken percent-encoding (`%zz`)",
        act: |c| form("/oauth2/token", "grant_type=client_credentials", Some(&basic(&c.a_id, "%zz"))),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O10", area: "oauth", input: "Basic credentials with the secret and `&junk` appended",
        act: |c| form("/oauth2/token", "grant_type=client_credentials", Some(&basic(&c.a_id, &format!("{}&junk", c.a_secret)))),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O11", area: "oauth", input: "Basic with an empty secret (`id:`)",
        act: |c| form("/oauth2/token", "grant_type=client_credentials", Some(&basic(&c.a_id, ""))),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O12", area: "oauth", input: "Basic and `client_secret` in the body (two methods)",
        act: |c| form("/oauth2/token", &format!("grant_type=client_credentials&client_secret={}", c.a_secret), Some(&c.a())),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O13", area: "oauth", input: "a 300-byte `client_id` in the body",
        act: |_| form("/oauth2/token", &format!("grant_type=client_credentials&client_id={}&client_secret=x", "c".repeat(300)), None),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O14", area: "oauth", input: "a 300-byte client id in Basic credentials",
        act: |_| form("/oauth2/token", "grant_type=client_credentials", Some(&basic(&"c".repeat(300), "x"))),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O15", area: "oauth", input: "`client_id` without a secret",
        act: |c| form("/oauth2/token", &format!("grant_type=client_credentials&client_id={}", c.a_id), None),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O16", area: "oauth", input: "the admin bearer token instead of client credentials",
        act: |c| form("/oauth2/token", "grant_type=client_credentials", Some(&c.admin())),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O17", area: "oauth", input: "a JSON body (`content-type: application/json`)",
        act: |c| Act::Http(h1("POST", "/oauth2/token", &[JSON, ("authorization", &c.a())], r#"{"grant_type":"client_credentials"}"#)),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O18", area: "oauth", input: "a valid form body sent as `content-type: text/plain` (RFC 6749 §4.4.2 requires form encoding)",
        act: |c| Act::Http(h1("POST", "/oauth2/token", &[("content-type", "text/plain"), ("authorization", &c.a())], "grant_type=client_credentials")),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O19", area: "oauth", input: "33 parameters (over the cap of 32)",
        act: |c| { let body: Vec<String> = (0..33).map(|i| format!("p{i}=x")).collect(); form("/oauth2/token", &body.join("&"), Some(&c.a())) },
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O20", area: "oauth", input: "a 100-byte parameter name",
        act: |c| form("/oauth2/token", &format!("grant_type=client_credentials&{}=x", "n".repeat(100)), Some(&c.a())),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O21", area: "oauth", input: "a form value that is not UTF-8 (`scope=%FF`)",
        act: |c| form("/oauth2/token", "grant_type=client_credentials&scope=%FF", Some(&c.a())),
        expect: refused(400, "invalid_scope"), unchanged: true, check: None },
    CpCase { id: "O22", area: "oauth", input: "a 70 KB body",
        act: |c| form("/oauth2/token", &format!("grant_type=client_credentials&scope={}", "r".repeat(70_000)), Some(&c.a())),
        expect: refused(413, "payload_too_large"), unchanged: true, check: None },
    CpCase { id: "O23", area: "oauth", input: "a scope the client was not granted (`admin`)",
        act: |c| form("/oauth2/token", "grant_type=client_credentials&scope=admin", Some(&c.a())),
        expect: refused(400, "invalid_scope"), unchanged: true, check: None },
    CpCase { id: "O24", area: "oauth", input: "scope `rеad` with a Cyrillic `е`",
        act: |c| form("/oauth2/token", "grant_type=client_credentials&scope=r%D0%B5ad", Some(&c.a())),
        expect: refused(400, "invalid_scope"), unchanged: true, check: None },
    CpCase { id: "O25", area: "oauth", input: "a forged refresh token (`rt1.<sid>.<nonce>.<mac>` shape)",
        act: |c| form("/oauth2/token", "grant_type=refresh_token&refresh_token=rt1.AAAA.BBBB.CCCC", Some(&c.a())),
        expect: refused(400, "invalid_grant"), unchanged: true, check: None },
    CpCase { id: "O26", area: "oauth", input: "an access token as the refresh token",
        act: |c| form("/oauth2/token", &format!("grant_type=refresh_token&refresh_token={}", c.a_token), Some(&c.a())),
        expect: refused(400, "invalid_grant"), unchanged: true, check: None },
    CpCase { id: "O27", area: "oauth", input: "`grant_type=refresh_token` without `refresh_token`",
        act: |c| form("/oauth2/token", "grant_type=refresh_token", Some(&c.a())),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O28", area: "oauth", input: "`GET /oauth2/token`", act: |_| Act::Http(get("/oauth2/token", &[])),
        expect: refused(405, "method_not_allowed"), unchanged: true, check: None },
    // ---- OAuth: /oauth2/introspect and /oauth2/revoke ----
    CpCase { id: "O29", area: "oauth", input: "introspection without client credentials",
        act: |c| form("/oauth2/introspect", &format!("token={}", c.a_token), None),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O30", area: "oauth", input: "introspection with a wrong secret",
        act: |c| form("/oauth2/introspect", &format!("token={}", c.a_token), Some(&basic(&c.a_id, "wrong"))),
        expect: refused(401, "invalid_client"), unchanged: true, check: None },
    CpCase { id: "O31", area: "oauth", input: "introspection without `token`",
        act: |c| form("/oauth2/introspect", "", Some(&c.a())), expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O32", area: "oauth", input: "introspection of A's token with its last signature character changed",
        act: |c| { let mut t = c.a_token.clone(); let last = if t.ends_with('A') { 'B' } else { 'A' }; t.pop(); t.push(last);
            form("/oauth2/introspect", &format!("token={t}"), Some(&c.a())) },
        expect: with(200, None, "`{\"active\": false}`"), unchanged: true, check: Some(inactive) },
    CpCase { id: "O33", area: "oauth", input: "client B revokes client A's access token",
        act: |c| form("/oauth2/revoke", &format!("token={}", c.a_token), Some(&c.b())),
        expect: with(200, None, "A's token stays active (RFC 7009 §2.1)"), unchanged: true, check: Some(a_token_active) },
    CpCase { id: "O34", area: "oauth", input: "revocation without client credentials",
        act: |c| form("/oauth2/revoke", &format!("token={}", c.a_token), None),
        expect: refused(401, "invalid_client"), unchanged: true, check: Some(a_token_active) },
    CpCase { id: "O35", area: "oauth", input: "revocation without `token`",
        act: |c| form("/oauth2/revoke", "token_type_hint=access_token", Some(&c.a())),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "O36", area: "oauth", input: "revocation of `token` twice in one body",
        act: |c| form("/oauth2/revoke", &format!("token=x&token={}", c.a_token), Some(&c.a())),
        expect: refused(400, "invalid_request"), unchanged: true, check: Some(a_token_active) },
    // ---- admin API ----
    CpCase { id: "A01", area: "admin", input: "no bearer token", act: |_| Act::Http(get("/admin/clients", &[])),
        expect: refused(401, "unauthenticated"), unchanged: true, check: None },
    CpCase { id: "A02", area: "admin", input: "a wrong bearer token", act: |_| Act::Http(get("/admin/clients", &[("authorization", "Bearer wrong")])),
        expect: refused(401, "unauthenticated"), unchanged: true, check: None },
    CpCase { id: "A03", area: "admin", input: "the admin token under the Basic scheme",
        act: |c| Act::Http(get("/admin/clients", &[("authorization", &format!("Basic {}", c.cp.admin_token))])),
        expect: refused(401, "unauthenticated"), unchanged: true, check: None },
    CpCase { id: "A04", area: "admin", input: "the sync fleet credential as the admin token",
        act: |c| Act::Http(h1("POST", "/admin/keys/rotate", &[("authorization", &c.sync())], "")),
        expect: refused(401, "unauthenticated"), unchanged: true, check: None },
    CpCase { id: "A05", area: "admin", input: "`POST /admin/clients` with `{not json`", act: |c| admin_req(c, "POST", "/admin/clients", "{not json"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A06", area: "admin", input: "an unknown field (`colour`)", act: |c| admin_req(c, "POST", "/admin/clients", r#"{"name":"x","colour":"red"}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A07", area: "admin", input: "a field of the wrong type (`name: 5`)", act: |c| admin_req(c, "POST", "/admin/clients", r#"{"name":5}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A08", area: "admin", input: "a repeated member (`{\"name\":\"a\",\"name\":\"b\"}`)", act: |c| admin_req(c, "POST", "/admin/clients", r#"{"name":"a","name":"b"}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A09", area: "admin", input: "a 100 KB body", act: |c| admin_req(c, "POST", "/admin/clients", &format!(r#"{{"name":"{}"}}"#, "x".repeat(100_000))),
        expect: refused(413, "payload_too_large"), unchanged: true, check: None },
    CpCase { id: "A10", area: "admin", input: "a body nested 20,000 deep", act: |c| admin_req(c, "POST", "/admin/clients", &nested(20_000)),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A11", area: "admin", input: "a limit policy whose `key` is nested 20,000 deep", act: |c| admin_req(c, "PUT", "/admin/limits/x", &policy_with("key", &nested(20_000))),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A12", area: "admin", input: "a limit policy with `rate: 1e308`", act: |c| admin_req(c, "PUT", "/admin/limits/x", &policy_with("rate", "1e308")),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A13", area: "admin", input: "a limit policy with `burst: -1`", act: |c| admin_req(c, "PUT", "/admin/limits/x", &policy_with("burst", "-1")),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A14", area: "admin", input: "a limit policy with `window_seconds: 18446744073709551616`", act: |c| admin_req(c, "PUT", "/admin/limits/x", &policy_with("window_seconds", "18446744073709551616")),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A15", area: "admin", input: "a limit policy whose `name` differs from the path", act: |c| admin_req(c, "PUT", "/admin/limits/x", &policy_with("name", "\"y\"")),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A16", area: "admin", input: "a limit policy with 1,500 overrides", act: |c| {
            let o: serde_json::Map<String, Value> = (0..1500).map(|i| (format!("u{i}"), json!({"rate": 1, "burst": 1}))).collect();
            admin_req(c, "PUT", "/admin/limits/x", &policy_with("overrides", &Value::Object(o).to_string())) },
        expect: with(201, None, "accepted: an admin may, within the 64 KiB body limit (A09)"), unchanged: false, check: None },
    CpCase { id: "A17", area: "admin", input: "`DELETE /admin/clients/..%2F..%2Fkeys`", act: |c| admin_req(c, "DELETE", "/admin/clients/..%2F..%2Fkeys", ""),
        expect: refused(404, "not_found"), unchanged: true, check: None },
    CpCase { id: "A18", area: "admin", input: "`DELETE /admin/clients/%2e%2e`", act: |c| admin_req(c, "DELETE", "/admin/clients/%2e%2e", ""),
        expect: refused(404, "not_found"), unchanged: true, check: None },
    CpCase { id: "A19", area: "admin", input: "`DELETE /admin/limits/..%2F..%2Fclients%2F<A>` (traversal towards a client)",
        act: |c| admin_req(c, "DELETE", &format!("/admin/limits/..%2F..%2Fclients%2F{}", c.a_id), ""),
        expect: refused(404, "not_found"), unchanged: true, check: None },
    CpCase { id: "A20", area: "admin", input: "`POST /admin/keys/..%2Frotate/revoke`", act: |c| admin_req(c, "POST", "/admin/keys/..%2Frotate/revoke", ""),
        expect: refused(404, "not_found"), unchanged: true, check: None },
    CpCase { id: "A21", area: "admin", input: "an id that is not UTF-8 once decoded (`/admin/clients/%FF`)", act: |c| admin_req(c, "DELETE", "/admin/clients/%FF", ""),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A22", area: "admin", input: "a 1,000-byte id", act: |c| admin_req(c, "DELETE", &format!("/admin/clients/{}", "i".repeat(1000)), ""),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A23", area: "admin", input: "revoking subject `аlice` (Cyrillic a), which never had a token",
        act: |c| admin_req(c, "POST", "/admin/revocations", "{\"kind\":\"sub\",\"value\":\"\u{0430}lice\"}"),
        expect: refused(404, "not_found"), unchanged: true, check: None },
    CpCase { id: "A24", area: "admin", input: "a `jti` revocation with `exp: 1e308`", act: |c| admin_req(c, "POST", "/admin/revocations", r#"{"kind":"jti","value":"j1","exp":1e308}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A25", area: "admin", input: "a `jti` revocation with `exp: \"tomorrow\"`", act: |c| admin_req(c, "POST", "/admin/revocations", r#"{"kind":"jti","value":"j1","exp":"tomorrow"}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A26", area: "admin", input: "a `jti` revocation with `exp: 9223372036854775807`", act: |c| admin_req(c, "POST", "/admin/revocations", r#"{"kind":"jti","value":"j1","exp":9223372036854775807}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A27", area: "admin", input: "a `jti` revocation with `exp: -5`", act: |c| admin_req(c, "POST", "/admin/revocations", r#"{"kind":"jti","value":"j1","exp":-5}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A28", area: "admin", input: "a revocation value with CR LF", act: |c| admin_req(c, "POST", "/admin/revocations", r#"{"kind":"jti","value":"a\r\nb"}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A29", area: "admin", input: "a JSON body sent as `text/plain`",
        act: |c| Act::Http(h1("POST", "/admin/clients", &[("authorization", &c.admin()), ("content-type", "text/plain")], r#"{"name":"x"}"#)),
        expect: refused(415, "unsupported_media_type"), unchanged: true, check: None },
    CpCase { id: "A30", area: "admin", input: "`GET /admin/audit?limit=-1`", act: |c| admin_req(c, "GET", "/admin/audit?limit=-1", ""),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A31", area: "admin", input: "`GET /admin/audit?from=99999999999999999999999`", act: |c| admin_req(c, "GET", "/admin/audit?from=99999999999999999999999", ""),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A32", area: "admin", input: "a token with `ttl: -60`", act: |c| admin_req(c, "POST", "/admin/tokens", r#"{"sub":"a","ttl":-60}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A33", area: "admin", input: "a token with `ttl: 1e308`", act: |c| admin_req(c, "POST", "/admin/tokens", r#"{"sub":"a","ttl":1e308}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A34", area: "admin", input: "a token for `sub: \"\"`", act: |c| admin_req(c, "POST", "/admin/tokens", r#"{"sub":""}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A35", area: "admin", input: "a token for `sub: \"alice\\r\\nx-meshauth-scope: admin\"`", act: |c| admin_req(c, "POST", "/admin/tokens", r#"{"sub":"alice\r\nx-meshauth-scope: admin"}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A36", area: "admin", input: "a client name of 300 characters", act: |c| admin_req(c, "POST", "/admin/clients", &format!(r#"{{"name":"{}"}}"#, "n".repeat(300))),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "A37", area: "admin", input: "`PATCH /admin/clients`", act: |c| admin_req(c, "PATCH", "/admin/clients", "{}"),
        expect: refused(405, "method_not_allowed"), unchanged: true, check: None },
    // ---- sync channel ----
    CpCase { id: "S01", area: "sync", input: "a snapshot poll without a credential", act: |_| Act::Http(get("/sync/v1/snapshot?version=0", &[])),
        expect: refused(401, "unauthenticated"), unchanged: true, check: None },
    CpCase { id: "S02", area: "sync", input: "a snapshot poll with a wrong credential", act: |_| Act::Http(get("/sync/v1/snapshot?version=0", &[("authorization", "Bearer fleet-guess")])),
        expect: refused(401, "unauthenticated"), unchanged: true, check: None },
    CpCase { id: "S03", area: "sync", input: "a snapshot poll with the admin token", act: |c| Act::Http(get("/sync/v1/snapshot?version=0", &[("authorization", &c.admin())])),
        expect: refused(401, "unauthenticated"), unchanged: true, check: None },
    CpCase { id: "S04", area: "sync", input: "a confirm question without a credential",
        act: |_| Act::Http(h1("POST", "/sync/v1/confirm", &[JSON], r#"{"jti":"j","nonce":"0123456789abcdef0123"}"#)),
        expect: refused(401, "unauthenticated"), unchanged: true, check: None },
    CpCase { id: "S05", area: "sync", input: "`version=-1`", act: |c| sync_get(c, "version=-1"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S06", area: "sync", input: "`version=99999999999999999999` (past u64)", act: |c| sync_get(c, "version=99999999999999999999"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S07", area: "sync", input: "`wait_ms=abc`", act: |c| sync_get(c, "version=0&wait_ms=abc"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S08", area: "sync", input: "`wait_ms=-1`", act: |c| sync_get(c, "version=0&wait_ms=-1"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S09", area: "sync", input: "`wait_ms=99999999999` with `version=0` (the wait is capped; nothing to wait for)", act: |c| sync_get(c, "version=0&wait_ms=99999999999"),
        expect: with(200, None, "a signed snapshot at once"), unchanged: true, check: None },
    CpCase { id: "S10", area: "sync", input: "an unknown query parameter", act: |c| sync_get(c, "version=0&admin=1"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S11", area: "sync", input: "`version` twice", act: |c| sync_get(c, "version=0&version=5"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S12", area: "sync", input: "`delta=300` (past u8)", act: |c| sync_get(c, "version=0&delta=300"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S13", area: "sync", input: "a 10 KB filter id", act: |c| sync_get(c, &format!("version=0&filter={}&applied=0", "f".repeat(10_000))),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S14", area: "sync", input: "a filter id with CR LF (`filter=a%0D%0Ab`)", act: |c| sync_get(c, "version=0&filter=a%0D%0Ab&applied=0"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S15", area: "sync", input: "a confirm question that is not JSON", act: |c| confirm(c, "{jti"),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S16", area: "sync", input: "a confirm nonce of 8 characters", act: |c| confirm(c, r#"{"jti":"j","nonce":"01234567"}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S17", area: "sync", input: "a confirm nonce outside base64url (`+/=`)", act: |c| confirm(c, r#"{"jti":"j","nonce":"0123456789abcdef+/=="}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S18", area: "sync", input: "a confirm `jti` of 300 characters", act: |c| confirm(c, &format!(r#"{{"jti":"{}","nonce":"0123456789abcdef0123"}}"#, "j".repeat(300))),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S19", area: "sync", input: "a confirm question with an extra field", act: |c| confirm(c, r#"{"jti":"j","nonce":"0123456789abcdef0123","revoked":false}"#),
        expect: refused(400, "invalid_request"), unchanged: true, check: None },
    CpCase { id: "S20", area: "sync", input: "`GET /sync/v1/confirm`", act: |c| Act::Http(get("/sync/v1/confirm", &[("authorization", &c.sync())])),
        expect: refused(405, "method_not_allowed"), unchanged: true, check: None },
    // ---- CLI ----
    CpCase { id: "C01", area: "cli", input: "`limits delete 'x/../../clients/<A>'` (an id that walks to another resource)",
        act: |c| cli(&["limits", "delete", &format!("x/../../clients/{}", c.a_id)]),
        expect: with(404, None, "exits non-zero; client A is still there"), unchanged: true, check: None },
    CpCase { id: "C02", area: "cli", input: "`keys revoke 'x/../../keys/rotate?'` (an id that turns into another action)",
        act: |_| cli(&["keys", "revoke", "x/../../keys/rotate?"]),
        expect: with(404, None, "exits non-zero; no rotation starts"), unchanged: true, check: None },
    CpCase { id: "C03", area: "cli", input: "`clients rotate-secret '<A>/../<A>'`",
        act: |c| cli(&["clients", "rotate-secret", &format!("{}/../{}", c.a_id, c.a_id)]),
        expect: with(404, None, "exits non-zero; A's secret still works"), unchanged: true, check: Some(a_credentials_work) },
    CpCase { id: "C04", area: "cli", input: "`clients delete '<A>?x'` (a query in an id)",
        act: |c| cli(&["clients", "delete", &format!("{}?x", c.a_id)]),
        expect: with(404, None, "exits non-zero"), unchanged: true, check: None },
    CpCase { id: "C05", area: "cli", input: "`token issue --sub ''`", act: |_| cli(&["token", "issue", "--sub", ""]),
        expect: with(400, None, "exits non-zero"), unchanged: true, check: None },
    CpCase { id: "C06", area: "cli", input: "`token issue --sub a --ttl forever`", act: |_| cli(&["token", "issue", "--sub", "a", "--ttl", "forever"]),
        expect: with(400, None, "exits non-zero"), unchanged: true, check: None },
    CpCase { id: "C07", area: "cli", input: "`limits set x --rate 1 --burst 1 --override a=1/2/3/4`",
        act: |_| cli(&["limits", "set", "x", "--rate", "1", "--burst", "1", "--override", "a=1/2/3/4"]),
        expect: with(1, None, "exits 1 before calling the API"), unchanged: true, check: Some(|_, g| cli_said(g, "expected VALUE=RATE/BURST")) },
    CpCase { id: "C08", area: "cli", input: "`limits set x --file /nonexistent`", act: |_| cli(&["limits", "set", "x", "--file", "/nonexistent/policy.json"]),
        expect: with(1, None, "exits 1"), unchanged: true, check: Some(|_, g| cli_said(g, "/nonexistent/policy.json")) },
    CpCase { id: "C09", area: "cli", input: "`limits set x --file` with a policy nested 20,000 deep",
        act: |c| { let p = c.cp.dir().join("nested.json"); std::fs::write(&p, policy_with("key", &nested(20_000))).unwrap();
            cli(&["limits", "set", "x", "--file", p.to_str().unwrap()]) },
        expect: with(1, None, "exits 1: not JSON (recursion limit)"), unchanged: true, check: Some(|_, g| cli_said(g, "not JSON")) },
    CpCase { id: "C10", area: "cli", input: "`revoke token` with 50 characters that are no token", act: |_| cli(&["revoke", "token", &"z".repeat(50)]),
        expect: with(404, None, "exits non-zero"), unchanged: true, check: None },
    CpCase { id: "C11", area: "cli", input: "`keys revoke -x` (an id that looks like a flag)", act: |_| cli(&["keys", "revoke", "-x"]),
        expect: with(404, None, "exits non-zero: a value, not a flag"), unchanged: true, check: None },
    CpCase { id: "C12", area: "cli", input: "a wrong `MESHAUTH_ADMIN_TOKEN`", act: |_| cli_env(&["keys", "rotate"], &[("MESHAUTH_ADMIN_TOKEN", "wrong")]),
        expect: with(401, None, "exits non-zero"), unchanged: true, check: None },
    CpCase { id: "C13", area: "cli", input: "`MESHAUTH_ADMIN_TOKEN` with CR LF and a second header",
        act: |c| cli_env(&["keys", "rotate"], &[("MESHAUTH_ADMIN_TOKEN", &format!("{}\r\nx-a: b", c.cp.admin_token))]),
        expect: with(1, None, "exits 1, no panic, no rotation"), unchanged: true,
        // Refused for the header, not for want of a control plane (also exit 1, C14).
        check: Some(|c, g| {
            cli_said(g, "invalid header")?;
            // The secret is never echoed, not even in the error about it.
            (!g.body.contains(&c.cp.admin_token)).then_some(()).ok_or_else(|| format!("stderr shows the admin token: {}", g.body))
        }) },
    CpCase { id: "C14", area: "cli", input: "`MESHAUTH_URL` where nothing listens", act: |_| cli_env(&["status"], &[("MESHAUTH_URL", "http://127.0.0.1:9")]),
        expect: with(1, None, "exits 1: cannot reach"), unchanged: true, check: Some(|_, g| cli_said(g, "cannot reach")) },
    CpCase { id: "C15", area: "cli", input: "`audit list --from -1`", act: |_| cli(&["audit", "list", "--from", "-1"]),
        expect: with(2, None, "exits 2: a usage error"), unchanged: true, check: None },
    CpCase { id: "C16", area: "cli", input: "`clients create` with a name holding a newline", act: |_| cli(&["clients", "create", "a\nb"]),
        expect: with(400, None, "exits non-zero"), unchanged: true, check: None },
];

/// What the admin API says about everything a hostile call could change. Every read
/// must answer: a failed one would read as `null` before and after, and hide a change.
fn state(c: &Cp) -> Value {
    let read = |path: &str, pick: &dyn Fn(&Value) -> Value| {
        let got = send(c.cp.port, &get(path, &[("authorization", &c.admin())]));
        let v = pick(&got.json());
        assert!(
            got.status == 200 && !v.is_null(),
            "state: {path} answered {} {}",
            got.status,
            got.body
        );
        v
    };
    json!({
        "clients": read("/admin/clients", &|v| v.clone()),
        "revocations": read("/admin/revocations", &|v| v.clone()),
        "limits": read("/admin/limits", &|v| v.clone()),
        "keys": read("/admin/keys", &|v| v["keys"].clone()),
        "audit": read("/admin/audit/verify", &|v| v["entries"].clone()),
        "version": read("/admin/status", &|v| v["sync"]["version"].clone()),
    })
}

/// Runs the CLI; the "status" is the HTTP status it reports (`meshauth: 404: …`), else
/// its exit code (0 on success); the body is its stderr.
fn run_cli(c: &Cp, args: &[String], env: &[(&'static str, String)]) -> Got {
    let mut cmd = std::process::Command::new(meshauth_tests::control_plane::meshauth_bin());
    cmd.args(args)
        .env("MESHAUTH_URL", c.cp.base_url())
        .env("MESHAUTH_ADMIN_TOKEN", &c.cp.admin_token);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run meshauth");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let reported = stderr
        .strip_prefix("meshauth: ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse::<u16>().ok());
    Got {
        status: reported.unwrap_or_else(|| out.status.code().unwrap_or(-1) as u16),
        headers: Vec::new(),
        body: stderr,
    }
}

fn start_control_plane() -> Cp {
    // Failed authentications are the point here: no throttling in the way.
    let cp = ControlPlane::start(
        StoreKind::Embedded,
        "[server]\nauth_failure_burst = 100000\n",
    );
    let client = |name: &str| {
        let v: Value =
            serde_json::from_str(&cp.cli_ok(&["clients", "create", name, "--scope", "read"]))
                .unwrap();
        (
            v["client_id"].as_str().unwrap().to_string(),
            v["client_secret"].as_str().unwrap().to_string(),
        )
    };
    let (a_id, a_secret) = client("a");
    let (b_id, b_secret) = client("b");
    let mut c = Cp {
        cp,
        a_id,
        a_secret,
        b_id,
        b_secret,
        a_token: String::new(),
    };
    let Act::Http(req) = form(
        "/oauth2/token",
        "grant_type=client_credentials",
        Some(&c.a()),
    ) else {
        unreachable!()
    };
    let got = send(c.cp.port, &req);
    c.a_token = got.json()["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {}", got.body))
        .to_string();
    c
}

#[test]
fn control_plane_catalogue() {
    let c = start_control_plane();
    let mut wrong = Vec::new();
    for case in CP_CASES {
        let before = case.unchanged.then(|| state(&c));
        let got = match (case.act)(&c) {
            Act::Http(req) => send(c.cp.port, &req),
            Act::Cli(args, env) => run_cli(&c, &args, &env),
        };
        let mut problem = case.expect.differs(&got);
        if problem.is_none() {
            if let Some(check) = case.check {
                problem = check(&c, &got).err();
            }
        }
        if problem.is_none() {
            if let Some(before) = before {
                let after = state(&c);
                if after != before {
                    problem = Some(format!("state changed:\nbefore {before}\nafter  {after}"));
                }
            }
        }
        if let Some(p) = problem {
            wrong.push(format!("{} {}: {p}", case.id, case.input));
        }
    }
    if c.cp.log().contains("panicked") {
        wrong.push(format!("the control plane panicked:\n{}", c.cp.log()));
    }
    assert!(
        wrong.is_empty(),
        "{} control-plane cases differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// Cases another test already covers: in the catalogue with their answer, run there
// ---------------------------------------------------------------------------------

struct Covered {
    id: &'static str,
    area: &'static str,
    input: &'static str,
    expect: &'static str,
    /// The file (from the workspace root) that holds `fn test`.
    file: &'static str,
    test: &'static str,
}

const EDGE_ATTACKS: &str = "tests/tests/edge_attacks.rs";
const SYNC_ENVOY: &str = "tests/tests/sync_envoy.rs";
const DOS: &str = "tests/tests/dos.rs";
const E2E_CP: &str = "tests/tests/control_plane.rs";
const IN_PROCESS: &str = "control-plane/tests/tokens_sessions.rs";

static COVERED: &[Covered] = &[
    Covered { id: "E102", area: "slow confirmation", input: "a revoked token whose confirmation never comes back (`on_unconfirmed: allow`), spoofed `x-meshauth-sub`/`x_meshauth_sub`",
        expect: "200 through the allow path with the token's own identity, `Authorization` stripped; both workers keep serving", file: EDGE_ATTACKS,
        test: "a_confirmation_that_never_answers_neither_leaks_headers_nor_kills_the_worker" },
    Covered { id: "E103", area: "slow confirmation", input: "the same with `on_unconfirmed: deny`",
        expect: "403 `token_revoked` with `cache-control: no-store` and the correlation id", file: EDGE_ATTACKS, test: "an_unconfirmed_refusal_is_answered_like_every_other" },
    Covered { id: "E104", area: "paths", input: "`x_meshauth_sub` and `/public/..%2Fadmin/users` through the shipped bootstrap",
        expect: "400 from Envoy; nothing reaches the upstream", file: EDGE_ATTACKS, test: "the_shipped_bootstrap_is_hardened_too" },
    Covered { id: "E105", area: "tokens", input: "junk `Authorization` values and 64 KiB values of every shape",
        expect: "401; every worker still serves valid tokens", file: "tests/tests/filter.rs", test: "garbage_never_breaks_the_filter" },
    Covered { id: "E106", area: "configuration", input: "a plugin configuration with an unknown field, a bad key, an absurd skew",
        expect: "Envoy refuses the configuration; the log names the field", file: "tests/tests/filter.rs", test: "bad_configuration_is_refused_by_envoy" },
    Covered { id: "E107", area: "tokens", input: "2,000 random `Authorization` values and token-shaped garbage (property test)",
        expect: "refused, never a panic", file: "filter/tests/untrusted_input.rs", test: "any_authorization_value_is_refused_without_panic" },
    Covered { id: "E108", area: "rate limits", input: "a key value chosen to land on a victim's rate-limit slots",
        expect: "placement depends on a per-process secret", file: "filter/src/limits/tests.rs", test: "slot_placement_is_keyed_by_the_secret" },
    Covered { id: "E109", area: "tokens", input: "a revoked token replayed at the edge, before and after a control-plane outage",
        expect: "403 `token_revoked` on every worker", file: SYNC_ENVOY, test: "keys_and_revocations_reach_every_worker_and_survive_an_outage" },
    Covered { id: "E110", area: "tokens", input: "a deleted client's access token",
        expect: "403 `token_revoked`", file: SYNC_ENVOY, test: "a_deleted_clients_tokens_are_refused_at_the_edge" },
    Covered { id: "O37", area: "oauth", input: "client B revokes client A's access and refresh tokens (in process)",
        expect: "200; A's tokens stay valid", file: IN_PROCESS, test: "a_client_cannot_revoke_another_clients_token" },
    Covered { id: "O38", area: "oauth", input: "`basic`/`BEARER` schemes in other cases",
        expect: "accepted (RFC 9110 §11.1)", file: IN_PROCESS, test: "auth_schemes_are_case_insensitive" },
    Covered { id: "O39", area: "oauth", input: "empty `scope=` and `grant_type=`",
        expect: "`scope=` is the default; `grant_type=` is 400 `invalid_request`", file: IN_PROCESS, test: "empty_parameters_are_omitted" },
    Covered { id: "O40", area: "oauth", input: "Basic `id:secret&junk` and other loose encodings",
        expect: "401 `invalid_client`", file: DOS, test: "basic_credentials_are_decoded_whole" },
    Covered { id: "O41", area: "oauth", input: "a 150 KB `client_id` (body and Basic)",
        expect: "400/401 before the store is touched", file: DOS, test: "over_long_client_ids_never_reach_the_store" },
    Covered { id: "O42", area: "oauth", input: "64 senders of 64 KiB bodies of ~14k short keys",
        expect: "400 `invalid_request`; `/healthz` keeps answering", file: DOS, test: "many_key_form_bodies_leave_healthz_answering" },
    Covered { id: "O43", area: "oauth", input: "guessing client secrets from one address",
        expect: "429 with `Retry-After` after the burst", file: DOS, test: "failed_authentication_is_throttled_per_source" },
    Covered { id: "O44", area: "oauth", input: "a spent refresh token replayed",
        expect: "400 `invalid_grant`; the whole session is revoked", file: E2E_CP, test: "refresh_tokens_rotate_and_reuse_revokes_the_family" },
    Covered { id: "O45", area: "oauth", input: "a revocation flood from one client",
        expect: "429 `rate_limited` with `Retry-After`", file: IN_PROCESS, test: "revocation_calls_are_throttled_per_client" },
    Covered { id: "A38", area: "admin", input: "300 mutated admin bodies",
        expect: "never a 5xx; stored state unharmed", file: E2E_CP, test: "fuzzed_bodies_never_get_a_5xx_or_harm_stored_state" },
    Covered { id: "A39", area: "admin", input: "a `jti` revocation with `exp: 9223372036854775807` (in process)",
        expect: "400 `invalid_request`", file: IN_PROCESS, test: "a_jti_revocation_with_an_absurd_exp_is_refused" },
    Covered { id: "A40", area: "admin", input: "over-long ids in admin paths",
        expect: "400 before the store is touched", file: DOS, test: "over_long_admin_path_ids_never_reach_the_store" },
    Covered { id: "A41", area: "admin", input: "a request head over `max_header_bytes`",
        expect: "431", file: DOS, test: "oversized_request_heads_get_431" },
    Covered { id: "A42", area: "admin", input: "a body trickled a byte at a time",
        expect: "408 `request_timeout`", file: DOS, test: "trickled_bodies_get_408" },
    Covered { id: "A43", area: "admin", input: "headers trickled a byte at a time",
        expect: "the connection is closed after `header_read_timeout`", file: DOS, test: "trickled_headers_are_cut_off" },
    Covered { id: "A44", area: "admin", input: "100,000 made-up HTTP methods",
        expect: "answered; metric labels stay a fixed set", file: DOS, test: "made_up_methods_do_not_become_metric_labels" },
    Covered { id: "A45", area: "admin", input: "hundreds of connections from one address",
        expect: "closed at accept past the per-source cap", file: DOS, test: "connections_are_capped_per_source" },
    Covered { id: "A46", area: "admin", input: "idle connections filling the public port",
        expect: "the admin and sync listeners still answer", file: DOS, test: "connections_to_one_listener_do_not_shut_out_another" },
    Covered { id: "A47", area: "admin", input: "`/admin/*` on the public port with separate listeners",
        expect: "404", file: "tests/tests/listeners.rs", test: "separate_listeners_take_admin_sync_and_metrics_off_the_public_port" },
    Covered { id: "A48", area: "admin", input: "an audit entry edited in the store",
        expect: "`audit verify` names the entry and exits non-zero", file: E2E_CP, test: "audit_verify_finds_an_edited_entry" },
    Covered { id: "C17", area: "cli", input: "ids that start with `-` (one random id in 32)",
        expect: "taken as values, not flags", file: "control-plane/src/cli/mod.rs", test: "identifiers_starting_with_a_hyphen_are_values_not_flags" },
    Covered { id: "C18", area: "cli", input: "ids with `/`, `?`, `#`, `%`, non-ASCII, `.` and `..`",
        expect: "percent-encoded into one path segment; `.`/`..` refused", file: "control-plane/src/api/mod.rs", test: "ids_stay_inside_their_path_segment" },
    Covered { id: "S21", area: "sync replay", input: "a month-old signed snapshot replayed to a starting filter",
        expect: "refused (`meshauth_sync_snapshots_too_old`)", file: SYNC_ENVOY, test: "an_old_snapshot_replayed_on_the_sync_path_is_refused" },
    Covered { id: "S22", area: "sync replay", input: "confirm answers unsigned, replayed from another question, or signed by another key",
        expect: "unconfirmed: the revoked token stays 403", file: SYNC_ENVOY, test: "a_forged_confirm_answer_does_not_lift_a_revocation" },
    Covered { id: "S23", area: "sync replay", input: "a relay answering `/sync/v1/confirm` itself",
        expect: "the revoked token stays 403", file: SYNC_ENVOY, test: "a_relay_answering_confirm_itself_does_not_lift_a_revocation" },
    Covered { id: "S24", area: "sync replay", input: "a relay answering every poll with a bare `304`",
        expect: "a failed poll; staleness grows", file: SYNC_ENVOY, test: "a_bare_304_freezing_the_filter_shows_as_staleness" },
    Covered { id: "S25", area: "sync replay", input: "a relay replaying the held snapshot with `200`",
        expect: "a failed poll; staleness grows", file: SYNC_ENVOY, test: "replaying_the_held_snapshot_with_200_shows_as_staleness" },
    Covered { id: "S26", area: "sync replay", input: "a snapshot signed by another distribution key",
        expect: "refused; the filter keeps what it had", file: SYNC_ENVOY, test: "snapshots_signed_by_another_key_are_refused" },
    Covered { id: "S27", area: "sync reorder", input: "a snapshot of another epoch issued earlier than the one in force",
        expect: "refused", file: "filter/src/engine/tests.rs", test: "a_snapshot_of_another_epoch_must_be_issued_later" },
    Covered { id: "S28", area: "sync reorder", input: "a former leader's late poll answer after the lease moved",
        expect: "not published", file: "filter/src/sync/worker/tests.rs", test: "a_stalled_leaders_late_answer_does_not_overwrite_its_successor" },
    Covered { id: "S29", area: "sync reorder", input: "a delta on another base than the version published",
        expect: "not published; the next poll asks for a snapshot", file: "filter/src/sync/worker/tests.rs", test: "a_delta_from_the_wrong_base_is_refused_and_the_next_poll_asks_for_a_full_snapshot" },
    Covered { id: "S30", area: "sync replay", input: "a confirm answer for another `jti` or nonce",
        expect: "not counted", file: "filter/src/sync/tests.rs", test: "confirm_answers_count_only_when_signed_for_this_question" },
    Covered { id: "S31", area: "sync replay", input: "a confirm answer moved to another key, `jti` or nonce",
        expect: "fails verification", file: "wire/src/sync/confirm.rs", test: "confirm_answers_are_bound_to_the_key_the_jti_and_the_nonce" },
    Covered { id: "S32", area: "sync", input: "a store restored from a backup (versions rewound)",
        expect: "a new epoch; filters get a full snapshot", file: "tests/tests/sync.rs", test: "a_store_restored_from_a_backup_starts_a_new_epoch" },
    Covered { id: "S33", area: "sync", input: "4,146 made-up filter ids with the fleet credential",
        expect: "served; the registry stays bounded", file: "tests/tests/sync.rs", test: "the_filter_registry_is_bounded" },
    Covered { id: "S34", area: "sync", input: "too many parked long polls from one address",
        expect: "503 with `Retry-After: 1`", file: DOS, test: "parked_long_polls_are_capped_per_source" },
    Covered { id: "S35", area: "sync", input: "a revoked `jti` just past `exp`, inside a filter's clock skew",
        expect: "still in snapshots, deltas and confirm answers", file: "tests/tests/sync.rs", test: "a_revoked_jti_outlives_exp_by_the_largest_filter_skew" },
];

// ---------------------------------------------------------------------------------
// The docs table, from the lists above
// ---------------------------------------------------------------------------------

const BEGIN: &str = "<!-- catalogue:begin (generated from tests/tests/catalogue.rs) -->";
const END: &str = "<!-- catalogue:end -->";

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn cli_expect(e: &Expect) -> String {
    let head = match e.status {
        s if s >= 100 => format!("`meshauth: {s}: …`"),
        s => format!("exit {s}"),
    };
    format!("{head}; {}", e.also)
}

/// Every case as a table row: id, area, input, expected answer, test.
fn rows() -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for c in EDGE {
        rows.push((
            c.id.to_string(),
            format!(
                "| {} | {} | {} | {} | `catalogue::edge_catalogue` |",
                c.id,
                c.area,
                cell(c.input),
                cell(&c.expect.text())
            ),
        ));
    }
    for c in CP_CASES {
        let mut expect = if c.area == "cli" {
            cli_expect(&c.expect)
        } else {
            c.expect.text()
        };
        if c.unchanged {
            expect.push_str("; state unchanged");
        }
        rows.push((
            c.id.to_string(),
            format!(
                "| {} | {} | {} | {} | `catalogue::control_plane_catalogue` |",
                c.id,
                c.area,
                cell(c.input),
                cell(&expect)
            ),
        ));
    }
    for c in COVERED {
        rows.push((
            c.id.to_string(),
            format!(
                "| {} | {} | {} | {} | `{}` in `{}` |",
                c.id,
                c.area,
                cell(c.input),
                cell(c.expect),
                c.test,
                c.file
            ),
        ));
    }
    // By area letter, then number.
    let order = |id: &str| {
        let letter = "EOASC".find(&id[..1]).unwrap_or(9);
        (letter, id[1..].parse::<u32>().unwrap_or(0))
    };
    rows.sort_by_key(|(id, _)| order(id));
    rows
}

fn table() -> String {
    let mut out =
        format!("{BEGIN}\n| id | area | input | expected answer | test |\n|---|---|---|---|---|\n");
    for (_, row) in rows() {
        out.push_str(&row);
        out.push('\n');
    }
    out.push_str(END);
    out
}

#[test]
fn the_docs_list_every_case() {
    let root = meshauth_tests::workspace_root();
    let ids: Vec<String> = rows().into_iter().map(|(id, _)| id).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "repeated ids");
    assert!(ids.len() >= 80, "{} cases", ids.len());
    for c in COVERED {
        let text = std::fs::read_to_string(root.join(c.file))
            .unwrap_or_else(|e| panic!("{}: {} ({e})", c.id, c.file));
        assert!(
            text.contains(&format!("fn {}(", c.test)),
            "{}: no fn {} in {}",
            c.id,
            c.test,
            c.file
        );
    }
    let path = root.join("docs/security.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/security.md has no catalogue markers");
    };
    let current = &doc[start..end + END.len()];
    let want = table();
    if current != want && std::env::var_os("MESHAUTH_WRITE_CATALOGUE").is_some() {
        std::fs::write(&path, doc.replace(current, &want)).unwrap();
        return;
    }
    assert!(
        current == want,
        "docs/security.md's catalogue differs from tests/tests/catalogue.rs; rewrite it with\n\
         MESHAUTH_WRITE_CATALOGUE=1 cargo test -p meshauth-tests --test catalogue the_docs_list_every_case"
    );
}
