//! A tiny HTTP receiver for webhook tests: a std `TcpListener` in a thread that records each
//! request and answers from a script of statuses. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One request the receiver saw, and the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map_or("", |(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

/// An HTTP receiver: answers `fail_first` requests with 500 (all of them with `u16::MAX`),
/// the others with 200.
pub struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        Receiver::on(0, fail_first)
    }

    pub fn on(port: u16, fail_first: usize) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let count = seen.lock().expect("lock").len();
                    let status = if fail_first == usize::MAX || count < fail_first {
                        500
                    } else {
                        200
                    };
                    if let Some(request) = serve_one(stream, status) {
                        seen.lock().expect("lock").push(request);
                    }
                }
            }
        });
        Receiver {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn seen(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits (bounded) until `check` holds for what was received.
    pub fn wait(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if check(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: no {what} within {within:?}; saw {seen:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP/1.1 request (head and Content-Length body) and answers `status`.
fn serve_one(stream: TcpStream, status: u16) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let method = line.split_whitespace().next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = stream;
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    Some(Received {
        method,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: status,
    })
}
