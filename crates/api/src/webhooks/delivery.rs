//! Webhook delivery: a durable outbox fed from the event history, drained over HTTP.
//!
//! One task ([`spawn_webhooks`]) runs two steps every `poll_interval`:
//! 1. **Fan-out.** Read history events after the cursor (at most [`FAN_OUT_BATCH`], every
//!    account), match them against the enabled hooks (the event's account, and ancestors'
//!    hooks with `include_subaccounts`; only events at or after the hook's creation), and
//!    queue one delivery per (hook, event) while moving the cursor, in one transaction
//!    ([`switchboard_store::Webhooks::fan_out`]). The first run starts the cursor at the newest
//!    event: history from before webhooks existed is never replayed.
//! 2. **Send.** Pick pending deliveries that are due, at most `max_in_flight` at once and
//!    [`PER_HOOK_IN_FLIGHT`] per hook (a slow receiver cannot starve the others), and POST
//!    (or PUT, or GET) each, signed. A 2xx delivers it; anything else is recorded as a failed
//!    attempt and retried after `retry_base · 2^(attempt-1)` ±20 % (capped at 10 min) until
//!    the hook's `retries` are spent, then the delivery has failed. `disable_after_failures`
//!    failed attempts in a row disable the hook (with `disable_reason`); a success resets the
//!    streak.
//!
//! Every state change is in the store, so deliveries survive a crash (at least once: an
//! attempt that was answered but not yet recorded is sent again, with the same event id).
//! Nothing here runs on the REGISTER path: the worker only reads the history.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use switchboard_model::{Event, UnixMillis};
use switchboard_store::{
    AttemptOutcome, Delivery, DeliveryState, EventQuery, NewDelivery, Store, StoreError, Webhook,
};
use tokio::task::{JoinHandle, JoinSet};

use super::{ALL_EVENTS, DEFAULT_RETRIES, event_name, public_event_id};

/// History events read per fan-out transaction.
pub const FAN_OUT_BATCH: usize = 500;

/// Fan-out transactions per tick at most (catching up after a burst: 10,000 events a tick).
const FAN_OUT_ROUNDS: usize = 20;

/// Deliveries of one hook in flight at once.
pub const PER_HOOK_IN_FLIGHT: usize = 4;

/// The longest wait between two attempts.
pub const RETRY_CAP: Duration = Duration::from_secs(600);

/// Delivered and failed deliveries, and attempts, are kept this long.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often old deliveries and attempts are pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Deeper account trees than this are not walked for `include_subaccounts`.
const MAX_ACCOUNT_DEPTH: usize = 64;

/// Failure reasons are kept this short.
const MAX_ERROR_CHARS: usize = 300;

/// The worker's settings (the binary's `[webhooks]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Between two fan-out/send rounds.
    pub poll_interval: Duration,
    /// The first retry waits this long (±20 %), each next one twice as long.
    pub retry_base: Duration,
    /// HTTP requests in flight at once, over all hooks.
    pub max_in_flight: usize,
    /// Failed attempts in a row that disable a hook (0: never).
    pub disable_after_failures: u32,
    /// Connect timeout, and the whole request's.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            poll_interval: Duration::from_millis(200),
            retry_base: Duration::from_secs(1),
            max_in_flight: 32,
            disable_after_failures: 6,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The HTTP client could not be built (TLS roots, …).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct WebhookClientError(String);

/// Starts the delivery worker on the current tokio runtime. Aborting the handle stops it
/// (requests in flight are dropped; their deliveries stay pending and are sent again).
pub fn spawn_webhooks(
    store: Arc<dyn Store>,
    config: WebhookConfig,
    stats: Arc<WebhookStats>,
) -> Result<JoinHandle<()>, WebhookClientError> {
    let mut worker = WebhookWorker::new(store, config)?;
    worker.stats = stats;
    Ok(tokio::spawn(worker.run()))
}

/// What the worker did, for metrics (process-local counters).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Deliveries a 2xx answered.
    pub delivered: AtomicU64,
    /// Attempts that failed (non-2xx or transport error).
    pub failed_attempts: AtomicU64,
    /// Deliveries given up after their last retry.
    pub given_up: AtomicU64,
    /// Hooks disabled for failing.
    pub hooks_disabled: AtomicU64,
    /// Sum of the delivered ones' lag, from entering the outbox to the 2xx, in ms.
    pub lag_ms_sum: AtomicU64,
    /// The lag of the last delivery, in ms.
    pub last_lag_ms: AtomicU64,
}

/// See the module documentation.
pub struct WebhookWorker {
    store: Arc<dyn Store>,
    config: WebhookConfig,
    client: reqwest::Client,
    in_flight: Arc<Mutex<InFlight>>,
    stats: Arc<WebhookStats>,
}

impl std::fmt::Debug for WebhookWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What is being sent right now.
#[derive(Debug, Default)]
struct InFlight {
    deliveries: HashSet<i64>,
    per_hook: HashMap<String, usize>,
}

/// One delivery's place in [`InFlight`], given back when the send ends (or is aborted).
struct Slot {
    in_flight: Arc<Mutex<InFlight>>,
    delivery_id: i64,
    hook_id: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.deliveries.remove(&self.delivery_id);
        if let Some(count) = in_flight.per_hook.get_mut(&self.hook_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.per_hook.remove(&self.hook_id);
            }
        }
    }
}

impl WebhookWorker {
    pub fn new(store: Arc<dyn Store>, config: WebhookConfig) -> Result<Self, WebhookClientError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| WebhookClientError(error.to_string()))?;
        Ok(WebhookWorker {
            store,
            config,
            client,
            in_flight: Arc::default(),
            stats: Arc::default(),
        })
    }

    /// Runs until aborted.
    pub async fn run(self) {
        let mut ticker =
            tokio::time::interval(self.config.poll_interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sends = JoinSet::new();
        let mut next_prune = Instant::now();
        tracing::info!(config = ?self.config, "webhook worker started");
        loop {
            ticker.tick().await;
            while sends.try_join_next().is_some() {}
            self.fan_out().await;
            self.send_due(&mut sends).await;
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_INTERVAL;
                self.prune().await;
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .unwrap_or_else(|error| Err(StoreError::Backend(error.to_string())))
    }

    async fn fan_out(&self) {
        for _ in 0..FAN_OUT_ROUNDS {
            match self
                .blocking(|store| fan_out_batch(store, crate::now_ms()))
                .await
            {
                Ok(read) if read == FAN_OUT_BATCH => continue,
                Ok(_) => return,
                Err(StoreError::Conflict(_)) => {
                    tracing::debug!("webhook cursor moved under us; next round");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "webhook fan-out failed");
                    return;
                }
            }
        }
    }

    async fn send_due(&self, sends: &mut JoinSet<()>) {
        let busy = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deliveries
            .len();
        let free = self.config.max_in_flight.saturating_sub(busy);
        if free == 0 {
            return;
        }
        // In-flight deliveries are still pending and due: ask for enough to see past them.
        let wanted = free + busy;
        let now = crate::now_ms();
        let found = self
            .blocking(move |store| {
                let due = store.due_deliveries(now, PER_HOOK_IN_FLIGHT, wanted)?;
                if due.is_empty() {
                    return Ok((due, Vec::new()));
                }
                Ok((due, store.enabled_webhooks()?))
            })
            .await;
        let (due, hooks) = match found {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "reading due webhook deliveries failed");
                return;
            }
        };
        let hooks: HashMap<String, Arc<Webhook>> = hooks
            .into_iter()
            .map(|hook| (hook.id.clone(), Arc::new(hook)))
            .collect();
        let mut started = 0;
        for delivery in due {
            if started == free {
                break;
            }
            let Some(hook) = hooks.get(&delivery.hook_id) else {
                continue;
            };
            let Some(slot) = self.claim(&delivery) else {
                continue;
            };
            started += 1;
            let send = Sending {
                store: self.store.clone(),
                client: self.client.clone(),
                config: self.config.clone(),
                hook: hook.clone(),
                delivery,
                stats: self.stats.clone(),
            };
            sends.spawn(async move {
                send.run().await;
                drop(slot);
            });
        }
    }

    /// A slot for the delivery, unless it is already being sent or its hook has its share.
    fn claim(&self, delivery: &Delivery) -> Option<Slot> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight.deliveries.contains(&delivery.id)
            || in_flight
                .per_hook
                .get(&delivery.hook_id)
                .is_some_and(|&count| count >= PER_HOOK_IN_FLIGHT)
        {
            return None;
        }
        in_flight.deliveries.insert(delivery.id);
        *in_flight
            .per_hook
            .entry(delivery.hook_id.clone())
            .or_default() += 1;
        Some(Slot {
            in_flight: self.in_flight.clone(),
            delivery_id: delivery.id,
            hook_id: delivery.hook_id.clone(),
        })
    }

    async fn prune(&self) {
        let before = crate::now_ms() - i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX);
        match self
            .blocking(move |store| store.prune_webhooks(before))
            .await
        {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "pruned old webhook deliveries and attempts"),
            Err(error) => tracing::warn!(%error, "pruning webhook deliveries failed"),
        }
    }
}

/// One attempt of one delivery.
struct Sending {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: WebhookConfig,
    hook: Arc<Webhook>,
    delivery: Delivery,
    stats: Arc<WebhookStats>,
}

impl Sending {
    async fn run(self) {
        let started = Instant::now();
        let at_ms = crate::now_ms();
        let (http_status, error) = self.attempt(at_ms).await;
        let success = error.is_none();
        let attempts = self.delivery.attempts.saturating_add(1);
        let retry_at_ms = (!success && attempts <= retries(&self.hook)).then(|| {
            let delay = retry_delay(
                attempts,
                self.config.retry_base,
                RETRY_CAP,
                rand::random::<f64>(),
            );
            crate::now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)
        });
        let outcome = AttemptOutcome {
            delivery_id: self.delivery.id,
            at_ms,
            http_status,
            error,
            duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
            success,
            retry_at_ms,
            disable_after_failures: self.config.disable_after_failures,
        };
        let store = self.store.clone();
        let recorded = tokio::task::spawn_blocking(move || store.record_attempt(&outcome)).await;
        let (hook_id, delivery_id) = (&self.hook.id, self.delivery.id);
        match recorded {
            Ok(Ok(recorded)) => {
                let stats = &self.stats;
                match recorded.state {
                    DeliveryState::Delivered => {
                        let lag = u64::try_from(at_ms - self.delivery.created_ms).unwrap_or(0);
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                        stats.lag_ms_sum.fetch_add(lag, Ordering::Relaxed);
                        stats.last_lag_ms.store(lag, Ordering::Relaxed);
                    }
                    DeliveryState::Failed => {
                        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                        stats.given_up.fetch_add(1, Ordering::Relaxed);
                    }
                    DeliveryState::Pending => {
                        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if recorded.disabled.is_some() {
                    stats.hooks_disabled.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(
                    webhook_id = %hook_id,
                    delivery_id,
                    attempt = attempts,
                    state = recorded.state.as_str(),
                    ?http_status,
                    "webhook attempt"
                );
                if let Some(reason) = recorded.disabled {
                    tracing::warn!(webhook_id = %hook_id, %reason, "webhook disabled");
                }
            }
            // The hook was deleted meanwhile.
            Ok(Err(StoreError::NotFound)) => {}
            Ok(Err(error)) => {
                tracing::warn!(webhook_id = %hook_id, delivery_id, %error, "recording a webhook attempt failed");
            }
            Err(error) => tracing::warn!(%error, "recording a webhook attempt failed"),
        }
    }

    /// Sends the request: the receiver's status (when it answered) and, for a failure, why.
    async fn attempt(&self, at_ms: UnixMillis) -> (Option<u16>, Option<String>) {
        let hook = &self.hook;
        let Some(url) = hook.document.get("url").and_then(Value::as_str) else {
            return (None, Some("the hook has no url".to_owned()));
        };
        let body = self.delivery.payload.to_string();
        let timestamp = at_ms.div_euclid(1000);
        let verb = hook
            .document
            .get("http_verb")
            .and_then(Value::as_str)
            .unwrap_or("post");
        let request = match verb {
            // Kazoo's GET puts the payload in the query string; ours as one `payload`
            // parameter (the signed text).
            "get" => self.client.get(url).query(&[("payload", &body)]),
            "put" => self.client.put(url).body(body.clone()),
            _ => self.client.post(url).body(body.clone()),
        };
        let event_id = public_event_id(self.delivery.event_id);
        let request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Switchboard-Event", &self.delivery.event_name)
            .header("X-Switchboard-Event-Id", &event_id)
            .header("X-Switchboard-Timestamp", timestamp.to_string())
            .header(
                "X-Switchboard-Signature",
                signature(&hook.secret, timestamp, &body),
            )
            .header("X-Hook-ID", &hook.id)
            .header("X-Account-ID", &self.delivery.account_id);
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                (Some(response.status().as_u16()), None)
            }
            Ok(response) => {
                let status = response.status().as_u16();
                (Some(status), Some(format!("HTTP {status}")))
            }
            Err(error) => (None, Some(transport_error(error))),
        }
    }
}

/// A transport error with its causes, without the URL (it may carry credentials).
fn transport_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}

// ---- fan-out -----------------------------------------------------------------------------

/// One fan-out transaction; returns how many events it read.
fn fan_out_batch(store: &dyn Store, now_ms: UnixMillis) -> Result<usize, StoreError> {
    let cursor = store.webhook_cursor()?;
    // The newest event is read before the hooks: a hook created after this read is newer
    // than every event up to it, so skipping them loses nothing it should get.
    let newest = store
        .events(&EventQuery {
            limit: 1,
            newest_first: true,
            ..EventQuery::default()
        })?
        .first()
        .map_or(0, |event| event.id);
    let Some(cursor) = cursor else {
        // First run: start from now, do not replay the history to new hooks.
        store.fan_out(None, newest, &[])?;
        tracing::info!(cursor = newest, "webhook fan-out starts");
        return Ok(0);
    };
    if newest <= cursor {
        return Ok(0);
    }
    let events = store.events(&EventQuery {
        after_id: Some(cursor),
        limit: FAN_OUT_BATCH,
        ..EventQuery::default()
    })?;
    // Hooks after events, for the same reason as above.
    let hooks = store.enabled_webhooks()?;
    if hooks.is_empty() {
        // Nobody to tell: skip to the newest event at once instead of batch by batch.
        store.fan_out(Some(cursor), newest, &[])?;
        return Ok(0);
    }
    let Some(last) = events.last() else {
        return Ok(0);
    };
    let ancestors = if hooks.iter().any(include_subaccounts) {
        account_ancestors(store, &events)?
    } else {
        HashMap::new()
    };
    let deliveries = plan(&events, &hooks, &ancestors, now_ms);
    store.fan_out(Some(cursor), last.id, &deliveries)?;
    Ok(events.len())
}

/// The parent chain (nearest first) of every account the events name.
fn account_ancestors(
    store: &dyn Store,
    events: &[Event],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    for event in events {
        if found.contains_key(&event.account_id) {
            continue;
        }
        let mut chain = Vec::new();
        let mut current = store.account(&event.account_id)?.and_then(|a| a.parent_id);
        while let Some(parent) = current {
            if chain.len() >= MAX_ACCOUNT_DEPTH || chain.contains(&parent) {
                break;
            }
            current = store.account(&parent)?.and_then(|a| a.parent_id);
            chain.push(parent);
        }
        found.insert(event.account_id.clone(), chain);
    }
    Ok(found)
}

fn include_subaccounts(hook: &Webhook) -> bool {
    hook.document
        .get("include_subaccounts")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn retries(hook: &Webhook) -> u32 {
    hook.document
        .get("retries")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_RETRIES)
        .try_into()
        .unwrap_or(u32::MAX)
}

/// Whether the hook subscribes to the event name.
fn wants(hook: &Webhook, name: &str) -> bool {
    match hook.document.get("events").and_then(Value::as_array) {
        Some(events) => events
            .iter()
            .filter_map(Value::as_str)
            .any(|wanted| wanted == ALL_EVENTS || wanted == name),
        None => true,
    }
}

/// The deliveries a batch of events makes: each event to every enabled hook of its account
/// (or of an ancestor, with `include_subaccounts`) that wants it and existed when it happened.
fn plan(
    events: &[Event],
    hooks: &[Webhook],
    ancestors: &HashMap<String, Vec<String>>,
    now_ms: UnixMillis,
) -> Vec<NewDelivery> {
    let mut deliveries = Vec::new();
    for event in events {
        let name = event_name(event.kind);
        let above = ancestors.get(&event.account_id);
        for hook in hooks {
            let reaches = hook.account_id == event.account_id
                || (include_subaccounts(hook)
                    && above.is_some_and(|chain| chain.contains(&hook.account_id)));
            if hook.enabled && reaches && event.at_ms >= hook.created_ms && wants(hook, &name) {
                deliveries.push(NewDelivery {
                    hook_id: hook.id.clone(),
                    account_id: hook.account_id.clone(),
                    event_id: event.id,
                    event_name: name.clone(),
                    payload: payload(event, hook),
                    created_ms: now_ms,
                });
            }
        }
    }
    deliveries
}

/// The body of every attempt of this event to this hook: the one public event shape
/// ([`crate::event_payload`]) with Kazoo's `custom_data` at the top level, which cannot replace
/// the fields above.
fn payload(event: &Event, hook: &Webhook) -> Value {
    let mut body = crate::event_payload(event);
    if let (Value::Object(body), Some(Value::Object(custom))) =
        (&mut body, hook.document.get("custom_data"))
    {
        for (key, value) in custom {
            body.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    body
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(unix_ms: UnixMillis) -> String {
    crate::monitoring::rfc3339(unix_ms)
}

/// `v1=` and the hex HMAC-SHA256, keyed by the secret's text, of `"<timestamp>.<body>"`.
pub(crate) fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The wait after the `attempts`-th failed attempt: `base · 2^(attempts-1)`, scaled by
/// 0.8..1.2 (`unit` in 0..1 picks where), at most `cap`.
fn retry_delay(attempts: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let plain = base.saturating_mul(1u32 << exponent).min(cap);
    plain.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0)).min(cap)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_model::{EventKind, Transport};

    use super::*;

    fn hook(account_id: &str, document: Value, created_ms: UnixMillis) -> Webhook {
        Webhook {
            id: format!("hook-{account_id}-{created_ms}"),
            account_id: account_id.to_owned(),
            document,
            enabled: true,
            disabled_reason: None,
            secret: "secret".to_owned(),
            failure_streak: 0,
            created_ms,
            modified_ms: created_ms,
        }
    }

    fn event(id: i64, account_id: &str, kind: EventKind, at_ms: UnixMillis) -> Event {
        Event {
            id,
            at_ms,
            kind,
            account_id: account_id.to_owned(),
            device_id: Some("dev1".to_owned()),
            binding_key: None,
            contact: Some("sip:u@203.0.113.50:52415".to_owned()),
            address: Some("203.0.113.50:52415".to_owned()),
            transport: Some(Transport::Udp),
            user_agent: Some("Phone/1".to_owned()),
            reason: None,
        }
    }

    #[test]
    fn payload_has_the_seed_shape_and_custom_data() {
        let hook = hook(
            "acc",
            json!({"events": ["*"], "custom_data": {"tenant": "t1", "event": "ignored"}}),
            0,
        );
        let body = payload(
            &event(42, "acc", EventKind::Registered, 1_697_796_000_000),
            &hook,
        );
        assert_eq!(
            body,
            json!({
                "event": "device.registered",
                "eventId": "evt_42",
                "timestamp": "2023-10-20T10:00:00Z",
                "accountId": "acc",
                "tenant": "t1",
                "data": {
                    "deviceId": "dev1",
                    "status": "registered",
                    "ipAddress": "203.0.113.50",
                    "port": 52415,
                    "transportProtocol": "UDP",
                    "userAgent": "Phone/1",
                    "contactUri": "sip:u@203.0.113.50:52415",
                    "registeredAt": "2023-10-20T10:00:00Z",
                },
            })
        );
    }

    #[test]
    fn status_follows_the_event_kind() {
        for (kind, expected) in [
            (EventKind::Registered, "registered"),
            (EventKind::Refreshed, "registered"),
            (EventKind::Online, "registered"),
            (EventKind::Unregistered, "unregistered"),
            (EventKind::Expired, "expired"),
            (EventKind::Offline, "offline"),
            (EventKind::AuthFailed, "invalid"),
            (EventKind::Rejected, "invalid"),
            (EventKind::Provisioning, "provisioning"),
        ] {
            let body = payload(&event(1, "acc", kind, 0), &hook("acc", json!({}), 0));
            assert_eq!(body["data"]["status"], expected, "{kind:?}");
        }
    }

    #[test]
    fn a_ban_is_delivered_as_security_banned_to_the_hooks_that_want_it() {
        let ban = Event {
            device_id: None,
            contact: None,
            address: Some("203.0.113.7".to_owned()),
            reason: Some("10 failed authentications; banned for 300 s (offence 1)".to_owned()),
            ..event(9, "acc", EventKind::Banned, 1_697_796_000_000)
        };
        let bans = hook("acc", json!({"events": ["security.banned"]}), 0);
        let every = hook("acc", json!({"events": ["*"]}), 1);
        let failures = hook("acc", json!({"events": ["device.auth_failed"]}), 2);
        let hooks = [bans.clone(), every.clone(), failures];
        let ancestors = HashMap::from([("acc".to_owned(), Vec::new())]);
        let planned: Vec<String> = plan(std::slice::from_ref(&ban), &hooks, &ancestors, 0)
            .into_iter()
            .map(|delivery| delivery.hook_id)
            .collect();
        assert_eq!(planned, vec![bans.id.clone(), every.id.clone()]);
        let body = payload(&ban, &bans);
        assert_eq!(body["event"], "security.banned");
        assert_eq!(body["data"]["ipAddress"], "203.0.113.7");
        assert!(body["data"].get("port").is_none());
        assert!(body["data"].get("deviceId").is_none());
        assert!(body["data"].get("status").is_none());
        assert!(
            body["data"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("banned"))
        );
    }

    #[test]
    fn plan_matches_account_events_creation_and_subaccounts() {
        let every = hook("parent", json!({"events": ["*"]}), 100);
        let offline_only = hook("child", json!({"events": ["device.offline"]}), 100);
        let late = hook("child", json!({"events": ["*"]}), 10_000);
        let family = hook(
            "parent",
            json!({"events": ["*"], "include_subaccounts": true}),
            0,
        );
        let mut disabled = hook("child", json!({"events": ["*"]}), 0);
        disabled.enabled = false;
        let hooks = [
            every.clone(),
            offline_only.clone(),
            late,
            family.clone(),
            disabled,
        ];
        let ancestors = HashMap::from([
            ("child".to_owned(), vec!["parent".to_owned()]),
            ("parent".to_owned(), Vec::new()),
        ]);
        let events = [
            event(1, "child", EventKind::Registered, 500),
            event(2, "child", EventKind::Offline, 600),
            event(3, "parent", EventKind::Expired, 50),
        ];
        let planned: Vec<(String, i64)> = plan(&events, &hooks, &ancestors, 7)
            .into_iter()
            .map(|delivery| (delivery.hook_id, delivery.event_id))
            .collect();
        assert_eq!(
            planned,
            vec![
                (family.id.clone(), 1),
                (offline_only.id.clone(), 2),
                (family.id.clone(), 2),
                // `every` was created at 100, after event 3.
                (family.id, 3),
            ]
        );
    }

    #[test]
    fn fan_out_starts_at_the_newest_event_and_queues_only_for_hooks_that_exist() {
        use switchboard_store::{SqliteStore, battery};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), Default::default()).expect("open");
        let store: &dyn Store = store.as_ref();
        let account = battery::account("fan-out");
        store.create_account(&account).expect("account");
        let append = |at_ms: UnixMillis| {
            store
                .commit(vec![switchboard_model::Change::AppendEvent(
                    battery::event(&account.id, Some("dev1"), EventKind::Registered, at_ms),
                )])
                .wait()
                .expect("commit")[0]
        };
        let before = append(1_000);
        // The first run starts after the history there is.
        assert_eq!(fan_out_batch(store, 5).expect("first"), 0);
        assert_eq!(store.webhook_cursor().expect("cursor"), Some(before));
        // Without hooks the cursor jumps ahead and nothing is queued.
        let unheard = append(2_000);
        assert_eq!(fan_out_batch(store, 5).expect("no hooks"), 0);
        assert_eq!(store.webhook_cursor().expect("cursor"), Some(unheard));
        // A hook gets what happens from its creation on.
        let hook = hook(&account.id, json!({"events": ["device.registered"]}), 3_000);
        store.create_webhook(&hook).expect("hook");
        let too_early = append(2_500);
        let heard = append(3_000);
        assert_eq!(fan_out_batch(store, 5).expect("batch"), 2);
        assert_eq!(store.webhook_cursor().expect("cursor"), Some(heard));
        let due = store.due_deliveries(5, 10, 10).expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event_id, heard);
        assert_ne!(due[0].event_id, too_early);
        assert_eq!(due[0].payload["eventId"], format!("evt_{heard}"));
        // Nothing new: nothing read.
        assert_eq!(fan_out_batch(store, 5).expect("idle"), 0);
    }

    #[test]
    fn retries_double_with_jitter_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(600);
        assert_eq!(retry_delay(1, base, cap, 0.5), Duration::from_secs(1));
        assert_eq!(retry_delay(2, base, cap, 0.5), Duration::from_secs(2));
        assert_eq!(retry_delay(4, base, cap, 0.5), Duration::from_secs(8));
        assert_eq!(retry_delay(1, base, cap, 0.0), Duration::from_millis(800));
        assert_eq!(retry_delay(1, base, cap, 1.0), Duration::from_millis(1200));
        assert_eq!(retry_delay(20, base, cap, 1.0), cap);
        assert_eq!(retry_delay(u32::MAX, base, cap, 0.0), cap.mul_f64(0.8));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: python3 hmac.new(b"key", b"1700000000.{}", sha256).
        assert_eq!(
            signature("key", 1_700_000_000, "{}"),
            "v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(signature("key", 1, "{}"), signature("key", 2, "{}"));
    }
}
