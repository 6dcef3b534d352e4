//! Where a user can be reached (seed 002 fork-ring): the live, reachable bindings of the
//! devices a user owns, in the order a proxy should try them.

use crate::{Binding, UnixMillis};

/// q-value in thousandths when a Contact gives none: RFC 3261 treats it as the highest
/// preference, 1.0.
pub const DEFAULT_Q_MILLI: u16 = 1000;

/// Keeps the bindings that are live at `now` (not expired) and reachable (keepalives answer,
/// connection open), ordered by q (highest first; none counts as 1.0), then the most recently
/// refreshed first, then by device and key so the order is stable.
pub fn reachable_by_q(mut bindings: Vec<Binding>, now: UnixMillis) -> Vec<Binding> {
    bindings.retain(|binding| binding.expires_at_ms > now && binding.reachable);
    bindings.sort_by(|a, b| {
        let q = |binding: &Binding| binding.q_milli.unwrap_or(DEFAULT_Q_MILLI);
        q(b).cmp(&q(a))
            .then(b.updated_ms.cmp(&a.updated_ms))
            .then_with(|| (&a.device_id, &a.key).cmp(&(&b.device_id, &b.key)))
    });
    bindings
}

/// A q-value in thousandths as RFC 3261 writes it: `1.0`, `0.5`, `0.25`, `0.001`, `0.0`.
pub fn q_text(q_milli: Option<u16>) -> String {
    let q = q_milli.unwrap_or(DEFAULT_Q_MILLI).min(1000);
    if q == 1000 {
        return "1.0".to_owned();
    }
    let digits = format!("{q:03}");
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        "0.0".to_owned()
    } else {
        format!("0.{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    fn binding(device: &str, q: Option<u16>, updated_ms: i64) -> Binding {
        Binding {
            account_id: "a".into(),
            device_id: device.into(),
            key: format!("c:sip:{device}@192.0.2.1"),
            aor: format!("{device}@acme.test"),
            contact: format!("sip:{device}@192.0.2.1"),
            contact_params: String::new(),
            instance: None,
            reg_id: None,
            q_milli: q,
            expires_at_ms: 10_000,
            registered_at_ms: 0,
            updated_ms,
            call_id: "c".into(),
            cseq: 1,
            user_agent: None,
            transport: Transport::Udp,
            received: "192.0.2.1:5060".parse().expect("addr"),
            local: "192.0.2.100:5060".parse().expect("addr"),
            connection_id: None,
            path: String::new(),
            last_keepalive_ms: None,
            keepalive_rtt_ms: None,
            keepalive_failures: 0,
            reachable: true,
        }
    }

    #[test]
    fn ordered_by_q_then_most_recent_and_only_live_reachable_ones() {
        let mut offline = binding("off", Some(900), 5);
        offline.reachable = false;
        let mut expired = binding("old", Some(900), 5);
        expired.expires_at_ms = 1_000;
        let found = reachable_by_q(
            vec![
                binding("low", Some(100), 9),
                binding("half-old", Some(500), 1),
                offline,
                binding("none", None, 2),
                expired,
                binding("half-new", Some(500), 7),
            ],
            2_000,
        );
        let order: Vec<&str> = found.iter().map(|b| b.device_id.as_str()).collect();
        assert_eq!(order, ["none", "half-new", "half-old", "low"]);
    }

    #[test]
    fn q_values_are_written_as_rfc_3261_does() {
        assert_eq!(q_text(None), "1.0");
        assert_eq!(q_text(Some(1000)), "1.0");
        assert_eq!(q_text(Some(500)), "0.5");
        assert_eq!(q_text(Some(250)), "0.25");
        assert_eq!(q_text(Some(1)), "0.001");
        assert_eq!(q_text(Some(0)), "0.0");
    }
}
