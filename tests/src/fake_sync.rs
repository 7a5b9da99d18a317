//! A stand-in for the control plane's sync endpoints, for attacks on the sync path: it
//! serves whatever snapshot and confirm answers a test sets (a relay, a replay) and
//! records the requests it got.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// (path, headers as `name: value` lines in lower case, body) of a request.
pub type Seen = (String, Vec<String>, String);

type ConfirmFn = dyn Fn(&serde_json::Value) -> String + Send + Sync;

pub struct FakeSync {
    pub port: u16,
    /// The body of a `200` to `/sync/v1/snapshot` (polls at a version get `304`).
    pub snapshot: Arc<Mutex<String>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Answer every poll `200` with the snapshot, whatever version it reports: a relay
    /// replaying what the filter already holds.
    pub replay: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeSync {
    /// `confirm` builds the answer to each `POST /sync/v1/confirm` from its JSON body.
    pub fn start(
        snapshot: String,
        confirm: impl Fn(&serde_json::Value) -> String + Send + Sync + 'static,
    ) -> FakeSync {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let snapshot = Arc::new(Mutex::new(snapshot));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let confirm: Arc<ConfirmFn> = Arc::new(confirm);
        let replay = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (snap, log, rep) = (snapshot.clone(), seen.clone(), replay.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (snap, log, confirm, rep) =
                    (snap.clone(), log.clone(), confirm.clone(), rep.clone());
                thread::spawn(move || {
                    let _ = handle(stream, &snap, &log, confirm.as_ref(), &rep);
                });
            }
        });
        FakeSync {
            port,
            snapshot,
            seen,
            replay,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn handle(
    stream: TcpStream,
    snapshot: &Mutex<String>,
    seen: &Mutex<Vec<Seen>>,
    confirm: &ConfirmFn,
    replay: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut headers = Vec::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    content_length = value.trim().parse().unwrap_or(0);
                }
                headers.push(format!("{name}: {}", value.trim()));
            }
        }
        let mut body = vec![0u8; content_length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body).to_string();
        if let Ok(mut s) = seen.lock() {
            s.push((path.clone(), headers, body.clone()));
        }
        let (status, answer) = if path.starts_with(meshauth_wire::sync::CONFIRM_PATH) {
            let question = serde_json::from_str(&body).unwrap_or_default();
            ("200 OK", confirm(&question))
        } else if path.starts_with(meshauth_wire::sync::SNAPSHOT_PATH) {
            let replaying = replay.load(std::sync::atomic::Ordering::SeqCst);
            if replaying {
                // Not at once: a replaying relay still looks like a long poll.
                thread::sleep(Duration::from_millis(200));
            }
            if replaying || path.contains("version=0&") || !path.contains("version=") {
                (
                    "200 OK",
                    snapshot.lock().map(|s| s.clone()).unwrap_or_default(),
                )
            } else {
                // Nothing newer: hold the poll a little, as a long poll would.
                thread::sleep(Duration::from_millis(500));
                ("304 Not Modified", String::new())
            }
        } else {
            ("404 Not Found", String::new())
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            answer.len(),
            answer
        );
        out.write_all(response.as_bytes())?;
    }
}
