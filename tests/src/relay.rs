//! A hostile relay on the sync path: passes requests through to the control plane,
//! except `/sync/v1/confirm`, which it can stall or answer itself. What an attacker (or
//! a broken middlebox) between the filter and the control plane could do.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Confirm {
    /// Forward it like everything else.
    Pass,
    /// Accept the request and never answer.
    Stall,
    /// Answer 200 with this JSON body instead of the control plane.
    Answer(String),
}

pub struct Relay {
    pub port: u16,
    mode: Arc<Mutex<Confirm>>,
    confirms: Arc<Mutex<u32>>,
}

impl Relay {
    pub fn spawn(upstream_port: u16, mode: Confirm) -> std::io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let mode = Arc::new(Mutex::new(mode));
        let confirms = Arc::new(Mutex::new(0));
        let (m, c) = (mode.clone(), confirms.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, c) = (m.clone(), c.clone());
                thread::spawn(move || {
                    let _ = serve(stream, upstream_port, &m, &c);
                });
            }
        });
        Ok(Relay {
            port,
            mode,
            confirms,
        })
    }

    pub fn set(&self, mode: Confirm) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
    }

    /// Confirm requests seen so far.
    pub fn confirms(&self) -> u32 {
        self.confirms.lock().map(|c| *c).unwrap_or(0)
    }
}

/// One HTTP/1.1 message: its head (start line and headers, as sent) and body.
struct Message {
    head: String,
    body: Vec<u8>,
}

fn read_message(reader: &mut impl BufRead) -> std::io::Result<Option<Message>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        // Re-frame with a length: the head is rewritten below.
        head = head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding"))
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
            + &format!("content-length: {}\r\n\r\n", body.len());
    }
    Ok(Some(Message { head, body }))
}

fn serve(
    client: TcpStream,
    upstream_port: u16,
    mode: &Mutex<Confirm>,
    confirms: &Mutex<u32>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut out = client;
    while let Some(req) = read_message(&mut reader)? {
        let path = req.head.split_whitespace().nth(1).unwrap_or("").to_string();
        if path.starts_with(meshauth_wire::sync::CONFIRM_PATH) {
            if let Ok(mut c) = confirms.lock() {
                *c += 1;
            }
            let m = mode.lock().map(|m| m.clone()).unwrap_or(Confirm::Pass);
            match m {
                Confirm::Stall => {
                    thread::sleep(Duration::from_secs(120));
                    return Ok(());
                }
                Confirm::Answer(body) => {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    out.write_all(answer.as_bytes())?;
                    continue;
                }
                Confirm::Pass => {}
            }
        }
        let mut up = TcpStream::connect(("127.0.0.1", upstream_port))?;
        up.write_all(req.head.as_bytes())?;
        up.write_all(&req.body)?;
        let mut up_reader = BufReader::new(up);
        let Some(resp) = read_message(&mut up_reader)? else {
            return Ok(());
        };
        out.write_all(resp.head.as_bytes())?;
        out.write_all(&resp.body)?;
    }
    Ok(())
}
