//! The HTTP listener: health checks and the Kazoo-compatible API (`switchboard-api`), whose
//! device writes reach the running registrar through [`RuntimeSip`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::routing::get;
use axum::{Json, Router};
use switchboard_api::{
    BanTarget, BanView, BindingNotify, FailureCounter, NotifyRequest, NotifyResult,
    SecurityCounters, SipControl,
};
use switchboard_model::{AccessLists, Binding};
use switchboard_runtime::{BindingTable, DirectoryCache, Notify, NotifyOutcome, SipService};
use switchboard_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::warn;

/// The API's view of the running registrar.
pub struct RuntimeSip {
    pub bindings: Arc<BindingTable>,
    pub directory: Arc<DirectoryCache>,
    pub store: Arc<dyn Store>,
    pub service: Arc<SipService>,
}

/// Kazoo's check-sync, sent to the bindings a device write flushes.
const CHECK_SYNC: &str = "check-sync";

impl RuntimeSip {
    /// The device's bindings that have not lapsed yet.
    fn live_bindings(&self, device_id: &str) -> Vec<Binding> {
        let now = switchboard_runtime::clock::now_ms();
        let mut bindings = self.bindings.device_bindings(device_id);
        bindings.retain(|binding| binding.expires_at_ms > now);
        bindings
    }
}

fn address_ban(ban: &switchboard_runtime::defence::Ban) -> BanView {
    BanView {
        target: BanTarget::Address,
        subject: ban.address.to_string(),
        since_ms: ban.since_ms,
        until_ms: ban.until_ms,
        failures: ban.failures,
        offence: ban.offence,
        reason: ban.reason(),
    }
}

fn username_ban(slowdown: &switchboard_runtime::defence::Slowdown) -> BanView {
    BanView {
        target: BanTarget::Username,
        subject: slowdown.username.clone(),
        since_ms: slowdown.since_ms,
        until_ms: slowdown.until_ms,
        failures: slowdown.failures,
        offence: 0,
        reason: format!(
            "{} failed authentications; slowed: addresses that failed are refused",
            slowdown.failures
        ),
    }
}

impl std::fmt::Debug for RuntimeSip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeSip").finish_non_exhaustive()
    }
}

impl SipControl for RuntimeSip {
    fn device_changed<'a>(
        &'a self,
        _account_id: &'a str,
        device_id: &'a str,
        flush: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(async move {
            if flush {
                // Kazoo sends check-sync to the flushed registrations, so the phone
                // re-registers (and re-provisions) at once. Best effort: the NOTIFYs are
                // built from a copy of the bindings taken before the flush and go out on
                // their own task; the API does not wait for the phones' answers.
                let flushed = self.live_bindings(device_id);
                if !flushed.is_empty() {
                    let service = self.service.clone();
                    let device = device_id.to_owned();
                    tokio::spawn(async move {
                        let notify = Notify {
                            event: CHECK_SYNC.to_owned(),
                            body: None,
                        };
                        for (binding, outcome) in service.notify_all(flushed, notify).await {
                            tracing::debug!(
                                device_id = %device,
                                contact = %binding.contact,
                                ?outcome,
                                "check-sync after flush"
                            );
                        }
                    });
                }
                switchboard_runtime::flush_device(
                    &self.bindings,
                    &self.directory,
                    self.store.as_ref(),
                    device_id,
                    switchboard_runtime::clock::now_ms(),
                )
                .await
                .map(drop)
            } else {
                self.directory.remove_device(device_id);
                Ok(())
            }
        })
    }

    fn unregister<'a>(
        &'a self,
        _account_id: &'a str,
        device_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(async move {
            switchboard_runtime::flush_device(
                &self.bindings,
                &self.directory,
                self.store.as_ref(),
                device_id,
                switchboard_runtime::clock::now_ms(),
            )
            .await
            .map(drop)
        })
    }

    fn account_bindings(&self, account_id: &str) -> Vec<Binding> {
        self.bindings.account_bindings(account_id)
    }

    fn visit_bindings(&self, visit: &mut dyn FnMut(&Binding)) {
        self.bindings.for_each(visit);
    }

    fn visit_account_bindings(&self, account_id: &str, visit: &mut dyn FnMut(&Binding)) {
        self.bindings.for_each(|binding| {
            if binding.account_id == account_id {
                visit(binding);
            }
        });
    }

    fn device_bindings(&self, account_id: &str, device_id: &str) -> Vec<Binding> {
        let mut bindings = self.bindings.device_bindings(device_id);
        bindings.retain(|binding| binding.account_id == account_id);
        bindings
    }

    fn access_lists_changed(&self, lists: &AccessLists) {
        // Committed already; the next REGISTER for the account sees them. Other nodes pick
        // them up on their next directory refresh.
        self.directory.put_access(lists);
    }

    fn security_bans(&self) -> Vec<BanView> {
        let snapshot = self.service.security_snapshot();
        snapshot
            .bans
            .iter()
            .map(address_ban)
            .chain(snapshot.slowdowns.iter().map(username_ban))
            .collect()
    }

    fn security_counters(&self) -> SecurityCounters {
        let counters = self.service.security_snapshot().counters;
        SecurityCounters {
            addresses: counters
                .addresses
                .into_iter()
                .map(|count| FailureCounter {
                    subject: count.key.to_string(),
                    failures: count.failures,
                    first_ms: count.first_ms,
                    last_ms: count.last_ms,
                })
                .collect(),
            usernames: counters
                .usernames
                .into_iter()
                .map(|count| FailureCounter {
                    subject: count.key,
                    failures: count.failures,
                    first_ms: count.first_ms,
                    last_ms: count.last_ms,
                })
                .collect(),
        }
    }

    fn lift_ban<'a>(
        &'a self,
        subject: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<BanView>> + Send + 'a>> {
        Box::pin(async move {
            if let Ok(address) = subject.parse::<std::net::IpAddr>() {
                return self
                    .service
                    .lift_ban(address)
                    .await
                    .map(|ban| address_ban(&ban));
            }
            let username = subject.to_ascii_lowercase();
            let slowed = self
                .service
                .security_snapshot()
                .slowdowns
                .into_iter()
                .find(|slowdown| slowdown.username == username)?;
            self.service
                .lift_slowdown(&username)
                .then(|| username_ban(&slowed))
        })
    }

    fn notify<'a>(
        &'a self,
        _account_id: &'a str,
        device_id: &'a str,
        request: NotifyRequest,
    ) -> Pin<Box<dyn Future<Output = Vec<BindingNotify>> + Send + 'a>> {
        Box::pin(async move {
            let bindings = self.live_bindings(device_id);
            let notify = Notify {
                event: request.event,
                body: request.body,
            };
            self.service
                .notify_all(bindings, notify)
                .await
                .into_iter()
                .map(|(binding, outcome)| BindingNotify {
                    contact: binding.contact,
                    transport: binding.transport.as_str().to_owned(),
                    result: match outcome {
                        NotifyOutcome::Answered(code) => NotifyResult::Answered(code),
                        NotifyOutcome::TimedOut => NotifyResult::TimedOut,
                        NotifyOutcome::NoRoute => NotifyResult::NoRoute,
                    },
                })
                .collect()
        })
    }
}

pub async fn serve(
    listener: TcpListener,
    service: Arc<SipService>,
    metrics: crate::metrics::Metrics,
    api: Router,
    stop: oneshot::Receiver<()>,
) {
    let health = Router::new().route(
        "/healthz",
        get(move || {
            let service = service.clone();
            async move {
                let stats = &service.stats;
                Json(serde_json::json!({
                    "status": "ok",
                    "requests": stats.requests.load(Ordering::Relaxed),
                    "registered": stats.registered.load(Ordering::Relaxed),
                }))
            }
        }),
    );
    let scrape = Router::new()
        .route("/metrics", get(crate::metrics::serve))
        .with_state(metrics);
    // The peer address feeds the API's per-client token bucket.
    let app = health
        .merge(scrape)
        .merge(api)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await;
    if let Err(error) = result {
        warn!(%error, "http server stopped");
    }
}
