//! Properties of REGISTER processing over random request sequences, with an explicit clock:
//! whatever Call-IDs, CSeqs, expiries, contacts and instances arrive, the binding set stays
//! within its invariants, and the changes handed to the store rebuild exactly that set.

use std::collections::BTreeMap;

use proptest::prelude::*;
use switchboard_model::{Binding, Change, Device, DeviceSip, SipAuthMethod, Transport};
use switchboard_registrar::{Origin, Registrar, RegistrarConfig};

const REALM: &str = "acme.example";
const START: i64 = 1_700_000_000_000;

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

/// One Contact value of a request.
#[derive(Debug, Clone)]
struct ContactSpec {
    /// Index into a small pool of URIs, so requests collide on bindings.
    uri: u8,
    /// `+sip.instance` (and reg-id) index, when the contact carries one.
    instance: Option<u8>,
    expires: Option<u32>,
}

#[derive(Debug, Clone)]
enum ContactsSpec {
    /// A query: no Contact.
    None,
    /// `Contact: *` (valid only with `Expires: 0`).
    Star,
    List(Vec<ContactSpec>),
}

#[derive(Debug, Clone)]
struct RegisterSpec {
    /// Milliseconds since the previous request.
    advance_ms: i64,
    call_id: u8,
    cseq: u32,
    expires: Option<u32>,
    contacts: ContactsSpec,
}

fn expires_value() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), 1u32..120, 60u32..7200, Just(u32::MAX),]
}

fn contact() -> impl Strategy<Value = ContactSpec> {
    (
        0u8..4,
        prop::option::of(0u8..3),
        prop::option::of(expires_value()),
    )
        .prop_map(|(uri, instance, expires)| ContactSpec {
            uri,
            instance,
            expires,
        })
}

fn register() -> impl Strategy<Value = RegisterSpec> {
    let contacts = prop_oneof![
        1 => Just(ContactsSpec::None),
        1 => Just(ContactsSpec::Star),
        6 => prop::collection::vec(contact(), 1..4).prop_map(ContactsSpec::List),
    ];
    (
        prop_oneof![Just(0i64), 0i64..5_000, 0i64..4_000_000],
        0u8..3,
        1u32..12,
        prop::option::of(expires_value()),
        contacts,
    )
        .prop_map(
            |(advance_ms, call_id, cseq, expires, contacts)| RegisterSpec {
                advance_ms,
                call_id,
                cseq,
                expires,
                contacts,
            },
        )
}

fn text(spec: &RegisterSpec) -> String {
    let mut text = format!(
        "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK{}x{};rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=1\r\nTo: <sip:alice@{REALM}>\r\nCall-ID: call-{}\r\nCSeq: {} REGISTER\r\n",
        spec.call_id, spec.cseq, spec.call_id, spec.cseq
    );
    match &spec.contacts {
        ContactsSpec::None => {}
        ContactsSpec::Star => text.push_str("Contact: *\r\n"),
        ContactsSpec::List(contacts) => {
            for contact in contacts {
                text.push_str(&format!(
                    "Contact: <sip:alice@192.0.2.{}:5062>",
                    contact.uri + 10
                ));
                if let Some(instance) = contact.instance {
                    text.push_str(&format!(
                        ";+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-00000000000{instance}>\";reg-id=1"
                    ));
                }
                if let Some(expires) = contact.expires {
                    text.push_str(&format!(";expires={expires}"));
                }
                text.push_str("\r\n");
            }
        }
    }
    if let Some(expires) = spec.expires {
        text.push_str(&format!("Expires: {expires}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text
}

/// What the store holds after `changes` are applied to `stored`.
fn apply_changes(stored: &mut BTreeMap<String, Binding>, changes: &[Change]) {
    for change in changes {
        match change {
            Change::UpsertBinding(binding) => {
                stored.insert(binding.key.clone(), binding.clone());
            }
            Change::RemoveBinding { key, .. } => {
                stored.remove(key);
            }
            Change::RemoveDeviceBindings { .. } => stored.clear(),
            Change::AppendEvent(_) => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_register_sequence_breaks_the_binding_invariants(
        max_contacts in 1usize..4,
        jitter in prop_oneof![Just(0u32), Just(10u32)],
        requests in prop::collection::vec(register(), 1..40),
    ) {
        let config = RegistrarConfig {
            max_contacts,
            expires_jitter_percent: jitter,
            ..RegistrarConfig::default()
        };
        let (min, max) = (i64::from(config.min_expires), i64::from(config.max_expires));
        let registrar = Registrar::new(config, [7; 32], 300, 1024, 1);
        let device = device();
        let mut now = START;
        let mut current: Vec<Binding> = Vec::new();
        let mut stored: BTreeMap<String, Binding> = BTreeMap::new();
        for spec in &requests {
            now += spec.advance_ms;
            let text = text(spec);
            let msg = switchboard_sip::parse(text.as_bytes()).expect("generated requests parse");
            let inspected = registrar
                .inspect(&msg, |_, _| false)
                .expect("generated requests name the realm");
            // The bindings still alive: a lapsed one is gone, and a new binding under its key
            // may start from any CSeq.
            let before: BTreeMap<String, Binding> = current
                .iter()
                .filter(|b| b.expires_at_ms > now)
                .map(|b| (b.key.clone(), b.clone()))
                .collect();
            let Ok(registration) =
                registrar.apply(&msg, &inspected, &origin(), &device, &current, now)
            else {
                // A refusal changes nothing: the caller keeps `current`.
                continue;
            };
            let next = registration.bindings;

            // At most max_contacts bindings, keys unique.
            prop_assert!(next.len() <= max_contacts, "{} bindings > {max_contacts}", next.len());
            let keys: BTreeMap<&str, ()> = next.iter().map(|b| (b.key.as_str(), ())).collect();
            prop_assert_eq!(keys.len(), next.len(), "duplicate keys");

            for binding in &next {
                // No expired binding is ever served.
                prop_assert!(binding.expires_at_ms > now, "expired binding served: {binding:?}");
                // A binding's life is within the registrar's bounds.
                let life = binding.expires_at_ms - binding.updated_ms;
                prop_assert!(life >= min * 1000 && life <= max * 1000, "life {life} ms");
                // CSeq ordering: for the same Call-ID a binding's CSeq never goes back.
                if let Some(old) = before.get(&binding.key)
                    && old.call_id == binding.call_id
                {
                    prop_assert!(binding.cseq >= old.cseq, "CSeq went back: {old:?} -> {binding:?}");
                }
                // A binding changed by this request carries this request's Call-ID and CSeq.
                if before.get(&binding.key) != Some(binding) {
                    prop_assert_eq!(&binding.call_id, &format!("call-{}", spec.call_id));
                    prop_assert_eq!(binding.cseq, spec.cseq);
                    prop_assert_eq!(binding.updated_ms, now);
                }
            }

            // The changes rebuild, in the store, exactly the set kept in memory.
            apply_changes(&mut stored, &registration.changes);
            let stored_keys: Vec<&String> = stored.keys().collect();
            let next_keys: Vec<&String> = {
                let mut keys: Vec<&String> = next.iter().map(|b| &b.key).collect();
                keys.sort();
                keys
            };
            prop_assert_eq!(stored_keys, next_keys);
            for binding in &next {
                prop_assert_eq!(stored.get(&binding.key), Some(binding));
            }
            current = next;
        }
    }
}
