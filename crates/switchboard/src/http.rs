//! The HTTP listener. The Kazoo-compatible API grows here; today it answers health checks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::routing::get;
use axum::{Json, Router};
use switchboard_runtime::SipService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::warn;

pub async fn serve(listener: TcpListener, service: Arc<SipService>, stop: oneshot::Receiver<()>) {
    let app = Router::new().route(
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
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await;
    if let Err(error) = result {
        warn!(%error, "http server stopped");
    }
}
