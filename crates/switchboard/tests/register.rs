//! End to end: the real binary, registered to with `sipp` over UDP and TCP with digest
//! authentication, and checked through the store it writes.

mod common;

use std::time::{Duration, Instant};

use common::{REALM, Switchboard};
use switchboard_model::EventKind;
use switchboard_store::{Directory, EventQuery, History, Location};

fn events_of(board: &Switchboard, device_id: &str) -> Vec<EventKind> {
    let store = board.store();
    let events = store
        .events(&EventQuery {
            device_id: Some(device_id.to_owned()),
            limit: 100,
            ..EventQuery::default()
        })
        .expect("events");
    store.close();
    events.into_iter().map(|e| e.kind).collect()
}

fn bindings_of(board: &Switchboard, device_id: &str) -> Vec<switchboard_model::Binding> {
    let store = board.store();
    let bindings = store.device_bindings(device_id).expect("bindings");
    store.close();
    bindings
}

/// Waits (bounded) until `check` holds.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

#[test]
fn register_with_digest_over_udp_and_tcp() {
    if !common::sipp_available() {
        return;
    }
    // Debug logging, so the no-secrets check below covers every log line there is.
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_LOG", "debug")]);
    let alice = board.device("alice", "secret-a1");
    let bob = board.device("bob", "secret-b2");
    board.start();

    let csv = board.users_csv("alice.csv", &[("alice", "secret-a1")], REALM);
    board
        .sipp("register_ok", &csv, "u1", 1)
        .expect("udp registration");
    let bindings = bindings_of(&board, &alice);
    assert_eq!(bindings.len(), 1, "one binding after the UDP REGISTER");
    assert_eq!(bindings[0].transport, switchboard_model::Transport::Udp);
    assert!(bindings[0].contact.starts_with("sip:alice@127.0.0.1:"));
    assert_eq!(
        bindings[0].user_agent.as_deref(),
        Some("SIPp-switchboard-test")
    );

    let csv = board.users_csv("bob.csv", &[("bob", "secret-b2")], REALM);
    board
        .sipp("register_ok", &csv, "t1", 1)
        .expect("tcp registration");
    let bindings = bindings_of(&board, &bob);
    assert_eq!(bindings.len(), 1, "one binding after the TCP REGISTER");
    assert_eq!(bindings[0].transport, switchboard_model::Transport::Tcp);
    assert!(bindings[0].connection_id.is_some());

    // The realm in the To URI is matched without regard to case; usernames likewise.
    let csv = board.users_csv("upper.csv", &[("ALICE", "secret-a1")], "ACME.test");
    board
        .sipp("register_ok", &csv, "u1", 1)
        .expect("case-insensitive username and realm");

    assert!(events_of(&board, &alice).contains(&EventKind::Registered));
    assert!(events_of(&board, &bob).contains(&EventKind::Registered));
    assert!(board.terminate(), "clean exit on SIGTERM:\n{}", board.log());
    let log = board.log();
    assert!(log.contains("DEBUG"), "debug logging was on");
    for secret in [
        "secret-a1",
        "secret-b2",
        "nonce=",
        "response=",
        "Authorization",
    ] {
        assert!(!log.contains(secret), "the log leaks {secret}:\n{log}");
    }
}

#[test]
fn refusals_wrong_password_unknown_user_disabled_and_brief_interval() {
    if !common::sipp_available() {
        return;
    }
    let mut board = Switchboard::prepare(&[]);
    let carol = board.device("carol", "right-pass");
    let dave = board.device("dave", "dave-pass");
    // Disable dave in the store, as the API would.
    {
        let store = board.store();
        let mut device = store.device(&dave).expect("read").expect("exists");
        device.enabled = false;
        device.document["enabled"] = serde_json::Value::Bool(false);
        store.update_device(&device).expect("disable");
        store.close();
    }
    board.start();

    for transport in ["u1", "t1"] {
        let wrong = board.users_csv("wrong.csv", &[("carol", "wrong-pass")], REALM);
        board
            .sipp("register_wrong_password", &wrong, transport, 1)
            .expect("wrong password gets a new 401");
        let unknown = board.users_csv("unknown.csv", &[("mallory", "whatever")], REALM);
        board
            .sipp("register_wrong_password", &unknown, transport, 1)
            .expect("an unknown user is answered as a wrong password");
        let other_realm = board.users_csv("realm.csv", &[("carol", "right-pass")], "nowhere.test");
        board
            .sipp("register_wrong_password", &other_realm, transport, 1)
            .expect("an unknown realm is answered as a wrong password");
        let disabled = board.users_csv("disabled.csv", &[("dave", "dave-pass")], REALM);
        board
            .sipp("register_403", &disabled, transport, 1)
            .expect("disabled device gets 403 once its credentials verify");
        let brief = board.users_csv("brief.csv", &[("carol", "right-pass")], REALM);
        board
            .sipp("register_423", &brief, transport, 1)
            .expect("expires below the minimum gets 423 with Min-Expires");
    }
    assert!(
        bindings_of(&board, &carol).is_empty(),
        "no refusal created a binding"
    );
    let carol_events = events_of(&board, &carol);
    assert_eq!(
        carol_events
            .iter()
            .filter(|k| **k == EventKind::AuthFailed)
            .count(),
        2,
        "one auth_failed event per wrong password: {carol_events:?}"
    );
    assert!(events_of(&board, &dave).contains(&EventKind::Rejected));
}

#[test]
fn short_registration_expires_and_is_recorded() {
    if !common::sipp_available() {
        return;
    }
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_REGISTRAR_MIN_EXPIRES", "1")]);
    let erin = board.device("erin", "erin-pass");
    board.start();
    let csv = board.users_csv("erin.csv", &[("erin", "erin-pass")], REALM);
    board
        .sipp("register_short", &csv, "u1", 1)
        .expect("register for 2 s");
    assert_eq!(bindings_of(&board, &erin).len(), 1);
    assert!(
        eventually(Duration::from_secs(10), || bindings_of(&board, &erin)
            .is_empty()),
        "the binding is removed once it expires"
    );
    assert!(
        eventually(Duration::from_secs(5), || events_of(&board, &erin)
            .contains(&EventKind::Expired)),
        "an expired event is recorded"
    );
}

#[test]
fn unregister_removes_the_binding() {
    if !common::sipp_available() {
        return;
    }
    let mut board = Switchboard::prepare(&[]);
    let frank = board.device("frank", "frank-pass");
    board.start();
    let csv = board.users_csv("frank.csv", &[("frank", "frank-pass")], REALM);
    for transport in ["u1", "t1"] {
        board
            .sipp("register_ok", &csv, transport, 1)
            .expect("register");
        assert_eq!(bindings_of(&board, &frank).len(), 1);
        board
            .sipp("unregister_all", &csv, transport, 1)
            .expect("Contact: * with Expires: 0");
        assert!(
            bindings_of(&board, &frank).is_empty(),
            "unregistered over {transport}"
        );
    }
    let events = events_of(&board, &frank);
    assert_eq!(
        events
            .iter()
            .filter(|k| **k == EventKind::Unregistered)
            .count(),
        2,
        "{events:?}"
    );
}

#[test]
fn acknowledged_binding_survives_kill_9() {
    if !common::sipp_available() {
        return;
    }
    let mut board = Switchboard::prepare(&[]);
    let grace = board.device("grace", "grace-pass");
    board.start();
    let csv = board.users_csv("grace.csv", &[("grace", "grace-pass")], REALM);
    let phone_port = common::free_port();
    board
        .sipp_from(phone_port, "register_ok", &csv, "u1", 1)
        .expect("register");
    // The 200 OK has been received: kill at once, with no chance to flush.
    board.kill9();
    let bindings = bindings_of(&board, &grace);
    assert_eq!(
        bindings.len(),
        1,
        "the acknowledged binding is on disk after kill -9"
    );

    // And the restarted server serves it: a refresh from the same contact is a refresh.
    board.start();
    board
        .sipp_from(phone_port, "register_ok", &csv, "u1", 1)
        .expect("register again");
    assert_eq!(
        bindings_of(&board, &grace).len(),
        1,
        "same contact, one binding"
    );
    let events = events_of(&board, &grace);
    assert_eq!(
        events,
        vec![EventKind::Registered, EventKind::Refreshed],
        "the binding loaded at restart is refreshed, not duplicated"
    );
}

#[test]
fn devices_created_while_running_register_at_once() {
    if !common::sipp_available() {
        return;
    }
    let mut board = Switchboard::prepare(&[]);
    board.start();
    let heidi = board.device("heidi", "heidi-pass");
    let csv = board.users_csv("heidi.csv", &[("heidi", "heidi-pass")], REALM);
    board
        .sipp("register_ok", &csv, "u1", 1)
        .expect("register a just-created device");
    assert_eq!(bindings_of(&board, &heidi).len(), 1);
}
