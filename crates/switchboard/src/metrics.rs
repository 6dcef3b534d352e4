//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the registrar's counters, the
//! keepalive round-trip histogram, the binding table and the device states.
//!
//! The counters are the atomics the SIP service already keeps for its own use (one relaxed
//! add on the hot path, no registry lookup, no global recorder), rendered on each scrape.
//! Device states are counted at scrape time by the same census analytics samples use.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchboard_model::RegistrationState;
use switchboard_runtime::histogram::HistogramSnapshot;
use switchboard_runtime::{BindingTable, SipService};
use switchboard_store::SqliteStore;

/// What a scrape reads.
#[derive(Clone)]
pub struct Metrics {
    pub service: Arc<SipService>,
    pub bindings: Arc<BindingTable>,
    pub store: Arc<SqliteStore>,
    pub api: switchboard_api::ApiState,
    pub webhooks: Arc<switchboard_api::WebhookStats>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Appends one metric family: `# HELP`, `# TYPE` and its samples (`labels`, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn histogram(out: &mut String, name: &str, help: &str, snapshot: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound_ms, count) in &snapshot.cumulative {
        let seconds = *bound_ms as f64 / 1000.0;
        let _ = writeln!(out, "{name}_bucket{{le=\"{seconds}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", snapshot.count);
    let _ = writeln!(out, "{name}_sum {}", snapshot.sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count {}", snapshot.count);
}

/// The whole exposition.
pub async fn render(metrics: &Metrics) -> String {
    let stats = &metrics.service.stats;
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "switchboard_sip_requests_total",
        "counter",
        "SIP requests received (after parsing), retransmissions included.",
        &[("", load(&stats.requests))],
    );
    family(
        &mut out,
        "switchboard_register_total",
        "counter",
        "REGISTER outcomes.",
        &[
            ("outcome=\"ok\"", load(&stats.registered)),
            ("outcome=\"challenged\"", load(&stats.challenged)),
            ("outcome=\"auth_failed\"", load(&stats.auth_failed)),
            ("outcome=\"refused\"", load(&stats.refused)),
        ],
    );
    family(
        &mut out,
        "switchboard_sip_malformed_total",
        "counter",
        "Messages that failed to parse or validate (answered 400 or dropped).",
        &[("", load(&stats.malformed))],
    );
    family(
        &mut out,
        "switchboard_stun_keepalives_total",
        "counter",
        "STUN Binding requests answered on the UDP SIP port (RFC 5626 keepalives).",
        &[("", load(&stats.stun_answered))],
    );
    family(
        &mut out,
        "switchboard_sip_retransmissions_total",
        "counter",
        "Retransmitted requests absorbed by the transaction layer.",
        &[("", load(&stats.retransmissions))],
    );
    family(
        &mut out,
        "switchboard_sip_responses_dropped_total",
        "counter",
        "Responses that could not be sent.",
        &[("", load(&stats.responses_dropped))],
    );
    family(
        &mut out,
        "switchboard_sip_requests_sent_total",
        "counter",
        "Requests this server originated (NOTIFY), by what became of them.",
        &[
            ("result=\"sent\"", load(&stats.requests_sent)),
            (
                "result=\"retransmitted\"",
                load(&stats.requests_retransmitted),
            ),
            ("result=\"timed_out\"", load(&stats.requests_timed_out)),
        ],
    );
    family(
        &mut out,
        "switchboard_keepalives_total",
        "counter",
        "Keepalive OPTIONS sent, and those that failed (no final response or no route).",
        &[
            ("result=\"sent\"", load(&stats.keepalives_sent)),
            ("result=\"failed\"", load(&stats.keepalives_failed)),
        ],
    );
    histogram(
        &mut out,
        "switchboard_keepalive_rtt_seconds",
        "Round trip of answered keepalive OPTIONS.",
        &stats.keepalive_rtt.snapshot(),
    );
    family(
        &mut out,
        "switchboard_storage_errors_total",
        "counter",
        "Commits that failed on the REGISTER path (answered 500).",
        &[("", load(&stats.storage_errors))],
    );
    family(
        &mut out,
        "switchboard_security_bans_total",
        "counter",
        "Addresses banned after failed authentications, and bans lifted (ran out or by the operator).",
        &[
            ("event=\"banned\"", load(&stats.bans)),
            ("event=\"unbanned\"", load(&stats.unbans)),
        ],
    );
    family(
        &mut out,
        "switchboard_security_refused_total",
        "counter",
        "Messages and connections refused by the defences: from a banned or denied address (403 or dropped), TCP connections closed at once (banned, denied, or over the per-address cap), correct credentials refused while their username is slowed, REGISTERs refused by their account's own allow/deny lists (403).",
        &[
            ("reason=\"banned\"", load(&stats.banned_refused)),
            ("reason=\"connection\"", load(&stats.connections_refused)),
            ("reason=\"slowed\"", load(&stats.slowed)),
            ("reason=\"account_acl\"", load(&stats.account_acl_refused)),
        ],
    );
    family(
        &mut out,
        "switchboard_sip_rate_limited_total",
        "counter",
        "Requests over their source address's rate (answered 503 with Retry-After).",
        &[("", load(&stats.rate_limited))],
    );
    family(
        &mut out,
        "switchboard_sip_overload_shed_total",
        "counter",
        "REGISTERs shed by the overload guard (answered 503 with Retry-After at once).",
        &[("", load(&stats.overload_shed))],
    );
    let store = metrics.store.stats();
    family(
        &mut out,
        "switchboard_store_commits_total",
        "counter",
        "Store commit transactions, and the batches and changes they carried.",
        &[
            ("unit=\"transactions\"", store.commit_transactions),
            ("unit=\"batches\"", store.committed_batches),
            ("unit=\"changes\"", store.committed_changes),
            ("unit=\"failed_batches\"", store.failed_batches),
        ],
    );
    let hooks = &metrics.webhooks;
    family(
        &mut out,
        "switchboard_webhook_deliveries_total",
        "counter",
        "Webhook outcomes: deliveries answered 2xx, attempts that failed, deliveries given up after their last retry, hooks disabled for failing.",
        &[
            ("outcome=\"delivered\"", load(&hooks.delivered)),
            ("outcome=\"failed_attempt\"", load(&hooks.failed_attempts)),
            ("outcome=\"given_up\"", load(&hooks.given_up)),
            ("outcome=\"hook_disabled\"", load(&hooks.hooks_disabled)),
        ],
    );
    let _ = writeln!(
        out,
        "# HELP switchboard_webhook_delivery_lag_seconds_sum Time from entering the outbox to the 2xx, summed over delivered webhooks (divide by the delivered count for the mean).\n# TYPE switchboard_webhook_delivery_lag_seconds_sum counter\nswitchboard_webhook_delivery_lag_seconds_sum {}",
        load(&hooks.lag_ms_sum) as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "# HELP switchboard_webhook_last_delivery_lag_seconds The last delivered webhook's time from entering the outbox to the 2xx.\n# TYPE switchboard_webhook_last_delivery_lag_seconds gauge\nswitchboard_webhook_last_delivery_lag_seconds {}",
        load(&hooks.last_lag_ms) as f64 / 1000.0
    );
    let now = switchboard_runtime::clock::now_ms();
    let (mut live, mut unreachable) = (0_u64, 0_u64);
    metrics.bindings.for_each(|binding| {
        if binding.expires_at_ms > now {
            live += 1;
            unreachable += u64::from(!binding.reachable);
        }
    });
    family(
        &mut out,
        "switchboard_bindings",
        "gauge",
        "Live bindings in the registrar's table, by keepalive reachability.",
        &[
            ("reachable=\"true\"", live - unreachable),
            ("reachable=\"false\"", unreachable),
        ],
    );
    match switchboard_api::state_totals(&metrics.api).await {
        Ok(totals) => {
            let labels: Vec<String> = RegistrationState::ALL
                .iter()
                .map(|state| format!("state=\"{}\"", state.as_str()))
                .collect();
            let samples: Vec<(&str, u64)> = labels
                .iter()
                .zip(RegistrationState::ALL)
                .map(|(label, state)| (label.as_str(), u64::from(totals[state.index()])))
                .collect();
            family(
                &mut out,
                "switchboard_devices",
                "gauge",
                "Devices by registration state.",
                &samples,
            );
        }
        Err(error) => tracing::warn!(%error, "metrics: counting device states failed"),
    }
    out
}

pub async fn serve(State(metrics): State<Metrics>) -> Response {
    let body = render(&metrics).await;
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
