//! The SIP service: one request in, at most one response out. It runs the generic UAS checks,
//! the transaction layer, and drives the sans-IO registrar with the directory cache, the
//! binding table and the store. Responses go to the client transactions of the requests this
//! server originates ([`SipService::notify`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchboard_model::{AccessRefusal, Account, Binding, Change, Event, EventKind, Transport};
use switchboard_registrar::date::http_date;
use switchboard_registrar::{
    AuthOutcome, Inspected, Origin, OutboundUse, Refusal, Registrar, outbound_use,
};
use switchboard_sip::{HeaderName, Message, Method, ResponseWriter};
use switchboard_store::{Store, StoreError};
use tracing::{debug, warn};

use crate::client::{
    ClientTimers, ClientTransactions, Notify, NotifyOutcome, RequestIds, Step, notify_request,
    options_request,
};
use crate::clock::now_ms;
use crate::defence::{Admission, Ban, BanAction, Defence, DefenceConfig};
use crate::directory::{CachedDevice, DirectoryCache, Miss, MissKey};
use crate::location::BindingTable;
use crate::transaction::{Begin, Transactions};
use crate::transport::{Outbound, SendError};

/// Methods this server implements (the `Allow` header). INVITE is answered as a redirect
/// server (302 to the user's contacts); ACK and CANCEL belong to it.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, REGISTER, OPTIONS";
/// Option tags a client may `Require` of us (RFC 5626 outbound, RFC 3327 Path, RFC 5627
/// GRUU).
const SUPPORTED: &[&str] = &["outbound", "path", "gruu"];

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
    /// STUN binding requests (RFC 5626 §4.4.2 keepalives) answered on the UDP SIP port.
    pub stun_answered: AtomicU64,
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
    /// REGISTERs refused (403) by their account's own allow/deny lists.
    pub account_acl_refused: AtomicU64,
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

/// An RFC 5626 flow whose connection closed: its binding is removed at `due_ms` unless the
/// client registered it again (on a new connection) by then.
#[derive(Debug, Clone)]
struct ClosedFlow {
    due_ms: i64,
    device_id: String,
    key: String,
    connection_id: u64,
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
    closed_flows: Mutex<Vec<ClosedFlow>>,
    defence: Mutex<Defence>,
    guard: OverloadGuard,
    connections: ConnectionCounts,
    pub stats: Stats,
}

/// The global overload guard. A REGISTER that changes bindings spends almost all its time
/// waiting for its group commit, so that wait is the registrar's queue: while even the
/// fastest commit wait of a recent window was longer than `max_delay_ms` (a standing queue,
/// not one slow commit), new REGISTERs are answered `503` at once instead of joining it. The ones admitted
/// keep their latency, a storm drains instead of melting down, and nothing is shed while the
/// registrar keeps up, however high the rate. `max_in_flight` is a hard bound on top (memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadConfig {
    /// REGISTERs in progress at most (0: unbounded).
    pub max_in_flight: usize,
    /// The standing delay, in milliseconds, above which new REGISTERs are shed (0: never).
    pub max_delay_ms: u32,
    /// The `Retry-After` of a shed REGISTER, seconds.
    pub retry_after_secs: u32,
    /// TCP connections one address may hold open (0: unbounded); allow-listed addresses are
    /// exempt.
    pub max_connections_per_ip: usize,
    /// How long a stream connection nobody registered over may stay silent before it is
    /// closed (scanners and half-open clients must not pin descriptors). A connection that
    /// carries a registration lives as long as its client keeps it.
    pub idle_unregistered_secs: u32,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            max_in_flight: 16_384,
            max_delay_ms: 1_000,
            retry_after_secs: 5,
            max_connections_per_ip: 64,
            idle_unregistered_secs: 60,
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

/// Why the guard refused a REGISTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shed {
    /// The standing delay is above `max_delay_ms`.
    Delay,
    /// `max_in_flight` REGISTERs are in progress.
    Bound,
}

/// The guard's state: lock-free, a few atomics touched once on entry and once on exit.
///
/// Time is cut into windows of a quarter of `max_delay_ms`. Each finished commit wait lowers
/// the window's minimum; when a window closes, the guard sheds through the next one if commits
/// are waiting and that minimum was above `max_delay_ms`, or if no commit finished for
/// `max_delay_ms` while some were waiting (a stalled store). Challenges and refusals, answered without a commit, say
/// nothing about the queue and are not measured.
#[derive(Debug)]
struct OverloadGuard {
    config: OverloadConfig,
    epoch: std::time::Instant,
    in_flight: AtomicUsize,
    /// REGISTERs waiting for their commit.
    committing: AtomicUsize,
    /// Start of the current window, ms since `epoch`.
    window_start: AtomicU64,
    /// The fastest commit wait finished in the current window, ms (`u64::MAX`: none yet).
    window_min: AtomicU64,
    /// Milliseconds in a row that ended no commit wait while some were waiting.
    stalled: AtomicU64,
    shedding: std::sync::atomic::AtomicBool,
}

/// One admitted REGISTER; dropping it frees its place.
struct Permit<'a>(&'a OverloadGuard);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One REGISTER waiting for its commit; dropping it reports how long the wait was.
struct CommitWait<'a> {
    guard: &'a OverloadGuard,
    started: u64,
}

impl Drop for CommitWait<'_> {
    fn drop(&mut self) {
        let took = self.guard.now().saturating_sub(self.started);
        self.guard.window_min.fetch_min(took, Ordering::AcqRel);
        self.guard.committing.fetch_sub(1, Ordering::AcqRel);
    }
}

impl OverloadGuard {
    fn new(config: OverloadConfig) -> Self {
        OverloadGuard {
            config,
            epoch: std::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            committing: AtomicUsize::new(0),
            window_start: AtomicU64::new(0),
            window_min: AtomicU64::new(u64::MAX),
            stalled: AtomicU64::new(0),
            shedding: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn enter(&self) -> Result<Permit<'_>, Shed> {
        self.enter_at(self.now())
    }

    fn enter_at(&self, now: u64) -> Result<Permit<'_>, Shed> {
        if self.config.max_delay_ms != 0 {
            self.roll(now);
            if self.shedding.load(Ordering::Acquire) {
                return Err(Shed::Delay);
            }
        }
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit(self);
        if self.config.max_in_flight != 0 && before >= self.config.max_in_flight {
            return Err(Shed::Bound);
        }
        Ok(permit)
    }

    /// Awaits a commit, measuring the wait (also when the caller gives up on it).
    async fn measure<T>(&self, commit: impl Future<Output = T>) -> T {
        let _wait = self.commit_wait_at(self.now());
        commit.await
    }

    fn commit_wait_at(&self, now: u64) -> CommitWait<'_> {
        self.committing.fetch_add(1, Ordering::AcqRel);
        CommitWait {
            guard: self,
            started: now,
        }
    }

    /// Closes the window if it is over and decides whether the next one sheds. One caller
    /// wins the window; the others carry on at once.
    fn roll(&self, now: u64) {
        let window = u64::from(self.config.max_delay_ms / 4).max(1);
        let start = self.window_start.load(Ordering::Acquire);
        if now < start.saturating_add(window)
            || self
                .window_start
                .compare_exchange(start, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let fastest = self.window_min.swap(u64::MAX, Ordering::AcqRel);
        let target = u64::from(self.config.max_delay_ms);
        // Nothing waiting now is no queue, whatever the last window saw (it may have closed
        // long ago, when the load stopped).
        let waiting = self.committing.load(Ordering::Acquire) > 0;
        let shed = if fastest != u64::MAX {
            self.stalled.store(0, Ordering::Release);
            waiting && fastest > target
        } else if waiting {
            let stalled = self.stalled.fetch_add(now - start, Ordering::AcqRel) + (now - start);
            stalled > target
        } else {
            self.stalled.store(0, Ordering::Release);
            false
        };
        self.shedding.store(shed, Ordering::Release);
    }
}

/// How a directory miss was resolved.
enum MissOutcome<T> {
    /// This call read the store and found it.
    Found(T),
    /// Another request's read is over: look in the cache again.
    LookAgain,
    /// Not in the store (lately), or not waited for.
    Unknown,
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
            guard: OverloadGuard::new(OverloadConfig::default()),
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
            closed_flows: Mutex::default(),
            stats: Stats::default(),
        }
    }

    /// The abuse defences and the overload guard this service applies (the defaults until
    /// set).
    pub fn with_defences(mut self, defence: DefenceConfig, overload: OverloadConfig) -> Self {
        self.defence = Mutex::new(Defence::new(defence));
        self.guard = OverloadGuard::new(overload);
        self
    }

    /// See [`OverloadConfig::idle_unregistered_secs`].
    pub fn idle_unregistered(&self) -> Duration {
        Duration::from_secs(u64::from(self.guard.config.idle_unregistered_secs))
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
        let now = now_ms();
        let commits = crate::keepalive::mark_connection_closed(
            &self.bindings,
            self.store.as_ref(),
            connection_id,
            devices,
            now,
        );
        // Outbound flows (RFC 5626: +sip.instance and reg-id) are removed if the client does
        // not register them again within the flow timer; plain bindings wait for expiry.
        let due_ms = now + i64::from(self.registrar.config().flow_timer) * 1000;
        let mut flows = Vec::new();
        for device_id in devices {
            for binding in self.bindings.device_bindings(device_id) {
                if binding.connection_id == Some(connection_id)
                    && binding.instance.is_some()
                    && binding.reg_id.is_some()
                {
                    flows.push(ClosedFlow {
                        due_ms,
                        device_id: binding.device_id,
                        key: binding.key,
                        connection_id,
                    });
                }
            }
        }
        if !flows.is_empty() {
            self.closed_flows
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(flows);
        }
        for commit in commits {
            if let Err(error) = commit.await {
                bump(&self.stats.storage_errors);
                warn!(%error, "recording offline bindings failed");
            }
        }
    }

    /// Removes the outbound bindings whose connection closed more than the flow timer ago
    /// and that were not registered again since (still on the closed connection), each with
    /// an `expired` event; the commits to await.
    pub fn sweep_closed_flows(&self, now: i64) -> Vec<switchboard_store::CommitFuture> {
        let due: Vec<ClosedFlow> = {
            let mut flows = self.closed_flows.lock().unwrap_or_else(|e| e.into_inner());
            if flows.is_empty() {
                return Vec::new();
            }
            let (due, waiting) = flows.drain(..).partition(|flow| flow.due_ms <= now);
            *flows = waiting;
            due
        };
        let mut commits = Vec::new();
        for flow in due {
            self.bindings.with_device(&flow.device_id, |list| {
                let Some(index) = list.iter().position(|binding| {
                    binding.key == flow.key
                        && binding.connection_id == Some(flow.connection_id)
                        && !binding.reachable
                }) else {
                    return;
                };
                let binding = list.remove(index);
                let event = Event {
                    reason: Some(
                        "outbound flow closed and not recovered within Flow-Timer".to_owned(),
                    ),
                    ..crate::expired_event(&binding, now)
                };
                commits.push(self.store.commit(vec![
                    Change::AppendEvent(event),
                    Change::RemoveBinding {
                        device_id: binding.device_id,
                        key: binding.key,
                    },
                ]));
            });
        }
        commits
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

    /// Sends over the binding's flow: its connection on streams; on UDP to the first Path
    /// hop when the binding has a Path naming an address (RFC 3327: a proxy in front), else to
    /// the address the REGISTER came from (RFC 3581, for NAT).
    async fn send_to_binding(&self, binding: &Binding, bytes: &[u8]) -> Result<(), SendError> {
        match binding.connection_id {
            Some(id) if binding.transport.is_stream() => {
                self.outbound.send_stream(id, bytes.to_vec()).await
            }
            _ => {
                let destination =
                    crate::client::first_path_hop(&binding.path).unwrap_or(binding.received);
                self.outbound
                    .send_udp(binding.local, destination, bytes)
                    .await
            }
        }
    }

    /// Answers a STUN Binding request that arrived on a UDP SIP socket (RFC 5626 §4.4.2):
    /// a success response with the source address as XOR-MAPPED-ADDRESS. Anything else that
    /// looks like STUN is dropped (and counted malformed).
    pub async fn answer_stun(
        &self,
        socket: &tokio::net::UdpSocket,
        data: &[u8],
        source: SocketAddr,
    ) {
        match crate::stun::parse_binding_request(data) {
            Some(request) => {
                bump(&self.stats.stun_answered);
                let answer = crate::stun::binding_success(&request, source);
                if let Err(error) = socket.send_to(&answer, source).await {
                    debug!(%source, %error, "stun answer not sent");
                }
            }
            None => {
                bump(&self.stats.malformed);
                debug!(%source, "stun message that is not a binding request; dropped");
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
            Method::Invite => self.redirect(&msg, &origin).await,
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
        let Ok(_permit) = self.guard.enter() else {
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
        // Without credentials a miss is answered from memory (a name's absence must not cost
        // more than a wrong password); with them, the store is read first.
        let wait = msg.header(HeaderName::Authorization).is_some()
            || msg.header(HeaderName::ProxyAuthorization).is_some();
        let account = self.lookup_account(inspected.realm, wait).await;
        if let Some(account) = &account
            && let Err(refusal) = self.directory.check_access(&account.id, origin.source.ip())
        {
            return self.refuse_by_account_lists(msg, &inspected, origin, account, refusal, now);
        }
        let device = match &account {
            Some(account) => {
                self.lookup_device(account.clone(), inspected.user, wait)
                    .await
            }
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
        if outbound_use(msg) == OutboundUse::FirstHopLacksSupport {
            bump(&self.stats.refused);
            return self.refuse(msg, origin, &Refusal::FirstHopLacksOutbound, None, now);
        }
        self.bind(msg, &inspected, origin, &cached, now).await
    }

    /// A REGISTER from an address the account's own lists refuse: `403 Forbidden` before any
    /// device lookup or digest work (so it learns nothing about the account's users), counted,
    /// and recorded as a `rejected` event of the account. The event names no device: the
    /// request is not authenticated, and it must not change a device's state.
    fn refuse_by_account_lists(
        &self,
        msg: &Message<'_>,
        inspected: &Inspected<'_>,
        origin: &Origin,
        account: &Account,
        refusal: AccessRefusal,
        now: i64,
    ) -> Vec<u8> {
        bump(&self.stats.account_acl_refused);
        let user: String = inspected
            .user
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        debug!(source = %origin.source, account_id = %account.id, %user,
            reason = refusal.as_str(), "refused by the account's access lists");
        self.record(Event {
            id: 0,
            at_ms: now,
            kind: EventKind::Rejected,
            account_id: account.id.clone(),
            device_id: None,
            binding_key: None,
            contact: None,
            address: Some(origin.source.to_string()),
            transport: Some(origin.transport),
            user_agent: user_agent_of(msg),
            reason: Some(format!("{} (user {user})", refusal.as_str())),
        });
        self.simple_response(msg, origin, 403, "Forbidden", |_| {})
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
        let flow = outbound_use(msg) == OutboundUse::Flow;
        let flow_timer = self.registrar.config().flow_timer;
        let gruu = supports(msg, "gruu");
        // RFC 3327 §5.3: a UA that supports Path is told the path it was registered with.
        let path = if supports(msg, "path") {
            msg.list_values(HeaderName::Path)
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            String::new()
        };
        self.simple_response(msg, origin, 200, "OK", |w| {
            if !path.is_empty() {
                w.header("Path", &path);
            }
            if flow {
                // RFC 5626 §6: the flow is kept; the client sends keepalives every
                // Flow-Timer seconds (CRLF on streams, STUN on UDP).
                w.header("Require", "outbound");
                w.header("Flow-Timer", &flow_timer.to_string());
            }
            for binding in bindings.iter().filter(|b| b.expires_at_ms > now) {
                let mut value = format!(
                    "<{}>{};expires={}",
                    binding.contact,
                    binding.contact_params,
                    binding.remaining_secs(now)
                );
                if gruu && let Some(instance) = &binding.instance {
                    // RFC 5627 §5.2: both GRUUs of an instance's binding.
                    let temp =
                        self.registrar
                            .gruus()
                            .temp_gruu(&binding.aor, instance, &binding.call_id);
                    value.push_str(&format!(
                        ";pub-gruu=\"{}\";temp-gruu=\"{temp}\"",
                        switchboard_registrar::gruu::public_gruu(&binding.aor, instance)
                    ));
                }
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
            Ok((response, Some(commit))) => match self.guard.measure(commit).await {
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
        let account = self.find_account(inspected.realm).await?;
        self.find_device_in(account, inspected.user).await
    }

    /// The account whose realm is `realm` (the cache, the store on a miss).
    async fn find_account(&self, realm: &str) -> Option<Arc<Account>> {
        self.lookup_account(realm, true).await
    }

    /// The device of `account` whose SIP username is `user` (the cache, the store on a miss).
    async fn find_device_in(&self, account: Arc<Account>, user: &str) -> Option<Arc<CachedDevice>> {
        self.lookup_device(account, user, true).await
    }

    /// [`Self::find_account`]; with `wait` false a miss is answered at once as unknown while
    /// the store is read in the background (see [`crate::directory`]).
    async fn lookup_account(&self, realm: &str, wait: bool) -> Option<Arc<Account>> {
        if let Some(account) = self.directory.cached_account(realm) {
            return Some(account);
        }
        let lower = realm.to_ascii_lowercase();
        let directory = self.directory.clone();
        let read = {
            let lower = lower.clone();
            move || directory.load_account(&lower)
        };
        match self.resolve_miss(MissKey::Realm(lower), wait, read).await {
            MissOutcome::Found(account) => Some(account),
            MissOutcome::LookAgain => self.directory.cached_account(realm),
            MissOutcome::Unknown => None,
        }
    }

    /// [`Self::find_device_in`], with `wait` as in [`Self::lookup_account`].
    async fn lookup_device(
        &self,
        account: Arc<Account>,
        user: &str,
        wait: bool,
    ) -> Option<Arc<CachedDevice>> {
        if let Some(device) = self.directory.cached_device(&account.id, user) {
            return Some(device);
        }
        let key = MissKey::Device(account.id.clone(), user.to_ascii_lowercase());
        let directory = self.directory.clone();
        let read = {
            let (account, user) = (account.clone(), user.to_owned());
            move || directory.load_device(&account, &user)
        };
        match self.resolve_miss(key, wait, read).await {
            MissOutcome::Found(device) => Some(device),
            MissOutcome::LookAgain => self.directory.cached_device(&account.id, user),
            MissOutcome::Unknown => None,
        }
    }

    /// A directory miss: the store is read once per name, in the background, and waited for
    /// only if `wait`.
    async fn resolve_miss<T: Send + 'static>(
        &self,
        key: MissKey,
        wait: bool,
        read: impl FnOnce() -> Result<Option<T>, StoreError> + Send + 'static,
    ) -> MissOutcome<T> {
        match self.directory.miss(&key, now_ms()) {
            Miss::Absent => MissOutcome::Unknown,
            Miss::Reading(pending) => {
                if !wait {
                    return MissOutcome::Unknown;
                }
                pending.wait().await;
                MissOutcome::LookAgain
            }
            Miss::Read(_) => {
                let directory = self.directory.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let found = read();
                    // A failed read proves nothing: the next miss reads again.
                    let absent = matches!(found, Ok(None));
                    directory.miss_done(&key, absent, now_ms());
                    found
                });
                if !wait {
                    return MissOutcome::Unknown;
                }
                match task.await {
                    Ok(Ok(Some(found))) => MissOutcome::Found(found),
                    _ => MissOutcome::Unknown,
                }
            }
        }
    }

    /// Where a call to `user@realm` forks to (seed 002): the user of the account with that
    /// username, or the owner of the device with that SIP username (a device without an
    /// owner stands for itself); every live, reachable binding of every device the user owns,
    /// by q then most recent ([`switchboard_model::location::reachable_by_q`]).
    pub async fn locate(&self, user: &str, realm: &str) -> Vec<Binding> {
        let Some(account) = self.find_account(realm).await else {
            return Vec::new();
        };
        let store = self.store.clone();
        let (account_id, name) = (account.id.clone(), user.to_owned());
        let owner = tokio::task::spawn_blocking(move || store.user_by_username(&account_id, &name))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .map(|user| user.id);
        let devices: Vec<String> = match owner {
            Some(owner) => self.owned_devices(&account.id, owner).await,
            None => match self.find_device_in(account.clone(), user).await {
                Some(cached) => match cached.device.owner_id.clone() {
                    Some(owner) => self.owned_devices(&account.id, owner).await,
                    None => vec![cached.device.id.clone()],
                },
                None => Vec::new(),
            },
        };
        let bindings = devices
            .iter()
            .flat_map(|device_id| self.bindings.device_bindings(device_id))
            .collect();
        switchboard_model::location::reachable_by_q(bindings, now_ms())
    }

    /// The binding an RFC 5627 GRUU names: a public GRUU (`user@realm;gr=INSTANCE`) is the
    /// device `user`'s binding of that instance; a temporary one (`tgruu.…@realm;gr`) is
    /// the account's binding whose temporary GRUU it is. Live and reachable only.
    pub async fn locate_gruu(&self, user: &str, realm: &str, gr: &str) -> Vec<Binding> {
        use switchboard_registrar::gruu::{TEMP_PREFIX, gr_value};
        let Some(account) = self.find_account(realm).await else {
            return Vec::new();
        };
        let bindings = if gr.is_empty() && user.starts_with(TEMP_PREFIX) {
            let gruus = self.registrar.gruus();
            let mut found = self.bindings.account_bindings(&account.id);
            found.retain(|binding| {
                binding.instance.as_deref().is_some_and(|instance| {
                    gruus.temp_user(&binding.aor, instance, &binding.call_id) == user
                })
            });
            found
        } else {
            match self.find_device_in(account, user).await {
                Some(cached) => {
                    let mut found = self.bindings.device_bindings(&cached.device.id);
                    found.retain(|binding| {
                        binding
                            .instance
                            .as_deref()
                            .is_some_and(|instance| gr_value(instance) == gr)
                    });
                    found
                }
                None => Vec::new(),
            }
        };
        switchboard_model::location::reachable_by_q(bindings, now_ms())
    }

    /// The ids of the account's devices `owner` owns.
    async fn owned_devices(&self, account_id: &str, owner: String) -> Vec<String> {
        let store = self.store.clone();
        let account_id = account_id.to_owned();
        tokio::task::spawn_blocking(move || store.devices(&account_id))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .filter(|device| device.owner_id.as_deref() == Some(owner.as_str()))
            .map(|device| device.id)
            .collect()
    }

    /// Answers an INVITE as a redirect server: `302 Moved Temporarily` listing the contacts of
    /// the Request-URI's user ([`SipService::locate`]), or of the one instance a GRUU names
    /// ([`SipService::locate_gruu`]), each with its `q`; `404` when there are none (unknown
    /// user, or nothing reachable).
    async fn redirect(&self, msg: &Message<'_>, origin: &Origin) -> Vec<u8> {
        let target = msg
            .request()
            .and_then(|request| switchboard_sip::Uri::parse(request.uri).ok())
            .and_then(|uri| {
                let gr = uri
                    .params
                    .split(';')
                    .map(|param| param.split_once('=').unwrap_or((param, "")))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("gr"))
                    .map(|(_, value)| value.trim());
                Some((uri.user.filter(|u| !u.is_empty())?, uri.host, gr))
            });
        let contacts = match target {
            Some((user, host, Some(gr))) => self.locate_gruu(user, host, gr).await,
            Some((user, host, None)) => self.locate(user, host).await,
            None => Vec::new(),
        };
        if contacts.is_empty() {
            return self.simple_response(msg, origin, 404, "Not Found", |_| {});
        }
        self.simple_response(msg, origin, 302, "Moved Temporarily", |w| {
            for binding in &contacts {
                let q = switchboard_model::location::q_text(binding.q_milli);
                w.header("Contact", &format!("<{}>;q={q}", binding.contact));
            }
        })
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

/// Whether the request lists `tag` in `Supported` (or `Require`).
fn supports(msg: &Message<'_>, tag: &str) -> bool {
    [HeaderName::Supported, HeaderName::Require]
        .into_iter()
        .flat_map(|name| msg.list_values(name))
        .any(|value| value.trim().eq_ignore_ascii_case(tag))
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
    msg.header(HeaderName::UserAgent)
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
        let guard = OverloadGuard::new(OverloadConfig {
            max_in_flight: 2,
            max_delay_ms: 0,
            ..OverloadConfig::default()
        });
        let first = guard.enter().expect("first");
        let second = guard.enter().expect("second");
        assert_eq!(guard.enter().err(), Some(Shed::Bound), "a third is shed");
        assert!(guard.enter().is_err(), "and so is a fourth");
        drop(first);
        let third = guard.enter().expect("a place was freed");
        assert_eq!(guard.in_flight.load(Ordering::Acquire), 2);
        drop((second, third));
        assert_eq!(guard.in_flight.load(Ordering::Acquire), 0);
        let unbounded = OverloadGuard::new(OverloadConfig {
            max_in_flight: 0,
            max_delay_ms: 0,
            ..OverloadConfig::default()
        });
        let held: Vec<_> = (0..10_000).map(|_| unbounded.enter()).collect();
        assert!(held.iter().all(Result::is_ok));
    }

    /// A commit wait that started at `started` and took `took` ms, as `Drop` reports it.
    fn waited(guard: &OverloadGuard, started: u64, took: u64) {
        let wait = guard.commit_wait_at(started);
        std::mem::forget(wait);
        guard.window_min.fetch_min(took, Ordering::AcqRel);
        guard.committing.fetch_sub(1, Ordering::AcqRel);
    }

    #[test]
    fn the_overload_guard_sheds_on_a_standing_commit_delay_not_on_rate_or_one_slow_commit() {
        let guard = OverloadGuard::new(OverloadConfig {
            max_in_flight: 0,
            max_delay_ms: 1000,
            ..OverloadConfig::default()
        });
        // Many REGISTERs at once, each committed quickly: nothing is shed, whatever the count.
        for now in (0..2000).step_by(10) {
            let permits: Vec<_> = (0..50).map(|_| guard.enter_at(now)).collect();
            assert!(permits.iter().all(Result::is_ok), "admitted at {now} ms");
            for _ in &permits {
                waited(&guard, now, 30);
            }
        }
        // One slow commit among fast ones: the window's fastest is still fast.
        assert!(guard.enter_at(2000).is_ok());
        waited(&guard, 2000, 1500);
        waited(&guard, 2010, 20);
        assert!(guard.enter_at(2300).is_ok());
        // A standing queue: every commit of a window waited over a second, and more wait.
        // (Challenges, answered at once, are not measured and so do not hide it.)
        waited(&guard, 2600, 1200);
        waited(&guard, 2700, 1200);
        let queued = guard.commit_wait_at(2700);
        assert_eq!(guard.enter_at(2850).err(), Some(Shed::Delay), "shed");
        assert_eq!(
            guard.enter_at(2900).err(),
            Some(Shed::Delay),
            "for the window"
        );
        // The queue drains: the next window's commits are fast again, and REGISTERs admitted.
        waited(&guard, 2900, 100);
        assert!(guard.enter_at(3200).is_ok(), "admitted again");
        // The same slow window with nothing left waiting is no queue: the load stopped.
        waited(&guard, 3250, 1200);
        drop(queued);
        assert!(guard.enter_at(3500).is_ok(), "nothing waits");
        // A stalled store: commits waiting and none finishing for over the target.
        let stuck = guard.commit_wait_at(3600);
        for now in [3800, 4100, 4400, 4700] {
            guard.roll(now);
        }
        assert_eq!(guard.enter_at(5000).err(), Some(Shed::Delay), "stalled");
        drop(stuck);
        // Idle: nothing waiting and nothing finished is not a stall.
        let idle = OverloadGuard::new(OverloadConfig::default());
        for now in (0..5000).step_by(250) {
            idle.roll(now);
        }
        assert!(idle.enter_at(5000).is_ok());
    }
}
