//! Switchboard's operator API, compatible with Kazoo 4.3's crossbar (`/v2`, and `/v1` as an
//! alias).
//!
//! What it owns: the HTTP surface — routing, the Kazoo envelope, the one error type and its
//! mapping to Kazoo's error envelope ([`ApiError`]), signed auth tokens ([`token`]), tenancy
//! (a token reaches its own account and its descendants, nothing else), and the accounts and
//! devices resources. What it does not: storage (it codes against `switchboard-store`'s
//! traits) and SIP (a device write that must bite at once goes through [`SipControl`], which
//! the binary implements over the running registrar).
//!
//! Webhooks: subscriptions under `/accounts/{id}/webhooks`, and the delivery worker
//! ([`spawn_webhooks`]) that drains the durable outbox the store keeps (see
//! `webhooks/delivery.rs`).
//!
//! Handlers are thin and grouped per resource (`accounts`, `api_keys`, `devices`, `phones`,
//! `auth`); every request body goes through one extractor ([`request::ApiRequest`]) that
//! enforces the content type, the 1 MiB limit and JSON syntax, and finds the credential;
//! every handler names the scope it needs to `auth::authorize`.
#![forbid(unsafe_code)]

mod accounts;
mod api_keys;
mod auth;
mod devices;
mod envelope;
mod error;
mod events;
mod filters;
#[doc(hidden)]
pub mod fuzzing;
mod monitoring;
mod notify;
mod openapi;
mod phones;
mod registrations;
mod request;
mod security;
pub mod throttle;
pub mod token;
mod user_auth;
mod users;
mod validation;
mod webhooks;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use switchboard_model::{AccessLists, Binding};
use switchboard_store::{Store, StoreError};

pub use error::ApiError;
pub use monitoring::{MonitoringOptions, event_payload, sample_once, spawn_sampler, state_totals};
pub use notify::{BindingNotify, NotifyRequest, NotifyResult};
pub use security::{BanTarget, BanView, FailureCounter, SecurityCounters};
pub use webhooks::delivery::{
    WebhookClientError, WebhookConfig, WebhookStats, WebhookWorker, spawn_webhooks,
};

/// Largest request body accepted (Kazoo's limit); larger ones get a 413 in the envelope.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default lifetime of an auth token (Kazoo's `token_auth_expiry_s`).
pub const TOKEN_LIFETIME_SECS: u64 = 3600;

/// What the API asks of the SIP side when a device changes.
pub trait SipControl: Send + Sync + 'static {
    /// The device was written or deleted: forget any cached copy (the next REGISTER reads the
    /// store). With `flush`, also remove its bindings at once (recording `unregistered`
    /// events), because its credentials, owner or enabled state changed, or it is gone.
    fn device_changed<'a>(
        &'a self,
        account_id: &'a str,
        device_id: &'a str,
        flush: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

    /// Removes the device's bindings at once (recording `unregistered` events), without
    /// asking the phone to re-register: the operator's "unregister this device".
    fn unregister<'a>(
        &'a self,
        account_id: &'a str,
        device_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        self.device_changed(account_id, device_id, true)
    }

    /// The live bindings of the account's devices (the registrar's table, not the store).
    fn account_bindings(&self, account_id: &str) -> Vec<Binding>;

    /// Calls `visit` on every binding of every account (the registrar's table), without
    /// copying them: monitoring's census of all devices.
    fn visit_bindings(&self, _visit: &mut dyn FnMut(&Binding)) {}

    /// Calls `visit` on every binding of the account's devices, without copying them.
    fn visit_account_bindings(&self, account_id: &str, visit: &mut dyn FnMut(&Binding)) {
        for binding in self.account_bindings(account_id) {
            visit(&binding);
        }
    }

    /// The bindings of one device of the account (the registrar's table).
    fn device_bindings(&self, account_id: &str, device_id: &str) -> Vec<Binding> {
        let mut bindings = self.account_bindings(account_id);
        bindings.retain(|binding| binding.device_id == device_id);
        bindings
    }

    /// Sends a NOTIFY to every binding of the device and waits for each final response (or
    /// the SIP timeout). No bindings: an empty list. Without a registrar there are none.
    fn notify<'a>(
        &'a self,
        _account_id: &'a str,
        _device_id: &'a str,
        _request: NotifyRequest,
    ) -> Pin<Box<dyn Future<Output = Vec<BindingNotify>> + Send + 'a>> {
        Box::pin(async { Vec::new() })
    }

    /// An account's own access lists were written (already committed): the registrar holds
    /// them from now on (a copy with a lower `revision` than one it holds is ignored).
    /// Without a registrar, nothing to do; other nodes pick them up on their next directory
    /// refresh.
    fn access_lists_changed(&self, _lists: &AccessLists) {}

    /// The registrar's current bans (addresses, then slowed usernames). Without a
    /// registrar there are none.
    fn security_bans(&self) -> Vec<BanView> {
        Vec::new()
    }

    /// The registrar's failed-authentication counters.
    fn security_counters(&self) -> SecurityCounters {
        SecurityCounters::default()
    }

    /// Lifts the ban of an address (recording a `security.unbanned` event) or the slowdown
    /// of a `user@realm`; what was lifted, `None` when nothing was banned.
    fn lift_ban<'a>(
        &'a self,
        _subject: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<BanView>> + Send + 'a>> {
        Box::pin(async { None })
    }
}

/// A [`SipControl`] that does nothing (for an API without a registrar, e.g. in unit tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSip;

impl SipControl for NoSip {
    fn device_changed<'a>(
        &'a self,
        _account_id: &'a str,
        _device_id: &'a str,
        _flush: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(async { Ok(()) })
    }

    fn account_bindings(&self, _account_id: &str) -> Vec<Binding> {
        Vec::new()
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    sip: Arc<dyn SipControl>,
    token_secret: [u8; 32],
    token_lifetime_secs: u64,
    /// Serialises read-check-write of one device on this node, so an `If-Match` check and
    /// the write it guards cannot interleave with another request's (striped by device id).
    device_locks: Arc<[tokio::sync::Mutex<()>]>,
    /// Per-client request budget; `None` turns it off.
    throttle: Option<Arc<throttle::Throttle>>,
    monitoring: MonitoringOptions,
}

/// Stripes of [`Inner::device_locks`].
const DEVICE_LOCK_STRIPES: usize = 64;

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token secret.
        f.debug_struct("ApiState")
            .field("token_lifetime_secs", &self.inner.token_lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// `token_secret` signs and verifies auth tokens: every node that shares it accepts the
    /// tokens of the others.
    pub fn new(store: Arc<dyn Store>, sip: Arc<dyn SipControl>, token_secret: [u8; 32]) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                store,
                sip,
                token_secret,
                token_lifetime_secs: TOKEN_LIFETIME_SECS,
                device_locks: (0..DEVICE_LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                throttle: Some(Arc::new(throttle::Throttle::new(
                    throttle::ThrottleConfig::default(),
                ))),
                monitoring: MonitoringOptions::default(),
            }),
        }
    }

    /// Replaces the per-client token bucket (Kazoo's defaults otherwise); `None` turns
    /// throttling off. Call right after [`ApiState::new`].
    pub fn with_throttle(mut self, config: Option<throttle::ThrottleConfig>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.throttle = config.map(|config| Arc::new(throttle::Throttle::new(config)));
        }
        self
    }

    pub(crate) fn throttle(&self) -> Option<&throttle::Throttle> {
        self.inner.throttle.as_deref()
    }

    /// Tokens issued from now on live this long.
    pub fn with_token_lifetime(self, secs: u64) -> Self {
        let inner = &self.inner;
        ApiState {
            inner: Arc::new(Inner {
                store: inner.store.clone(),
                sip: inner.sip.clone(),
                token_secret: inner.token_secret,
                token_lifetime_secs: secs,
                device_locks: inner.device_locks.clone(),
                throttle: inner.throttle.clone(),
                monitoring: inner.monitoring.clone(),
            }),
        }
    }

    /// What monitoring needs to know of the service (provisioning window, SIP listeners).
    /// Call right after [`ApiState::new`].
    pub fn with_monitoring(mut self, options: MonitoringOptions) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.monitoring = options;
        }
        self
    }

    pub(crate) fn monitoring(&self) -> &MonitoringOptions {
        &self.inner.monitoring
    }

    pub(crate) fn sip(&self) -> &dyn SipControl {
        self.inner.sip.as_ref()
    }

    /// Held while a device is read, checked and written.
    pub(crate) async fn lock_device(&self, device_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(device_id);
        let stripes = &self.inner.device_locks;
        let index = usize::try_from(hash % stripes.len() as u64).unwrap_or_default();
        stripes[index].lock().await
    }

    /// Appends an event to the history (through the store's commit path). A failure is
    /// logged, not returned: the write the event describes has happened.
    pub(crate) async fn record(&self, event: switchboard_model::Event) {
        let kind = event.kind;
        if let Err(error) = self
            .inner
            .store
            .commit(vec![switchboard_model::Change::AppendEvent(event)])
            .await
        {
            tracing::warn!(%error, kind = kind.as_str(), "recording an event failed");
        }
    }

    /// Runs a blocking store call off the async workers.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|error| ApiError::Internal(error.to_string()))?
            .map_err(ApiError::from)
    }
}

pub(crate) fn node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("switchboard@{host}")
}

/// One route the API serves (under `/v2` and `/v1`): the router is built from [`routes`], and
/// the OpenAPI drift test checks the same list against the document.
pub(crate) struct Route {
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the OpenAPI drift test")
    )]
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<ApiState>,
}

fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    // Only the standard methods below are ever passed in: a panic here is a typo in `routes`.
    let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
    Route {
        method,
        path,
        handler: axum::routing::on(filter, handler),
    }
}

/// Every route, the one list (paths relative to `/v2`).
pub(crate) fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::GET, "/openapi.json", openapi::serve),
        route(M::PUT, "/api_auth", auth::api_auth),
        route(M::PUT, "/user_auth", user_auth::user_auth),
        route(M::GET, "/user_auth/{auth_token}", user_auth::introspect),
        route(M::GET, "/accounts/{account_id}", accounts::fetch),
        route(M::PUT, "/accounts/{account_id}", accounts::create),
        route(M::POST, "/accounts/{account_id}", accounts::replace),
        route(M::PATCH, "/accounts/{account_id}", accounts::patch),
        route(M::DELETE, "/accounts/{account_id}", accounts::remove),
        route(M::GET, "/accounts/{account_id}/api_key", accounts::api_key),
        route(M::GET, "/accounts/{account_id}/api_keys", api_keys::list),
        route(M::POST, "/accounts/{account_id}/api_keys", api_keys::create),
        route(
            M::GET,
            "/accounts/{account_id}/api_keys/{key_id}",
            api_keys::fetch,
        ),
        route(
            M::DELETE,
            "/accounts/{account_id}/api_keys/{key_id}",
            api_keys::revoke,
        ),
        route(M::GET, "/accounts/{account_id}/devices", devices::list),
        route(M::PUT, "/accounts/{account_id}/devices", devices::create),
        route(
            M::GET,
            "/accounts/{account_id}/devices/status",
            registrations::status,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/devices/registration/status",
            monitoring::status_list,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/devices/registration/dashboard",
            monitoring::dashboard,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/devices/registration/analytics",
            monitoring::analytics,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/devices/{device_id}/registration",
            monitoring::registration,
        ),
        route(
            M::DELETE,
            "/accounts/{account_id}/devices/{device_id}/registration",
            monitoring::unregister,
        ),
        route(
            M::POST,
            "/accounts/{account_id}/devices/{device_id}/registration/renew",
            monitoring::renew,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/devices/{device_id}/logs",
            monitoring::logs,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/devices/{device_id}/credentials",
            monitoring::credentials,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/devices/{device_id}",
            devices::fetch,
        ),
        route(
            M::POST,
            "/accounts/{account_id}/devices/{device_id}",
            devices::replace,
        ),
        route(
            M::PATCH,
            "/accounts/{account_id}/devices/{device_id}",
            devices::patch,
        ),
        route(
            M::DELETE,
            "/accounts/{account_id}/devices/{device_id}",
            devices::remove,
        ),
        route(
            M::PUT,
            "/accounts/{account_id}/devices/{device_id}",
            notify::action,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/devices/{device_id}/status",
            registrations::device_status,
        ),
        route(
            M::POST,
            "/accounts/{account_id}/devices/{device_id}/sync",
            notify::sync,
        ),
        route(
            M::PUT,
            "/accounts/{account_id}/devices/{device_id}/notify",
            notify::notify,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/registrations",
            registrations::list,
        ),
        route(
            M::DELETE,
            "/accounts/{account_id}/registrations",
            registrations::flush_all,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/registrations/count",
            registrations::count,
        ),
        route(
            M::DELETE,
            "/accounts/{account_id}/registrations/{username}",
            registrations::flush_username,
        ),
        route(M::GET, "/accounts/{account_id}/events", events::stream),
        route(
            M::GET,
            "/accounts/{account_id}/security/events",
            security::events,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/security/access_lists",
            security::access_lists,
        ),
        route(
            M::PUT,
            "/accounts/{account_id}/security/access_lists",
            security::set_access_lists,
        ),
        route(
            M::POST,
            "/accounts/{account_id}/security/access_lists",
            security::replace_access_lists,
        ),
        route(
            M::DELETE,
            "/accounts/{account_id}/security/access_lists",
            security::clear_access_lists,
        ),
        route(M::GET, "/security/bans", security::bans),
        route(M::DELETE, "/security/bans/{address}", security::lift),
        route(M::GET, "/security/counters", security::counters),
        route(M::GET, "/pbx/phones", phones::list),
        route(M::GET, "/pbx/phones/stats", phones::stats),
        route(M::GET, "/accounts/{account_id}/users", users::list),
        route(M::PUT, "/accounts/{account_id}/users", users::create),
        route(
            M::GET,
            "/accounts/{account_id}/users/{user_id}",
            users::fetch,
        ),
        route(
            M::POST,
            "/accounts/{account_id}/users/{user_id}",
            users::replace,
        ),
        route(
            M::PATCH,
            "/accounts/{account_id}/users/{user_id}",
            users::patch,
        ),
        route(
            M::DELETE,
            "/accounts/{account_id}/users/{user_id}",
            users::remove,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/users/{user_id}/devices",
            users::devices,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/users/{user_id}/location",
            users::location,
        ),
        route(M::GET, "/accounts/{account_id}/webhooks", webhooks::list),
        route(M::PUT, "/accounts/{account_id}/webhooks", webhooks::create),
        route(
            M::POST,
            "/accounts/{account_id}/webhooks",
            webhooks::create_post,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/webhooks/attempts",
            webhooks::account_attempts,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/webhooks/{webhook_id}",
            webhooks::fetch,
        ),
        route(
            M::POST,
            "/accounts/{account_id}/webhooks/{webhook_id}",
            webhooks::replace,
        ),
        route(
            M::PATCH,
            "/accounts/{account_id}/webhooks/{webhook_id}",
            webhooks::patch,
        ),
        route(
            M::DELETE,
            "/accounts/{account_id}/webhooks/{webhook_id}",
            webhooks::remove,
        ),
        route(
            M::GET,
            "/accounts/{account_id}/webhooks/{webhook_id}/attempts",
            webhooks::attempts,
        ),
    ]
}

/// The API under `/v2` and `/v1`. Unknown paths get 404 and known paths with another method
/// 405 `invalid_method`, both in Kazoo's error envelope. `GET /v2/openapi.json` is the
/// OpenAPI document of all of it, served without a token.
pub fn router(state: ApiState) -> Router {
    let throttled = state.clone();
    let api = routes()
        .into_iter()
        .fold(Router::new(), |api, route| {
            api.route(route.path, route.handler)
        })
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::no_such_path)
        .with_state(state);
    Router::new()
        .nest("/v2", api.clone())
        .nest("/v1", api)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(error::echo_token_on_errors))
        .layer(axum::middleware::from_fn_with_state(
            throttled,
            throttle::limit,
        ))
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
