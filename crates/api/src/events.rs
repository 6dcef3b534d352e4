//! `GET /accounts/{account_id}/events`: the account's registration events as Server-Sent
//! Events, live, resumable with `Last-Event-ID` (or `?since_id=`) from the durable history.
//!
//! Each stream tails the history on its own: it reads what is newer than the last event it
//! sent (at most [`BATCH`] at a time) and, when there is nothing, waits [`POLL`]. The
//! history is the one source, so a stream can never see an event the store did not commit,
//! and a client that reconnects with the last id it saw misses nothing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::json;
use switchboard_model::{Event, EventKind};
use switchboard_store::EventQuery;

use crate::auth::{authorize, scope};
use crate::monitoring::event_payload;
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState};

/// How long a stream with nothing new waits before looking again.
const POLL: Duration = Duration::from_millis(200);
/// Events read from the history at once.
const BATCH: usize = 500;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The kinds a stream carries unless `?events=` names others: every state change (a refresh
/// of a live binding is not one).
fn default_kinds() -> Vec<EventKind> {
    EventKind::ALL
        .into_iter()
        .filter(|kind| *kind != EventKind::Refreshed)
        .collect()
}

/// `?events=device.offline,device.online` (or bare kinds): which events to stream.
fn kinds(request: &ApiRequest) -> Result<Vec<EventKind>, ApiError> {
    let Some(list) = request.query.get("events").filter(|list| !list.is_empty()) else {
        return Ok(default_kinds());
    };
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            if name == "*" {
                return Ok(EventKind::ALL.to_vec());
            }
            EventKind::from_event_name(name)
                .map(|kind| vec![kind])
                .ok_or_else(|| {
                    let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.event_name()).collect();
                    ApiError::Validation(json!({ "events": { "enum": {
                    "message": "Value not found in enumerated list of values",
                    "target": known,
                    "value": name,
                } } }))
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|lists| lists.concat())
}

/// Where the stream starts: after `Last-Event-ID` or `since_id`, else after the newest event.
fn resume_after(request: &ApiRequest) -> Result<Option<i64>, ApiError> {
    let header = request
        .headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|text| !text.is_empty());
    let text = header.or_else(|| request.query.get("since_id").map(String::as_str));
    match text {
        None => Ok(None),
        Some(text) => text
            .strip_prefix("evt_")
            .unwrap_or(text)
            .parse::<i64>()
            .map(|id| Some(id.max(0)))
            .map_err(|_| {
                ApiError::Validation(json!({ "Last-Event-ID": { "type": {
                    "message": "an event id: a whole number",
                    "value": text,
                } } }))
            }),
    }
}

fn sse_event(event: &Event) -> SseEvent {
    let payload = event_payload(event);
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind.event_name())
        .data(payload.to_string())
}

struct Tail {
    state: ApiState,
    account_id: String,
    kinds: Vec<EventKind>,
    after: i64,
    queue: VecDeque<Event>,
}

impl Tail {
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Tail)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                self.after = event.id;
                return Some((Ok(sse_event(&event)), self));
            }
            let query = EventQuery {
                account_id: Some(self.account_id.clone()),
                kinds: self.kinds.clone(),
                after_id: Some(self.after),
                limit: BATCH,
                ..EventQuery::default()
            };
            match self.state.blocking(move |store| store.events(&query)).await {
                Ok(events) if !events.is_empty() => self.queue.extend(events),
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(error) => {
                    tracing::warn!(%error, "event stream: reading the history failed");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }
}

/// `GET /accounts/{account_id}/events`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/events",
    operation_id = "event_stream",
    tag = "monitoring",
    params(
        openapi::AccountPath,
        ("events" = Option<String>, Query, description = "Comma-separated event names to stream (`device.offline,device.online`, `*` for all); default: every state change (not `device.refreshed`)"),
        ("since_id" = Option<i64>, Query, description = "Resume after this event id (as the `Last-Event-ID` header does)"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id: events since then are replayed from the history first"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: one SSE event per registration event (`id` = event id, `event` = its name, `data` = `{event, eventId, timestamp, data}` as webhooks deliver it), live", content_type = "text/event-stream", body = String),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn stream(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::EVENTS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let kinds = kinds(&request)?;
    let after = match resume_after(&request)? {
        Some(after) => after,
        None => state.blocking(|store| store.last_event_id()).await?,
    };
    tracing::debug!(account_id = %account.id, after, "event stream opened");
    let tail = Tail {
        state,
        account_id: account.id,
        kinds,
        after,
        queue: VecDeque::new(),
    };
    let events = stream::unfold(tail, Tail::next);
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE))
        .into_response())
}
