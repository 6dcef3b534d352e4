//! A device's registration state, derived from its live bindings and the last outcome in its
//! history (`DESIGN.md`, "Registration state"). Pure: the caller passes `now`.

use serde::{Deserialize, Serialize};

use crate::{Binding, EventKind, UnixMillis};

/// One of the six states an operator sees for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationState {
    /// At least one live binding answers its keepalives.
    Registered,
    /// Live bindings, none of them reachable (keepalives fail or the connection closed).
    Offline,
    /// The last binding lapsed without a refresh.
    Expired,
    /// Removed by the device or the operator, or never registered after provisioning.
    Unregistered,
    /// The last attempt failed authentication, or the device is disabled; no live binding.
    Invalid,
    /// Created, never registered yet, inside the provisioning window.
    Provisioning,
}

impl RegistrationState {
    /// Every state, in the order summaries list them.
    pub const ALL: [RegistrationState; 6] = [
        RegistrationState::Registered,
        RegistrationState::Offline,
        RegistrationState::Expired,
        RegistrationState::Unregistered,
        RegistrationState::Invalid,
        RegistrationState::Provisioning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationState::Registered => "registered",
            RegistrationState::Offline => "offline",
            RegistrationState::Expired => "expired",
            RegistrationState::Unregistered => "unregistered",
            RegistrationState::Invalid => "invalid",
            RegistrationState::Provisioning => "provisioning",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        RegistrationState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// Position in [`RegistrationState::ALL`] (for counting into arrays).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The last outcome recorded for a device (see [`EventKind::is_outcome`]), kept by the store
/// next to the history so a state never needs a history scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOutcome {
    pub kind: EventKind,
    pub at_ms: UnixMillis,
    pub reason: Option<String>,
    /// When the device last created a binding (a new registration), if ever.
    pub last_registered_ms: Option<UnixMillis>,
}

/// What the derivation needs of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFacts {
    pub enabled: bool,
    pub created_ms: UnixMillis,
}

/// What a device's bindings say at a moment: whether any is live, and any live one reachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    pub live: bool,
    pub reachable: bool,
}

impl Liveness {
    /// Folds one more binding in.
    pub fn add(&mut self, binding: &Binding, now: UnixMillis) {
        if binding.expires_at_ms > now {
            self.live = true;
            self.reachable |= binding.reachable;
        }
    }

    pub fn of<'a>(bindings: impl IntoIterator<Item = &'a Binding>, now: UnixMillis) -> Self {
        let mut liveness = Liveness::default();
        for binding in bindings {
            liveness.add(binding, now);
        }
        liveness
    }
}

/// The device's state at `now`. `bindings` are the device's bindings as the registrar holds
/// them (lapsed ones are ignored); `last` is its last outcome; a device never registered is
/// `provisioning` for `provisioning_window_ms` after its creation, `unregistered` after.
pub fn derive_state<'a>(
    device: DeviceFacts,
    bindings: impl IntoIterator<Item = &'a Binding>,
    last: Option<&DeviceOutcome>,
    now: UnixMillis,
    provisioning_window_ms: i64,
) -> RegistrationState {
    state_of(
        device,
        Liveness::of(bindings, now),
        last,
        now,
        provisioning_window_ms,
    )
}

/// [`derive_state`] from the bindings' [`Liveness`] already folded.
pub fn state_of(
    device: DeviceFacts,
    liveness: Liveness,
    last: Option<&DeviceOutcome>,
    now: UnixMillis,
    provisioning_window_ms: i64,
) -> RegistrationState {
    if liveness.reachable {
        return RegistrationState::Registered;
    }
    if liveness.live {
        return RegistrationState::Offline;
    }
    if !device.enabled {
        return RegistrationState::Invalid;
    }
    match last.map(|outcome| outcome.kind) {
        Some(EventKind::AuthFailed | EventKind::Rejected) => RegistrationState::Invalid,
        Some(EventKind::Unregistered) => RegistrationState::Unregistered,
        // A registration whose binding is gone without an unregister: it lapsed (the sweeper
        // may not have recorded it yet).
        Some(
            EventKind::Expired
            | EventKind::Registered
            | EventKind::Refreshed
            | EventKind::Online
            | EventKind::Offline,
        ) => RegistrationState::Expired,
        // Never a device's outcome (they are about addresses): as if there were none.
        Some(EventKind::Provisioning | EventKind::Banned | EventKind::Unbanned) | None => {
            if now.saturating_sub(device.created_ms) < provisioning_window_ms {
                RegistrationState::Provisioning
            } else {
                RegistrationState::Unregistered
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    const WINDOW: i64 = 86_400_000;

    fn binding(expires_at_ms: i64, reachable: bool) -> Binding {
        let address = "192.0.2.1:5060".parse().expect("address");
        Binding {
            account_id: "a".into(),
            device_id: "d".into(),
            key: "c:sip:d@192.0.2.1".into(),
            aor: "d@example.com".into(),
            contact: "sip:d@192.0.2.1".into(),
            contact_params: String::new(),
            instance: None,
            reg_id: None,
            q_milli: None,
            expires_at_ms,
            registered_at_ms: 0,
            updated_ms: 0,
            call_id: "c".into(),
            cseq: 1,
            user_agent: None,
            transport: Transport::Udp,
            received: address,
            local: address,
            connection_id: None,
            path: String::new(),
            last_keepalive_ms: None,
            keepalive_rtt_ms: None,
            keepalive_failures: 0,
            reachable,
        }
    }

    fn outcome(kind: EventKind) -> DeviceOutcome {
        DeviceOutcome {
            kind,
            at_ms: 500,
            reason: None,
            last_registered_ms: None,
        }
    }

    const ENABLED: DeviceFacts = DeviceFacts {
        enabled: true,
        created_ms: 0,
    };

    #[test]
    fn a_reachable_live_binding_is_registered_whatever_the_history_says() {
        let bindings = [binding(2_000, false), binding(2_000, true)];
        let failed = outcome(EventKind::AuthFailed);
        assert_eq!(
            derive_state(ENABLED, &bindings, Some(&failed), 1_000, WINDOW),
            RegistrationState::Registered
        );
    }

    #[test]
    fn live_bindings_that_do_not_answer_are_offline() {
        let bindings = [binding(2_000, false), binding(500, true)];
        assert_eq!(
            derive_state(ENABLED, &bindings, None, 1_000, WINDOW),
            RegistrationState::Offline
        );
    }

    #[test]
    fn without_a_live_binding_the_last_outcome_decides() {
        let lapsed = [binding(1_000, true)];
        let cases = [
            (EventKind::Expired, RegistrationState::Expired),
            (EventKind::Registered, RegistrationState::Expired),
            (EventKind::Refreshed, RegistrationState::Expired),
            (EventKind::Unregistered, RegistrationState::Unregistered),
            (EventKind::AuthFailed, RegistrationState::Invalid),
            (EventKind::Rejected, RegistrationState::Invalid),
            (EventKind::Provisioning, RegistrationState::Provisioning),
        ];
        for (kind, expected) in cases {
            let last = outcome(kind);
            assert_eq!(
                derive_state(ENABLED, &lapsed, Some(&last), 1_000, WINDOW),
                expected,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_disabled_device_without_bindings_is_invalid() {
        let disabled = DeviceFacts {
            enabled: false,
            created_ms: 0,
        };
        assert_eq!(
            derive_state(disabled, &[], None, 1_000, WINDOW),
            RegistrationState::Invalid
        );
    }

    #[test]
    fn provisioning_ends_with_its_window() {
        assert_eq!(
            derive_state(ENABLED, &[], None, WINDOW - 1, WINDOW),
            RegistrationState::Provisioning
        );
        assert_eq!(
            derive_state(ENABLED, &[], None, WINDOW, WINDOW),
            RegistrationState::Unregistered
        );
    }

    #[test]
    fn names_round_trip() {
        for state in RegistrationState::ALL {
            assert_eq!(RegistrationState::parse(state.as_str()), Some(state));
            assert_eq!(RegistrationState::ALL[state.index()], state);
        }
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            let family = if kind.is_device_event() {
                "device"
            } else {
                "security"
            };
            assert_eq!(kind.event_name(), format!("{family}.{}", kind.as_str()));
            assert_eq!(EventKind::from_event_name(kind.event_name()), Some(kind));
            assert_eq!(EventKind::from_event_name(kind.as_str()), Some(kind));
        }
    }
}
