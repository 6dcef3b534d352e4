//! Abuse defence end to end: the real binary attacked from one loopback address while a
//! legitimate phone on another keeps registering. Raw UDP clients bound to 127.0.0.x (Linux
//! routes all of 127/8 to loopback); every loop is bounded in count and time.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{REALM, Switchboard};
use md5::{Digest, Md5};
use switchboard_model::EventKind;
use switchboard_store::{Directory, EventQuery, History};

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
    let start = challenge.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &challenge[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?.to_owned(),
        None => rest.split([',', ' ']).next()?.to_owned(),
    })
}

fn status_of(message: &str) -> u16 {
    message
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A digest client on one UDP socket bound to a chosen loopback address.
struct Client {
    socket: UdpSocket,
    user: String,
    password: String,
    realm: String,
    cseq: u32,
    call_id: String,
    nc: u32,
    contacts: usize,
}

impl Client {
    fn new(address: &str, user: &str, password: &str, server_port: u16) -> Client {
        let socket = UdpSocket::bind((address, 0)).expect("bind a loopback address");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        socket.connect(("127.0.0.1", server_port)).expect("connect");
        Client {
            socket,
            user: user.to_owned(),
            password: password.to_owned(),
            realm: REALM.to_owned(),
            cseq: 0,
            call_id: format!("{user}-{address}-{}", std::process::id()),
            nc: 0,
            contacts: 1,
        }
    }

    fn local(&self) -> std::net::SocketAddr {
        self.socket.local_addr().expect("addr")
    }

    fn request(&mut self, authorization: Option<String>) -> String {
        self.cseq += 1;
        let local = self.local();
        let (user, realm) = (&self.user, &self.realm);
        let authorization = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        let contacts: String = (0..self.contacts)
            .map(|i| format!("Contact: <sip:{user}@{local};line={i}>\r\n"))
            .collect();
        format!(
            "REGISTER sip:{realm} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{user}{cseq}x{nc};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@{realm}>;tag=t{cseq}\r\nTo: <sip:{user}@{realm}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{contacts}Expires: 600\r\nUser-Agent: security-test\r\n{authorization}Content-Length: 0\r\n\r\n",
            cseq = self.cseq,
            nc = self.nc,
            call_id = self.call_id,
        )
    }

    fn authorization(&mut self, challenge: &str) -> String {
        let realm = challenge_param(challenge, "realm").expect("realm");
        let nonce = challenge_param(challenge, "nonce").expect("nonce");
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let cnonce = "0a4f113b";
        let uri = format!("sip:{}", self.realm);
        let ha1 = md5_hex(&format!("{}:{realm}:{}", self.user, self.password));
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            self.user
        )
    }

    /// Sends `request` and waits (at most 2 s) for the answer to it; `None` when none came.
    fn exchange(&self, request: &str) -> Option<String> {
        self.socket.send(request.as_bytes()).expect("send");
        let cseq = header(request, "CSeq").unwrap_or_default().to_owned();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            let Ok(len) = self.socket.recv(&mut buf) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buf[..len]).into_owned();
            if message.starts_with("SIP/2.0 ") && header(&message, "CSeq") == Some(cseq.as_str()) {
                return Some(message);
            }
        }
        None
    }

    /// One registration attempt: REGISTER, and on a 401 again with credentials. The final
    /// answer (the first one when it is not a challenge); `None` when the server was silent.
    fn attempt(&mut self) -> Option<(String, Option<String>)> {
        let request = self.request(None);
        let first = self.exchange(&request)?;
        if status_of(&first) != 401 {
            return Some((first, None));
        }
        let challenge = first
            .lines()
            .filter_map(|line| line.strip_prefix("WWW-Authenticate:"))
            .find(|value| !value.contains("SHA-256"))
            .expect("an MD5 challenge")
            .trim()
            .to_owned();
        let authorization = self.authorization(&challenge);
        let request = self.request(Some(authorization));
        let second = self.exchange(&request)?;
        Some((second, Some(first)))
    }

    fn attempt_status(&mut self) -> u16 {
        self.attempt().map_or(0, |(answer, _)| status_of(&answer))
    }
}

fn security_events(board: &Switchboard, kinds: Vec<EventKind>) -> Vec<switchboard_model::Event> {
    let store = board.store();
    let events = store
        .events(&EventQuery {
            kinds,
            ..EventQuery::default()
        })
        .expect("events");
    store.close();
    events
}

fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

#[test]
fn a_brute_forcer_is_banned_while_the_phone_on_another_address_keeps_registering() {
    let mut board = Switchboard::prepare(&[]);
    board.device("alice", "alice-secret");
    {
        let store = board.store();
        store
            .set_account_api_key(&board.account_id, "acme-own-api-key")
            .expect("set the account's key");
        store.close();
    }
    board.start();
    let port = board.sip_port;
    let mut phone = Client::new("127.0.0.1", "alice", "alice-secret", port);
    let mut attacker = Client::new("127.0.0.2", "alice", "guess", port);

    assert_eq!(phone.attempt_status(), 200, "{}", board.log());
    let mut answers = Vec::new();
    for guess in 0..10 {
        attacker.password = format!("guess-{guess}");
        answers.push(attacker.attempt_status());
        // The phone is never disturbed.
        assert_eq!(phone.attempt_status(), 200, "after guess {guess}");
    }
    // Every wrong guess is answered like a wrong password (a new challenge).
    assert_eq!(answers, vec![401; 10]);
    // The tenth failure banned 127.0.0.2: everything it sends now gets 403, even the right
    // password; the phone on 127.0.0.1 goes on registering.
    attacker.password = "alice-secret".to_owned();
    assert_eq!(attacker.attempt_status(), 403);
    for _ in 0..3 {
        assert_eq!(phone.attempt_status(), 200);
    }
    // Events are committed without holding up the answer: wait (bounded) for them.
    assert!(eventually(Duration::from_secs(5), || {
        security_events(&board, vec![EventKind::Banned]).len() == 1
            && security_events(&board, vec![EventKind::AuthFailed]).len() == 10
    }));
    let banned = security_events(&board, vec![EventKind::Banned]);
    assert_eq!(banned[0].address.as_deref(), Some("127.0.0.2"));
    assert_eq!(banned[0].account_id, board.account_id);
    assert_eq!(banned[0].device_id, None);
    assert!(
        banned[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("10 failed authentications")),
        "{banned:?}"
    );
    let failures = security_events(&board, vec![EventKind::AuthFailed]);
    assert_eq!(failures.len(), 10, "one auth_failed per wrong guess");
    assert!(failures.iter().all(|e| {
        e.address
            .as_deref()
            .is_some_and(|a| a.starts_with("127.0.0.2:"))
    }));

    // The operator sees the ban and the counters, and lifts it.
    // The operator: the bootstrap key's account, at the top (the realm's account is below).
    let (token, _) = board.login(&board.bootstrap_key());
    let acme = board.account_id.clone();
    let bans = board.api(&token, "GET", "/v2/security/bans", None);
    assert_eq!(bans.status, 200, "{}", bans.text);
    let list = bans.json["data"].as_array().expect("a list");
    let address_ban = list
        .iter()
        .find(|ban| ban["type"] == "address")
        .expect("the address ban");
    assert_eq!(address_ban["address"], "127.0.0.2");
    assert_eq!(address_ban["failures"], 10);
    assert_eq!(address_ban["offence"], 1);
    assert!(
        address_ban["since"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(address_ban["until"].as_str().is_some());
    let counters = board.api(&token, "GET", "/v2/security/counters", None);
    assert_eq!(counters.status, 200, "{}", counters.text);
    let usernames = counters.json["data"]["usernames"]
        .as_array()
        .expect("usernames");
    assert_eq!(usernames[0]["username"], format!("alice@{REALM}"));
    assert_eq!(usernames[0]["failures"], 10);
    // The account's security history, newest first: the ban, then the failures.
    let events = board.api(
        &token,
        "GET",
        &format!("/v2/accounts/{acme}/security/events?limit=3"),
        None,
    );
    assert_eq!(events.status, 200, "{}", events.text);
    let names: Vec<&str> = events.json["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|event| event["event"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "security.banned",
            "device.auth_failed",
            "device.auth_failed"
        ]
    );
    assert_eq!(events.json["data"][0]["data"]["ipAddress"], "127.0.0.2");
    assert!(events.json["data"][0]["data"].get("deviceId").is_none());

    // The tenant's own credentials are not the operator's; they read their own history.
    let (tenant_token, tenant) = board.login("acme-own-api-key");
    assert_eq!(tenant, acme);
    for (method, path) in [
        ("GET", "/v2/security/bans"),
        ("GET", "/v2/security/counters"),
        ("DELETE", "/v2/security/bans/127.0.0.2"),
    ] {
        let refused = board.api(&tenant_token, method, path, None);
        assert_eq!(refused.status, 403, "{method} {path}: {}", refused.text);
    }
    let own = board.api(
        &tenant_token,
        "GET",
        &format!("/v2/accounts/{acme}/security/events?limit=1"),
        None,
    );
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.json["data"][0]["event"], "security.banned");

    let lifted = board.api(&token, "DELETE", "/v2/security/bans/127.0.0.2", None);
    assert_eq!(lifted.status, 200, "{}", lifted.text);
    assert_eq!(lifted.json["data"]["address"], "127.0.0.2");
    let again = board.api(&token, "DELETE", "/v2/security/bans/127.0.0.2", None);
    assert_eq!(again.status, 404, "{}", again.text);
    // Unbanned: the right password from 127.0.0.2 registers now, and the lifting is an event.
    assert_eq!(attacker.attempt_status(), 200);
    let unbanned = security_events(&board, vec![EventKind::Unbanned]);
    assert_eq!(unbanned.len(), 1, "{unbanned:?}");
    assert_eq!(unbanned[0].address.as_deref(), Some("127.0.0.2"));
    assert_eq!(
        unbanned[0].reason.as_deref(),
        Some("lifted by the operator")
    );
}

/// A response with what legitimately differs between two requests blanked out: the
/// addressing headers echoed from the request, the To tag and the nonce.
fn shape(response: &str) -> Vec<String> {
    response
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let Some((name, value)) = line.split_once(':') else {
                return line.to_owned();
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "via" | "from" | "to" | "call-id" | "cseq" => format!("{name}: <echoed>"),
                "www-authenticate" => {
                    let nonce = challenge_param(value, "nonce").unwrap_or_default();
                    format!("{name}:{}", value.replace(&nonce, "<nonce>"))
                }
                _ => line.to_owned(),
            }
        })
        .collect()
}

#[test]
fn an_unknown_user_looks_exactly_like_a_wrong_password() {
    let mut board = Switchboard::prepare(&[]);
    board.device("alice", "alice-secret");
    let disabled = board.device("dave", "dave-secret");
    {
        let store = board.store();
        let mut device = store.device(&disabled).expect("read").expect("exists");
        device.enabled = false;
        device.document["enabled"] = serde_json::Value::Bool(false);
        store.update_device(&device).expect("disable");
        store.close();
    }
    board.start();
    let port = board.sip_port;
    let mut wrong_password = Client::new("127.0.0.2", "alice", "not-it", port);
    let mut unknown_user = Client::new("127.0.0.2", "zelda", "not-it", port);
    let mut disabled_guess = Client::new("127.0.0.2", "dave", "not-it", port);
    let (wrong_final, wrong_first) = wrong_password.attempt().expect("answered");
    let (unknown_final, unknown_first) = unknown_user.attempt().expect("answered");
    let (disabled_final, disabled_first) = disabled_guess.attempt().expect("answered");
    let wrong_first = wrong_first.expect("challenged first");
    assert!(
        wrong_first.starts_with("SIP/2.0 401 Unauthorized\r\n"),
        "{wrong_first}"
    );
    assert!(
        wrong_final.starts_with("SIP/2.0 401 Unauthorized\r\n"),
        "{wrong_final}"
    );
    for (what, first, last) in [
        ("unknown user", unknown_first, unknown_final),
        (
            "disabled device, wrong password",
            disabled_first,
            disabled_final,
        ),
    ] {
        let first = first.expect("challenged first");
        assert_eq!(shape(&first), shape(&wrong_first), "{what}: the challenge");
        assert_eq!(shape(&last), shape(&wrong_final), "{what}: the refusal");
    }
    // A realm nobody serves is challenged for that realm and refused the same way.
    let mut nowhere = Client::new("127.0.0.2", "alice", "not-it", port);
    nowhere.realm = "nowhere.test".to_owned();
    let (last, first) = nowhere.attempt().expect("answered");
    assert!(
        first
            .expect("challenged")
            .contains("realm=\"nowhere.test\"")
    );
    assert_eq!(status_of(&last), 401, "{last}");
    // The disabled device learns it is disabled only with its password.
    disabled_guess.password = "dave-secret".to_owned();
    assert_eq!(disabled_guess.attempt_status(), 403);
}

#[test]
fn a_flood_from_one_address_gets_503_while_another_address_is_served() {
    let mut board = Switchboard::prepare(&[]);
    board.device("alice", "alice-secret");
    board.start();
    let port = board.sip_port;
    let flooder = UdpSocket::bind("127.0.0.3:0").expect("bind 127.0.0.3");
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    flooder.connect(("127.0.0.1", port)).expect("connect");
    let local = flooder.local_addr().expect("addr");
    // 400 OPTIONS at once: four times the burst, far beyond 50/s. The answers are read on
    // another thread meanwhile, so the client's receive buffer does not drop them.
    const SENT: u32 = 400;
    let reader = flooder.try_clone().expect("clone");
    let counting = std::thread::spawn(move || {
        let (mut ok, mut limited) = (0_u32, 0_u32);
        let mut buf = vec![0u8; 65_536];
        let deadline = Instant::now() + Duration::from_secs(5);
        while ok + limited < SENT && Instant::now() < deadline {
            let Ok(len) = reader.recv(&mut buf) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buf[..len]);
            match status_of(&message) {
                200 => ok += 1,
                503 => {
                    assert!(
                        header(&message, "Retry-After").is_some_and(|s| s.parse::<u32>().is_ok()),
                        "{message}"
                    );
                    limited += 1;
                }
                other => panic!("unexpected {other}: {message}"),
            }
        }
        (ok, limited)
    });
    let started = Instant::now();
    for i in 0..SENT {
        let request = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKflood{i};rport\r\nMax-Forwards: 70\r\nFrom: <sip:flood@{REALM}>;tag=f{i}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: flood-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        flooder.send(request.as_bytes()).expect("send");
        if i % 50 == 49 {
            // Bursts of 50 (still far beyond the rate), so the server's buffer keeps them.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let sending = started.elapsed().as_secs_f64();
    let (ok, limited) = counting.join().expect("reader");
    // The burst (100) and what the rate refilled while the flood lasted (plus half a second
    // for the server to work through its queue) got through; the rest got 503.
    let allowed = 100.0 + 50.0 * (sending + 0.5) + 1.0;
    assert!(
        f64::from(ok) <= allowed,
        "{ok} answered; the flood took {sending:.2} s"
    );
    assert!(ok >= 100, "the burst is served: {ok}");
    assert!(
        limited >= SENT / 2,
        "{limited} rate-limited and {ok} answered of {SENT}"
    );
    // Meanwhile a phone on another address is served at once.
    let mut phone = Client::new("127.0.0.2", "alice", "alice-secret", port);
    for _ in 0..3 {
        assert_eq!(phone.attempt_status(), 200);
    }
    let metrics = board.http_get("/metrics").expect("metrics").1;
    assert!(
        metrics.lines().any(
            |line| line.starts_with("switchboard_sip_rate_limited_total ")
                && line.split_whitespace().nth(1).is_some_and(|v| v != "0")
        ),
        "{metrics}"
    );
}

#[test]
fn too_many_contacts_in_one_register_is_a_400() {
    let mut board = Switchboard::prepare(&[]);
    board.device("alice", "alice-secret");
    board.start();
    let mut phone = Client::new("127.0.0.1", "alice", "alice-secret", board.sip_port);
    phone.contacts = 33;
    let (answer, _) = phone.attempt().expect("answered");
    assert!(
        answer.starts_with("SIP/2.0 400 Bad Request (too many contacts)\r\n"),
        "{answer}"
    );
    phone.contacts = 32;
    assert_eq!(phone.attempt_status(), 200);
}

#[test]
fn tcp_connections_per_address_are_capped_and_banned_addresses_cannot_connect() {
    use std::io::Read;
    use std::net::{SocketAddr, TcpStream};
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_SECURITY_MAX_CONNECTIONS_PER_IP", "2"),
        ("SWITCHBOARD_SECURITY_IP_FAILURES", "2"),
    ]);
    board.device("alice", "alice-secret");
    board.start();
    let server: SocketAddr = ([127, 0, 0, 1], board.sip_port).into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A TCP connection from a chosen loopback address (std cannot bind before connecting).
    let connect_from = |address: [u8; 4]| {
        let stream = runtime
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::from((address, 0)))?;
                socket.connect(server).await
            })
            .expect("connect");
        let stream: TcpStream = stream.into_std().expect("std stream");
        stream.set_nonblocking(false).expect("blocking");
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        stream
    };
    // Whether the server closed the connection (a read sees the end) within the timeout.
    let closed = |stream: &mut TcpStream| {
        let mut byte = [0u8; 1];
        matches!(stream.read(&mut byte), Ok(0))
    };
    let mut first = connect_from([127, 0, 0, 4]);
    let mut second = connect_from([127, 0, 0, 4]);
    let mut third = connect_from([127, 0, 0, 4]);
    assert!(closed(&mut third), "the third connection is closed at once");
    assert!(
        !closed(&mut first) && !closed(&mut second),
        "the first two stay open"
    );
    let mut other = connect_from([127, 0, 0, 5]);
    assert!(!closed(&mut other), "another address has its own cap");
    drop(first);
    // The freed place is taken back once the server saw the close (bounded wait).
    assert!(eventually(Duration::from_secs(5), || {
        let mut again = connect_from([127, 0, 0, 4]);
        !closed(&mut again)
    }));
    // Banned (two wrong passwords here): no connection at all.
    let mut attacker = Client::new("127.0.0.6", "alice", "guess", board.sip_port);
    assert_eq!(attacker.attempt_status(), 401);
    assert_eq!(attacker.attempt_status(), 401);
    let mut banned = connect_from([127, 0, 0, 6]);
    assert!(closed(&mut banned));
}

/// sipvicious against the running server, from 127.0.0.1 (its `-b` option is not passed
/// through to the scanner in the packaged version, so it always sends from the default
/// address), while sipp registers from 127.0.0.2.
#[test]
fn sipvicious_enumerates_nothing_cracks_nothing_and_is_banned_while_sipp_registers() {
    if !common::sipp_available() || !common::sipvicious_available() {
        return;
    }
    let mut board = Switchboard::prepare(&[]);
    for (user, password) in [("101", "pw101-secret"), ("110", "pw110-secret")] {
        board.device(user, password);
    }
    board.device("alice", "alice-secret");
    board.start();
    let port = board.sip_port.to_string();

    // svwar over 100-120 (101 and 110 exist). Without --force it gives up at once: an
    // unknown extension is challenged like a real one; with --force it finds nothing.
    for force in [false, true] {
        let mut command = std::process::Command::new("timeout");
        command.args(["60", "svwar", "--domain", REALM, "-e100-120", "-p", &port]);
        if force {
            command.arg("--force");
        }
        let output = command.arg("127.0.0.1").output().expect("run svwar");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text.contains("found nothing"),
            "svwar (force {force}):\n{text}"
        );
        assert!(!text.contains("| 101") && !text.contains("| 110"), "{text}");
    }

    // svcrack against 101 with the right password 15th in its list: the 10th wrong guess
    // bans 127.0.0.1 before it gets there. Bounded by `timeout` (it keeps trying on 403s).
    let words = board.dir.path().join("words.txt");
    let mut list: Vec<String> = (0..14).map(|i| format!("guess{i}")).collect();
    list.push("pw101-secret".to_owned());
    std::fs::write(&words, list.join("\n") + "\n").expect("wordlist");
    let cracker = std::process::Command::new("timeout")
        .args([
            "15", "svcrack", "--domain", REALM, "-u", "101", "-p", &port, "-d",
        ])
        .arg(&words)
        .arg("127.0.0.1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run svcrack");
    // Meanwhile alice registers from 127.0.0.2, 30 times: every one must succeed.
    let csv = board.users_csv("alice.csv", &[("alice", "alice-secret")], REALM);
    let mut csv_text = String::from("SEQUENTIAL\n");
    for _ in 0..30 {
        csv_text.push_str(&format!(
            "alice;{REALM};[authentication username=alice password=alice-secret];alice-secret\n"
        ));
    }
    std::fs::write(&csv, csv_text).expect("csv");
    let legitimate = board.sipp_at(
        "127.0.0.2",
        common::free_port(),
        "register_ok",
        &csv,
        "u1",
        30,
    );
    let output = cracker.wait_with_output().expect("svcrack output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    legitimate.expect("sipp on 127.0.0.2 registers every time while svcrack runs");
    assert!(
        !text.contains("The password for"),
        "svcrack cracked it:\n{text}"
    );
    assert!(eventually(Duration::from_secs(5), || {
        security_events(&board, vec![EventKind::Banned])
            .iter()
            .any(|event| event.address.as_deref() == Some("127.0.0.1"))
    }));
}

#[test]
fn a_distributed_guesser_slows_the_username_but_never_locks_out_the_phone() {
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_SECURITY_USERNAME_FAILURES", "5")]);
    board.device("alice", "alice-secret");
    board.start();
    let port = board.sip_port;
    // Five addresses, one wrong guess each: no address is banned, the username is slowed.
    let mut guessers: Vec<Client> = (10..15)
        .map(|last| Client::new(&format!("127.0.0.{last}"), "alice", "guess", port))
        .collect();
    for guesser in &mut guessers {
        assert_eq!(guesser.attempt_status(), 401);
    }
    // Now even the right password from an address that guessed gets a wrong password's
    // answer: the guesser cannot tell when it is right.
    guessers[0].password = "alice-secret".to_owned();
    assert_eq!(guessers[0].attempt_status(), 401);
    // The phone's address never failed: it registers.
    let mut phone = Client::new("127.0.0.1", "alice", "alice-secret", port);
    assert_eq!(phone.attempt_status(), 200);
    let (token, _) = board.login(&board.bootstrap_key());
    let bans = board.api(&token, "GET", "/v2/security/bans", None);
    let list = bans.json["data"].as_array().expect("a list");
    assert_eq!(list.len(), 1, "{}", bans.text);
    assert_eq!(list[0]["type"], "username");
    assert_eq!(list[0]["username"], format!("alice@{REALM}"));
    // The operator lifts it: the right password from that address works again.
    let path = format!("/v2/security/bans/alice@{REALM}");
    let lifted = board.api(&token, "DELETE", &path, None);
    assert_eq!(lifted.status, 200, "{}", lifted.text);
    assert_eq!(guessers[0].attempt_status(), 200);
    let metrics = board.http_get("/metrics").expect("metrics").1;
    assert!(
        metrics.contains("switchboard_security_refused_total{reason=\"slowed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_ban_runs_out_by_itself_and_that_is_an_event() {
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_SECURITY_IP_FAILURES", "2"),
        ("SWITCHBOARD_SECURITY_BAN_TIME", "1"),
        ("SWITCHBOARD_SECURITY_BAN_ACTION", "drop"),
    ]);
    board.device("alice", "alice-secret");
    board.start();
    let mut attacker = Client::new("127.0.0.2", "alice", "guess", board.sip_port);
    assert_eq!(attacker.attempt_status(), 401);
    assert_eq!(attacker.attempt_status(), 401);
    // Banned with ban_action "drop": no answer at all.
    assert!(attacker.attempt().is_none());
    assert!(eventually(Duration::from_secs(5), || {
        security_events(&board, vec![EventKind::Unbanned])
            .iter()
            .any(|event| event.reason.as_deref() == Some("ban ran out"))
    }));
    attacker.password = "alice-secret".to_owned();
    assert_eq!(attacker.attempt_status(), 200);
}

/// The value of an unlabelled counter in `/metrics` text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

/// SIPp floods from 127.0.0.3 at 1,000 REGISTERs a second, twenty times the per-address rate:
/// every one is answered, the first with challenges and the rest with 503 and a Retry-After
/// from the start, while SIPp on 127.0.0.2 registers alice every time.
#[test]
fn a_sipp_flood_from_one_address_gets_503_while_sipp_on_another_registers() {
    if !common::sipp_available() {
        return;
    }
    let mut board = Switchboard::prepare(&[]);
    board.device("alice", "alice-secret");
    board.start();
    let flood_csv = board.users_csv("flood.csv", &[("nobody", "x")], REALM);
    const FLOOD: usize = 3_000;
    let (flooded, legitimate) = std::thread::scope(|scope| {
        let flooding = scope.spawn(|| {
            board.sipp_run(
                "127.0.0.3",
                common::free_port(),
                "register_flood",
                &flood_csv,
                "u1",
                FLOOD,
                1_000,
            )
        });
        // While the flood lasts (about 3 s), alice registers 20 times from 127.0.0.2.
        std::thread::sleep(Duration::from_millis(300));
        let csv = board.users_csv("alice.csv", &[("alice", "alice-secret"); 20], REALM);
        let legitimate = board.sipp_at(
            "127.0.0.2",
            common::free_port(),
            "register_ok",
            &csv,
            "u1",
            20,
        );
        (flooding.join().expect("flood thread"), legitimate)
    });
    flooded.expect("every flood REGISTER answered with 401 or 503 + Retry-After");
    legitimate.expect("alice on 127.0.0.2 registers every time during the flood");
    let metrics = board.http_get("/metrics").expect("metrics").1;
    let limited = counter(&metrics, "switchboard_sip_rate_limited_total");
    // The burst (100) and the refill (50/s over about 3 s) get challenges: the rest is shed.
    assert!(
        limited >= (FLOOD as u64) * 8 / 10,
        "{limited} of {FLOOD} flood REGISTERs got 503"
    );
}

/// The overload guard end to end: with a standing-delay budget of 1 ms every commit is "too
/// slow", so under SIPp's load REGISTERs are shed with 503 + Retry-After (never lost, never
/// answered otherwise), some still get through, and once the load stops the next registration
/// is admitted at once.
#[test]
fn the_overload_guard_sheds_registers_with_503_when_commits_queue_and_recovers() {
    if !common::sipp_available() {
        return;
    }
    let mut board = Switchboard::prepare(&[
        ("SWITCHBOARD_SECURITY_MAX_REGISTER_DELAY_MS", "1"),
        ("SWITCHBOARD_SECURITY_ALLOW", "127.0.0.0/8"),
        ("SWITCHBOARD_STORAGE_SYNCHRONOUS", "full"),
    ]);
    let users: Vec<(String, String)> = (0..100)
        .map(|i| (format!("storm{i:03}"), format!("pw-storm-{i:03}")))
        .collect();
    for (user, password) in &users {
        board.device(user, password);
    }
    board.start();
    let pairs: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    let csv = board.users_csv("storm.csv", &pairs, REALM);
    board
        .sipp_run(
            "127.0.0.2",
            common::free_port(),
            "register_or_503",
            &csv,
            "u1",
            800,
            500,
        )
        .expect("every REGISTER answered with 200, or 503 + Retry-After");
    let metrics = board.http_get("/metrics").expect("metrics").1;
    let shed = counter(&metrics, "switchboard_sip_overload_shed_total");
    let ok = counter(&metrics, "switchboard_register_total{outcome=\"ok\"}");
    assert!(shed > 0, "nothing shed:\n{metrics}");
    assert!(ok > 0, "nothing admitted ({shed} shed)");
    eprintln!("overload: {ok} registered, {shed} REGISTERs shed");
    // After the storm the guard sees no queue: a registration goes straight through.
    std::thread::sleep(Duration::from_millis(50));
    let mut phone = Client::new("127.0.0.4", "storm000", "pw-storm-000", board.sip_port);
    assert_eq!(phone.attempt_status(), 200);
    let after = counter(
        &board.http_get("/metrics").expect("metrics").1,
        "switchboard_sip_overload_shed_total",
    );
    assert_eq!(after, shed, "the registration after the storm was not shed");
}
