//! Arbitrary bytes through REGISTER processing as the runtime drives it: parse, inspect,
//! authenticate an unknown user, apply to a device holding bindings. Properties: nothing
//! panics; an accepted request leaves at most `max_contacts` bindings, none expired, unique
//! keys, and the store changes name only this device.
#![no_main]
#![forbid(unsafe_code)]

mod common;

use common::{device, origin, registrar, NOW};
use libfuzzer_sys::fuzz_target;
use switchboard_model::{Binding, Change, Transport};

fn binding(key: &str, call_id: &str, cseq: u32, expires_at_ms: i64) -> Binding {
    Binding {
        account_id: "a1".into(),
        device_id: "d1".into(),
        key: key.into(),
        aor: "alice@acme.example".into(),
        contact: key.trim_start_matches("c:").into(),
        contact_params: String::new(),
        instance: None,
        reg_id: None,
        q_milli: None,
        expires_at_ms,
        registered_at_ms: NOW - 10_000,
        updated_ms: NOW - 10_000,
        call_id: call_id.into(),
        cseq,
        user_agent: None,
        transport: Transport::Udp,
        received: "192.0.2.10:5062".parse().expect("constant address"),
        local: "192.0.2.1:5060".parse().expect("constant address"),
        connection_id: None,
        path: String::new(),
        last_keepalive_ms: None,
        keepalive_rtt_ms: None,
        keepalive_failures: 0,
        reachable: true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let Ok(message) = switchboard_sip::parse(data) else {
        return;
    };
    let max_contacts = usize::from(selector % 4) + 1;
    let registrar = registrar(max_contacts);
    let Ok(inspected) = registrar.inspect(&message, |_, _| true) else {
        return;
    };
    let _ = registrar.authenticate_unknown(&message, inspected.realm, NOW);
    let current = vec![
        binding("c:sip:alice@192.0.2.10:5062", "c", 5, NOW + 60_000),
        binding("c:sip:alice@192.0.2.11:5062", inspected.call_id, 2, NOW - 1),
    ];
    let device = device();
    let Ok(registration) = registrar.apply(&message, &inspected, &origin(), &device, &current, NOW)
    else {
        return;
    };
    let bindings = &registration.bindings;
    assert!(bindings.len() <= max_contacts.max(current.len()));
    assert!(bindings.iter().all(|b| b.expires_at_ms > NOW));
    let mut keys: Vec<&str> = bindings.iter().map(|b| b.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), bindings.len());
    for change in &registration.changes {
        match change {
            Change::UpsertBinding(b) => assert_eq!(b.device_id, "d1"),
            Change::RemoveBinding { device_id, .. } => assert_eq!(device_id, "d1"),
            Change::RemoveDeviceBindings { device_id } => assert_eq!(device_id, "d1"),
            Change::AppendEvent(event) => assert_eq!(event.device_id.as_deref(), Some("d1")),
        }
    }
});
