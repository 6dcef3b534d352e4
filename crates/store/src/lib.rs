//! Switchboard's storage: where accounts, devices, API keys, bindings, the event history and
//! the webhook outbox live.
//!
//! The registrar and the API code against four traits, never against a database:
//! - [`Directory`] — accounts, devices and API keys. Written rarely (operator actions), read
//!   often (digest credential lookup, API listings).
//! - [`Location`] — the bindings (RFC 3261 §10 location service). Every REGISTER ends in a
//!   [`Location::commit`] of [`Change`]s, which resolves only once the changes are durable, so
//!   a 200 OK never acknowledges a binding a crash could lose.
//! - [`History`] — the append-only event log, appended through the same commit as the binding
//!   change that caused it.
//! - [`Webhooks`] — webhook subscriptions and their durable outbox (deliveries fanned out
//!   from the history, attempts), written by the API and the delivery worker, never on the
//!   REGISTER path.
//!
//! [`Store`] is all four. Backends: [`SqliteStore`] (embedded, the default; one writer thread
//! that group-commits every queued batch in one transaction). PostgreSQL and Redis backends
//! come later; a backend is done when [`battery::run_all`] passes against it.
//!
//! The synchronous methods block on I/O: async callers wrap them in `spawn_blocking`.
//! [`Location::commit`] is the exception: it returns at once with a [`CommitFuture`].

#![forbid(unsafe_code)]

use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use sha2::{Digest, Sha256};
use switchboard_model::{
    AccessLists, Account, Binding, Change, Device, DeviceFacts, DeviceOutcome, Event, EventKind,
    RegistrationState, UnixMillis, User,
};
use tokio::sync::oneshot;

pub mod battery;
mod sqlite;

pub use sqlite::{BUSY_TIMEOUT, DATABASE_FILE, SqliteOptions, SqliteStore, Synchronous};

/// What went wrong in a store, grouped by who has to act on it.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule was violated; the message names the field: `realm`, `sip.username`,
    /// `api_key` or `id`.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The record to update or delete (or the account a new device belongs to) does not exist.
    #[error("not found")]
    NotFound,
    /// The database failed or holds something this build cannot read.
    #[error("storage: {0}")]
    Backend(String),
    /// The store was closed; nothing more is accepted.
    #[error("store closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// Lower-case hex SHA-256 of the key, see [`ApiKey::hash`].
    pub key_hash: String,
    pub created_ms: UnixMillis,
    /// What the key may do (scope names, which the API defines); [`ApiKey::EVERY_SCOPE`]
    /// alone means everything. Keys stored before scopes existed read as that.
    pub scopes: Vec<String>,
    /// The key's first characters, not secret, so a listing can show which key is which;
    /// empty for keys stored before prefixes existed.
    pub prefix: String,
}

impl ApiKey {
    /// The scope that stands for every scope.
    pub const EVERY_SCOPE: &str = "*";

    /// The stored form of a secret key: lower-case hex SHA-256.
    pub fn hash(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }
}

/// Which of a user's credential hashes to match (Kazoo's `user_auth` `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialHash {
    /// `md5("username:password")`, Kazoo's default.
    Md5,
    /// `sha1("username:password")` (`"method":"sha"`).
    Sha1,
}

/// A filter over the history. Conditions combine with AND; an empty `kinds` means all kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub account_id: Option<String>,
    pub device_id: Option<String>,
    pub kinds: Vec<EventKind>,
    /// Only events with `id > after_id` (poll for what is new).
    pub after_id: Option<i64>,
    /// Only events with `id < before_id` (page backwards with `newest_first`).
    pub before_id: Option<i64>,
    /// Only events with `at_ms >= since_ms`.
    pub since_ms: Option<UnixMillis>,
    /// Only events with `at_ms < until_ms`.
    pub until_ms: Option<UnixMillis>,
    /// At most this many events.
    pub limit: usize,
    /// Order by id descending instead of ascending.
    pub newest_first: bool,
}

impl Default for EventQuery {
    fn default() -> Self {
        EventQuery {
            account_id: None,
            device_id: None,
            kinds: Vec::new(),
            after_id: None,
            before_id: None,
            since_ms: None,
            until_ms: None,
            limit: 100,
            newest_first: false,
        }
    }
}

/// What monitoring needs of a device: the columns of its document a state summary shows and
/// its last outcome, without the document itself (a dashboard over 100,000 devices reads these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub device_type: String,
    pub enabled: bool,
    pub owner_id: Option<String>,
    pub username: Option<String>,
    /// `sip.expire_seconds`, when the device narrows the registration expiry.
    pub expire_seconds: Option<u32>,
    pub created_ms: UnixMillis,
    pub outcome: Option<DeviceOutcome>,
}

impl DeviceSummary {
    pub fn facts(&self) -> DeviceFacts {
        DeviceFacts {
            enabled: self.enabled,
            created_ms: self.created_ms,
        }
    }
}

/// An account's device count per registration state at one moment (analytics history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSample<'a> {
    pub account_id: &'a str,
    pub at_ms: UnixMillis,
    /// Indexed by [`RegistrationState::index`].
    pub counts: [u32; 6],
}

impl StateSample<'_> {
    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }

    pub fn count(&self, state: RegistrationState) -> u32 {
        self.counts[state.index()]
    }
}

/// A stored [`StateSample`] (owning its account id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: UnixMillis,
    pub counts: [u32; 6],
}

impl Sample {
    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }

    pub fn count(&self, state: RegistrationState) -> u32 {
        self.counts[state.index()]
    }
}

/// Counters since the store was opened (process-local).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed by the commit path (each holds one or more batches).
    pub commit_transactions: u64,
    /// Batches (calls to [`Location::commit`]) acknowledged as durable.
    pub committed_batches: u64,
    /// Changes inside those batches.
    pub committed_changes: u64,
    /// Batches that were answered with an error.
    pub failed_batches: u64,
    /// Directory writes (accounts, devices, API keys) committed.
    pub directory_writes: u64,
}

/// Accounts, devices and API keys.
pub trait Directory: Send + Sync {
    /// `Conflict("realm")` when the realm (case-insensitive) is taken, `Conflict("id")` when the id is.
    fn create_account(&self, account: &Account) -> Result<()>;
    /// `NotFound` when missing; same conflict rule as create.
    fn update_account(&self, account: &Account) -> Result<()>;
    /// Deletes the account with its devices, users, bindings, API keys, access lists and webhooks (with their
    /// deliveries and attempts; its events stay in the history; child accounts are not touched). `NotFound` when missing.
    fn delete_account(&self, id: &str) -> Result<()>;
    fn account(&self, id: &str) -> Result<Option<Account>>;
    /// Case-insensitive.
    fn account_by_realm(&self, realm: &str) -> Result<Option<Account>>;
    /// All accounts, sorted by id.
    fn accounts(&self) -> Result<Vec<Account>>;
    /// `NotFound` when the account does not exist; `Conflict("sip.username")` when another
    /// password device of the account has the same username (case-insensitive);
    /// `Conflict("id")` when the id is taken.
    fn create_device(&self, device: &Device) -> Result<()>;
    /// Replaces the whole device. `NotFound` when missing; same conflict rule as create.
    fn update_device(&self, device: &Device) -> Result<()>;
    /// Deletes the device and its bindings. `NotFound` when missing.
    fn delete_device(&self, id: &str) -> Result<()>;
    fn device(&self, id: &str) -> Result<Option<Device>>;
    /// Case-insensitive. When several devices share the username (only one can use
    /// `method: password`), the password device wins.
    fn device_by_username(&self, account_id: &str, username: &str) -> Result<Option<Device>>;
    /// Devices whose `sip.ip` is exactly `ip`, sorted by id.
    fn devices_by_ip(&self, ip: &str) -> Result<Vec<Device>>;
    /// The account's devices, sorted by id.
    fn devices(&self, account_id: &str) -> Result<Vec<Device>>;
    /// At most `limit` of the account's devices with ids after `after_id`, sorted by id: a
    /// page of a large account without holding all of it in memory.
    fn devices_page(
        &self,
        account_id: &str,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Device>>;
    /// Devices of every account with `modified_ms >= since_ms` (inclusive, so a refresh at the
    /// same millisecond as a write misses nothing), sorted by id.
    fn devices_modified_since(&self, since_ms: UnixMillis) -> Result<Vec<Device>>;
    /// `Conflict("api_key")` when the hash exists, `Conflict("id")` when the id does.
    fn create_api_key(&self, key: &ApiKey) -> Result<()>;
    fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>>;
    fn api_key(&self, id: &str) -> Result<Option<ApiKey>>;
    /// The account's keys, sorted by id.
    fn api_keys(&self, account_id: &str) -> Result<Vec<ApiKey>>;
    /// `NotFound` when missing.
    fn delete_api_key(&self, id: &str) -> Result<()>;
    /// Sets (or replaces) the account's own API key, kept as issued so the account's operators
    /// can read it back (Kazoo's `GET /accounts/{id}/api_key`). `NotFound` when the account is
    /// missing, `Conflict("api_key")` when another account holds the same key.
    fn set_account_api_key(&self, account_id: &str, key: &str) -> Result<()>;
    /// The account's own API key; `None` when it has none (or the account is missing).
    fn account_api_key(&self, account_id: &str) -> Result<Option<String>>;
    /// The account whose own API key is exactly `key`.
    fn account_by_api_key(&self, key: &str) -> Result<Option<Account>>;
    /// The account's whole Kazoo document as last stored (an empty object for accounts that
    /// never had one); `None` when the account is missing.
    fn account_document(&self, account_id: &str) -> Result<Option<serde_json::Value>>;
    /// Stores the account's whole document. `NotFound` when the account is missing.
    fn set_account_document(&self, account_id: &str, document: &serde_json::Value) -> Result<()>;
    /// The account's own SIP allow and deny lists; `None` when it never set any (or is
    /// missing).
    fn access_lists(&self, account_id: &str) -> Result<Option<AccessLists>>;
    /// Replaces the account's lists (empty lists clear them) and returns them as stored, with
    /// the revision one above the previous one (1 for the first write) and `modified_ms` =
    /// `now_ms`. The entries are stored as given (the caller validates them). `NotFound`
    /// when the account is missing.
    fn set_access_lists(
        &self,
        account_id: &str,
        allow: &[String],
        deny: &[String],
        now_ms: UnixMillis,
    ) -> Result<AccessLists>;
    /// The lists of every account with `modified_ms >= since_ms` (cleared ones included, with
    /// empty lists; inclusive like [`Directory::devices_modified_since`]), sorted by account
    /// id. `UnixMillis::MIN` reads them all.
    fn access_lists_modified_since(&self, since_ms: UnixMillis) -> Result<Vec<AccessLists>>;
    /// `NotFound` when the account does not exist; `Conflict("username")` when another user of
    /// the account has the same username (case-insensitive); `Conflict("id")` when the id is
    /// taken.
    fn create_user(&self, user: &User) -> Result<()>;
    /// Replaces the whole user, only if the stored revision is `user.revision - 1` (the caller
    /// read revision N and writes N + 1). `NotFound` when missing, `Conflict("revision")` when
    /// someone else wrote it meanwhile, `Conflict("username")` as for create.
    fn update_user(&self, user: &User) -> Result<()>;
    /// `NotFound` when missing.
    fn delete_user(&self, id: &str) -> Result<()>;
    fn user(&self, id: &str) -> Result<Option<User>>;
    /// The account's users, sorted by id.
    fn users(&self, account_id: &str) -> Result<Vec<User>>;
    /// Case-insensitive.
    fn user_by_username(&self, account_id: &str, username: &str) -> Result<Option<User>>;
    /// The account's users whose `method` hash is exactly `hash` (lower-case hex), sorted by id.
    fn users_by_credentials(
        &self,
        account_id: &str,
        method: CredentialHash,
        hash: &str,
    ) -> Result<Vec<User>>;
}

/// The bindings.
pub trait Location: Send + Sync {
    /// Applies the changes atomically; the future resolves once they are durable (committed).
    /// The ids assigned to the `AppendEvent` changes are returned in their order.
    fn commit(&self, changes: Vec<Change>) -> CommitFuture;
    /// Every binding, expired or not (the caller sweeps), sorted by (device_id, key).
    fn bindings(&self) -> Result<Vec<Binding>>;
    /// The device's bindings, sorted by key.
    fn device_bindings(&self, device_id: &str) -> Result<Vec<Binding>>;
    /// Bindings with `expires_at_ms <= now_ms`, soonest first.
    fn expired_bindings(&self, now_ms: UnixMillis) -> Result<Vec<Binding>>;
}

/// The event history, with what monitoring derives from it.
pub trait History: Send + Sync {
    fn events(&self, query: &EventQuery) -> Result<Vec<Event>>;
    /// The id of the newest event, 0 when the history is empty.
    fn last_event_id(&self) -> Result<i64>;
    /// The device's last outcome (kept in step with the history by every append).
    fn device_outcome(&self, device_id: &str) -> Result<Option<DeviceOutcome>>;
    /// Every device of the account with its last outcome, sorted by id.
    fn device_summaries(&self, account_id: &str) -> Result<Vec<DeviceSummary>>;
    /// Stores samples (replacing one with the same account and time).
    fn record_samples(&self, samples: &[StateSample<'_>]) -> Result<()>;
    /// The account's samples with `since_ms <= at_ms < until_ms`, oldest first.
    fn samples(
        &self,
        account_id: &str,
        since_ms: UnixMillis,
        until_ms: UnixMillis,
    ) -> Result<Vec<Sample>>;
    /// Drops samples taken before `before_ms`; returns how many.
    fn prune_samples(&self, before_ms: UnixMillis) -> Result<usize>;
}

/// A webhook subscription as stored. The store keeps its document opaque (the API owns its
/// shape); what the delivery worker and the failure rules need is typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    /// The normalised document (`url`, `events`, `http_verb`, `retries`, `custom_data`,
    /// `include_subaccounts`, …), without the secret.
    pub document: serde_json::Value,
    pub enabled: bool,
    /// Why the hook was disabled (set when failures disabled it).
    pub disabled_reason: Option<String>,
    /// The HMAC key of the signature header.
    pub secret: String,
    /// Failed attempts in a row since the last success (or re-enable).
    pub failure_streak: u32,
    pub created_ms: UnixMillis,
    pub modified_ms: UnixMillis,
}

/// Where a delivery of the outbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its (next) attempt at `next_attempt_ms`.
    Pending,
    /// A 2xx answered it.
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            _ => return None,
        })
    }
}

/// One event for one hook, queued by [`Webhooks::fan_out`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub hook_id: String,
    pub account_id: String,
    /// The history event's id.
    pub event_id: i64,
    /// `device.<kind>`.
    pub event_name: String,
    /// The exact body every attempt sends.
    pub payload: serde_json::Value,
    pub created_ms: UnixMillis,
}

/// A delivery of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub hook_id: String,
    pub account_id: String,
    pub event_id: i64,
    pub event_name: String,
    pub payload: serde_json::Value,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_ms: UnixMillis,
    pub last_error: Option<String>,
    pub created_ms: UnixMillis,
    pub delivered_ms: Option<UnixMillis>,
}

/// The outcome of one HTTP attempt, recorded by [`Webhooks::record_attempt`].
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    pub delivery_id: i64,
    pub at_ms: UnixMillis,
    /// The receiver's status, when it answered.
    pub http_status: Option<u16>,
    /// What went wrong (`HTTP 500`, `connection refused`, …); `None` on success.
    pub error: Option<String>,
    pub duration_ms: i64,
    pub success: bool,
    /// For a failure: when to try again; `None` marks the delivery failed for good.
    pub retry_at_ms: Option<UnixMillis>,
    /// A failure that brings the hook's streak to this many disables the hook (0: never).
    pub disable_after_failures: u32,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: i64,
    pub hook_id: String,
    pub account_id: String,
    pub delivery_id: i64,
    pub event_id: i64,
    pub event_name: String,
    pub at_ms: UnixMillis,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub success: bool,
}

/// What [`Webhooks::record_attempt`] did to the delivery and its hook.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecorded {
    pub state: DeliveryState,
    /// The hook's failure streak after this attempt.
    pub failure_streak: u32,
    /// This attempt disabled the hook, with this reason.
    pub disabled: Option<String>,
}

/// Webhook subscriptions and their durable outbox: deliveries fanned out from the history
/// (with the cursor that says how far), attempts, and the failure streak that disables a hook.
pub trait Webhooks: Send + Sync {
    /// `NotFound` when the account does not exist, `Conflict("id")` when the id is taken.
    fn create_webhook(&self, hook: &Webhook) -> Result<()>;
    /// Replaces document, `enabled`, `disabled_reason`, `secret` and `modified_ms`. Turning a
    /// disabled hook on clears its failure streak. `NotFound` when missing.
    fn update_webhook(&self, hook: &Webhook) -> Result<()>;
    /// Deletes the hook with its deliveries and attempts. `NotFound` when missing.
    fn delete_webhook(&self, id: &str) -> Result<()>;
    fn webhook(&self, id: &str) -> Result<Option<Webhook>>;
    /// The account's hooks, sorted by id.
    fn webhooks(&self, account_id: &str) -> Result<Vec<Webhook>>;
    /// Every enabled hook of every account, sorted by id.
    fn enabled_webhooks(&self) -> Result<Vec<Webhook>>;
    /// The id of the last history event fanned out; `None` before the first fan-out.
    fn webhook_cursor(&self) -> Result<Option<i64>>;
    /// Queues `deliveries` and moves the cursor from `expected` to `cursor`, atomically: a
    /// crash leaves both or neither. `Conflict("cursor")` (and nothing written) when the cursor
    /// is no longer `expected` (another process fanned out meanwhile). A delivery of an event
    /// already queued for the same hook is skipped.
    fn fan_out(&self, expected: Option<i64>, cursor: i64, deliveries: &[NewDelivery])
    -> Result<()>;
    /// Pending deliveries due at `now_ms` of enabled hooks, soonest first, at most
    /// `per_hook` of each hook and `limit` in all.
    fn due_deliveries(
        &self,
        now_ms: UnixMillis,
        per_hook: usize,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
    fn delivery(&self, id: i64) -> Result<Option<Delivery>>;
    /// Records the attempt and, in the same transaction, moves the delivery on (delivered,
    /// retry at `retry_at_ms`, or failed) and the hook's failure streak (a success resets it;
    /// a failure that reaches `disable_after_failures` disables the hook with a reason).
    /// `NotFound` when the delivery is gone (its hook was deleted).
    fn record_attempt(&self, outcome: &AttemptOutcome) -> Result<AttemptRecorded>;
    /// The account's attempts (of one hook, when given), newest first.
    fn webhook_attempts(
        &self,
        account_id: &str,
        hook_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Attempt>>;
    /// Deletes delivered and failed deliveries created, and attempts made, before
    /// `before_ms`; returns how many rows went.
    fn prune_webhooks(&self, before_ms: UnixMillis) -> Result<usize>;
}

/// A complete backend.
pub trait Store: Directory + Location + History + Webhooks {}

impl<T: Directory + Location + History + Webhooks + ?Sized> Store for T {}

/// The outcome of [`Location::commit`]: the event ids, once the changes are durable.
///
/// Dropping it does not cancel the commit. [`CommitFuture::wait`] blocks a plain thread on it.
#[must_use = "the changes are durable only once this resolves"]
pub struct CommitFuture {
    inner: CommitInner,
}

enum CommitInner {
    Channel(oneshot::Receiver<Result<Vec<i64>>>),
    Boxed(Pin<Box<dyn Future<Output = Result<Vec<i64>>> + Send>>),
    Ready(Option<Result<Vec<i64>>>),
}

impl CommitFuture {
    /// Resolves with what the sender sends; `Closed` when it is dropped unanswered.
    pub fn from_receiver(receiver: oneshot::Receiver<Result<Vec<i64>>>) -> Self {
        CommitFuture {
            inner: CommitInner::Channel(receiver),
        }
    }

    /// Wraps any future (for backends with an async client).
    pub fn new(future: impl Future<Output = Result<Vec<i64>>> + Send + 'static) -> Self {
        CommitFuture {
            inner: CommitInner::Boxed(Box::pin(future)),
        }
    }

    /// Already resolved.
    pub fn ready(result: Result<Vec<i64>>) -> Self {
        CommitFuture {
            inner: CommitInner::Ready(Some(result)),
        }
    }

    /// Blocks the current thread until the commit resolves. Do not call it on an async
    /// runtime's worker thread.
    pub fn wait(self) -> Result<Vec<i64>> {
        block_on(self)
    }
}

impl Future for CommitFuture {
    type Output = Result<Vec<i64>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            CommitInner::Channel(receiver) => Pin::new(receiver)
                .poll(cx)
                .map(|received| received.unwrap_or(Err(StoreError::Closed))),
            CommitInner::Boxed(future) => future.as_mut().poll(cx),
            CommitInner::Ready(result) => {
                Poll::Ready(result.take().unwrap_or(Err(StoreError::Closed)))
            }
        }
    }
}

impl fmt::Debug for CommitFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommitFuture").finish_non_exhaustive()
    }
}

/// Drives a future on the current thread, parking between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unparker(std::thread::Thread);
    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unparker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_hash_is_sha256_hex() {
        assert_eq!(
            ApiKey::hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn commit_future_resolves_from_every_source() {
        assert_eq!(CommitFuture::ready(Ok(vec![1])).wait(), Ok(vec![1]));
        assert_eq!(CommitFuture::new(async { Ok(vec![2]) }).wait(), Ok(vec![2]));
        let (sender, receiver) = oneshot::channel();
        let waiter = std::thread::spawn(move || CommitFuture::from_receiver(receiver).wait());
        sender.send(Ok(vec![3])).expect("receiver alive");
        assert_eq!(waiter.join().expect("no panic"), Ok(vec![3]));
        let (sender, receiver) = oneshot::channel::<Result<Vec<i64>>>();
        drop(sender);
        assert_eq!(
            CommitFuture::from_receiver(receiver).wait(),
            Err(StoreError::Closed)
        );
    }
}
