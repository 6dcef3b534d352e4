//! The HTTP listener: health checks and the Kazoo-compatible API (`switchboard-api`), whose
//! device writes reach the running registrar through [`RuntimeSip`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::routing::get;
use axum::{Json, Router};
use switchboard_api::SipControl;
use switchboard_model::Binding;
use switchboard_runtime::{BindingTable, DirectoryCache, SipService};
use switchboard_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::warn;

/// The API's view of the running registrar.
pub struct RuntimeSip {
    pub bindings: Arc<BindingTable>,
    pub directory: Arc<DirectoryCache>,
    pub store: Arc<dyn Store>,
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

    fn account_bindings(&self, account_id: &str) -> Vec<Binding> {
        self.bindings.account_bindings(account_id)
    }
}

pub async fn serve(
    listener: TcpListener,
    service: Arc<SipService>,
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
    // The peer address feeds the API's per-client token bucket.
    let app = health
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
