//! End to end: the phones view (`GET /v1/pbx/phones`, `…/stats`) of the real binary. Devices
//! are created through the API; two of them register for real over UDP with digest
//! authentication (raw sockets, the digest computed here, so no external tool is needed) and
//! User-Agents naming a Polycom desk phone and a JsSIP browser client; the view reports each
//! device's registration, address, User-Agent, class, maker, model and MAC, and the counts.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{HttpResponse, REALM, Switchboard};
use md5::{Digest, Md5};
use serde_json::{Value, json};

fn body(data: Value) -> String {
    json!({ "data": data }).to_string()
}

fn bearer(board: &Switchboard, key: &str, path: &str) -> HttpResponse {
    let authorization = format!("Bearer {key}");
    board.http("GET", path, &[("Authorization", &authorization)], None)
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The value of `name="value"` (or `name=value`) in a digest challenge.
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    challenge.split(',').find_map(|part| {
        let (key, value) = part.trim().split_once('=')?;
        let key = key.trim().trim_start_matches("Digest ").trim();
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// Waits (bounded) for a SIP response to `cseq` on `phone`, skipping anything else (the
/// server's OPTIONS pings, retransmissions of earlier answers).
fn response_to(phone: &UdpSocket, cseq: u32) -> String {
    let mut buffer = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok(length) = phone.recv(&mut buffer) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
        let cseq_line = format!("{cseq} REGISTER");
        if message.starts_with("SIP/2.0 ")
            && message.lines().any(|line| {
                line.to_ascii_lowercase().starts_with("cseq:") && line.ends_with(&cseq_line)
            })
        {
            return message;
        }
    }
    panic!("no response to REGISTER CSeq {cseq}");
}

/// Registers `user` from a fresh UDP socket with digest MD5 (qop=auth) and `user_agent`;
/// returns the phone's socket (kept open so it stays the binding's flow).
fn register(board: &Switchboard, user: &str, password: &str, user_agent: &str) -> UdpSocket {
    let phone = UdpSocket::bind("127.0.0.1:0").expect("bind");
    phone
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    phone
        .connect(("127.0.0.1", board.sip_port))
        .expect("connect");
    let port = phone.local_addr().expect("addr").port();
    let uri = format!("sip:{REALM}");
    let call_id = format!("phones-{user}-{port}");
    let request = |cseq: u32, authorization: Option<&str>| {
        let authorization = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{REALM}>;tag=t{port}\r\n\
             To: <sip:{user}@{REALM}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@127.0.0.1:{port}>\r\n\
             {authorization}\
             Expires: 600\r\n\
             User-Agent: {user_agent}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    phone.send(request(1, None).as_bytes()).expect("send");
    let challenge = response_to(&phone, 1);
    assert!(challenge.starts_with("SIP/2.0 401 "), "{challenge}");
    let offer = challenge
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("WWW-Authenticate")
                .then(|| value.trim().to_owned())
        })
        .find(|value| {
            challenge_param(value, "algorithm")
                .is_none_or(|algorithm| algorithm.eq_ignore_ascii_case("MD5"))
        })
        .unwrap_or_else(|| panic!("no MD5 challenge in {challenge}"));
    let realm = challenge_param(&offer, "realm").expect("realm");
    let nonce = challenge_param(&offer, "nonce").expect("nonce");
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let authorization = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    );
    phone
        .send(request(2, Some(&authorization)).as_bytes())
        .expect("send");
    let answer = response_to(&phone, 2);
    assert!(
        answer.starts_with("SIP/2.0 200 "),
        "{answer}\n--- server log ---\n{}",
        board.log()
    );
    phone
}

fn create_device(board: &Switchboard, token: &str, data: Value) -> String {
    let response = board.api(
        token,
        "PUT",
        &format!("/v2/accounts/{}/devices", board.account_id),
        Some(&body(data)),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    response.json["data"]["id"]
        .as_str()
        .expect("device id")
        .to_owned()
}

#[test]
fn phones_show_registrations_and_what_each_phone_is() {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let (admin_token, _) = board.login(&board.bootstrap_key());
    let account = board.account_id.clone();

    let desk = create_device(
        &board,
        &admin_token,
        json!({
            "name": "Front Desk",
            "mac_address": "00-04-f2-ab-cd-ef",
            "caller_id": {"internal": {"number": "101"}},
            "sip": {"username": "desk", "password": "desk-secret-1"},
        }),
    );
    let browser = create_device(
        &board,
        &admin_token,
        json!({"name": "Browser", "sip": {"username": "browser", "password": "browser-secret-1"}}),
    );
    let laptop = create_device(
        &board,
        &admin_token,
        json!({
            "name": "Laptop",
            "device_type": "softphone",
            "sip": {"username": "laptop", "password": "laptop-secret-1"},
        }),
    );

    let _desk_phone = register(
        &board,
        "desk",
        "desk-secret-1",
        "PolycomVVX-VVX_450-UA/6.4.5",
    );
    let _browser_phone = register(&board, "browser", "browser-secret-1", "JsSIP/3.10.0");

    // A key of the account with only pbx:phones:read.
    let response = board.api(
        &admin_token,
        "POST",
        &format!("/v2/accounts/{account}/api_keys"),
        Some(&body(
            json!({"name": "wallboard", "scopes": ["pbx:phones:read"]}),
        )),
    );
    assert_eq!(response.status, 201, "{}", response.text);
    let key = response.json["data"]["key"]
        .as_str()
        .expect("key")
        .to_owned();

    let response = bearer(&board, &key, "/v1/pbx/phones");
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(
        response.json.get("status").is_none(),
        "not an envelope: {}",
        response.text
    );
    let phones = response.json["phones"].as_array().expect("phones").clone();
    let mut expected_ids = vec![desk.clone(), browser.clone(), laptop.clone()];
    expected_ids.sort();
    let ids: Vec<&str> = phones
        .iter()
        .filter_map(|phone| phone["id"].as_str())
        .collect();
    assert_eq!(ids, expected_ids, "one row per device, by id");
    let row = |id: &str| {
        phones
            .iter()
            .find(|phone| phone["id"] == id)
            .cloned()
            .expect("row")
    };

    let desk_row = row(&desk);
    let last = desk_row["lastRegistered"].as_str().expect("lastRegistered");
    assert!(last.len() == 20 && last.ends_with('Z'), "{last}");
    assert_eq!(
        desk_row,
        json!({
            "id": desk,
            "extensionNumber": "101",
            "extensionName": "Front Desk",
            "deviceType": "hardware",
            "manufacturer": "Polycom",
            "model": "VVX 450",
            "macAddress": "00:04:F2:AB:CD:EF",
            "ipAddress": "127.0.0.1",
            "registered": true,
            "lastRegistered": last,
            "userAgent": "PolycomVVX-VVX_450-UA/6.4.5",
        })
    );
    let browser_row = row(&browser);
    let last = browser_row["lastRegistered"]
        .as_str()
        .expect("lastRegistered");
    assert_eq!(
        browser_row,
        json!({
            "id": browser,
            "extensionNumber": "browser",
            "extensionName": "Browser",
            "deviceType": "webrtc",
            "ipAddress": "127.0.0.1",
            "registered": true,
            "lastRegistered": last,
            "userAgent": "JsSIP/3.10.0",
        })
    );
    assert_eq!(
        row(&laptop),
        json!({
            "id": laptop,
            "extensionNumber": "laptop",
            "extensionName": "Laptop",
            "deviceType": "softphone",
            "registered": false,
        })
    );

    // /v2 serves the same view; paging by limit and offset.
    let response = bearer(&board, &key, "/v2/pbx/phones?limit=1&offset=1");
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(response.json["phones"].as_array().map(Vec::len), Some(1));
    assert_eq!(response.json["phones"][0]["id"], expected_ids[1].as_str());
    let response = bearer(&board, &key, "/v1/pbx/phones?offset=5");
    assert_eq!(response.json, json!({"phones": []}));
    let response = bearer(&board, &key, "/v1/pbx/phones?limit=many");
    assert_eq!(response.status, 400, "{}", response.text);

    let response = bearer(&board, &key, "/v1/pbx/phones/stats");
    assert_eq!(response.status, 200, "{}", response.text);
    assert_eq!(
        response.json,
        json!({"stats": {
            "totalPhones": 3,
            "registered": 2,
            "unregistered": 1,
            "byType": {"hardware": 1, "softphone": 1, "webrtc": 1, "mobile": 0},
        }})
    );

    // The admin sees its own (empty) account by default, and this one when it names it.
    let response = board.api(&admin_token, "GET", "/v1/pbx/phones", None);
    assert_eq!(response.json, json!({"phones": []}), "{}", response.text);
    let response = board.api(
        &admin_token,
        "GET",
        &format!("/v1/pbx/phones/stats?account_id={account}"),
        None,
    );
    assert_eq!(
        response.json["stats"]["totalPhones"], 3,
        "{}",
        response.text
    );

    // The key cannot read the devices API itself.
    let response = bearer(&board, &key, &format!("/v2/accounts/{account}/devices"));
    assert_eq!(response.status, 403, "{}", response.text);
    assert_eq!(response.json["data"]["scope"], "devices:read");
}
