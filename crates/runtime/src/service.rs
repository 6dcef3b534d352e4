//! The SIP service: one request in, at most one response out. It runs the generic UAS checks,
//! the transaction layer, and drives the sans-IO registrar with the directory cache, the
//! binding table and the store. Responses go to the client transactions of the requests this
//! server originates ([`SipService::notify`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchboard_model::{Account, Binding, Change, Event, EventKind, Transport};
use switchboard_registrar::date::http_date;
use switchboard_registrar::{AuthOutcome, Inspected, Origin, Refusal, Registrar};
use switchboard_sip::{Message, Method, ResponseWriter};
use switchboard_store::Store;
use tracing::{debug, warn};

use crate::client::{
    ClientTimers, ClientTransactions, Notify, NotifyOutcome, RequestIds, Step, notify_request,
    options_request,
};
use crate::clock::now_ms;
use crate::defence::{Admission, Ban, BanAction, Defence, DefenceConfig};
use crate::directory::{CachedDevice, DirectoryCache};
use crate::location::BindingTable;
use crate::transaction::{Begin, Transactions};
use crate::transport::{Outbound, SendError};

/// Methods this server implements (the `Allow` header).
pub const ALLOW: &str = "REGISTER, OPTIONS";
/// Option tags we support (none that would need a `Require` from the client yet).
const SUPPORTED: &[&str] = &[];

/// Counters, read by metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub registered: AtomicU64,
    pub challenged: AtomicU64,
    pub auth_failed: AtomicU64,
    pub refused: AtomicU64,
    pub malformed: AtomicU64,
    pub retransmissions: AtomicU64,
    pub responses_dropped: AtomicU64,
    /// Requests we originated (NOTIFY), first transmissions only.
    pub requests_sent: AtomicU64,
    pub requests_retransmitted: AtomicU64,
    pub requests_timed_out: AtomicU64,
    pub storage_errors: AtomicU64,
    /// Keepalive OPTIONS sent, and those that got no final response (or had no route).
    pub keepalives_sent: AtomicU64,
    pub keepalives_failed: AtomicU64,
    /// Round trip of answered keepalives.
    pub keepalive_rtt: crate::histogram::Histogram,
    /// Addresses banned, and bans lifted (ran out or by the operator).
    pub bans: AtomicU64,
    pub unbans: AtomicU64,
    /// Messages from a banned or deny-listed address (answered 403 or dropped).
    pub banned_refused: AtomicU64,
    /// Requests over their address's rate (503).
    pub rate_limited: AtomicU64,
    /// REGISTERs shed by the overload guard (503).
    pub overload_shed: AtomicU64,
    /// TCP connections closed at once: banned or denied address, or over its connection cap.
    pub connections_refused: AtomicU64,
    /// Correct credentials refused because the username is slowed and the address failed.
    pub slowed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Host names and addresses under which this registrar is addressed in a Request-URI.
#[derive(Debug, Clone, Default)]
pub struct LocalNames {
    /// Bound listener addresses; an unspecified IP matches any IP literal on that port.
    pub listeners: Vec<SocketAddr>,
    /// Configured aliases (host names or addresses), any port of ours.
    pub aliases: Vec<String>,
}

impl LocalNames {
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let port_ok = |listener_port: u16| match port {
            Some(port) => port == listener_port,
            None => matches!(listener_port, 5060 | 5061),
        };
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return self
                .listeners
                .iter()
                .any(|l| (l.ip().is_unspecified() || l.ip() == ip) && port_ok(l.port()));
        }
        if host.eq_ignore_ascii_case("localhost") {
            return self.listeners.iter().any(|l| port_ok(l.port()));
        }
        self.aliases.iter().any(|alias| {
            alias.eq_ignore_ascii_case(host)
                && (port.is_none() || self.listeners.iter().any(|l| Some(l.port()) == port))
        })
    }
}

/// What the defence holds now, for the operator API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecuritySnapshot {
    pub now_ms: i64,
    pub bans: Vec<Ban>,
    pub slowdowns: Vec<crate::defence::Slowdown>,
    pub counters: crate::defence::Counters,
}

/// A response and where it goes.
#[derive(Debug)]
pub struct Outgoing {
    pub bytes: Vec<u8>,
    pub destination: SocketAddr,
}

/// See the module documentation.
pub struct SipService {
    registrar: Registrar,
    directory: Arc<DirectoryCache>,
    bindings: Arc<BindingTable>,
    transactions: Transactions,
    store: Arc<dyn Store>,
    local: LocalNames,
    outbound: Outbound,
    client: ClientTransactions,
    /// Timer F for the requests we originate.
    client_timeout_ms: u64,
    defence: Mutex<Defence>,
    guard: OverloadGuard,
    connections: ConnectionCounts,
    pub stats: Stats,
}

/// The global overload guard: REGISTERs handled at once (most of them waiting for their
/// commit) are bounded; beyond it a REGISTER is answered `503` at once instead of queueing, so
/// the ones admitted keep their latency and a storm drains instead of melting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadConfig {
    /// REGISTERs in progress at most (0: unbounded).
    pub max_in_flight: usize,
    /// The `Retry-After` of a shed REGISTER, seconds.
    pub retry_after_secs: u32,
    /// TCP connections one address may hold open (0: unbounded); allow-listed addresses are
    /// exempt.
    pub max_connections_per_ip: usize,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            max_in_flight: 2048,
            retry_after_secs: 5,
            max_connections_per_ip: 64,
        }
    }
}

/// Open connections per source address.
type ConnectionCounts = Arc<Mutex<std::collections::HashMap<IpAddr, usize>>>;

/// One accepted connection's place in its address's count; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    counts: Option<ConnectionCounts>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let Some(counts) = &self.counts else {
            return;
        };
        let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[derive(Debug)]
struct OverloadGuard {
    config: OverloadConfig,
    in_flight: AtomicUsize,
}

/// One admitted REGISTER; dropping it frees its place.
struct Permit<'a>(&'a AtomicUsize);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl OverloadGuard {
    fn enter(&self) -> Option<Permit<'_>> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(&self.in_flight);
        if self.config.max_in_flight != 0 && before >= self.config.max_in_flight {
            return None;
        }
        Some(permit)
    }
}

impl std::fmt::Debug for SipService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipService")
            .field("registrar", &self.registrar)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SipService {
    pub fn new(
        registrar: Registrar,
        directory: Arc<DirectoryCache>,
        bindings: Arc<BindingTable>,
        store: Arc<dyn Store>,
        local: LocalNames,
        transaction_linger_ms: i64,
        client_timeout_ms: u64,
    ) -> Self {
        SipService {
            defence: Mutex::new(Defence::new(DefenceConfig::default())),
            guard: OverloadGuard {
                config: OverloadConfig::default(),
                in_flight: AtomicUsize::new(0),
            },
            connections: ConnectionCounts::default(),
            registrar,
            directory,
            bindings,
            transactions: Transactions::new(transaction_linger_ms),
            store,
            local,
            outbound: Outbound::default(),
            client: ClientTransactions::default(),
            client_timeout_ms,
            stats: Stats::default(),
        }
    }

    /// The abuse defences and the overload guard this service applies (the defaults until
    /// set).
    pub fn with_defences(mut self, defence: DefenceConfig, overload: OverloadConfig) -> Self {
        self.defence = Mutex::new(Defence::new(defence));
        self.guard.config = overload;
        self
    }

    pub fn transactions(&self) -> &Transactions {
        &self.transactions
    }

    /// The sockets and connections requests of ours go out on.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// The binding table this service registers into.
    pub fn bindings(&self) -> &Arc<BindingTable> {
        &self.bindings
    }

    /// The store its changes and events are committed to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Connection `connection_id` closed: the bindings of `devices` that lived on it become
    /// unreachable at once, each with an `offline` event (committed before this returns).
    pub async fn connection_closed(&self, connection_id: u64, devices: &[String]) {
        if devices.is_empty() {
            return;
        }
        let commits = crate::keepalive::mark_connection_closed(
            &self.bindings,
            self.store.as_ref(),
            connection_id,
            devices,
            now_ms(),
        );
        for commit in commits {
            if let Err(error) = commit.await {
                bump(&self.stats.storage_errors);
                warn!(%error, "recording offline bindings failed");
            }
        }
    }

    /// Client transactions still waiting for a final response.
    pub fn client_transactions(&self) -> &ClientTransactions {
        &self.client
    }

    /// Sends `notify` to one binding over the transport and connection it registered on (UDP:
    /// from the socket that received the REGISTER to its source address, for NAT) as a
    /// non-INVITE client transaction, and waits for the final response or Timer F.
    pub async fn notify(&self, binding: &Binding, notify: &Notify) -> NotifyOutcome {
        let (outcome, _) = self
            .client_transaction(binding, self.client_timeout_ms, |local, ids| {
                notify_request(binding, local, notify, ids)
            })
            .await;
        outcome
    }

    /// A keepalive OPTIONS to one binding, like [`SipService::notify`] but with its own
    /// (shorter) Timer F; the outcome and the round-trip time from the first transmission to
    /// the final response.
    pub async fn options(&self, binding: &Binding, timeout_ms: u64) -> (NotifyOutcome, Duration) {
        self.client_transaction(binding, timeout_ms, |local, ids| {
            options_request(binding, local, ids)
        })
        .await
    }

    /// Runs one non-INVITE client transaction to `binding`: `build` writes the request for
    /// our concrete local address and fresh identifiers.
    async fn client_transaction(
        &self,
        binding: &Binding,
        timeout_ms: u64,
        build: impl FnOnce(SocketAddr, &RequestIds) -> Vec<u8>,
    ) -> (NotifyOutcome, Duration) {
        let reliable = binding.transport.is_stream();
        let local = if reliable {
            match binding.connection_id {
                Some(id) if self.outbound.has_connection(id) => Some(binding.local),
                _ => None,
            }
        } else {
            self.outbound.udp_local_addr(binding.local)
        };
        let Some(mut local) = local else {
            return (NotifyOutcome::NoRoute, Duration::ZERO);
        };
        if local.ip().is_unspecified()
            && let Some(ip) = route_ip(binding.received)
        {
            local.set_ip(ip);
        }
        let ids = RequestIds::random();
        let bytes = build(local, &ids);
        let mut pending = self.client.begin(&ids.branch);
        let mut timers = ClientTimers::new(reliable, timeout_ms);
        let start = tokio::time::Instant::now();
        if self.send_to_binding(binding, &bytes).await == Err(SendError::NoRoute) {
            return (NotifyOutcome::NoRoute, Duration::ZERO);
        }
        bump(&self.stats.requests_sent);
        let elapsed = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        loop {
            match timers.poll(elapsed()) {
                Step::TimedOut => {
                    bump(&self.stats.requests_timed_out);
                    return (NotifyOutcome::TimedOut, start.elapsed());
                }
                Step::Retransmit => {
                    bump(&self.stats.requests_retransmitted);
                    // A failed datagram is just a lost one: the next retransmission may pass.
                    let _ = self.send_to_binding(binding, &bytes).await;
                }
                Step::WaitUntil(at) => {
                    let wake = start + Duration::from_millis(at);
                    tokio::select! {
                        status = pending.responses.recv() => match status {
                            Some(code) if code < 200 => timers.on_provisional(elapsed()),
                            Some(code) => return (NotifyOutcome::Answered(code), start.elapsed()),
                            None => return (NotifyOutcome::TimedOut, start.elapsed()),
                        },
                        _ = tokio::time::sleep_until(wake) => {}
                    }
                }
            }
        }
    }

    /// [`SipService::notify`] to several bindings at once; the outcomes in the same order.
    pub async fn notify_all(
        self: &Arc<Self>,
        bindings: Vec<Binding>,
        notify: Notify,
    ) -> Vec<(Binding, NotifyOutcome)> {
        let notify = Arc::new(notify);
        let mut tasks = tokio::task::JoinSet::new();
        for (index, binding) in bindings.into_iter().enumerate() {
            let service = self.clone();
            let notify = notify.clone();
            tasks.spawn(async move {
                let outcome = service.notify(&binding, &notify).await;
                (index, binding, outcome)
            });
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => warn!(%error, "notify task failed"),
            }
        }
        outcomes.sort_by_key(|(index, _, _)| *index);
        outcomes
            .into_iter()
            .map(|(_, binding, outcome)| (binding, outcome))
            .collect()
    }

    async fn send_to_binding(&self, binding: &Binding, bytes: &[u8]) -> Result<(), SendError> {
        match binding.connection_id {
            Some(id) if binding.transport.is_stream() => {
                self.outbound.send_stream(id, bytes.to_vec()).await
            }
            _ => {
                self.outbound
                    .send_udp(binding.local, binding.received, bytes)
                    .await
            }
        }
    }

    /// Handles one message (a datagram, or one framed message of a stream).
    pub async fn handle(&self, data: &[u8], origin: Origin) -> Option<Outgoing> {
        bump(&self.stats.requests);
        let is_request = !data.starts_with(b"SIP/");
        let admission = self
            .defence()
            .admit(origin.source.ip(), is_request, now_ms());
        match admission {
            Admission::Admit => {}
            Admission::Refuse(action) => {
                bump(&self.stats.banned_refused);
                return match action {
                    BanAction::Drop => None,
                    BanAction::Forbid => self.answer_early(data, &origin, 403, "Forbidden", None),
                };
            }
            Admission::RateLimited { retry_after_secs } => {
                bump(&self.stats.rate_limited);
                return self.answer_early(
                    data,
                    &origin,
                    503,
                    "Service Unavailable",
                    Some(retry_after_secs),
                );
            }
        }
        let msg = match switchboard_sip::parse(data) {
            Ok(msg) => msg,
            Err(error) => {
                bump(&self.stats.malformed);
                debug!(source = %origin.source, %error, "unparseable message");
                return self.answer_unparseable(data, &error, &origin);
            }
        };
        let Some(request) = msg.request() else {
            // A response to a request of ours goes to its client transaction (RFC 3261
            // §17.1.3: matched by the top Via branch); any other is a stray, never answered
            // (§18.1.2).
            let matched = match (msg.response(), msg.top_via()) {
                (Some(status), Ok(via)) => via
                    .branch()
                    .is_some_and(|branch| self.client.deliver(branch, status.code)),
                _ => false,
            };
            if !matched {
                bump(&self.stats.responses_dropped);
            }
            return None;
        };
        let destination = response_destination(&msg, &origin);
        if let Err(rejection) = switchboard_sip::validate_request(&msg, SUPPORTED) {
            bump(&self.stats.malformed);
            if matches!(request.method, Method::Ack) {
                return None;
            }
            let unsupported = rejection.unsupported.join(", ");
            let bytes =
                self.simple_response(&msg, &origin, rejection.status, rejection.reason, |w| {
                    if !unsupported.is_empty() {
                        w.header("Unsupported", &unsupported);
                    }
                });
            return Some(Outgoing { bytes, destination });
        }
        let bytes = match request.method {
            Method::Ack => return None,
            Method::Register => return self.register_transaction(&msg, origin, destination).await,
            Method::Options => self.simple_response(&msg, &origin, 200, "OK", |w| {
                w.header("Allow", ALLOW);
                w.header("Accept", "application/sdp");
            }),
            Method::Cancel => self.simple_response(
                &msg,
                &origin,
                481,
                "Call/Transaction Does Not Exist",
                |_| {},
            ),
            Method::Other(_) => self.simple_response(&msg, &origin, 501, "Not Implemented", |w| {
                w.header("Allow", ALLOW);
            }),
            _ => self.simple_response(&msg, &origin, 405, "Method Not Allowed", |w| {
                w.header("Allow", ALLOW);
            }),
        };
        Some(Outgoing { bytes, destination })
    }

    async fn register_transaction(
        &self,
        msg: &Message<'_>,
        origin: Origin,
        destination: SocketAddr,
    ) -> Option<Outgoing> {
        let Some(_permit) = self.guard.enter() else {
            bump(&self.stats.overload_shed);
            let retry_after = self.guard.config.retry_after_secs.to_string();
            let bytes = self.simple_response(msg, &origin, 503, "Service Unavailable", |w| {
                w.header("Retry-After", &retry_after);
            });
            return Some(Outgoing { bytes, destination });
        };
        let key = self.transactions.key(msg);
        if let Some(key) = key {
            match self.transactions.begin(key, now_ms()) {
                Begin::New => {}
                Begin::InProgress => {
                    bump(&self.stats.retransmissions);
                    return None;
                }
                Begin::Answered(Some(response)) => {
                    bump(&self.stats.retransmissions);
                    return Some(Outgoing {
                        bytes: response.to_vec(),
                        destination,
                    });
                }
                Begin::Answered(None) => {
                    bump(&self.stats.retransmissions);
                    let bytes = self.relist(msg, &origin).await?;
                    return Some(Outgoing { bytes, destination });
                }
            }
        }
        let bytes = self.register(msg, &origin).await;
        if let Some(key) = key {
            if is_challenge(&bytes) {
                // A challenge changes nothing; a retransmission may get a fresh one. Not
                // keeping them saves ~300 bytes per registration for Timer J's 32 s.
                self.transactions.abandon(key);
            } else {
                self.transactions
                    .complete(key, &bytes, origin.transport.is_stream(), now_ms());
            }
        }
        Some(Outgoing { bytes, destination })
    }

    async fn register(&self, msg: &Message<'_>, origin: &Origin) -> Vec<u8> {
        let now = now_ms();
        let inspected = match self
            .registrar
            .inspect(msg, |host, port| self.local.matches(host, port))
        {
            Ok(inspected) => inspected,
            Err(refusal) => return self.refuse(msg, origin, &refusal, None, now),
        };
        let account = self.find_account(&inspected).await;
        let device = match &account {
            Some(account) => self.find_device_in(account, &inspected).await,
            None => None,
        };
        let Some(cached) = device else {
            return self.unknown_user(msg, &inspected, origin, account.as_deref(), now);
        };
        let realm = cached.account.realm.as_str();
        let username = format!("{}@{}", inspected.user.to_ascii_lowercase(), realm);
        match self.registrar.authenticate(
            msg,
            origin,
            &cached.device,
            realm,
            cached.ha1.as_ref(),
            now,
        ) {
            AuthOutcome::Authenticated => {
                if self.defence().slowed(origin.source.ip(), &username, now) {
                    // The username is under attack and this address failed lately: the
                    // answer is a wrong password's, so a guess that is right teaches nothing.
                    bump(&self.stats.slowed);
                    return self.refuse(
                        msg,
                        origin,
                        &Refusal::Challenge { stale: false },
                        Some(realm),
                        now,
                    );
                }
            }
            AuthOutcome::Refused { refusal, failure } => {
                let kind = match (&refusal, failure) {
                    (_, Some(_)) => Some(EventKind::AuthFailed),
                    (Refusal::Disabled, None) => Some(EventKind::Rejected),
                    _ => None,
                };
                if let Some(kind) = kind {
                    if kind == EventKind::AuthFailed {
                        bump(&self.stats.auth_failed);
                    }
                    let reason = failure.unwrap_or("device disabled");
                    let event = self.registrar.refusal_event(
                        kind,
                        &cached.device,
                        origin,
                        msg,
                        reason,
                        now,
                    );
                    self.record(event);
                }
                if failure.is_some() {
                    self.failed(origin, msg, &username, Some(&cached.account.id), now);
                }
                return self.refuse(msg, origin, &refusal, Some(realm), now);
            }
        }
        self.bind(msg, &inspected, origin, &cached, now).await
    }

    /// A REGISTER for a user the realm does not have (or a realm no account has): answered
    /// exactly as a known user's wrong password is — challenged with the realm asked for,
    /// then the same 401 with the same hashing — so scanners cannot enumerate extensions. A
    /// credentialed attempt is a failure like any other (and an `auth_failed` event of the
    /// account, without a device, when the realm is known).
    fn unknown_user(
        &self,
        msg: &Message<'_>,
        inspected: &Inspected<'_>,
        origin: &Origin,
        account: Option<&Account>,
        now: i64,
    ) -> Vec<u8> {
        let realm = account.map_or_else(
            || inspected.realm.to_ascii_lowercase(),
            |account| account.realm.clone(),
        );
        let username = format!("{}@{realm}", inspected.user.to_ascii_lowercase());
        let (refusal, failure) = match self.registrar.authenticate_unknown(msg, &realm, now) {
            AuthOutcome::Refused { refusal, failure } => (refusal, failure),
            // Never happens (there is nobody to authenticate as); answered as a guess.
            AuthOutcome::Authenticated => {
                (Refusal::Challenge { stale: false }, Some("unknown user"))
            }
        };
        if let Some(reason) = failure {
            bump(&self.stats.auth_failed);
            if let Some(account) = account {
                self.record(Event {
                    id: 0,
                    at_ms: now,
                    kind: EventKind::AuthFailed,
                    account_id: account.id.clone(),
                    device_id: None,
                    binding_key: None,
                    contact: None,
                    address: Some(origin.source.to_string()),
                    transport: Some(origin.transport),
                    user_agent: user_agent_of(msg),
                    reason: Some(reason.to_owned()),
                });
            }
            self.failed(origin, msg, &username, account.map(|a| a.id.as_str()), now);
        }
        self.refuse(msg, origin, &refusal, Some(&realm), now)
    }

    /// Whether a TCP connection from `ip` may be served: not from a banned or denied
    /// address, and within the address's connection cap. The slot is held while it is open.
    pub fn admit_connection(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let (allowed, banned) = {
            let defence = self.defence();
            (defence.is_allowed(ip), defence.is_refused(ip, now_ms()))
        };
        if banned {
            bump(&self.stats.connections_refused);
            return None;
        }
        let cap = self.guard.config.max_connections_per_ip;
        if allowed || cap == 0 {
            return Some(ConnectionSlot { counts: None, ip });
        }
        let mut counts = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= cap {
            drop(counts);
            bump(&self.stats.connections_refused);
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counts: Some(self.connections.clone()),
            ip,
        })
    }

    fn defence(&self) -> MutexGuard<'_, Defence> {
        self.defence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a wrong digest response; a ban it causes is recorded as a `banned` event.
    fn failed(
        &self,
        origin: &Origin,
        msg: &Message<'_>,
        username: &str,
        account_id: Option<&str>,
        now: i64,
    ) {
        let ban = self
            .defence()
            .failure(origin.source.ip(), Some(username), account_id, now);
        if let Some(ban) = ban {
            bump(&self.stats.bans);
            warn!(address = %ban.address, failures = ban.failures, offence = ban.offence,
                until_ms = ban.until_ms, "address banned after failed authentications");
            let user_agent = user_agent_of(msg);
            self.record_ban_event(
                EventKind::Banned,
                &ban,
                Some(origin.transport),
                user_agent,
                ban.reason(),
                now,
            );
        }
    }

    /// A `banned` or `unbanned` event: about an address, no device. It belongs to the account
    /// whose realm was attacked, else to the oldest top-level account (the operator's).
    fn record_ban_event(
        &self,
        kind: EventKind,
        ban: &Ban,
        transport: Option<Transport>,
        user_agent: Option<String>,
        reason: String,
        now: i64,
    ) -> Option<switchboard_store::CommitFuture> {
        let Some(account_id) = ban
            .account_id
            .clone()
            .or_else(|| self.directory.top_level_account_id())
        else {
            warn!(address = %ban.address, "no account to record a ban event under");
            return None;
        };
        let event = Event {
            id: 0,
            at_ms: now,
            kind,
            account_id,
            device_id: None,
            binding_key: None,
            contact: None,
            address: Some(ban.address.to_string()),
            transport,
            user_agent,
            reason: Some(reason),
        };
        Some(self.store.commit(vec![Change::AppendEvent(event)]))
    }

    /// Lifts the bans that ran out (each an `unbanned` event); called by the sweeper.
    pub fn expire_bans(&self, now: i64) {
        let lifted = self.defence().expire(now);
        for ban in lifted {
            bump(&self.stats.unbans);
            if let Some(commit) = self.record_ban_event(
                EventKind::Unbanned,
                &ban,
                None,
                None,
                "ban ran out".to_owned(),
                now,
            ) {
                drop(commit);
            }
        }
    }

    /// The operator lifts the ban of `address` (an `unbanned` event, committed before this
    /// returns); the ban lifted, if there was one.
    pub async fn lift_ban(&self, address: IpAddr) -> Option<Ban> {
        let ban = self.defence().unban(address)?;
        bump(&self.stats.unbans);
        let now = now_ms();
        if let Some(commit) = self.record_ban_event(
            EventKind::Unbanned,
            &ban,
            None,
            None,
            "lifted by the operator".to_owned(),
            now,
        ) && let Err(error) = commit.await
        {
            bump(&self.stats.storage_errors);
            warn!(%error, "recording an unban failed");
        }
        Some(ban)
    }

    /// Ends the slowdown of a username (`user@realm`) now; whether it was slowed.
    pub fn lift_slowdown(&self, username: &str) -> bool {
        self.defence()
            .lift_slowdown(&username.to_ascii_lowercase(), now_ms())
    }

    /// Current bans, slowed usernames and failure counters.
    pub fn security_snapshot(&self) -> SecuritySnapshot {
        let now = now_ms();
        let defence = self.defence();
        SecuritySnapshot {
            now_ms: now,
            bans: defence.bans(now),
            slowdowns: defence.slowdowns(now),
            counters: defence.counters(now),
        }
    }

    /// The 200 for a retransmission of an accepted REGISTER: the current bindings, without
    /// authenticating or applying the request again (its nonce-count was already used).
    async fn relist(&self, msg: &Message<'_>, origin: &Origin) -> Option<Vec<u8>> {
        let now = now_ms();
        let inspected = self
            .registrar
            .inspect(msg, |host, port| self.local.matches(host, port))
            .ok()?;
        let cached = self.find_device(&inspected).await?;
        let bindings = self.bindings.device_bindings(&cached.device.id);
        Some(self.ok_response(msg, origin, &bindings, now))
    }

    fn ok_response(
        &self,
        msg: &Message<'_>,
        origin: &Origin,
        bindings: &[Binding],
        now: i64,
    ) -> Vec<u8> {
        let date = http_date(now);
        self.simple_response(msg, origin, 200, "OK", |w| {
            for binding in bindings.iter().filter(|b| b.expires_at_ms > now) {
                let value = format!(
                    "<{}>{};expires={}",
                    binding.contact,
                    binding.contact_params,
                    binding.remaining_secs(now)
                );
                w.header("Contact", &value);
            }
            w.header("Date", &date);
        })
    }

    /// Applies the registration under the device's shard lock, enqueues the commit there (so
    /// commits follow table order) and answers only once the commit is durable.
    async fn bind(
        &self,
        msg: &Message<'_>,
        inspected: &Inspected<'_>,
        origin: &Origin,
        cached: &CachedDevice,
        now: i64,
    ) -> Vec<u8> {
        let device = &cached.device;
        let outcome = self.bindings.with_device(&device.id, |current| {
            let registration = self
                .registrar
                .apply(msg, inspected, origin, device, current, now)?;
            let response = self.ok_response(msg, origin, &registration.bindings, now);
            *current = registration.bindings;
            let commit = if registration.changes.is_empty() {
                None
            } else {
                Some(self.store.commit(registration.changes))
            };
            Ok::<_, Refusal>((response, commit))
        });
        if outcome.is_ok()
            && let Some(connection_id) = origin.connection_id
        {
            self.outbound.note_device(connection_id, &device.id);
        }
        match outcome {
            Err(refusal) => {
                bump(&self.stats.refused);
                self.refuse(msg, origin, &refusal, Some(&cached.account.realm), now)
            }
            Ok((response, None)) => {
                bump(&self.stats.registered);
                response
            }
            Ok((response, Some(commit))) => match commit.await {
                Ok(_) => {
                    bump(&self.stats.registered);
                    response
                }
                Err(error) => {
                    bump(&self.stats.storage_errors);
                    warn!(device = %device.id, %error, "binding commit failed");
                    self.reload_device_bindings(&device.id).await;
                    self.refuse(msg, origin, &Refusal::StorageFailure, None, now)
                }
            },
        }
    }

    /// After a failed commit the table may be ahead of the store: make the store the truth.
    async fn reload_device_bindings(&self, device_id: &str) {
        let store = self.store.clone();
        let id = device_id.to_owned();
        let stored = tokio::task::spawn_blocking(move || store.device_bindings(&id))
            .await
            .ok()
            .and_then(Result::ok);
        if let Some(stored) = stored {
            self.bindings
                .with_device(device_id, |current| *current = stored);
        }
    }

    /// Appends an event without waiting for it (nothing is acknowledged on it).
    fn record(&self, event: Event) {
        drop(self.store.commit(vec![Change::AppendEvent(event)]));
    }

    async fn find_device(&self, inspected: &Inspected<'_>) -> Option<Arc<CachedDevice>> {
        let account = self.find_account(inspected).await?;
        self.find_device_in(&account, inspected).await
    }

    async fn find_account(&self, inspected: &Inspected<'_>) -> Option<Arc<Account>> {
        match self.directory.cached_account(inspected.realm) {
            Some(account) => Some(account),
            None => {
                let directory = self.directory.clone();
                let realm = inspected.realm.to_ascii_lowercase();
                tokio::task::spawn_blocking(move || directory.load_account(&realm))
                    .await
                    .ok()?
                    .ok()?
            }
        }
    }

    async fn find_device_in(
        &self,
        account: &Arc<Account>,
        inspected: &Inspected<'_>,
    ) -> Option<Arc<CachedDevice>> {
        let account = account.clone();
        if let Some(device) = self.directory.cached_device(&account.id, inspected.user) {
            return Some(device);
        }
        let directory = self.directory.clone();
        let user = inspected.user.to_owned();
        tokio::task::spawn_blocking(move || directory.load_device(&account, &user))
            .await
            .ok()?
            .ok()?
    }

    fn refuse(
        &self,
        msg: &Message<'_>,
        origin: &Origin,
        refusal: &Refusal,
        realm: Option<&str>,
        now: i64,
    ) -> Vec<u8> {
        let (code, reason) = refusal.status(self.registrar.config().challenge);
        self.simple_response(msg, origin, code, reason, |w| match refusal {
            Refusal::Challenge { stale } => {
                bump(&self.stats.challenged);
                if let Some(realm) = realm {
                    let (name, values) = self.registrar.challenges(realm, *stale, now);
                    for value in &values {
                        w.header(name, value);
                    }
                }
            }
            Refusal::IntervalTooBrief { min_expires } => {
                w.header("Min-Expires", &min_expires.to_string());
            }
            _ => {}
        })
    }

    fn simple_response(
        &self,
        msg: &Message<'_>,
        origin: &Origin,
        code: u16,
        reason: &str,
        extra: impl FnOnce(&mut ResponseWriter<'_>),
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let tag = to_tag(msg);
        let mut writer =
            ResponseWriter::new(&mut out, code, reason, msg, origin.source, Some(&tag));
        extra(&mut writer);
        writer.finish();
        out
    }

    /// A refusal decided before the message is handled (ban, rate limit): requests that can
    /// be addressed get `code`; anything else (responses, ACK, garbage) is dropped.
    fn answer_early(
        &self,
        data: &[u8],
        origin: &Origin,
        code: u16,
        reason: &str,
        retry_after_secs: Option<u32>,
    ) -> Option<Outgoing> {
        let msg = switchboard_sip::parse(data).ok()?;
        let request = msg.request()?;
        if matches!(request.method, Method::Ack) {
            return None;
        }
        msg.call_id().ok()?;
        msg.cseq().ok()?;
        msg.top_via().ok()?;
        let destination = response_destination(&msg, origin);
        let bytes = self.simple_response(&msg, origin, code, reason, |w| {
            if let Some(secs) = retry_after_secs {
                w.header("Retry-After", &secs.to_string());
            }
        });
        Some(Outgoing { bytes, destination })
    }

    /// Answers a message the parser rejected, when enough of it is readable to address an
    /// answer; otherwise drops it (counted).
    fn answer_unparseable(
        &self,
        data: &[u8],
        error: &switchboard_sip::ParseError,
        origin: &Origin,
    ) -> Option<Outgoing> {
        let status = error.status()?;
        let head = head_without_body(data)?;
        let placeholder;
        let msg = match switchboard_sip::parse(&head) {
            Ok(msg) => msg,
            Err(_) => {
                // The request line itself is malformed (RFC 4475 lwsruri): the headers may
                // still be fine, and they are all a 400 needs.
                placeholder = with_placeholder_request_line(&head)?;
                switchboard_sip::parse(&placeholder).ok()?
            }
        };
        msg.request()?;
        if msg
            .cseq()
            .is_ok_and(|cseq| matches!(cseq.method, Method::Ack))
        {
            return None;
        }
        msg.call_id().ok()?;
        msg.cseq().ok()?;
        msg.top_via().ok()?;
        let destination = response_destination(&msg, origin);
        let bytes = self.simple_response(&msg, origin, status, error.reason(), |_| {});
        Some(Outgoing { bytes, destination })
    }
}

/// The start line and headers of a message whose body framing is broken (a Content-Length
/// larger than the datagram, RFC 4475 `clerr`), with Content-Length dropped, so the 400 can be
/// addressed. Error path only.
fn head_without_body(data: &[u8]) -> Option<Vec<u8>> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut head = Vec::with_capacity(end + 4);
    for line in data[..end].split(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let name = String::from_utf8_lossy(name);
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            continue;
        }
        head.extend_from_slice(line);
        head.push(b'\n');
    }
    head.extend_from_slice(b"\r\n");
    Some(head)
}

/// `head` with its first line replaced by a well-formed request line. Error path only.
fn with_placeholder_request_line(head: &[u8]) -> Option<Vec<u8>> {
    let end = head.iter().position(|&b| b == b'\n')? + 1;
    let first = head.get(..end)?;
    if first.starts_with(b"SIP/") {
        // A response is never answered.
        return None;
    }
    let mut out = b"OPTIONS sip:invalid SIP/2.0\r\n".to_vec();
    out.extend_from_slice(head.get(end..)?);
    Some(out)
}

/// The User-Agent for an event: control characters dropped, at most 256 characters.
fn user_agent_of(msg: &Message<'_>) -> Option<String> {
    msg.header(switchboard_sip::HeaderName::UserAgent)
        .map(|ua| ua.chars().filter(|c| !c.is_control()).take(256).collect())
}

fn is_challenge(response: &[u8]) -> bool {
    response.starts_with(b"SIP/2.0 401 ") || response.starts_with(b"SIP/2.0 407 ")
}

/// A To tag that is the same for every retransmission of the request.
fn to_tag(msg: &Message<'_>) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    msg.call_id().ok().hash(&mut hasher);
    msg.cseq().ok().map(|c| c.number).hash(&mut hasher);
    msg.top_via()
        .ok()
        .and_then(|v| v.branch())
        .hash(&mut hasher);
    format!("sb{:016x}", hasher.finish())
}

/// The address of ours the kernel would send from to reach `peer` (to name a wildcard
/// listener in a Via). No packet is sent: connecting a UDP socket only picks a route.
fn route_ip(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let probe = std::net::UdpSocket::bind(any).ok()?;
    probe.connect(peer).ok()?;
    Some(probe.local_addr().ok()?.ip())
}

/// Where a response goes (RFC 3261 §18.2.2, RFC 3581): on streams, back on the connection; on
/// UDP to the source address, and to the source port when the client asked with `rport`, else
/// to the port in the Via's sent-by.
pub fn response_destination(msg: &Message<'_>, origin: &Origin) -> SocketAddr {
    if origin.transport != Transport::Udp {
        return origin.source;
    }
    match msg.top_via() {
        Ok(via) if via.rport().is_none() => {
            SocketAddr::new(origin.source.ip(), via.port.unwrap_or(5060))
        }
        _ => origin.source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overload_guard_sheds_beyond_its_bound_and_frees_places_on_drop() {
        let guard = OverloadGuard {
            config: OverloadConfig {
                max_in_flight: 2,
                ..OverloadConfig::default()
            },
            in_flight: AtomicUsize::new(0),
        };
        let first = guard.enter().expect("first");
        let second = guard.enter().expect("second");
        assert!(guard.enter().is_none(), "a third is shed");
        assert!(guard.enter().is_none(), "and so is a fourth");
        drop(first);
        let third = guard.enter().expect("a place was freed");
        assert_eq!(guard.in_flight.load(Ordering::Acquire), 2);
        drop((second, third));
        assert_eq!(guard.in_flight.load(Ordering::Acquire), 0);
        let unbounded = OverloadGuard {
            config: OverloadConfig {
                max_in_flight: 0,
                ..OverloadConfig::default()
            },
            in_flight: AtomicUsize::new(0),
        };
        let held: Vec<_> = (0..10_000).map(|_| unbounded.enter()).collect();
        assert!(held.iter().all(Option::is_some));
    }
}
