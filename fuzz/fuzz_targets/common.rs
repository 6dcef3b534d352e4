//! What the registrar targets share: a registrar with a fixed secret, one device, one origin.
#![allow(dead_code, reason = "each target uses part of it")]

use switchboard_model::{Device, DeviceSip, SipAuthMethod, Transport};
use switchboard_registrar::{Origin, Registrar, RegistrarConfig};

pub const REALM: &str = "acme.example";
pub const NOW: i64 = 1_700_000_000_000;

pub fn registrar(max_contacts: usize) -> Registrar {
    Registrar::new(
        RegistrarConfig {
            max_contacts,
            ..RegistrarConfig::default()
        },
        [7; 32],
        300,
        1024,
        1,
    )
}

pub fn device() -> Device {
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

pub fn origin() -> Origin {
    Origin {
        source: "192.0.2.10:5062".parse().expect("constant address"),
        local: "192.0.2.1:5060".parse().expect("constant address"),
        transport: Transport::Udp,
        connection_id: None,
    }
}
