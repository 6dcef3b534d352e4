//! Requests this server originates: NOTIFY to a registered device (Kazoo's `check-sync` and
//! the devices `notify` API) and keepalive OPTIONS ([`crate::keepalive`]), as RFC 3261
//! §17.1.2 non-INVITE client transactions.
//!
//! The timers are a pure state machine ([`ClientTimers`]: relative milliseconds in, the next
//! step out) so they are tested without sleeping; [`crate::SipService::notify`] drives it with
//! tokio. Responses find their transaction by the top Via branch ([`ClientTransactions`]);
//! the transport layer hands every response to [`crate::SipService::handle`], which routes
//! it here before anything else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use switchboard_model::Binding;
use switchboard_sip::RequestWriter;
use tokio::sync::mpsc;

/// RFC 3261 T1: the first retransmission interval on unreliable transports.
pub const T1_MS: u64 = 500;
/// RFC 3261 T2: the longest retransmission interval.
pub const T2_MS: u64 = 4_000;
/// RFC 3261 Timer F (64·T1): how long a non-INVITE client transaction waits for a final answer.
pub const TIMER_F_MS: u64 = 64 * T1_MS;

/// What the driver should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the request again (Timer E fired), then poll again.
    Retransmit,
    /// Nothing to do before this time (relative milliseconds) unless a response arrives.
    WaitUntil(u64),
    /// Timer F fired: no final response.
    TimedOut,
}

/// Timer E and Timer F of a non-INVITE client transaction (RFC 3261 §17.1.2.2). Time is
/// milliseconds since the request was first sent.
#[derive(Debug, Clone)]
pub struct ClientTimers {
    reliable: bool,
    interval_ms: u64,
    next_retransmit_ms: u64,
    deadline_ms: u64,
}

impl ClientTimers {
    /// `reliable` transports (TCP) are never retransmitted; `timeout_ms` is Timer F.
    pub fn new(reliable: bool, timeout_ms: u64) -> Self {
        ClientTimers {
            reliable,
            interval_ms: T1_MS,
            next_retransmit_ms: T1_MS,
            deadline_ms: timeout_ms,
        }
    }

    /// A provisional response moves the transaction to Proceeding: retransmit every T2.
    pub fn on_provisional(&mut self, now_ms: u64) {
        self.interval_ms = T2_MS;
        self.next_retransmit_ms = now_ms + T2_MS;
    }

    pub fn poll(&mut self, now_ms: u64) -> Step {
        if now_ms >= self.deadline_ms {
            return Step::TimedOut;
        }
        if self.reliable {
            return Step::WaitUntil(self.deadline_ms);
        }
        if now_ms >= self.next_retransmit_ms {
            self.interval_ms = (self.interval_ms * 2).min(T2_MS);
            self.next_retransmit_ms = now_ms + self.interval_ms;
            return Step::Retransmit;
        }
        Step::WaitUntil(self.next_retransmit_ms.min(self.deadline_ms))
    }
}

/// How one NOTIFY ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// The device sent this final status code.
    Answered(u16),
    /// No final response before Timer F.
    TimedOut,
    /// Nothing to send it on: the binding's connection is gone, or no socket of ours has
    /// the binding's local address.
    NoRoute,
}

/// A NOTIFY to send: the Event header value and an optional `(Content-Type, body)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub event: String,
    pub body: Option<(String, Vec<u8>)>,
}

/// The identifiers of one NOTIFY: fresh for every request.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub branch: String,
    pub from_tag: String,
    pub call_id: String,
}

impl RequestIds {
    pub fn random() -> Self {
        let hex = || format!("{:016x}", rand::random::<u64>());
        RequestIds {
            branch: format!("z9hG4bKsb{}", hex()),
            from_tag: hex(),
            call_id: format!("{}{}", hex(), hex()),
        }
    }
}

/// The NOTIFY for `binding`, sent from `local` (a concrete address of ours): to the binding's
/// Contact URI, `From: <sip:registrar@REALM>`, `To: <sip:AOR>`, out of any dialog
/// (`Subscription-State: terminated`, as Kazoo's check-sync).
pub fn notify_request(
    binding: &Binding,
    local: SocketAddr,
    notify: &Notify,
    ids: &RequestIds,
) -> Vec<u8> {
    let body = notify
        .body
        .as_ref()
        .map(|(content_type, body)| (content_type.as_str(), body.as_slice()));
    out_of_dialog_request(
        "NOTIFY",
        binding,
        local,
        ids,
        |writer| {
            writer
                .header("Event", &notify.event)
                .header("Subscription-State", "terminated");
        },
        body,
    )
}

/// The keepalive OPTIONS for `binding` (RFC 3261 §11), sent from `local`: same addressing as
/// [`notify_request`], no body.
pub fn options_request(binding: &Binding, local: SocketAddr, ids: &RequestIds) -> Vec<u8> {
    out_of_dialog_request(
        "OPTIONS",
        binding,
        local,
        ids,
        |writer| {
            writer.header("Accept", "application/sdp");
        },
        None,
    )
}

/// A request of ours outside any dialog to `binding`'s Contact URI: Via (with our concrete
/// `local` address and `rport`), Max-Forwards, From `<sip:registrar@REALM>`, To `<sip:AOR>`,
/// Call-ID, `CSeq: 1 METHOD`, then `extra` headers, Contact, User-Agent, and the body.
pub fn out_of_dialog_request(
    method: &str,
    binding: &Binding,
    local: SocketAddr,
    ids: &RequestIds,
    extra: impl FnOnce(&mut RequestWriter<'_>),
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let realm = binding
        .aor
        .split_once('@')
        .map_or(binding.aor.as_str(), |(_, realm)| realm);
    let transport = binding.transport.via_token();
    let mut out = Vec::with_capacity(512);
    let mut writer = RequestWriter::new(&mut out, method, &binding.contact);
    writer
        .header_fmt(
            "Via",
            format_args!("SIP/2.0/{transport} {local};branch={};rport", ids.branch),
        )
        .header("Max-Forwards", "70")
        .header_fmt(
            "From",
            format_args!("<sip:registrar@{realm}>;tag={}", ids.from_tag),
        )
        .header_fmt("To", format_args!("<sip:{}>", binding.aor))
        .header("Call-ID", &ids.call_id)
        .header_fmt("CSeq", format_args!("1 {method}"));
    if !binding.path.is_empty() {
        // RFC 3327 §5.3: through the proxies the device registered through, in order.
        writer.header("Route", &binding.path);
    }
    extra(&mut writer);
    writer
        .header_fmt(
            "Contact",
            format_args!(
                "<sip:registrar@{local};transport={}>",
                binding.transport.as_str()
            ),
        )
        .header("User-Agent", "switchboard");
    match body {
        Some((content_type, body)) => writer.finish_with_body(content_type, body),
        None => writer.finish(),
    }
    out
}

/// The address of the first hop of a binding's Path (`"<sip:192.0.2.7:5070;lr>, …"`): its
/// `maddr` or host when that is an IP literal, its port or 5060. Host names are not resolved
/// (`None`: the request goes to the address the REGISTER came from, which is that proxy).
pub fn first_path_hop(path: &str) -> Option<SocketAddr> {
    let first = path.split(',').next()?.trim();
    let inner = match (first.find('<'), first.find('>')) {
        (Some(start), Some(end)) if start < end => &first[start + 1..end],
        _ => first,
    };
    let uri = switchboard_sip::Uri::parse(inner).ok()?;
    let maddr = uri
        .params
        .split(';')
        .filter_map(|param| param.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("maddr"))
        .map(|(_, value)| value.trim());
    let host = maddr.unwrap_or(uri.host);
    let ip: std::net::IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}

/// Pending client transactions by branch: each gets the status codes of the responses that
/// match it.
#[derive(Debug, Default)]
pub struct ClientTransactions {
    pending: Mutex<HashMap<String, mpsc::Sender<u16>>>,
}

/// Removes its transaction from the table when the driver is done (or dropped).
#[derive(Debug)]
pub struct Pending<'t> {
    table: &'t ClientTransactions,
    branch: String,
    pub responses: mpsc::Receiver<u16>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.table.lock().remove(&self.branch);
    }
}

impl ClientTransactions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<u16>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a transaction under `branch`.
    pub fn begin(&self, branch: &str) -> Pending<'_> {
        let (sender, responses) = mpsc::channel(8);
        self.lock().insert(branch.to_owned(), sender);
        Pending {
            table: self,
            branch: branch.to_owned(),
            responses,
        }
    }

    /// Hands a response's status code to the transaction of `branch`; false when there is
    /// none (a stray or late response).
    pub fn deliver(&self, branch: &str, status: u16) -> bool {
        let sender = self.lock().get(branch).cloned();
        match sender {
            // A full queue means the driver already has plenty of answers to read.
            Some(sender) => {
                let _ = sender.try_send(status);
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_model::Transport;

    /// Every step of a transaction that never hears back, as (time, step).
    fn run_silent(reliable: bool, timeout_ms: u64) -> Vec<u64> {
        let mut timers = ClientTimers::new(reliable, timeout_ms);
        let mut now = 0;
        let mut retransmissions = Vec::new();
        for _ in 0..1000 {
            match timers.poll(now) {
                Step::Retransmit => retransmissions.push(now),
                Step::WaitUntil(at) => {
                    assert!(at > now, "time must move forward");
                    now = at;
                }
                Step::TimedOut => {
                    assert_eq!(now, timeout_ms);
                    return retransmissions;
                }
            }
        }
        panic!("never timed out");
    }

    #[test]
    fn udp_retransmits_on_timer_e_doubling_to_t2_until_timer_f() {
        assert_eq!(
            run_silent(false, TIMER_F_MS),
            vec![
                500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
            ]
        );
    }

    #[test]
    fn a_short_timeout_cuts_the_schedule() {
        assert_eq!(run_silent(false, 2_000), vec![500, 1_500]);
    }

    #[test]
    fn tcp_never_retransmits() {
        assert!(run_silent(true, TIMER_F_MS).is_empty());
    }

    #[test]
    fn a_provisional_response_slows_retransmissions_to_t2() {
        let mut timers = ClientTimers::new(false, TIMER_F_MS);
        assert_eq!(timers.poll(0), Step::WaitUntil(500));
        assert_eq!(timers.poll(500), Step::Retransmit);
        timers.on_provisional(600);
        assert_eq!(timers.poll(600), Step::WaitUntil(4_600));
        assert_eq!(timers.poll(4_600), Step::Retransmit);
        assert_eq!(timers.poll(4_600), Step::WaitUntil(8_600));
    }

    #[test]
    fn late_polls_do_not_burst() {
        let mut timers = ClientTimers::new(false, TIMER_F_MS);
        assert_eq!(timers.poll(10_000), Step::Retransmit);
        assert_eq!(timers.poll(10_000), Step::WaitUntil(11_000));
    }

    fn binding(transport: Transport) -> Binding {
        Binding {
            account_id: "a".into(),
            device_id: "d".into(),
            key: "c:sip:alice@192.0.2.7:5062".into(),
            aor: "alice@acme.test".into(),
            contact: "sip:alice@192.0.2.7:5062;transport=udp".into(),
            contact_params: String::new(),
            instance: None,
            reg_id: None,
            q_milli: None,
            expires_at_ms: 0,
            registered_at_ms: 0,
            updated_ms: 0,
            call_id: "x".into(),
            cseq: 1,
            user_agent: None,
            transport,
            received: "198.51.100.1:40000".parse().expect("addr"),
            local: "0.0.0.0:5060".parse().expect("addr"),
            connection_id: None,
            path: String::new(),
            last_keepalive_ms: None,
            keepalive_rtt_ms: None,
            keepalive_failures: 0,
            reachable: true,
        }
    }

    #[test]
    fn the_notify_names_the_device_and_our_listener() {
        let ids = RequestIds {
            branch: "z9hG4bKsb1".into(),
            from_tag: "t1".into(),
            call_id: "c1".into(),
        };
        let notify = Notify {
            event: "check-sync;reboot=true".into(),
            body: None,
        };
        let local = "192.0.2.1:5060".parse().expect("addr");
        let bytes = notify_request(&binding(Transport::Udp), local, &notify, &ids);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert_eq!(
            text,
            "NOTIFY sip:alice@192.0.2.7:5062;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsb1;rport\r\nMax-Forwards: 70\r\n\
From: <sip:registrar@acme.test>;tag=t1\r\nTo: <sip:alice@acme.test>\r\nCall-ID: c1\r\n\
CSeq: 1 NOTIFY\r\nEvent: check-sync;reboot=true\r\nSubscription-State: terminated\r\n\
Contact: <sip:registrar@192.0.2.1:5060;transport=udp>\r\nUser-Agent: switchboard\r\n\
Content-Length: 0\r\n\r\n"
        );
        let message = switchboard_sip::parse(&bytes).expect("parses");
        assert!(switchboard_sip::validate_request(&message, &[]).is_ok());

        let with_body = Notify {
            event: "check-sync".into(),
            body: Some(("application/json".into(), b"{}".to_vec())),
        };
        let bytes = notify_request(&binding(Transport::Tcp), local, &with_body, &ids);
        let message = switchboard_sip::parse(&bytes).expect("parses");
        assert_eq!(message.top_via().expect("via").transport, "TCP");
        assert!(bytes.ends_with(b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"));
    }

    #[test]
    fn a_binding_with_a_path_is_routed_through_it() {
        let ids = RequestIds {
            branch: "z9hG4bKsb3".into(),
            from_tag: "t3".into(),
            call_id: "c3".into(),
        };
        let mut proxied = binding(Transport::Udp);
        proxied.path = "<sip:192.0.2.50:5070;lr>,<sip:edge.example.com;lr>".into();
        let local = "192.0.2.1:5060".parse().expect("addr");
        let bytes = options_request(&proxied, local, &ids);
        let message = switchboard_sip::parse(&bytes).expect("parses");
        assert_eq!(
            message.header(switchboard_sip::HeaderName::Route),
            Some("<sip:192.0.2.50:5070;lr>,<sip:edge.example.com;lr>")
        );
        assert!(bytes.starts_with(b"OPTIONS sip:alice@192.0.2.7:5062;transport=udp SIP/2.0\r\n"));
    }

    #[test]
    fn the_first_path_hop_is_an_address_when_the_uri_names_one() {
        let hop = |path: &str| first_path_hop(path).map(|a| a.to_string());
        assert_eq!(
            hop("<sip:192.0.2.50:5070;lr>, <sip:10.0.0.1;lr>").as_deref(),
            Some("192.0.2.50:5070")
        );
        assert_eq!(
            hop("<sip:192.0.2.50;lr>").as_deref(),
            Some("192.0.2.50:5060")
        );
        assert_eq!(
            hop("<sip:edge.example.com;lr;maddr=192.0.2.9>").as_deref(),
            Some("192.0.2.9:5060")
        );
        assert_eq!(
            hop("<sip:[2001:db8::5]:5080;lr>").as_deref(),
            Some("[2001:db8::5]:5080")
        );
        assert_eq!(hop("<sip:edge.example.com;lr>"), None);
        assert_eq!(hop(""), None);
    }

    #[test]
    fn the_keepalive_options_has_no_dialog_and_no_body() {
        let ids = RequestIds {
            branch: "z9hG4bKsb2".into(),
            from_tag: "t2".into(),
            call_id: "c2".into(),
        };
        let local = "192.0.2.1:5060".parse().expect("addr");
        let bytes = options_request(&binding(Transport::Udp), local, &ids);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert_eq!(
            text,
            "OPTIONS sip:alice@192.0.2.7:5062;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsb2;rport\r\nMax-Forwards: 70\r\n\
From: <sip:registrar@acme.test>;tag=t2\r\nTo: <sip:alice@acme.test>\r\nCall-ID: c2\r\n\
CSeq: 1 OPTIONS\r\nAccept: application/sdp\r\n\
Contact: <sip:registrar@192.0.2.1:5060;transport=udp>\r\nUser-Agent: switchboard\r\n\
Content-Length: 0\r\n\r\n"
        );
        let message = switchboard_sip::parse(&bytes).expect("parses");
        assert!(switchboard_sip::validate_request(&message, &[]).is_ok());
    }

    #[test]
    fn responses_reach_their_transaction_by_branch() {
        let table = ClientTransactions::default();
        let mut pending = table.begin("z9hG4bK1");
        assert!(table.deliver("z9hG4bK1", 100));
        assert!(table.deliver("z9hG4bK1", 200));
        assert!(!table.deliver("z9hG4bK2", 200));
        assert_eq!(pending.responses.try_recv().ok(), Some(100));
        assert_eq!(pending.responses.try_recv().ok(), Some(200));
        drop(pending);
        assert!(table.is_empty());
        assert!(!table.deliver("z9hG4bK1", 200));
    }

    #[test]
    fn ids_are_fresh_and_carry_the_magic_cookie() {
        let (a, b) = (RequestIds::random(), RequestIds::random());
        assert!(a.branch.starts_with("z9hG4bK"));
        assert_ne!(a.branch, b.branch);
        assert_ne!(a.call_id, b.call_id);
    }
}
