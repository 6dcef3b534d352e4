//! REGISTER rules with an explicit clock: no sockets, no sleeping.

use super::*;
use crate::digest::{self, Algorithm};
use switchboard_model::{DeviceSip, SipAuthMethod};

const REALM: &str = "acme.example";
const NOW: i64 = 1_700_000_000_000;

fn registrar(config: RegistrarConfig) -> Registrar {
    Registrar::new(config, [42; 32], 300, 1024, 1)
}

/// The defaults without expires jitter, so the expiries the tests check are exact.
fn exact() -> RegistrarConfig {
    RegistrarConfig {
        expires_jitter_percent: 0,
        ..RegistrarConfig::default()
    }
}

fn device() -> Device {
    Device {
        id: "d1".into(),
        account_id: "a1".into(),
        name: "Desk".into(),
        enabled: true,
        device_type: "sip_device".into(),
        owner_id: None,
        sip: DeviceSip {
            method: SipAuthMethod::Password,
            username: Some("alice".into()),
            password: Some("secret".into()),
            ip: None,
            expire_seconds: None,
        },
        document: serde_json::Value::Null,
        created_ms: 0,
        modified_ms: 0,
    }
}

fn origin() -> Origin {
    Origin {
        source: "192.0.2.10:5062".parse().expect("literal"),
        local: "192.0.2.1:5060".parse().expect("literal"),
        transport: Transport::Udp,
        connection_id: None,
    }
}

struct Request {
    call_id: &'static str,
    cseq: u32,
    contacts: Vec<String>,
    expires: Option<String>,
    authorization: Option<String>,
    request_uri: String,
    to: String,
}

impl Request {
    fn new() -> Self {
        Request {
            call_id: "call-1",
            cseq: 1,
            contacts: vec!["<sip:alice@192.0.2.10:5062>".into()],
            expires: Some("3600".into()),
            authorization: None,
            request_uri: format!("sip:{REALM}"),
            to: format!("<sip:alice@{REALM}>"),
        }
    }

    fn text(&self) -> String {
        let mut text = format!(
            "REGISTER {} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{}{};rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=abc\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} REGISTER\r\n",
            self.request_uri, self.call_id, self.cseq, self.to, self.call_id, self.cseq
        );
        for contact in &self.contacts {
            text.push_str(&format!("Contact: {contact}\r\n"));
        }
        if let Some(expires) = &self.expires {
            text.push_str(&format!("Expires: {expires}\r\n"));
        }
        if let Some(authorization) = &self.authorization {
            text.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        text.push_str("User-Agent: Test/1.0\r\nContent-Length: 0\r\n\r\n");
        text
    }
}

/// Answers the first challenge the registrar issues, as a phone would.
fn credentials(
    registrar: &Registrar,
    algorithm: Algorithm,
    password: &str,
    uri: &str,
    nc: &str,
    now: i64,
) -> String {
    let (_, challenges) = registrar.challenges(REALM, false, now);
    let challenge = challenges
        .iter()
        .find(|c| c.contains(&format!("algorithm={}", algorithm.as_str())))
        .expect("challenge offered");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("nonce")
        .to_owned();
    credentials_for(&nonce, algorithm, "alice", password, uri, nc)
}

fn credentials_for(
    nonce: &str,
    algorithm: Algorithm,
    username: &str,
    password: &str,
    uri: &str,
    nc: &str,
) -> String {
    let ha1 = digest::ha1(algorithm, username, REALM, password);
    let response = digest::expected_response(
        &ha1,
        &ResponseInput {
            algorithm,
            method: "REGISTER",
            uri,
            nonce,
            qop: Some(("auth", nc, "c0ffee")),
        },
    );
    format!(
        "Digest username=\"{username}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"c0ffee\"",
        response.as_str(),
        algorithm.as_str()
    )
}

fn parse(text: &str) -> Message<'_> {
    switchboard_sip::parse(text.as_bytes()).expect("test message parses")
}

fn local(_: &str, _: Option<u16>) -> bool {
    false
}

fn auth(registrar: &Registrar, text: &str, device: &Device, now: i64) -> AuthOutcome {
    let msg = parse(text);
    registrar.authenticate(&msg, &origin(), device, REALM, None, now)
}

fn apply(
    registrar: &Registrar,
    request: &Request,
    device: &Device,
    current: &[Binding],
    now: i64,
) -> Result<Registration, Refusal> {
    let text = request.text();
    let msg = parse(&text);
    let inspected = registrar.inspect(&msg, local)?;
    registrar.apply(&msg, &inspected, &origin(), device, current, now)
}

fn events(changes: &[Change]) -> Vec<EventKind> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::AppendEvent(e) => Some(e.kind),
            _ => None,
        })
        .collect()
}

#[test]
fn inspect_selects_realm_and_user_and_checks_the_request_uri() {
    let registrar = registrar(exact());
    let request = Request::new();
    let text = request.text();
    let inspected = registrar.inspect(&parse(&text), local).expect("accepted");
    assert_eq!(inspected.user, "alice");
    assert_eq!(inspected.realm, REALM);
    assert_eq!(inspected.cseq, 1);

    let mut elsewhere = Request::new();
    elsewhere.request_uri = "sip:198.51.100.7:5060".into();
    let text = elsewhere.text();
    assert_eq!(
        registrar.inspect(&parse(&text), local).err(),
        Some(Refusal::NotServed)
    );
    // The registrar's own address is fine (what SIPp and many phones send).
    assert!(
        registrar
            .inspect(&parse(&text), |h, p| h == "198.51.100.7" && p == Some(5060))
            .is_ok()
    );

    let mut tel = Request::new();
    tel.to = "<tel:+15551234>".into();
    let text = tel.text();
    assert_eq!(
        registrar.inspect(&parse(&text), local).err(),
        Some(Refusal::BadAor)
    );
}

#[test]
fn no_credentials_means_a_challenge_for_each_algorithm() {
    let registrar = registrar(exact());
    let outcome = auth(&registrar, &Request::new().text(), &device(), NOW);
    assert_eq!(
        outcome,
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: false },
            failure: None
        }
    );
    let (name, values) = registrar.challenges(REALM, false, NOW);
    assert_eq!(name, "WWW-Authenticate");
    assert_eq!(values.len(), 2);
    assert!(values[0].contains("algorithm=MD5"));
    assert!(values[1].contains("algorithm=SHA-256"));
    assert!(values.iter().all(|v| v.contains("qop=\"auth\"")));
}

#[test]
fn md5_and_sha256_credentials_authenticate() {
    let registrar = registrar(exact());
    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let mut request = Request::new();
        let uri = request.request_uri.clone();
        request.authorization = Some(credentials(
            &registrar, algorithm, "secret", &uri, "00000001", NOW,
        ));
        assert_eq!(
            auth(&registrar, &request.text(), &device(), NOW),
            AuthOutcome::Authenticated,
            "{algorithm:?}"
        );
    }
}

#[test]
fn precomputed_ha1_gives_the_same_verdict() {
    let registrar = registrar(exact());
    let cache = Ha1Cache::new("alice", REALM, "secret");
    let mut request = Request::new();
    let uri = request.request_uri.clone();
    request.authorization = Some(credentials(
        &registrar,
        Algorithm::Md5,
        "secret",
        &uri,
        "00000001",
        NOW,
    ));
    let text = request.text();
    let msg = parse(&text);
    assert_eq!(
        registrar.authenticate(&msg, &origin(), &device(), REALM, Some(&cache), NOW),
        AuthOutcome::Authenticated
    );
}

#[test]
fn wrong_password_is_a_failure_and_a_new_challenge() {
    let registrar = registrar(exact());
    let mut request = Request::new();
    let uri = request.request_uri.clone();
    request.authorization = Some(credentials(
        &registrar,
        Algorithm::Md5,
        "guess",
        &uri,
        "00000001",
        NOW,
    ));
    assert_eq!(
        auth(&registrar, &request.text(), &device(), NOW),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: false },
            failure: Some("wrong password")
        }
    );
}

#[test]
fn old_nonce_with_right_password_is_stale_not_a_failure() {
    let registrar = registrar(exact());
    let mut request = Request::new();
    let uri = request.request_uri.clone();
    request.authorization = Some(credentials(
        &registrar,
        Algorithm::Md5,
        "secret",
        &uri,
        "00000001",
        NOW,
    ));
    assert_eq!(
        auth(&registrar, &request.text(), &device(), NOW + 301_000),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: true },
            failure: None
        }
    );
}

#[test]
fn nonce_counts_cannot_be_replayed() {
    let registrar = registrar(exact());
    let mut request = Request::new();
    let uri = request.request_uri.clone();
    request.authorization = Some(credentials(
        &registrar,
        Algorithm::Md5,
        "secret",
        &uri,
        "00000001",
        NOW,
    ));
    let text = request.text();
    assert_eq!(
        auth(&registrar, &text, &device(), NOW),
        AuthOutcome::Authenticated
    );
    assert_eq!(
        auth(&registrar, &text, &device(), NOW + 1),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: true },
            failure: None
        },
        "the same nc twice is a replay"
    );
}

#[test]
fn digest_uri_must_name_the_request_uri() {
    let registrar = registrar(exact());
    let mut request = Request::new();
    request.authorization = Some(credentials(
        &registrar,
        Algorithm::Md5,
        "secret",
        "sip:other.example",
        "00000001",
        NOW,
    ));
    assert!(matches!(
        auth(&registrar, &request.text(), &device(), NOW),
        AuthOutcome::Refused {
            refusal: Refusal::BadRequest(_),
            ..
        }
    ));
}

#[test]
fn forged_nonce_and_foreign_user_are_refused() {
    let registrar = registrar(exact());
    let mut request = Request::new();
    let uri = request.request_uri.clone();
    request.authorization = Some(credentials_for(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        Algorithm::Md5,
        "alice",
        "secret",
        &uri,
        "00000001",
    ));
    assert_eq!(
        auth(&registrar, &request.text(), &device(), NOW),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: false },
            failure: None
        }
    );
    // Bob's valid credentials do not register Alice's AOR (third-party registration).
    let (_, challenges) = registrar.challenges(REALM, false, NOW);
    let nonce = challenges[0]
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce");
    request.authorization = Some(credentials_for(
        nonce,
        Algorithm::Md5,
        "bob",
        "bobpass",
        &uri,
        "00000001",
    ));
    // Answered as a wrong password is (a 403 would tell a scanner that alice exists).
    assert_eq!(
        auth(&registrar, &request.text(), &device(), NOW),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: false },
            failure: Some("credentials of another user"),
        }
    );
}

#[test]
fn disabled_and_ip_devices() {
    let registrar = registrar(exact());
    let mut disabled = device();
    disabled.enabled = false;
    // No credentials: challenged like anyone, so a scanner cannot tell it exists.
    assert_eq!(
        auth(&registrar, &Request::new().text(), &disabled, NOW),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: false },
            failure: None
        }
    );
    // A wrong password: a wrong password's answer.
    let (_, challenges) = registrar.challenges(REALM, false, NOW);
    let nonce = nonce_of(&challenges[0]);
    let uri = format!("sip:{REALM}");
    let mut request = Request::new();
    request.authorization = Some(credentials_for(
        &nonce,
        Algorithm::Md5,
        "alice",
        "wrong",
        &uri,
        "00000001",
    ));
    assert_eq!(
        auth(&registrar, &request.text(), &disabled, NOW),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: false },
            failure: Some("wrong password")
        }
    );
    // Only the right password learns that the device is disabled.
    request.authorization = Some(credentials_for(
        &nonce,
        Algorithm::Md5,
        "alice",
        "secret",
        &uri,
        "00000002",
    ));
    assert_eq!(
        auth(&registrar, &request.text(), &disabled, NOW),
        AuthOutcome::Refused {
            refusal: Refusal::Disabled,
            failure: None
        }
    );
    let mut by_ip = device();
    by_ip.sip.method = SipAuthMethod::Ip;
    by_ip.sip.ip = Some("192.0.2.10".into());
    assert_eq!(
        auth(&registrar, &Request::new().text(), &by_ip, NOW),
        AuthOutcome::Authenticated
    );
    // From another address: like an unknown user (challenged, then a failure).
    by_ip.sip.ip = Some("192.0.2.99".into());
    assert_eq!(
        auth(&registrar, &Request::new().text(), &by_ip, NOW),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: false },
            failure: None
        }
    );
    request.authorization = Some(credentials_for(
        &nonce,
        Algorithm::Md5,
        "alice",
        "secret",
        &uri,
        "00000003",
    ));
    assert_eq!(
        auth(&registrar, &request.text(), &by_ip, NOW),
        AuthOutcome::Refused {
            refusal: Refusal::Challenge { stale: false },
            failure: Some("source address not allowed")
        }
    );
}

fn nonce_of(challenge: &str) -> String {
    challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("nonce")
        .to_owned()
}

#[test]
fn an_unknown_user_is_answered_exactly_as_a_wrong_password() {
    let registrar = registrar(exact());
    let unknown = |text: &str| registrar.authenticate_unknown(&parse(text), REALM, NOW);
    let known = |text: &str| auth(&registrar, text, &device(), NOW);
    let (_, challenges) = registrar.challenges(REALM, false, NOW);
    let nonce = nonce_of(&challenges[0]);
    let uri = format!("sip:{REALM}");
    let mut cases: Vec<(&str, Request)> = Vec::new();
    cases.push(("no credentials", Request::new()));
    let mut wrong = Request::new();
    wrong.authorization = Some(credentials_for(
        &nonce,
        Algorithm::Md5,
        "alice",
        "guess",
        &uri,
        "00000001",
    ));
    cases.push(("a guess", wrong));
    let mut forged = Request::new();
    forged.authorization = Some(credentials_for(
        "forged",
        Algorithm::Md5,
        "alice",
        "guess",
        &uri,
        "00000001",
    ));
    cases.push(("a forged nonce", forged));
    let mut bad_uri = Request::new();
    bad_uri.authorization = Some(credentials_for(
        &nonce,
        Algorithm::Md5,
        "alice",
        "guess",
        "sip:elsewhere.example",
        "00000001",
    ));
    cases.push(("a digest uri naming another target", bad_uri));
    for (name, request) in cases {
        let text = request.text();
        let (known, unknown) = (known(&text), unknown(&text));
        let refusal = |outcome: &AuthOutcome| match outcome {
            AuthOutcome::Refused { refusal, failure } => (refusal.clone(), failure.is_some()),
            AuthOutcome::Authenticated => panic!("{name}: authenticated"),
        };
        assert_eq!(refusal(&known), refusal(&unknown), "{name}");
    }
    // Even the password a decoy might be built from never authenticates an unknown user.
    for password in ["", "secret", "decoy"] {
        let mut request = Request::new();
        request.authorization = Some(credentials_for(
            &nonce,
            Algorithm::Md5,
            "alice",
            password,
            &uri,
            "00000009",
        ));
        assert!(matches!(
            unknown(&request.text()),
            AuthOutcome::Refused {
                failure: Some("unknown user"),
                ..
            }
        ));
    }
}

#[test]
fn proxy_style_challenges_use_407_headers() {
    let registrar = registrar(RegistrarConfig {
        challenge: ChallengeStyle::Proxy,
        ..exact()
    });
    let (name, _) = registrar.challenges(REALM, false, NOW);
    assert_eq!(name, "Proxy-Authenticate");
    assert_eq!(
        Refusal::Challenge { stale: false }
            .status(ChallengeStyle::Proxy)
            .0,
        407
    );
}

#[test]
fn a_new_contact_is_bound_with_its_expires() {
    let registrar = registrar(exact());
    let registration = apply(&registrar, &Request::new(), &device(), &[], NOW).expect("bound");
    assert_eq!(registration.bindings.len(), 1);
    let binding = &registration.bindings[0];
    assert_eq!(binding.contact, "sip:alice@192.0.2.10:5062");
    assert_eq!(binding.expires_at_ms, NOW + 3_600_000);
    assert_eq!(binding.aor, format!("alice@{REALM}"));
    assert_eq!(binding.user_agent.as_deref(), Some("Test/1.0"));
    assert_eq!(binding.received, origin().source);
    assert_eq!(events(&registration.changes), vec![EventKind::Registered]);
}

#[test]
fn expires_jitter_spreads_granted_expiries_below_the_request_never_below_the_minimum() {
    let registrar = registrar(RegistrarConfig::default());
    assert_eq!(registrar.config().expires_jitter_percent, 10);
    let mut granted = std::collections::BTreeSet::new();
    for i in 0..200 {
        let now = NOW + i * 1_000;
        let registration = apply(&registrar, &Request::new(), &device(), &[], now).expect("bound");
        let secs = (registration.bindings[0].expires_at_ms - now) / 1000;
        assert!((3240..=3600).contains(&secs), "{secs}");
        granted.insert(secs);
    }
    // 200 phones registering together refresh over many distinct moments, not one.
    assert!(granted.len() > 100, "{}", granted.len());
    // At the minimum there is nothing to take off.
    let mut request = Request::new();
    request.expires = Some("60".into());
    let registration = apply(&registrar, &request, &device(), &[], NOW).expect("bound");
    assert_eq!(registration.bindings[0].expires_at_ms, NOW + 60_000);
    // Just above it, never below it.
    request.expires = Some("61".into());
    for i in 0..50 {
        let registration = apply(&registrar, &request, &device(), &[], NOW + i).expect("bound");
        assert!(registration.bindings[0].expires_at_ms - (NOW + i) >= 60_000);
    }
}

#[test]
fn expires_rules() {
    let registrar = registrar(exact());
    let mut request = Request::new();
    request.expires = Some("30".into());
    assert_eq!(
        apply(&registrar, &request, &device(), &[], NOW).err(),
        Some(Refusal::IntervalTooBrief { min_expires: 60 })
    );
    request.expires = Some("99999".into());
    let registration = apply(&registrar, &request, &device(), &[], NOW).expect("clamped");
    assert_eq!(registration.bindings[0].expires_at_ms, NOW + 3_600_000);
    // The contact's own expires beats the header.
    request.contacts = vec!["<sip:alice@192.0.2.10:5062>;expires=120".into()];
    let registration = apply(&registrar, &request, &device(), &[], NOW).expect("param");
    assert_eq!(registration.bindings[0].expires_at_ms, NOW + 120_000);
    // No expires anywhere: the default.
    request.contacts = vec!["<sip:alice@192.0.2.10:5062>".into()];
    request.expires = None;
    let registration = apply(&registrar, &request, &device(), &[], NOW).expect("default");
    assert_eq!(registration.bindings[0].expires_at_ms, NOW + 3_600_000);
    // A device's expire_seconds narrows the maximum.
    let mut narrow = device();
    narrow.sip.expire_seconds = Some(300);
    request.expires = Some("3600".into());
    let registration = apply(&registrar, &request, &narrow, &[], NOW).expect("narrowed");
    assert_eq!(registration.bindings[0].expires_at_ms, NOW + 300_000);
    // Huge values (RFC 4475 scalar02) are taken as the maximum, not an error.
    request.expires = Some("4294968000".into());
    let registration = apply(&registrar, &request, &device(), &[], NOW).expect("huge");
    assert_eq!(registration.bindings[0].expires_at_ms, NOW + 3_600_000);
}

#[test]
fn refresh_unregister_and_retransmission() {
    let registrar = registrar(exact());
    let first = apply(&registrar, &Request::new(), &device(), &[], NOW).expect("bound");
    let mut refresh = Request::new();
    refresh.cseq = 2;
    let refreshed =
        apply(&registrar, &refresh, &device(), &first.bindings, NOW + 1000).expect("refresh");
    assert_eq!(refreshed.bindings.len(), 1);
    assert_eq!(refreshed.bindings[0].registered_at_ms, NOW);
    assert_eq!(refreshed.bindings[0].updated_ms, NOW + 1000);
    assert_eq!(events(&refreshed.changes), vec![EventKind::Refreshed]);

    // The same CSeq again changes nothing; an older one is refused.
    let again = apply(
        &registrar,
        &refresh,
        &device(),
        &refreshed.bindings,
        NOW + 2000,
    )
    .expect("retransmission");
    assert!(again.changes.is_empty());
    let old = apply(
        &registrar,
        &Request::new(),
        &device(),
        &refreshed.bindings,
        NOW + 2000,
    );
    assert_eq!(old.err(), Some(Refusal::OutOfOrder));

    let mut remove = Request::new();
    remove.cseq = 3;
    remove.expires = Some("0".into());
    let removed = apply(
        &registrar,
        &remove,
        &device(),
        &refreshed.bindings,
        NOW + 3000,
    )
    .expect("removed");
    assert!(removed.bindings.is_empty());
    assert_eq!(events(&removed.changes), vec![EventKind::Unregistered]);
}

#[test]
fn refreshing_an_offline_binding_brings_it_online() {
    let registrar = registrar(exact());
    let first = apply(&registrar, &Request::new(), &device(), &[], NOW).expect("bound");
    assert!(first.bindings[0].reachable);
    let mut offline = first.bindings.clone();
    offline[0].reachable = false;
    offline[0].keepalive_failures = 3;
    offline[0].last_keepalive_ms = Some(NOW + 10);
    offline[0].keepalive_rtt_ms = Some(42);
    let mut refresh = Request::new();
    refresh.cseq = 2;
    let refreshed = apply(&registrar, &refresh, &device(), &offline, NOW + 1000).expect("refresh");
    assert_eq!(
        events(&refreshed.changes),
        vec![EventKind::Online, EventKind::Refreshed]
    );
    let binding = &refreshed.bindings[0];
    assert!(binding.reachable);
    assert_eq!(binding.keepalive_failures, 0);
    assert_eq!(
        binding.keepalive_rtt_ms,
        Some(42),
        "the last measurement is kept"
    );

    // A reachable binding's refresh is just a refresh.
    let mut again = Request::new();
    again.cseq = 3;
    let plain = apply(
        &registrar,
        &again,
        &device(),
        &refreshed.bindings,
        NOW + 2000,
    )
    .expect("refresh");
    assert_eq!(events(&plain.changes), vec![EventKind::Refreshed]);
}

#[test]
fn star_removes_everything_and_needs_expires_zero() {
    let registrar = registrar(RegistrarConfig {
        max_contacts: 3,
        ..exact()
    });
    let mut two = Request::new();
    two.contacts = vec![
        "<sip:alice@192.0.2.10:5062>".into(),
        "<sip:alice@192.0.2.11:5062>".into(),
    ];
    let bound = apply(&registrar, &two, &device(), &[], NOW).expect("two bound");
    assert_eq!(bound.bindings.len(), 2);

    let mut star = Request::new();
    star.call_id = "call-2";
    star.contacts = vec!["*".into()];
    star.expires = Some("3600".into());
    assert!(matches!(
        apply(&registrar, &star, &device(), &bound.bindings, NOW),
        Err(Refusal::BadRequest(_))
    ));
    star.expires = Some("0".into());
    let cleared = apply(&registrar, &star, &device(), &bound.bindings, NOW).expect("cleared");
    assert!(cleared.bindings.is_empty());
    assert_eq!(
        events(&cleared.changes),
        vec![EventKind::Unregistered, EventKind::Unregistered]
    );
}

#[test]
fn a_query_lists_without_changing() {
    let registrar = registrar(exact());
    let bound = apply(&registrar, &Request::new(), &device(), &[], NOW).expect("bound");
    let mut query = Request::new();
    query.cseq = 2;
    query.contacts.clear();
    let listed = apply(&registrar, &query, &device(), &bound.bindings, NOW + 10).expect("listed");
    assert_eq!(listed.bindings, bound.bindings);
    assert!(listed.changes.is_empty());
}

#[test]
fn max_contacts_replaces_the_oldest_binding() {
    let registrar = registrar(exact());
    let first = apply(&registrar, &Request::new(), &device(), &[], NOW).expect("bound");
    // The phone rebooted: new Call-ID, new port.
    let mut rebooted = Request::new();
    rebooted.call_id = "call-after-reboot";
    rebooted.contacts = vec!["<sip:alice@192.0.2.10:40000>".into()];
    let second = apply(
        &registrar,
        &rebooted,
        &device(),
        &first.bindings,
        NOW + 5000,
    )
    .expect("replaced");
    assert_eq!(second.bindings.len(), 1);
    assert_eq!(second.bindings[0].contact, "sip:alice@192.0.2.10:40000");
    assert_eq!(
        events(&second.changes),
        vec![EventKind::Unregistered, EventKind::Registered]
    );
}

#[test]
fn instance_id_keys_the_binding() {
    let registrar = registrar(exact());
    let mut request = Request::new();
    request.contacts =
        vec!["<sip:alice@192.0.2.10:5062>;+sip.instance=\"<urn:uuid:1234>\";reg-id=1".into()];
    let first = apply(&registrar, &request, &device(), &[], NOW).expect("bound");
    assert_eq!(first.bindings[0].key, "i:<urn:uuid:1234>:1");
    // Same instance from a new address: the same binding, moved.
    request.call_id = "call-9";
    request.contacts =
        vec!["<sip:alice@192.0.2.10:6000>;+sip.instance=\"<urn:uuid:1234>\";reg-id=1".into()];
    let moved = apply(&registrar, &request, &device(), &first.bindings, NOW + 10).expect("moved");
    assert_eq!(moved.bindings.len(), 1);
    assert_eq!(moved.bindings[0].contact, "sip:alice@192.0.2.10:6000");
    assert_eq!(events(&moved.changes), vec![EventKind::Refreshed]);
}

#[test]
fn lapsed_bindings_are_expired_when_touched() {
    let registrar = registrar(RegistrarConfig {
        max_contacts: 2,
        ..exact()
    });
    let first = apply(&registrar, &Request::new(), &device(), &[], NOW).expect("bound");
    let mut other = Request::new();
    other.call_id = "call-x";
    other.contacts = vec!["<sip:alice@192.0.2.99:5062>".into()];
    let later = NOW + 3_601_000;
    let second = apply(&registrar, &other, &device(), &first.bindings, later).expect("bound");
    assert_eq!(second.bindings.len(), 1);
    assert_eq!(
        events(&second.changes),
        vec![EventKind::Expired, EventKind::Registered]
    );
}

#[test]
fn bad_contacts_change_nothing() {
    let registrar = registrar(exact());
    let mut request = Request::new();
    request.contacts = vec![
        "<sip:alice@192.0.2.10:5062>".into(),
        "<sip:alice@192.0.2.11:5062>;expires=abc".into(),
    ];
    assert!(matches!(
        apply(&registrar, &request, &device(), &[], NOW),
        Err(Refusal::BadRequest(_))
    ));
    request.contacts = vec![format!("<sip:{}@192.0.2.10>", "a".repeat(600))];
    assert!(matches!(
        apply(&registrar, &request, &device(), &[], NOW),
        Err(Refusal::BadRequest(_))
    ));
}

#[test]
fn an_out_of_order_request_is_refused_even_when_an_earlier_contact_evicts_the_binding() {
    // Found by tests/properties.rs: with max_contacts 1 the first contact of the request
    // evicted the binding the CSeq check was about, and the old request overwrote it.
    let registrar = registrar(exact());
    let mut first = Request::new();
    first.cseq = 7;
    first.contacts = vec!["<sip:alice@192.0.2.13:5062>".into()];
    let bound = apply(&registrar, &first, &device(), &[], NOW).expect("bound");
    let mut stale = Request::new();
    stale.cseq = 1;
    stale.contacts = vec![
        "<sip:alice@192.0.2.10:5062>".into(),
        "<sip:alice@192.0.2.13:5062>".into(),
    ];
    assert_eq!(
        apply(&registrar, &stale, &device(), &bound.bindings, NOW),
        Err(Refusal::OutOfOrder)
    );
}
