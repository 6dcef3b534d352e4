//! Switchboard's domain records, shared by the registrar, the stores and the API.
//!
//! Plain data with no I/O and no clock: every timestamp is a Unix time in milliseconds
//! handed in by the caller. The words follow `DESIGN.md`: an [`Account`] is a tenant with a
//! SIP realm, a [`Device`] holds digest credentials, a [`Binding`] is one registered Contact
//! of a device, and an [`Event`] is one entry of the append-only registration history.
//! [`user_agent`] tells what kind of phone a User-Agent string names.

pub mod access;
pub mod location;
pub mod user_agent;

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

mod state;

pub use access::{AccessLists, AccessRefusal, AccessRules, Cidr};
pub use state::{DeviceFacts, DeviceOutcome, Liveness, RegistrationState, derive_state, state_of};

/// Unix time in milliseconds.
pub type UnixMillis = i64;

/// Days since 1970-01-01 to a proleptic Gregorian `(year, month, day)` (Howard Hinnant's
/// `civil_from_days`); the one calendar routine behind every timestamp Switchboard prints.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A new random 32-hex-digit identifier, the shape Kazoo uses for document ids.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

/// A tenant. Its `realm` is unique (case-insensitive) and selects the account for a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// Stored lower-case.
    pub realm: String,
    /// The parent account, `None` for a top-level account.
    pub parent_id: Option<String>,
    pub created_ms: UnixMillis,
    pub modified_ms: UnixMillis,
}

/// A Kazoo user of an account (`/v2/accounts/{id}/users`). The fields the API looks up are
/// typed; the whole Kazoo user document (without `password`, which is never stored) is kept in
/// `document`. `md5_auth` and `sha1_auth` are Kazoo's `user_auth` credentials: the lower-case
/// hex MD5 and SHA-1 of `"username:password"` (username lower-cased).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub account_id: String,
    /// Unique per account, case-insensitive; Kazoo users need not have one.
    pub username: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub enabled: bool,
    pub md5_auth: Option<String>,
    pub sha1_auth: Option<String>,
    /// The full Kazoo user document as stored (JSON object, no `password`).
    pub document: serde_json::Value,
    pub created_ms: UnixMillis,
    pub modified_ms: UnixMillis,
    /// 1 when created, +1 on every update (optimistic concurrency, like CouchDB's `_rev`).
    pub revision: u64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credential hashes.
        f.debug_struct("User")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("username", &self.username)
            .field("enabled", &self.enabled)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

/// How a device proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SipAuthMethod {
    /// Digest authentication with `sip.username` / `sip.password`.
    #[default]
    Password,
    /// Authenticated by source IP address (`sip.ip`).
    Ip,
}

impl SipAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SipAuthMethod::Password => "password",
            SipAuthMethod::Ip => "ip",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "password" => Some(SipAuthMethod::Password),
            "ip" => Some(SipAuthMethod::Ip),
            _ => None,
        }
    }
}

/// A Kazoo device. The fields the registrar needs are typed; the whole Kazoo document
/// (including keys Switchboard does not know) is kept in `document`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub enabled: bool,
    /// Kazoo `device_type`, e.g. `sip_device`, `softphone`.
    pub device_type: String,
    pub owner_id: Option<String>,
    pub sip: DeviceSip,
    /// The full Kazoo device document as stored (JSON object).
    pub document: serde_json::Value,
    pub created_ms: UnixMillis,
    pub modified_ms: UnixMillis,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The document holds the password: never print it.
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("device_type", &self.device_type)
            .field("sip", &self.sip)
            .finish_non_exhaustive()
    }
}

/// The `sip` object of a device document, as far as the registrar needs it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceSip {
    pub method: SipAuthMethod,
    /// Digest username; matched case-insensitively within the realm.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Source address for `method: ip`.
    pub ip: Option<String>,
    /// Narrows the registrar's expires bounds for this device (Kazoo `sip.expire_seconds`).
    pub expire_seconds: Option<u32>,
}

impl fmt::Debug for DeviceSip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSip")
            .field("method", &self.method)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ip", &self.ip)
            .field("expire_seconds", &self.expire_seconds)
            .finish()
    }
}

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            "ws" => Transport::Ws,
            "wss" => Transport::Wss,
            _ => return None,
        })
    }

    /// Whether the transport is connection-oriented (responses go back on the connection).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registered Contact of a device (RFC 3261 §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub account_id: String,
    pub device_id: String,
    /// Identifies the binding within the device: `i:<instance>:<reg-id>` when the contact
    /// carries `+sip.instance` (RFC 5626), else `c:<contact uri>`.
    pub key: String,
    /// The address-of-record, `user@realm`, lower-case.
    pub aor: String,
    /// The Contact URI, as the device sent it (without angle brackets).
    pub contact: String,
    /// The Contact header parameters other than `expires` and `q`, as sent (`;a=b;c`).
    pub contact_params: String,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    /// q-value in thousandths (RFC 3261 q=0.5 → 500), `None` when not given.
    pub q_milli: Option<u16>,
    pub expires_at_ms: UnixMillis,
    /// When this binding was first created.
    pub registered_at_ms: UnixMillis,
    /// When it was last refreshed.
    pub updated_ms: UnixMillis,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
    pub transport: Transport,
    /// The source address the REGISTER came from (RFC 3581 received/rport).
    pub received: SocketAddr,
    /// The local socket that received it.
    pub local: SocketAddr,
    /// The connection the REGISTER arrived on (stream transports), node-local.
    pub connection_id: Option<u64>,
    /// Path header values (RFC 3327), in order, comma-joined; empty when none.
    pub path: String,
    /// When a keepalive (OPTIONS) to this binding last got a final response. Node-local
    /// reachability facts like this one are kept in memory only (see `ARCHITECTURE.md`).
    #[serde(default)]
    pub last_keepalive_ms: Option<UnixMillis>,
    /// Round-trip time of that keepalive, first transmission to final response.
    #[serde(default)]
    pub keepalive_rtt_ms: Option<u32>,
    /// Keepalives that failed in a row since the last success (a timeout counts).
    #[serde(default)]
    pub keepalive_failures: u32,
    /// Whether the device answers on this binding's flow: true at registration, false once
    /// keepalives failed too often or its connection closed (the binding is `offline`).
    #[serde(default = "reachable_default")]
    pub reachable: bool,
}

fn reachable_default() -> bool {
    true
}

impl Binding {
    /// Seconds of validity left at `now`, never negative.
    pub fn remaining_secs(&self, now: UnixMillis) -> u32 {
        let left = (self.expires_at_ms - now).max(0);
        // Round up so a binding with 0.4 s left still reports 1 s, not 0 (= removed).
        u32::try_from((left + 999) / 1000).unwrap_or(u32::MAX)
    }
}

/// What happened, as recorded in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new binding was created.
    Registered,
    /// An existing binding was refreshed.
    Refreshed,
    /// A binding was removed by the device (expires=0) or the operator.
    Unregistered,
    /// A binding lapsed without a refresh.
    Expired,
    /// A REGISTER carried credentials that did not verify.
    AuthFailed,
    /// A REGISTER was refused for another reason (disabled device, ...).
    Rejected,
    /// A live binding stopped answering keepalives, or its connection closed.
    Offline,
    /// An offline binding answered a keepalive again, or the device re-registered it.
    Online,
    /// A device was created and waits for its first registration.
    Provisioning,
    /// A source address was banned after too many failed authentications (no device).
    Banned,
    /// A ban was lifted: it ran out, or the operator removed it (no device).
    Unbanned,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Registered => "registered",
            EventKind::Refreshed => "refreshed",
            EventKind::Unregistered => "unregistered",
            EventKind::Expired => "expired",
            EventKind::AuthFailed => "auth_failed",
            EventKind::Rejected => "rejected",
            EventKind::Offline => "offline",
            EventKind::Online => "online",
            EventKind::Provisioning => "provisioning",
            EventKind::Banned => "banned",
            EventKind::Unbanned => "unbanned",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 11] = [
        EventKind::Registered,
        EventKind::Refreshed,
        EventKind::Unregistered,
        EventKind::Expired,
        EventKind::AuthFailed,
        EventKind::Rejected,
        EventKind::Offline,
        EventKind::Online,
        EventKind::Provisioning,
        EventKind::Banned,
        EventKind::Unbanned,
    ];

    /// The public name of the event (webhooks, live stream): `device.<kind>`, or
    /// `security.<kind>` for the kinds about an address rather than a device.
    pub fn event_name(self) -> &'static str {
        match self {
            EventKind::Registered => "device.registered",
            EventKind::Refreshed => "device.refreshed",
            EventKind::Unregistered => "device.unregistered",
            EventKind::Expired => "device.expired",
            EventKind::AuthFailed => "device.auth_failed",
            EventKind::Rejected => "device.rejected",
            EventKind::Offline => "device.offline",
            EventKind::Online => "device.online",
            EventKind::Provisioning => "device.provisioning",
            EventKind::Banned => "security.banned",
            EventKind::Unbanned => "security.unbanned",
        }
    }

    /// The kind a public event name (`device.offline`, `security.banned`) or a bare kind
    /// (`offline`) names.
    pub fn from_event_name(name: &str) -> Option<Self> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.event_name() == name)
            .or_else(|| EventKind::parse(name))
    }

    /// Whether the event is about a device (the `security.*` ones are about an address).
    pub fn is_device_event(self) -> bool {
        !matches!(self, EventKind::Banned | EventKind::Unbanned)
    }

    /// The registration state the event leaves its binding (or device) in; none for the
    /// events about an address.
    pub fn implied_state(self) -> Option<RegistrationState> {
        Some(match self {
            EventKind::Registered | EventKind::Refreshed | EventKind::Online => {
                RegistrationState::Registered
            }
            EventKind::Unregistered => RegistrationState::Unregistered,
            EventKind::Expired => RegistrationState::Expired,
            EventKind::AuthFailed | EventKind::Rejected => RegistrationState::Invalid,
            EventKind::Offline => RegistrationState::Offline,
            EventKind::Provisioning => RegistrationState::Provisioning,
            EventKind::Banned | EventKind::Unbanned => return None,
        })
    }

    /// Whether the event is the outcome of a registration attempt or of a binding's end, the
    /// facts a device's state falls back on once it has no live binding. Reachability
    /// (`offline`, `online`) is not: it lives on the bindings themselves.
    pub fn is_outcome(self) -> bool {
        !matches!(
            self,
            EventKind::Offline | EventKind::Online | EventKind::Banned | EventKind::Unbanned
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "registered" => EventKind::Registered,
            "refreshed" => EventKind::Refreshed,
            "unregistered" => EventKind::Unregistered,
            "expired" => EventKind::Expired,
            "auth_failed" => EventKind::AuthFailed,
            "rejected" => EventKind::Rejected,
            "offline" => EventKind::Offline,
            "online" => EventKind::Online,
            "provisioning" => EventKind::Provisioning,
            "banned" => EventKind::Banned,
            "unbanned" => EventKind::Unbanned,
            _ => return None,
        })
    }
}

/// One entry of the append-only registration history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Assigned by the store on append (monotonic); 0 before that.
    pub id: i64,
    pub at_ms: UnixMillis,
    pub kind: EventKind,
    pub account_id: String,
    pub device_id: Option<String>,
    /// The binding key, when the event is about one binding.
    pub binding_key: Option<String>,
    pub contact: Option<String>,
    /// `ip:port` the request came from.
    pub address: Option<String>,
    pub transport: Option<Transport>,
    pub user_agent: Option<String>,
    /// Free text, e.g. `wrong password`, `disabled`, `expires=0`.
    pub reason: Option<String>,
}

/// A change to the location store or the history, applied atomically with others of the
/// same commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace the binding (`device_id`, `key`).
    UpsertBinding(Binding),
    /// Remove one binding; removing a missing one is not an error.
    RemoveBinding { device_id: String, key: String },
    /// Remove every binding of a device.
    RemoveDeviceBindings { device_id: String },
    /// Append an event to the history.
    AppendEvent(Event),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn ids_are_32_hex() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
    }

    #[test]
    fn event_kinds_round_trip_including_offline_and_online() {
        for kind in [
            EventKind::Registered,
            EventKind::Refreshed,
            EventKind::Unregistered,
            EventKind::Expired,
            EventKind::AuthFailed,
            EventKind::Rejected,
            EventKind::Offline,
            EventKind::Online,
        ] {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(EventKind::Offline.as_str(), "offline");
        assert_eq!(EventKind::Online.as_str(), "online");
    }

    #[test]
    fn a_binding_stored_without_reachability_facts_loads_as_reachable() {
        let json = serde_json::json!({
            "account_id": "a", "device_id": "d", "key": "c:sip:x@192.0.2.1", "aor": "x@acme.test",
            "contact": "sip:x@192.0.2.1", "contact_params": "", "instance": null, "reg_id": null,
            "q_milli": null, "expires_at_ms": 1, "registered_at_ms": 0, "updated_ms": 0,
            "call_id": "c", "cseq": 1, "user_agent": null, "transport": "udp",
            "received": "192.0.2.1:5060", "local": "192.0.2.2:5060", "connection_id": null,
            "path": ""
        });
        let binding: Binding = serde_json::from_value(json).expect("old shape loads");
        assert!(binding.reachable);
        assert_eq!(binding.keepalive_failures, 0);
        assert_eq!(binding.last_keepalive_ms, None);
        assert_eq!(binding.keepalive_rtt_ms, None);
    }

    #[test]
    fn device_debug_hides_password() {
        let sip = DeviceSip {
            password: Some("hunter22".into()),
            ..DeviceSip::default()
        };
        assert!(!format!("{sip:?}").contains("hunter22"));
    }

    #[test]
    fn remaining_rounds_up_and_floors_at_zero() {
        let binding = Binding {
            account_id: String::new(),
            device_id: String::new(),
            key: String::new(),
            aor: String::new(),
            contact: String::new(),
            contact_params: String::new(),
            instance: None,
            reg_id: None,
            q_milli: None,
            expires_at_ms: 10_400,
            registered_at_ms: 0,
            updated_ms: 0,
            call_id: String::new(),
            cseq: 1,
            user_agent: None,
            transport: Transport::Udp,
            received: "127.0.0.1:5060".parse().expect("literal"),
            local: "127.0.0.1:5060".parse().expect("literal"),
            connection_id: None,
            path: String::new(),
            last_keepalive_ms: None,
            keepalive_rtt_ms: None,
            keepalive_failures: 0,
            reachable: true,
        };
        assert_eq!(binding.remaining_secs(10_000), 1);
        assert_eq!(binding.remaining_secs(0), 11);
        assert_eq!(binding.remaining_secs(20_000), 0);
    }
}
