//! The end-to-end harness: the real `switchboard` binary on loopback ports, driven by real
//! clients (`sipp`, raw sockets, plain HTTP). Every wait is bounded.
#![allow(dead_code)]

pub mod phone;
pub mod receiver;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REALM: &str = "acme.test";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard")
}

/// Whether external tools (sipp) must be present: CI sets REQUIRE_SIPP=1 (outside the
/// `SWITCHBOARD_` namespace, which the binary checks strictly) so a missing tool fails the run
/// instead of skipping.
pub fn sipp_available() -> bool {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let required = std::env::var("REQUIRE_SIPP").is_ok_and(|v| v == "1")
            || std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !required,
            "sipp is required (apt-get install sip-tester) but not found"
        );
        eprintln!("SKIPPED: sipp not installed (apt-get install sip-tester)");
    }
    found
}

/// Whether sipvicious (`svwar`, `svcrack`) is installed; REQUIRE_SIPVICIOUS=1 makes it
/// mandatory (`apt-get install sipvicious`).
pub fn sipvicious_available() -> bool {
    let found = ["svwar", "svcrack"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !found {
        assert!(
            !std::env::var("REQUIRE_SIPVICIOUS").is_ok_and(|v| v == "1"),
            "sipvicious is required (apt-get install sipvicious) but not found"
        );
        eprintln!("SKIPPED: sipvicious not installed (apt-get install sipvicious)");
    }
    found
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair found");
}

/// A data directory with an account and devices, and a server process on it.
pub struct Switchboard {
    pub dir: tempfile::TempDir,
    pub sip_port: u16,
    pub http_port: u16,
    pub account_id: String,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Switchboard {
    /// Creates the data directory and the account (not yet running).
    pub fn prepare(env: &[(&str, &str)]) -> Switchboard {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut board = Switchboard {
            dir,
            sip_port: free_port(),
            http_port: free_port(),
            account_id: String::new(),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let account = board.cli(&["account", "create", "--name", "Acme", "--realm", REALM]);
        board.account_id = account["id"].as_str().expect("account id").to_owned();
        board
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a CLI command against the data directory and returns its JSON output.
    /// The binary as a child process, with only the environment this test chose: variables a
    /// developer has set in their shell must not change (or, if unknown, stop) the server.
    fn command(&self) -> Command {
        let mut command = Command::new(binary());
        for (name, _) in std::env::vars() {
            if name.starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        // Many logins a second from 127.0.0.1 are normal in tests; the rate-limit test
        // turns the bucket back on in its own environment.
        command.env("SWITCHBOARD_API_RATE_LIMIT", "false");
        command.envs(self.env.iter().cloned());
        command
    }

    pub fn cli(&self, args: &[&str]) -> serde_json::Value {
        let output = self
            .command()
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.path())
            .output()
            .expect("run switchboard cli");
        assert!(
            output.status.success(),
            "switchboard {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("cli prints json")
    }

    /// Creates a device; returns its id.
    pub fn device(&self, username: &str, password: &str) -> String {
        let device = self.cli(&[
            "device",
            "create",
            "--account",
            &self.account_id,
            "--name",
            username,
            "--username",
            username,
            "--password",
            password,
        ]);
        device["id"].as_str().expect("device id").to_owned()
    }

    /// Starts `switchboard serve` and waits (bounded) until it answers on HTTP.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// [`Switchboard::start`] with more `serve` arguments (more `--sip-listen`, `--tls-cert`).
    pub fn start_with(&mut self, extra: &[String]) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let child = self
            .command()
            .arg("serve")
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--sip-listen")
            .arg(format!("udp:127.0.0.1:{}", self.sip_port))
            .arg("--sip-listen")
            .arg(format!("tcp:127.0.0.1:{}", self.sip_port))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .args(extra)
            .stdout(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("server.out"))
                    .expect("stdout file"),
            ))
            .stderr(log)
            .spawn()
            .expect("spawn switchboard serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some((200, _)) = self.http_get("/healthz") {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("switchboard exited early ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("switchboard did not become ready:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Everything the server printed on standard output, over all its starts.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns whether it exited with success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// A plain HTTP/1.1 GET; `(status, body)`.
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        Some((status, body))
    }

    /// One HTTP/1.1 request over a plain TCP connection; the body, if any, is sent as
    /// `application/json` unless `headers` names another Content-Type.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        http_request(
            self.http_port,
            method,
            path,
            headers,
            body.map(str::as_bytes),
        )
    }

    /// [`Switchboard::http`] with an `X-Auth-Token`.
    pub fn api(&self, token: &str, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        self.http(method, path, &[("X-Auth-Token", token)], body)
    }

    /// The bootstrap API key the server saved on its first start.
    pub fn bootstrap_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bootstrap-api-key"))
            .expect("bootstrap key file")
            .trim()
            .to_owned()
    }

    /// `PUT /v2/api_auth` with `api_key`; returns (token, account id).
    pub fn login(&self, api_key: &str) -> (String, String) {
        let body = serde_json::json!({"data": {"api_key": api_key}}).to_string();
        let response = self.http("PUT", "/v2/api_auth", &[], Some(&body));
        assert_eq!(response.status, 201, "api_auth: {}", response.text);
        (
            response.json["auth_token"]
                .as_str()
                .expect("auth_token")
                .to_owned(),
            response.json["data"]["account_id"]
                .as_str()
                .expect("account_id")
                .to_owned(),
        )
    }

    /// Writes a SIPp injection file for `(user, password)` pairs in our realm.
    pub fn users_csv(&self, name: &str, users: &[(&str, &str)], realm: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let mut text = String::from("SEQUENTIAL\n");
        for (user, password) in users {
            text.push_str(&format!(
                "{user};{realm};[authentication username={user} password={password}];{password}\n"
            ));
        }
        std::fs::write(&path, text).expect("write csv");
        path
    }

    /// Runs one SIPp scenario (`tests/sipp/NAME.xml`) once per user line, over `transport`
    /// (`u1` or `t1`); returns whether every call succeeded, with SIPp's output on failure.
    pub fn sipp(
        &self,
        scenario: &str,
        csv: &Path,
        transport: &str,
        calls: usize,
    ) -> Result<(), String> {
        self.sipp_from(free_port(), scenario, csv, transport, calls)
    }

    /// [`Switchboard::sipp`] from a chosen local port (the Contact stays the same across runs).
    pub fn sipp_from(
        &self,
        local_port: u16,
        scenario: &str,
        csv: &Path,
        transport: &str,
        calls: usize,
    ) -> Result<(), String> {
        self.sipp_at("127.0.0.1", local_port, scenario, csv, transport, calls)
    }

    /// [`Switchboard::sipp_from`] from a chosen loopback address (127.0.0.x).
    pub fn sipp_at(
        &self,
        local_ip: &str,
        local_port: u16,
        scenario: &str,
        csv: &Path,
        transport: &str,
        calls: usize,
    ) -> Result<(), String> {
        self.sipp_run(local_ip, local_port, scenario, csv, transport, calls, 50)
            .map(|_| ())
    }

    /// [`Switchboard::sipp_at`] at `rate` calls a second; on success, SIPp's standard output
    /// (its final statistics).
    #[allow(clippy::too_many_arguments)]
    pub fn sipp_run(
        &self,
        local_ip: &str,
        local_port: u16,
        scenario: &str,
        csv: &Path,
        transport: &str,
        calls: usize,
        rate: u32,
    ) -> Result<String, String> {
        let scenario_path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/sipp/{scenario}.xml"));
        let output = Command::new("timeout")
            .arg("30")
            .arg("sipp")
            .arg("-sf")
            .arg(&scenario_path)
            .arg("-inf")
            .arg(csv)
            .args(["-i", local_ip, "-p", &local_port.to_string()])
            .args(["-t", transport, "-m", &calls.to_string()])
            .args(["-r", &rate.to_string()])
            .args(["-timeout", "20s", "-timeout_error", "-nostdin"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(self.dir.path().join(format!("{scenario}-errors.log")))
            .arg(format!("127.0.0.1:{}", self.sip_port))
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("cannot run sipp: {e}"))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let errors =
            std::fs::read_to_string(self.dir.path().join(format!("{scenario}-errors.log")))
                .unwrap_or_default();
        Err(format!(
            "sipp {scenario} over {transport} failed ({}):\n{}\n--- sipp errors ---\n{errors}\n--- server log ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        ))
    }

    pub fn store(&self) -> std::sync::Arc<switchboard_store::SqliteStore> {
        switchboard_store::SqliteStore::open(self.dir.path(), Default::default())
            .expect("open store")
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP answer: status, headers (names lower-case) and the body, parsed as JSON when it is.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub json: serde_json::Value,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A bounded plain HTTP/1.1 exchange with `Connection: close`.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let has_type = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        if !has_type {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send head");
    if let Some(body) = body {
        // The server may answer (413) and close before reading a large body.
        let _ = stream.write_all(body);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let response = String::from_utf8_lossy(&raw).into_owned();
    let (head, text) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        text: text.to_owned(),
        json: serde_json::from_str(text).unwrap_or(serde_json::Value::Null),
    }
}
