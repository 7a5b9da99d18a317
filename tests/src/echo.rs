//! A sample upstream that answers every request with what it received, as JSON:
//! `{"method", "path", "headers": {name: value}}`. HTTP/1.1 with keep-alive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use serde_json::{json, Map, Value};

/// Serves on `listener` until the process ends.
pub fn serve(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        thread::spawn(move || {
            let _ = handle(stream);
        });
    }
}

/// Binds a free loopback port and serves it on a background thread.
pub fn spawn() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    thread::spawn(move || serve(listener));
    Ok(port)
}

/// One line, bytes that are not UTF-8 shown as U+FFFD (clients may send any byte in a
/// header value); `None` at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut bytes = Vec::new();
    if reader.read_until(b'\n', &mut bytes)? == 0 {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn handle(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let Some(request_line) = read_line(&mut reader)? else {
            return Ok(());
        };
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Map::new();
        let mut content_length = 0usize;
        loop {
            let Some(line) = read_line(&mut reader)? else {
                return Ok(());
            };
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().to_string();
                if name == "content-length" {
                    content_length = value.parse().unwrap_or(0);
                }
                let merged = match headers.get(&name).and_then(Value::as_str) {
                    Some(prev) => format!("{prev},{value}"),
                    None => value,
                };
                headers.insert(name, Value::String(merged));
            }
        }
        let mut body = vec![0u8; content_length.min(1 << 20)];
        reader.read_exact(&mut body)?;
        let answer = json!({"method": method, "path": path, "headers": headers}).to_string();
        // One write: a response written piecewise meets Nagle and the proxy's delayed
        // ACK, and every answer would take ~40 ms.
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            answer.len(),
            answer
        );
        out.write_all(response.as_bytes())?;
    }
}
