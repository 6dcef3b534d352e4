//! Keepalives (issue #4): "registered" and "reachable" are different facts. Every
//! `interval`, each live binding gets an OPTIONS over its own flow (the UDP socket that
//! received its REGISTER, to its source address; or its TCP connection). Any final response
//! means reachable and records the round-trip time; `failures` misses in a row (a timeout
//! counts), or the close of the connection that carried the binding, make it unreachable
//! with an `offline` event; the next success (or a refresh REGISTER, see the registrar)
//! brings it back with an `online` event. Events go through the store's commit path.
//!
//! Scaling: the plan for a cycle is one pass over the table's keys; each binding pings at its
//! own slot, `hash(device, key) % interval`, so 100,000 bindings at 30 s are ~3,300 OPTIONS/s
//! evenly, not waves. At most `max_outstanding` pings are in flight (the plan waits for a
//! permit, it never piles up tasks), and a ping has its own Timer F, shorter than NOTIFY's.
//! Shard locks are only taken to copy a binding and to record a result, never across an
//! await. The reachability fields are node-local (like `connection_id`) and kept in memory;
//! the transitions are durable as events.
//!
//! The counting ([`record`]) and the schedule ([`slot_ms`]) are pure and tested without
//! sleeping.

use std::sync::Arc;
use std::time::Duration;

use switchboard_model::{Binding, Change, Event, EventKind, UnixMillis};
use switchboard_store::{CommitFuture, Store};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::client::NotifyOutcome;
use crate::clock::now_ms;
use crate::location::BindingTable;
use crate::service::SipService;

/// How the pinger runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Time between two pings of one binding; zero turns keepalives off.
    pub interval: Duration,
    /// Consecutive failures that make a binding unreachable (at least 1).
    pub failures: u32,
    /// Timer F of a keepalive OPTIONS (capped at the interval).
    pub timeout_ms: u64,
    /// Pings in flight at most.
    pub max_outstanding: usize,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            interval: Duration::from_secs(30),
            failures: 3,
            timeout_ms: 5_000,
            max_outstanding: 1_024,
        }
    }
}

/// When in each cycle (milliseconds after its start) the binding `key` of `device_id` is
/// pinged: a stable hash (FNV-1a, the same on every node and every run) modulo the interval.
pub fn slot_ms(device_id: &str, key: &str, interval_ms: u64) -> u64 {
    if interval_ms == 0 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = device_id.bytes().chain([0xff]).chain(key.bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % interval_ms
}

/// What one keepalive found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingResult {
    /// A final response (any status) after `rtt_ms`.
    Answered { status: u16, rtt_ms: u32 },
    /// No final response before the ping's Timer F, or the datagram had no socket.
    Failed,
    /// The binding's connection is gone.
    ConnectionClosed,
}

impl PingResult {
    pub fn from_outcome(outcome: NotifyOutcome, rtt: Duration, stream: bool) -> Self {
        match outcome {
            NotifyOutcome::Answered(status) => PingResult::Answered {
                status,
                rtt_ms: u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX),
            },
            NotifyOutcome::TimedOut => PingResult::Failed,
            NotifyOutcome::NoRoute if stream => PingResult::ConnectionClosed,
            NotifyOutcome::NoRoute => PingResult::Failed,
        }
    }
}

/// A change of reachability that must be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Offline,
    Online,
}

/// Applies one result to a binding's reachability facts; the transition, if any.
pub fn record(
    binding: &mut Binding,
    result: PingResult,
    now: UnixMillis,
    threshold: u32,
) -> Option<Transition> {
    match result {
        PingResult::Answered { rtt_ms, .. } => {
            binding.last_keepalive_ms = Some(now);
            binding.keepalive_rtt_ms = Some(rtt_ms);
            binding.keepalive_failures = 0;
            if binding.reachable {
                None
            } else {
                binding.reachable = true;
                Some(Transition::Online)
            }
        }
        PingResult::Failed | PingResult::ConnectionClosed => {
            binding.keepalive_failures = binding.keepalive_failures.saturating_add(1);
            let lost = result == PingResult::ConnectionClosed
                || binding.keepalive_failures >= threshold.max(1);
            if binding.reachable && lost {
                binding.reachable = false;
                Some(Transition::Offline)
            } else {
                None
            }
        }
    }
}

/// The history entry for a transition of `binding`.
pub fn reachability_event(
    binding: &Binding,
    transition: Transition,
    reason: String,
    now: UnixMillis,
) -> Event {
    Event {
        id: 0,
        at_ms: now,
        kind: match transition {
            Transition::Offline => EventKind::Offline,
            Transition::Online => EventKind::Online,
        },
        account_id: binding.account_id.clone(),
        device_id: Some(binding.device_id.clone()),
        binding_key: Some(binding.key.clone()),
        contact: Some(binding.contact.clone()),
        address: Some(binding.received.to_string()),
        transport: Some(binding.transport),
        user_agent: binding.user_agent.clone(),
        reason: Some(reason),
    }
}

fn reason(result: PingResult, failures: u32) -> String {
    match result {
        PingResult::Answered { status, rtt_ms } => {
            format!("keepalive answered {status} in {rtt_ms} ms")
        }
        PingResult::Failed => format!("keepalive: {failures} failures in a row"),
        PingResult::ConnectionClosed => "keepalive: connection closed".to_owned(),
    }
}

/// Records the result of a ping of `pinged` in the table, if that binding is still the same
/// flow (not removed, not re-registered from elsewhere meanwhile). A transition's event is
/// enqueued while the shard is locked (commits follow table order); await the future after.
pub fn apply_result(
    bindings: &BindingTable,
    store: &dyn Store,
    pinged: &Binding,
    result: PingResult,
    now: UnixMillis,
    threshold: u32,
) -> Option<(Transition, CommitFuture)> {
    bindings.with_device(&pinged.device_id, |list| {
        let binding = list.iter_mut().find(|binding| {
            binding.key == pinged.key
                && binding.received == pinged.received
                && binding.connection_id == pinged.connection_id
        })?;
        let transition = record(binding, result, now, threshold)?;
        let event = reachability_event(
            binding,
            transition,
            reason(result, binding.keepalive_failures),
            now,
        );
        Some((transition, store.commit(vec![Change::AppendEvent(event)])))
    })
}

/// Connection `connection_id` closed: every still-reachable binding of `devices` on it goes
/// offline. The events are enqueued under each device's shard lock.
pub fn mark_connection_closed(
    bindings: &BindingTable,
    store: &dyn Store,
    connection_id: u64,
    devices: &[String],
    now: UnixMillis,
) -> Vec<CommitFuture> {
    let mut commits = Vec::new();
    for device_id in devices {
        bindings.with_device(device_id, |list| {
            let mut changes = Vec::new();
            for binding in list.iter_mut().filter(|binding| {
                binding.transport.is_stream() && binding.connection_id == Some(connection_id)
            }) {
                let result = PingResult::ConnectionClosed;
                if let Some(transition) = record(binding, result, now, 1) {
                    info!(device = %binding.device_id, key = %binding.key, "binding offline: connection closed");
                    changes.push(Change::AppendEvent(reachability_event(
                        binding,
                        transition,
                        reason(result, binding.keepalive_failures),
                        now,
                    )));
                }
            }
            if !changes.is_empty() {
                commits.push(store.commit(changes));
            }
        });
    }
    commits
}

/// The pinger: runs until `shutdown` flips. Each cycle plans every binding at its slot and
/// sends the pings in slot order, at most `max_outstanding` at once.
pub async fn keepalive_loop(
    service: Arc<SipService>,
    config: KeepaliveConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval_ms = u64::try_from(config.interval.as_millis()).unwrap_or(u64::MAX);
    if interval_ms == 0 {
        return;
    }
    let timeout_ms = config.timeout_ms.min(interval_ms).max(1);
    let permits = Arc::new(Semaphore::new(config.max_outstanding.max(1)));
    let mut pings = JoinSet::new();
    let mut cycle = Instant::now();
    loop {
        let mut plan: Vec<(u64, String, String)> = service
            .bindings()
            .keys()
            .into_iter()
            .map(|(device_id, key)| (slot_ms(&device_id, &key, interval_ms), device_id, key))
            .collect();
        plan.sort_unstable();
        for (slot, device_id, key) in plan {
            tokio::select! {
                _ = tokio::time::sleep_until(cycle + Duration::from_millis(slot)) => {}
                _ = shutdown.changed() => return,
            }
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = shutdown.changed() => return,
            };
            while pings.try_join_next().is_some() {}
            let Some(binding) = service.bindings().find(&device_id, &key) else {
                continue;
            };
            if binding.expires_at_ms <= now_ms() {
                continue;
            }
            let service = service.clone();
            let threshold = config.failures;
            pings.spawn(async move {
                let _permit = permit;
                ping(&service, &binding, timeout_ms, threshold).await;
            });
        }
        cycle += config.interval;
        let now = Instant::now();
        if cycle < now {
            // Behind (a huge table or too few permits): start the next cycle now, no burst.
            cycle = now;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(cycle) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One keepalive of one binding, recorded.
async fn ping(service: &SipService, binding: &Binding, timeout_ms: u64, threshold: u32) {
    use std::sync::atomic::Ordering;
    service
        .stats
        .keepalives_sent
        .fetch_add(1, Ordering::Relaxed);
    let (outcome, rtt) = service.options(binding, timeout_ms).await;
    let result = PingResult::from_outcome(outcome, rtt, binding.transport.is_stream());
    match result {
        PingResult::Answered { status, rtt_ms } => {
            service.stats.keepalive_rtt.record_ms(u64::from(rtt_ms));
            debug!(
                device = %binding.device_id,
                key = %binding.key,
                status,
                rtt_ms,
                "keepalive answered"
            );
        }
        _ => {
            service
                .stats
                .keepalives_failed
                .fetch_add(1, Ordering::Relaxed);
            debug!(device = %binding.device_id, key = %binding.key, ?result, "keepalive failed");
        }
    }
    let applied = apply_result(
        service.bindings(),
        service.store().as_ref(),
        binding,
        result,
        now_ms(),
        threshold,
    );
    if let Some((transition, commit)) = applied {
        info!(device = %binding.device_id, key = %binding.key, ?transition, "binding reachability changed");
        if let Err(error) = commit.await {
            warn!(%error, "recording a reachability change failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::{History, SqliteOptions, SqliteStore, battery};

    #[test]
    fn slots_are_stable_inside_the_interval_and_spread_out() {
        let interval = 30_000;
        let slot = slot_ms("device-a", "c:sip:a@192.0.2.1", interval);
        assert!(slot < interval);
        assert_eq!(slot, slot_ms("device-a", "c:sip:a@192.0.2.1", interval));
        // The device is part of the hash: the same contact on two devices is two slots.
        assert_ne!(slot, slot_ms("device-b", "c:sip:a@192.0.2.1", interval));
        assert_eq!(slot_ms("d", "k", 0), 0);
        assert_eq!(slot_ms("d", "k", 1), 0);

        // 10,000 bindings over 30 buckets of one second: no wave, no empty second.
        let mut buckets = [0u32; 30];
        for index in 0..10_000 {
            let slot = slot_ms(
                &format!("device-{index}"),
                "c:sip:phone@192.0.2.1",
                interval,
            );
            buckets[usize::try_from(slot / 1_000).expect("small")] += 1;
        }
        let (min, max) = (
            *buckets.iter().min().expect("buckets"),
            *buckets.iter().max().expect("buckets"),
        );
        assert!(min > 250 && max < 420, "uneven spread: {buckets:?}");
    }

    fn binding() -> Binding {
        battery::binding("account", "device", "c:sip:x@192.0.2.1", i64::MAX)
    }

    const ANSWER: PingResult = PingResult::Answered {
        status: 200,
        rtt_ms: 12,
    };

    #[test]
    fn failures_count_up_to_the_threshold_then_one_success_brings_it_back() {
        let mut binding = binding();
        assert!(binding.reachable);
        assert_eq!(record(&mut binding, ANSWER, 1_000, 3), None);
        assert_eq!(binding.last_keepalive_ms, Some(1_000));
        assert_eq!(binding.keepalive_rtt_ms, Some(12));

        assert_eq!(record(&mut binding, PingResult::Failed, 2_000, 3), None);
        assert_eq!(record(&mut binding, PingResult::Failed, 3_000, 3), None);
        assert_eq!(binding.keepalive_failures, 2);
        assert!(binding.reachable);
        // A success in between resets the count.
        assert_eq!(record(&mut binding, ANSWER, 4_000, 3), None);
        assert_eq!(binding.keepalive_failures, 0);
        for at in [5_000, 6_000] {
            assert_eq!(record(&mut binding, PingResult::Failed, at, 3), None);
        }
        assert_eq!(
            record(&mut binding, PingResult::Failed, 7_000, 3),
            Some(Transition::Offline)
        );
        assert!(!binding.reachable);
        // Further failures change nothing more: one offline event, not one per ping.
        assert_eq!(record(&mut binding, PingResult::Failed, 8_000, 3), None);
        assert_eq!(binding.keepalive_failures, 4);
        assert_eq!(binding.last_keepalive_ms, Some(4_000));

        // Any final response means reachable, even an error status.
        let busy = PingResult::Answered {
            status: 486,
            rtt_ms: 30,
        };
        assert_eq!(
            record(&mut binding, busy, 9_000, 3),
            Some(Transition::Online)
        );
        assert!(binding.reachable);
        assert_eq!(binding.keepalive_failures, 0);
        assert_eq!(binding.keepalive_rtt_ms, Some(30));
    }

    #[test]
    fn a_closed_connection_is_offline_at_once() {
        let mut binding = binding();
        assert_eq!(
            record(&mut binding, PingResult::ConnectionClosed, 1_000, 3),
            Some(Transition::Offline)
        );
        assert!(!binding.reachable);
        assert_eq!(
            record(&mut binding, PingResult::ConnectionClosed, 2_000, 3),
            None
        );
    }

    #[test]
    fn outcomes_map_to_results() {
        let rtt = Duration::from_millis(7);
        assert_eq!(
            PingResult::from_outcome(NotifyOutcome::Answered(200), rtt, false),
            PingResult::Answered {
                status: 200,
                rtt_ms: 7
            }
        );
        assert_eq!(
            PingResult::from_outcome(NotifyOutcome::TimedOut, rtt, true),
            PingResult::Failed
        );
        assert_eq!(
            PingResult::from_outcome(NotifyOutcome::NoRoute, rtt, true),
            PingResult::ConnectionClosed
        );
        assert_eq!(
            PingResult::from_outcome(NotifyOutcome::NoRoute, rtt, false),
            PingResult::Failed
        );
    }

    #[test]
    fn transitions_are_events_in_the_store_and_stale_results_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
        let table = BindingTable::new();
        let mut tcp = binding();
        tcp.connection_id = Some(41);
        table.load(vec![tcp.clone()]);

        // A result for another flow of the same key (re-registered meanwhile) is ignored.
        let mut other = tcp.clone();
        other.connection_id = Some(42);
        assert!(apply_result(&table, store.as_ref(), &other, PingResult::Failed, 1, 1).is_none());
        assert!(table.find("device", &tcp.key).expect("kept").reachable);

        // The connection closes: offline at once, one event.
        let commits = mark_connection_closed(&table, store.as_ref(), 41, &["device".to_owned()], 2);
        assert_eq!(commits.len(), 1);
        for commit in commits {
            commit.wait().expect("commit");
        }
        assert!(!table.find("device", &tcp.key).expect("kept").reachable);
        assert!(
            mark_connection_closed(&table, store.as_ref(), 41, &["device".to_owned()], 3)
                .is_empty()
        );

        // An answer on the same flow brings it back.
        let (transition, commit) =
            apply_result(&table, store.as_ref(), &tcp, ANSWER, 4, 1).expect("online");
        assert_eq!(transition, Transition::Online);
        commit.wait().expect("commit");

        let events = store
            .events(&switchboard_store::EventQuery {
                device_id: Some("device".to_owned()),
                ..Default::default()
            })
            .expect("events");
        let mut kinds: Vec<(EventKind, Option<String>)> = events
            .into_iter()
            .map(|event| (event.kind, event.reason))
            .collect();
        kinds.sort_by_key(|(kind, _)| kind.as_str());
        assert_eq!(
            kinds,
            vec![
                (
                    EventKind::Offline,
                    Some("keepalive: connection closed".to_owned())
                ),
                (
                    EventKind::Online,
                    Some("keepalive answered 200 in 12 ms".to_owned())
                ),
            ]
        );
    }
}
