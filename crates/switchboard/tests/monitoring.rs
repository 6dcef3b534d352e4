//! Registration monitoring end to end (issue #4): every state reached for real and shown by
//! every endpoint and the live stream.
//!
//! One server (keepalive every second, two misses make a binding offline, min_expires 1 s) and
//! one account with devices created through the API:
//! - `desk` is a raw UDP phone in this test with real digest authentication: it answers
//!   OPTIONS and NOTIFY and re-registers on check-sync → `registered`, then `renew` works;
//! - `gone` registers with `sipp` over UDP and exits (nobody answers the pings) → `offline`;
//! - `wire` registers with `sipp` over TCP and exits (its connection closes) → `offline`;
//! - `brief` registers with `Expires: 2` → `expired`;
//! - `wrong` sends a wrong password → `invalid`;
//! - `leaver` registers and unregisters → `unregistered`;
//! - `boxed` is never registered → `provisioning`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Switchboard;
use common::receiver::Receiver;
use md5::{Digest, Md5};
use serde_json::{Value, json};

const REALM: &str = "monitor.api.test";

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

fn header<'m>(message: &'m str, name: &str) -> Option<&'m str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A parameter of a digest challenge (`realm="…"`).
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let start = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?.to_owned(),
        None => rest.split([',', ' ']).next()?.to_owned(),
    })
}

/// A phone of this test: one UDP socket, digest MD5 with qop=auth, answers OPTIONS and NOTIFY.
struct Phone {
    socket: UdpSocket,
    user: String,
    password: String,
    cseq: u32,
    call_id: String,
    nc: u32,
}

impl Phone {
    fn new(user: &str, password: &str, server_port: u16) -> Phone {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        socket.connect(("127.0.0.1", server_port)).expect("connect");
        Phone {
            socket,
            user: user.to_owned(),
            password: password.to_owned(),
            cseq: 0,
            call_id: format!("{user}-{}", std::process::id()),
            nc: 0,
        }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().expect("addr").port()
    }

    fn register_request(&mut self, authorization: Option<String>) -> String {
        self.cseq += 1;
        let port = self.port();
        let user = &self.user;
        let authorization = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{user}{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{REALM}>;tag=phone\r\nTo: <sip:{user}@{REALM}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\nExpires: 600\r\nUser-Agent: Yealink SIP-T46S 66.86.0.15\r\n{authorization}Content-Length: 0\r\n\r\n",
            cseq = self.cseq,
            call_id = self.call_id,
        )
    }

    fn authorization(&mut self, challenge: &str) -> String {
        let realm = challenge_param(challenge, "realm").expect("realm");
        let nonce = challenge_param(challenge, "nonce").expect("nonce");
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let cnonce = "0a4f113b";
        let uri = format!("sip:{REALM}");
        let ha1 = md5_hex(&format!("{}:{realm}:{}", self.user, self.password));
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            self.user
        )
    }

    fn send(&self, message: &str) {
        self.socket.send(message.as_bytes()).expect("send");
    }

    /// The answer to a request this phone received (Via, From, To, Call-ID, CSeq echoed).
    fn ok_for(request: &str) -> String {
        format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=desk\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            header(request, "Via").unwrap_or_default(),
            header(request, "From").unwrap_or_default(),
            header(request, "To").unwrap_or_default(),
            header(request, "Call-ID").unwrap_or_default(),
            header(request, "CSeq").unwrap_or_default(),
        )
    }

    /// Handles one datagram: answers OPTIONS/NOTIFY, follows a 401 with credentials. Returns
    /// the message and whether it was a 200 to our REGISTER.
    fn handle(&mut self, message: &str, answering: bool) -> bool {
        if message.starts_with("OPTIONS ") || message.starts_with("NOTIFY ") {
            if answering {
                self.send(&Self::ok_for(message));
            }
            if message.starts_with("NOTIFY ")
                && header(message, "Event").is_some_and(|e| e.starts_with("check-sync"))
            {
                let request = self.register_request(None);
                self.send(&request);
            }
            return false;
        }
        if message.starts_with("SIP/2.0 401 ") {
            let challenge = message
                .lines()
                .filter_map(|line| line.strip_prefix("WWW-Authenticate:"))
                .find(|value| !value.contains("SHA-256"))
                .expect("an MD5 challenge")
                .trim()
                .to_owned();
            let authorization = self.authorization(&challenge);
            let request = self.register_request(Some(authorization));
            self.send(&request);
            return false;
        }
        message.starts_with("SIP/2.0 200 ")
            && header(message, "CSeq").is_some_and(|c| c.ends_with("REGISTER"))
    }

    /// Registers (challenge and all), within 5 s.
    fn register(&mut self) {
        let request = self.register_request(None);
        self.send(&request);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65_536];
        loop {
            assert!(Instant::now() < deadline, "{} did not register", self.user);
            let Ok(len) = self.socket.recv(&mut buf) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buf[..len]).into_owned();
            assert!(
                !message.starts_with("SIP/2.0 4") || message.starts_with("SIP/2.0 401 "),
                "{message}"
            );
            if self.handle(&message, true) {
                return;
            }
        }
    }
}

/// The server, the admin token, the account and the device ids by name.
struct World {
    board: Switchboard,
    token: String,
    account: String,
    devices: std::collections::HashMap<&'static str, String>,
}

impl World {
    fn get(&self, path: &str) -> Value {
        let response = self.board.api(&self.token, "GET", path, None);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text);
        response.json
    }

    fn device_path(&self, name: &str, rest: &str) -> String {
        format!(
            "/v2/accounts/{}/devices/{}{rest}",
            self.account, self.devices[name]
        )
    }

    fn status_of(&self, name: &str) -> String {
        self.get(&self.device_path(name, "/registration"))["status"]
            .as_str()
            .expect("status")
            .to_owned()
    }

    /// Waits (bounded) until the device shows `want`.
    fn wait_status(&self, name: &str, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status_of(name);
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is {status}, not {want}, after {within:?}:\n{}",
                self.board.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const NAMES: [&str; 7] = ["desk", "gone", "wire", "brief", "wrong", "leaver", "boxed"];

fn world() -> World {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "1"),
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_FAILURES", "2"),
        ("SWITCHBOARD_REGISTRAR_KEEPALIVE_TIMEOUT_MS", "300"),
        ("SWITCHBOARD_REGISTRAR_MIN_EXPIRES", "1"),
        ("SWITCHBOARD_REGISTRAR_NOTIFY_TIMEOUT_MS", "2000"),
        ("SWITCHBOARD_MONITORING_SAMPLE_INTERVAL", "1"),
        ("SWITCHBOARD_MONITORING_SIP_SERVER", "sip.monitor.test"),
    ]);
    board.start();
    let (token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Monitored", "realm": REALM}}).to_string()),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let account = response.json["data"]["id"].as_str().expect("id").to_owned();
    let mut devices = std::collections::HashMap::new();
    for name in NAMES {
        let device_type = if name == "desk" {
            "sip_device"
        } else {
            "softphone"
        };
        let body = json!({"data": {
            "name": format!("{name} phone"),
            "device_type": device_type,
            "sip": {"username": name, "password": format!("{name}-secret"), "expire_seconds": 3600},
        }});
        let response = board.api(
            &token,
            "PUT",
            &format!("/v2/accounts/{account}/devices"),
            Some(&body.to_string()),
        );
        assert_eq!(response.status, 201, "{}", response.text);
        devices.insert(
            name,
            response.json["data"]["id"].as_str().expect("id").to_owned(),
        );
    }
    World {
        board,
        token,
        account,
        devices,
    }
}

/// Reads an SSE stream in a thread, collecting `(id, event name)` until told to stop.
struct Stream {
    seen: Arc<Mutex<Vec<(i64, String, Value)>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Stream {
    fn open(world: &World, last_event_id: Option<i64>) -> Stream {
        let mut stream = TcpStream::connect(("127.0.0.1", world.board.http_port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /v2/accounts/{}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
            world.account, world.token
        )
        .expect("request");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let (mut id, mut name) = (0_i64, String::new());
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut line = String::new();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(_) => continue,
                    }
                    let line = line.trim_end();
                    if let Some(value) = line.strip_prefix("id:") {
                        id = value.trim().parse().unwrap_or_default();
                    } else if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        let payload = serde_json::from_str(value.trim()).unwrap_or(Value::Null);
                        seen.lock().expect("lock").push((id, name.clone(), payload));
                    }
                }
            })
        };
        Stream {
            seen,
            stop,
            reader: Some(reader),
        }
    }

    fn events(&self) -> Vec<(i64, String, Value)> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits (bounded) until an event named `name` about `device` arrived.
    fn wait_for(&self, name: &str, device: &str, within: Duration) -> (i64, Value) {
        let deadline = Instant::now() + within;
        loop {
            if let Some((id, _, payload)) = self
                .events()
                .into_iter()
                .find(|(_, event, payload)| event == name && payload["data"]["deviceId"] == device)
            {
                return (id, payload);
            }
            assert!(
                Instant::now() < deadline,
                "no {name} for {device} on the stream within {within:?}: {:?}",
                self.events()
                    .iter()
                    .map(|(id, name, _)| format!("{id}:{name}"))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[test]
fn every_state_is_reached_for_real_and_shown_by_the_api_and_the_stream() {
    if !common::sipp_available() {
        return;
    }
    let world = world();
    let board = &world.board;
    // A webhook for every event, to a receiver that always answers 200.
    let receiver = Receiver::start(0);
    let hook = board.api(
        &world.token,
        "POST",
        &format!("/v2/accounts/{}/webhooks", world.account),
        Some(&json!({"url": receiver.url(), "events": ["*"]}).to_string()),
    );
    assert_eq!(hook.status, 201, "{}", hook.text);
    // The stream opened after the devices were created replays them from the history.
    let stream = Stream::open(&world, Some(0));
    for name in NAMES {
        stream.wait_for(
            "device.provisioning",
            &world.devices[name],
            Duration::from_secs(5),
        );
        assert_eq!(world.status_of(name), "provisioning", "{name}");
    }

    // desk: a phone that answers everything.
    let mut desk = Phone::new("desk", "desk-secret", board.sip_port);
    desk.register();
    let answering = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let registered_again = Arc::new(AtomicUsize::new(0));
    let desk_thread = {
        let (answering, stop, again) = (answering.clone(), stop.clone(), registered_again.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(len) = desk.socket.recv(&mut buf) else {
                    continue;
                };
                let message = String::from_utf8_lossy(&buf[..len]).into_owned();
                if desk.handle(&message, answering.load(Ordering::Relaxed)) {
                    again.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let users = |name: &str| {
        board.users_csv(
            &format!("{name}.csv"),
            &[(name, &format!("{name}-secret"))],
            REALM,
        )
    };
    board
        .sipp("register_ok", &users("gone"), "u1", 1)
        .expect("gone registers over UDP");
    board
        .sipp("register_ok", &users("wire"), "t1", 1)
        .expect("wire registers over TCP");
    board
        .sipp("register_short", &users("brief"), "u1", 1)
        .expect("brief registers for 2 s");
    let wrong = board.users_csv("wrong.csv", &[("wrong", "not-the-password")], REALM);
    board
        .sipp("register_wrong_password", &wrong, "u1", 1)
        .expect("wrong is refused");
    board
        .sipp("register_ok", &users("leaver"), "u1", 1)
        .expect("leaver registers");
    board
        .sipp("unregister_all", &users("leaver"), "u1", 1)
        .expect("leaver unregisters");

    let settle = Duration::from_secs(10);
    world.wait_status("desk", "registered", settle);
    world.wait_status("gone", "offline", settle);
    world.wait_status("wire", "offline", settle);
    world.wait_status("brief", "expired", settle);
    world.wait_status("wrong", "invalid", settle);
    world.wait_status("leaver", "unregistered", settle);
    assert_eq!(world.status_of("boxed"), "provisioning");

    // Each state change reached the stream.
    let id = |name: &str| world.devices[name].clone();
    let (_, registered) = stream.wait_for("device.registered", &id("desk"), settle);
    assert_eq!(registered["data"]["status"], "registered");
    assert_eq!(registered["data"]["ipAddress"], "127.0.0.1");
    assert_eq!(
        registered["data"]["userAgent"],
        "Yealink SIP-T46S 66.86.0.15"
    );
    assert!(registered["data"]["registeredAt"].is_string());
    stream.wait_for("device.offline", &id("gone"), settle);
    let (_, wire_offline) = stream.wait_for("device.offline", &id("wire"), settle);
    assert_eq!(wire_offline["data"]["transportProtocol"], "TCP");
    stream.wait_for("device.expired", &id("brief"), settle);
    stream.wait_for("device.auth_failed", &id("wrong"), settle);
    let (unregistered_id, _) = stream.wait_for("device.unregistered", &id("leaver"), settle);
    assert!(
        !stream
            .events()
            .iter()
            .any(|(_, name, _)| name == "device.refreshed"),
        "refreshes are not state changes"
    );

    // One device's registration, in the seed's shape.
    let desk_registration = world.get(&world.device_path("desk", "/registration"));
    assert_eq!(desk_registration["deviceId"], id("desk"));
    assert_eq!(desk_registration["transportProtocol"], "UDP");
    assert_eq!(desk_registration["ipAddress"], "127.0.0.1");
    // Asked for 600 s; granted up to 10 % less (expires jitter, storm control).
    let expiry = desk_registration["registrationExpiry"]
        .as_u64()
        .expect("expiry");
    assert!((540..=600).contains(&expiry), "{desk_registration}");
    assert_eq!(desk_registration["reachable"], true);
    assert_eq!(desk_registration["callsActive"], 0);
    for field in [
        "registeredAt",
        "expiresAt",
        "lastActivity",
        "contactUri",
        "userAgent",
    ] {
        assert!(
            desk_registration[field].is_string(),
            "{field}: {desk_registration}"
        );
    }
    let wrong_registration = world.get(&world.device_path("wrong", "/registration"));
    assert_eq!(wrong_registration["lastEvent"], "device.auth_failed");

    // Bulk status: counts over the account, filters, paging.
    let path = format!("/v2/accounts/{}/devices/registration/status", world.account);
    let all = world.get(&path);
    let pagination = &all["pagination"];
    assert_eq!(pagination["total"], 7, "{all}");
    for (state, count) in [
        ("registered", 1),
        ("offline", 2),
        ("expired", 1),
        ("invalid", 1),
        ("unregistered", 1),
        ("provisioning", 1),
    ] {
        assert_eq!(pagination[state], count, "{state}: {all}");
    }
    let offline = world.get(&format!("{path}?status=offline"));
    let mut offline_ids: Vec<&str> = offline["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["deviceId"].as_str().expect("id"))
        .collect();
    offline_ids.sort_unstable();
    let mut expected = vec![
        world.devices["gone"].as_str(),
        world.devices["wire"].as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(offline_ids, expected);
    let sip_only = world.get(&format!("{path}?type=sip"));
    assert_eq!(sip_only["pagination"]["total"], 1);
    assert_eq!(sip_only["data"][0]["deviceId"], id("desk"));
    assert_eq!(
        sip_only["data"][0]["port"],
        board_port_of(&desk_registration)
    );
    let page = world.get(&format!("{path}?limit=2&offset=1"));
    assert_eq!(page["data"].as_array().expect("rows").len(), 2);
    let bad = board.api(
        &world.token,
        "GET",
        &format!("{path}?status=sleeping"),
        None,
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(
        bad.json["data"]["status"]["enum"].is_object(),
        "{}",
        bad.text
    );

    // Dashboard: the same counts, by type, with alerts for offline and failing devices.
    let dashboard = world.get(&format!(
        "/v2/accounts/{}/devices/registration/dashboard",
        world.account
    ));
    assert_eq!(dashboard["summary"]["total"], 7);
    assert_eq!(dashboard["summary"]["registered"], 1);
    assert_eq!(dashboard["summary"]["offline"], 2);
    assert_eq!(dashboard["byType"]["sip"]["total"], 1);
    assert_eq!(dashboard["byType"]["sip"]["registered"], 1);
    assert_eq!(dashboard["byType"]["softphone"]["total"], 6);
    let alerts = dashboard["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 3, "{dashboard}");
    assert!(
        alerts
            .iter()
            .any(|alert| alert["deviceId"] == id("wrong") && alert["severity"] == "error")
    );
    assert!(
        alerts.iter().any(|alert| alert["deviceId"] == id("gone")
            && alert["message"] == "Device offline: gone phone")
    );

    // Analytics from the samples (one a second here).
    let analytics = world.get(&format!(
        "/v2/accounts/{}/devices/registration/analytics?period=1h",
        world.account
    ));
    assert_eq!(analytics["period"], "1h");
    let data = analytics["data"].as_array().expect("buckets");
    assert!(!data.is_empty());
    let now = data.last().expect("now");
    assert_eq!(now["registered"], 1);
    assert_eq!(now["total"], 7);
    assert!(
        analytics["samples"].as_u64().expect("samples") >= 2,
        "{analytics}"
    );
    let uptime = analytics["averageUptime"].as_f64().expect("uptime");
    assert!((0.0..=100.0).contains(&uptime), "{analytics}");
    assert!(analytics["peakRegistrations"].as_u64().expect("peak") >= 1);
    let bad = board.api(
        &world.token,
        "GET",
        &format!(
            "/v2/accounts/{}/devices/registration/analytics?period=2h",
            world.account
        ),
        None,
    );
    assert_eq!(bad.status, 400);
    assert!(bad.json["data"]["period"].is_object(), "{}", bad.text);

    // Logs: newest first.
    let logs = world.get(&world.device_path("leaver", "/logs?lines=10"));
    let names: Vec<&str> = logs["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|entry| entry["event"].as_str().expect("event"))
        .collect();
    assert_eq!(names.first(), Some(&"device.unregistered"), "{names:?}");
    assert_eq!(names.last(), Some(&"device.provisioning"), "{names:?}");
    assert!(names.contains(&"device.registered"));
    let one = world.get(&world.device_path("leaver", "/logs?lines=1"));
    assert_eq!(one["logs"].as_array().expect("logs").len(), 1);

    // Credentials: what a user types into a softphone.
    let credentials = world.get(&world.device_path("desk", "/credentials"));
    assert_eq!(credentials["username"], "desk");
    assert_eq!(credentials["password"], "desk-secret");
    assert_eq!(credentials["realm"], REALM);
    assert_eq!(credentials["sipServer"], "sip.monitor.test");
    assert_eq!(credentials["ports"]["udp"], board.sip_port);
    assert_eq!(credentials["ports"]["tcp"], board.sip_port);

    // Renew: check-sync, and the phone re-registers at once.
    let before = registered_again.load(Ordering::Relaxed);
    let renew = board.api(
        &world.token,
        "POST",
        &world.device_path("desk", "/registration/renew"),
        None,
    );
    assert_eq!(renew.status, 200, "{}", renew.text);
    assert_eq!(renew.json["renewed"], true);
    assert_eq!(renew.json["message"], "Registration renewed successfully");
    // The phone sees its 200 OK a moment after the server recorded the refresh.
    let deadline = Instant::now() + Duration::from_secs(5);
    while registered_again.load(Ordering::Relaxed) <= before {
        assert!(Instant::now() < deadline, "the phone never saw its 200 OK");
        std::thread::sleep(Duration::from_millis(20));
    }
    let not_registered = board.api(
        &world.token,
        "POST",
        &world.device_path("leaver", "/registration/renew"),
        None,
    );
    assert_eq!(not_registered.status, 404, "{}", not_registered.text);

    // The phone stops answering: offline, then back online when it answers again.
    answering.store(false, Ordering::Relaxed);
    world.wait_status("desk", "offline", settle);
    stream.wait_for("device.offline", &id("desk"), settle);
    answering.store(true, Ordering::Relaxed);
    world.wait_status("desk", "registered", settle);
    stream.wait_for("device.online", &id("desk"), settle);

    // PATCH settings.registrationExpiry (seed shape) sets sip.expire_seconds.
    let patched = board.api(
        &world.token,
        "PATCH",
        &world.device_path("desk", ""),
        Some(r#"{"settings":{"registrationExpiry":3600}}"#),
    );
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["data"]["sip"]["expire_seconds"], 3600);
    assert!(patched.json["data"].get("settings").is_none());
    let refused = board.api(
        &world.token,
        "PATCH",
        &world.device_path("desk", ""),
        Some(r#"{"settings":{"registrationExpiry":"soon"}}"#),
    );
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.json["data"]["settings.registrationExpiry"].is_object(),
        "{}",
        refused.text
    );

    // DELETE …/registration: unregistered, with the event.
    let removed = board.api(
        &world.token,
        "DELETE",
        &world.device_path("desk", "/registration"),
        None,
    );
    assert_eq!(removed.status, 200, "{}", removed.text);
    assert_eq!(removed.json["status"], "unregistered");
    assert_eq!(removed.json["removed"], 1);
    assert_eq!(world.status_of("desk"), "unregistered");
    stream.wait_for("device.unregistered", &id("desk"), settle);
    stop.store(true, Ordering::Relaxed);
    desk_thread.join().expect("desk");

    // A stream resumed after an event id replays what came after it, in order.
    let resumed = Stream::open(&world, Some(unregistered_id));
    let (replayed, _) = resumed.wait_for("device.unregistered", &id("desk"), settle);
    assert!(replayed > unregistered_id);
    let ids: Vec<i64> = resumed.events().iter().map(|(id, _, _)| *id).collect();
    assert!(ids.iter().all(|each| *each > unregistered_id), "{ids:?}");
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    // Prometheus: counters, the keepalive histogram, bindings and device states.
    let (status, metrics) = board.http_get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
    };
    assert!(value("switchboard_register_total{outcome=\"ok\"}") >= 6.0);
    assert!(value("switchboard_register_total{outcome=\"auth_failed\"}") >= 1.0);
    assert!(value("switchboard_keepalive_rtt_seconds_count") >= 1.0);
    assert!(value("switchboard_keepalives_total{result=\"failed\"}") >= 2.0);
    assert_eq!(value("switchboard_devices{state=\"offline\"}"), 2.0);
    assert_eq!(value("switchboard_devices{state=\"unregistered\"}"), 2.0);
    assert_eq!(value("switchboard_devices{state=\"provisioning\"}"), 1.0);
    assert!(metrics.contains("# TYPE switchboard_keepalive_rtt_seconds histogram"));

    // Tenancy: another account's token reaches none of it.
    let (admin_token, admin) = board.login(&board.bootstrap_key());
    let response = board.api(
        &admin_token,
        "PUT",
        &format!("/v2/accounts/{admin}"),
        Some(&json!({"data": {"name": "Other", "realm": "other.monitor.test"}}).to_string()),
    );
    assert_eq!(response.status, 201);
    let other = response.json["data"]["id"].as_str().expect("id").to_owned();
    let key = board.api(
        &admin_token,
        "GET",
        &format!("/v2/accounts/{other}/api_key"),
        None,
    );
    assert_eq!(key.status, 200, "{}", key.text);
    let (other_token, _) = board.login(key.json["data"]["api_key"].as_str().expect("key"));
    for path in [
        world.device_path("desk", "/registration"),
        world.device_path("desk", "/logs"),
        world.device_path("desk", "/credentials"),
        format!(
            "/v2/accounts/{}/devices/registration/dashboard",
            world.account
        ),
        format!("/v2/accounts/{}/events", world.account),
    ] {
        let response = board.api(&other_token, "GET", &path, None);
        assert_eq!(response.status, 403, "{path}: {}", response.text);
    }
    // …and a device id of this account under the other account is unknown there.
    let response = board.api(
        &other_token,
        "GET",
        &format!("/v2/accounts/{other}/devices/{}/registration", id("desk")),
        None,
    );
    assert_eq!(response.status, 404, "{}", response.text);
}

fn board_port_of(registration: &Value) -> Value {
    registration["port"].clone()
}
