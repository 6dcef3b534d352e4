//! Registration monitoring (seed 000): one device's registration, renew and unregister; the
//! account's status list, dashboard and analytics; a device's logs and credentials; and the
//! sampler that records the state counts analytics reads.
//!
//! A device's state is derived, never stored: its live bindings (the registrar's table, with
//! keepalive reachability) and its last outcome (the store's `device_state`, kept by every
//! history append) go through [`switchboard_model::derive_state`]. These endpoints answer in
//! the seed's bare JSON shapes (camelCase, no envelope); their errors are Kazoo's envelope.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use switchboard_model::{
    Binding, DeviceOutcome, Event, EventKind, Liveness, RegistrationState, derive_state, state_of,
};
use switchboard_store::{DeviceSummary, EventQuery, StateSample};

use crate::auth::{authorize, scope};
use crate::envelope::json_response;
use crate::notify::{CHECK_SYNC, conclude};
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState, NotifyRequest};

/// What monitoring needs to know about the service around the API.
#[derive(Debug, Clone)]
pub struct MonitoringOptions {
    /// A device never registered is `provisioning` this long after its creation.
    pub provisioning_window_ms: i64,
    /// The SIP server name phones should use; the account's realm when `None`.
    pub sip_server: Option<String>,
    /// The SIP listeners phones can reach, as (`udp`|`tcp`|`tls`|`ws`|`wss`, port).
    pub sip_ports: Vec<(String, u16)>,
    /// The registrar's default registration expiry (seconds), for devices that set none.
    pub default_expires_secs: u32,
    /// How long `renew` waits for the device's re-REGISTER after its check-sync NOTIFY.
    pub renew_wait: Duration,
}

impl Default for MonitoringOptions {
    fn default() -> Self {
        MonitoringOptions {
            provisioning_window_ms: 86_400_000,
            sip_server: None,
            sip_ports: vec![("udp".to_owned(), 5060), ("tcp".to_owned(), 5060)],
            default_expires_secs: 3600,
            renew_wait: Duration::from_secs(3),
        }
    }
}

/// RFC 3339 UTC with a `Z`, the seeds' timestamp format.
pub(crate) fn rfc3339(unix_ms: i64) -> String {
    format!("{}Z", crate::envelope::timestamp(unix_ms))
}

fn bare(status: StatusCode, body: Value) -> Response {
    json_response(status, &body, None)
}

/// One device as monitoring sees it.
pub(crate) struct DeviceView {
    pub summary: DeviceSummary,
    pub state: RegistrationState,
    /// The binding that best represents the device: reachable before unreachable, then the
    /// most recently refreshed. `None` without a live binding.
    pub binding: Option<Brief>,
    pub live_bindings: usize,
}

/// What a list row shows of a device's best binding (copied out of the table without its
/// strings, so a census of 100,000 devices allocates nothing per binding).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Brief {
    pub registered_at_ms: i64,
    pub expires_at_ms: i64,
    pub updated_ms: i64,
    pub received: std::net::SocketAddr,
    pub reachable: bool,
}

impl Brief {
    fn of(binding: &Binding) -> Brief {
        Brief {
            registered_at_ms: binding.registered_at_ms,
            expires_at_ms: binding.expires_at_ms,
            updated_ms: binding.updated_ms,
            received: binding.received,
            reachable: binding.reachable,
        }
    }

    fn better_than(&self, other: &Brief) -> bool {
        (self.reachable, self.updated_ms) > (other.reachable, other.updated_ms)
    }
}

/// What the table says of one device: liveness, the best binding, how many are live.
#[derive(Default)]
struct Seen {
    liveness: Liveness,
    best: Option<Brief>,
    live: usize,
}

impl Seen {
    fn add(&mut self, binding: &Binding, now: i64) {
        if binding.expires_at_ms <= now {
            return;
        }
        self.liveness.add(binding, now);
        self.live += 1;
        let brief = Brief::of(binding);
        if self.best.is_none_or(|best| brief.better_than(&best)) {
            self.best = Some(brief);
        }
    }
}

fn view(summary: DeviceSummary, seen: Seen, now: i64, options: &MonitoringOptions) -> DeviceView {
    let state = state_of(
        summary.facts(),
        seen.liveness,
        summary.outcome.as_ref(),
        now,
        options.provisioning_window_ms,
    );
    DeviceView {
        state,
        binding: seen.best,
        live_bindings: seen.live,
        summary,
    }
}

/// Every device of the account with its state at `now`: one pass over the account's
/// bindings in the registrar's table (nothing copied but each device id once) and one
/// ordered read of the account's device summaries.
pub(crate) async fn account_views(
    state: &ApiState,
    account_id: &str,
    now: i64,
) -> Result<Vec<DeviceView>, ApiError> {
    let mut by_device: HashMap<String, Seen> = HashMap::new();
    state
        .sip()
        .visit_account_bindings(account_id, &mut |binding| {
            if binding.expires_at_ms <= now {
                return;
            }
            match by_device.get_mut(&binding.device_id) {
                Some(seen) => seen.add(binding, now),
                None => {
                    let mut seen = Seen::default();
                    seen.add(binding, now);
                    by_device.insert(binding.device_id.clone(), seen);
                }
            }
        });
    let id = account_id.to_owned();
    let summaries = state
        .blocking(move |store| store.device_summaries(&id))
        .await?;
    let options = state.monitoring();
    Ok(summaries
        .into_iter()
        .map(|summary| {
            let seen = by_device.remove(&summary.id).unwrap_or_default();
            view(summary, seen, now, options)
        })
        .collect())
}

/// One device with all its live bindings (the registration endpoint).
struct OneDevice {
    summary: DeviceSummary,
    state: RegistrationState,
    bindings: Vec<Binding>,
}

impl OneDevice {
    fn best(&self) -> Option<&Binding> {
        self.bindings
            .iter()
            .max_by_key(|binding| (binding.reachable, binding.updated_ms))
    }
}

/// One device of the account with its state; 404 `bad_identifier` when it is not the
/// account's.
async fn device_view(
    state: &ApiState,
    account_id: &str,
    device_id: &str,
    now: i64,
) -> Result<OneDevice, ApiError> {
    let id = device_id.to_owned();
    let found = state
        .blocking(move |store| {
            let Some(device) = store.device(&id)? else {
                return Ok(None);
            };
            let outcome = store.device_outcome(&id)?;
            Ok(Some((device, outcome)))
        })
        .await?;
    let Some((device, outcome)) = found.filter(|(device, _)| device.account_id == account_id)
    else {
        return Err(ApiError::BadIdentifier(device_id.to_owned()));
    };
    let summary = DeviceSummary {
        id: device.id.clone(),
        account_id: device.account_id.clone(),
        name: device.name.clone(),
        device_type: device.device_type.clone(),
        enabled: device.enabled,
        owner_id: device.owner_id.clone(),
        username: device.sip.username.clone(),
        expire_seconds: device.sip.expire_seconds,
        created_ms: device.created_ms,
        outcome,
    };
    let mut bindings = state.sip().device_bindings(account_id, device_id);
    bindings.retain(|binding| binding.expires_at_ms > now);
    let state = derive_state(
        summary.facts(),
        &bindings,
        summary.outcome.as_ref(),
        now,
        state.monitoring().provisioning_window_ms,
    );
    Ok(OneDevice {
        summary,
        state,
        bindings,
    })
}

/// The `type` a dashboard groups by: Kazoo's `device_type`, with `sip_device` shown as `sip`.
fn type_key(device_type: &str) -> &str {
    match device_type {
        "sip_device" | "" => "sip",
        other => other,
    }
}

fn granted_secs(binding: &Binding) -> i64 {
    (binding.expires_at_ms - binding.updated_ms + 500).div_euclid(1000)
}

/// `ip:port` (or `[v6]:port`) into the address and the port.
pub(crate) fn host_port(address: &str) -> (Option<String>, Option<u16>) {
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        return (Some(socket.ip().to_string()), Some(socket.port()));
    }
    if let Ok(ip) = address.parse::<std::net::IpAddr>() {
        // A bare address (a ban's): no port.
        return (Some(ip.to_string()), None);
    }
    match address.rsplit_once(':') {
        Some((ip, port)) if port.parse::<u16>().is_ok() => (Some(ip.to_owned()), port.parse().ok()),
        _ => (Some(address.to_owned()), None),
    }
}

/// `GET …/devices/{device_id}/registration`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/{device_id}/registration",
    operation_id = "device_registration",
    tag = "monitoring",
    params(openapi::DevicePath),
    responses(
        (status = 200, description = "The device's registration (seed shape, no envelope): `deviceId`, `status` (registered, offline, expired, unregistered, invalid, provisioning), `registeredAt`, `expiresAt`, `registrationExpiry`, `ipAddress`, `port`, `transportProtocol`, `userAgent`, `contactUri`, `lastActivity`, `reachable`, `keepaliveRttMs`, `bindings`, `callsActive`, `callsQueued`", body = Object),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn registration(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let now = crate::now_ms();
    let device = device_view(&state, &account.id, &device_id, now).await?;
    Ok(bare(
        StatusCode::OK,
        registration_json(&device, state.monitoring()),
    ))
}

fn registration_json(device: &OneDevice, options: &MonitoringOptions) -> Value {
    let summary = &device.summary;
    let expiry = summary
        .expire_seconds
        .unwrap_or(options.default_expires_secs);
    let mut body = json!({
        "deviceId": summary.id,
        "name": summary.name,
        "status": device.state.as_str(),
        "registrationExpiry": expiry,
        "bindings": device.bindings.len(),
        "callsActive": 0,
        "callsQueued": 0,
    });
    if let Some(binding) = device.best() {
        let last_activity = binding
            .last_keepalive_ms
            .filter(|_| binding.reachable)
            .map_or(binding.updated_ms, |ping| ping.max(binding.updated_ms));
        extend(
            &mut body,
            json!({
                "registeredAt": rfc3339(binding.registered_at_ms),
                "expiresAt": rfc3339(binding.expires_at_ms),
                "registrationExpiry": granted_secs(binding),
                "ipAddress": binding.received.ip().to_string(),
                "port": binding.received.port(),
                "transportProtocol": binding.transport.via_token(),
                "userAgent": binding.user_agent,
                "contactUri": binding.contact,
                "lastActivity": rfc3339(last_activity),
                "reachable": binding.reachable,
                "keepaliveRttMs": binding.keepalive_rtt_ms,
            }),
        );
    } else if let Some(outcome) = &summary.outcome {
        extend(&mut body, outcome_json(outcome));
    }
    body
}

fn outcome_json(outcome: &DeviceOutcome) -> Value {
    json!({
        "registeredAt": outcome.last_registered_ms.map(rfc3339),
        "lastActivity": rfc3339(outcome.at_ms),
        "lastEvent": outcome.kind.event_name(),
        "reason": outcome.reason,
    })
}

fn extend(body: &mut Value, more: Value) {
    if let (Value::Object(body), Value::Object(more)) = (body, more) {
        body.extend(more);
    }
}

/// `POST …/devices/{device_id}/registration/renew`.
#[utoipa::path(
    post,
    path = "/accounts/{account_id}/devices/{device_id}/registration/renew",
    operation_id = "renew_registration",
    tag = "monitoring",
    params(openapi::DevicePath),
    responses(
        (status = 200, description = "The device re-registered after a check-sync NOTIFY: `deviceId`, `status`, `renewedAt`, `expiresAt`, `message`", body = Object),
        (status = 202, description = "The device accepted the NOTIFY but has not re-registered within the wait (`renewed: false`)", body = Object),
        openapi::AuthenticatedErrors,
        (status = 404, description = "`bad_identifier`, or `device not registered`: no live registration to ask", body = openapi::ErrorEnvelope),
        (status = 502, description = "The device refused the NOTIFY", body = openapi::ErrorEnvelope),
        (status = 504, description = "No registration answered the NOTIFY before the SIP timeout", body = openapi::ErrorEnvelope),
    ),
)]
pub(crate) async fn renew(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let asked = crate::now_ms();
    let before = device_view(&state, &account.id, &device_id, asked).await?;
    let Some(previous) = before.best().cloned() else {
        return Err(ApiError::NotRegistered(device_id));
    };
    let notify = NotifyRequest {
        event: CHECK_SYNC.to_owned(),
        body: None,
    };
    let outcomes = state.sip().notify(&account.id, &device_id, notify).await;
    conclude(&device_id, &outcomes, "check-sync accepted")?;
    // The device answered; wait (bounded) for its REGISTER to refresh a binding.
    let options = state.monitoring().clone();
    let deadline = tokio::time::Instant::now() + options.renew_wait;
    loop {
        let now = crate::now_ms();
        let bindings = state.sip().device_bindings(&account.id, &device_id);
        let renewed = bindings
            .iter()
            .filter(|binding| binding.expires_at_ms > now && binding.updated_ms >= asked)
            .max_by_key(|binding| binding.updated_ms);
        if let Some(binding) = renewed {
            return Ok(bare(
                StatusCode::OK,
                json!({
                    "deviceId": device_id,
                    "status": RegistrationState::Registered.as_str(),
                    "renewed": true,
                    "renewedAt": rfc3339(binding.updated_ms),
                    "expiresAt": rfc3339(binding.expires_at_ms),
                    "message": "Registration renewed successfully",
                }),
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(bare(
        StatusCode::ACCEPTED,
        json!({
            "deviceId": device_id,
            "status": before.state.as_str(),
            "renewed": false,
            "expiresAt": rfc3339(previous.expires_at_ms),
            "message": format!(
                "The device accepted the check-sync NOTIFY but did not re-register within {} ms",
                options.renew_wait.as_millis()
            ),
        }),
    ))
}

/// `DELETE …/devices/{device_id}/registration`.
#[utoipa::path(
    delete,
    path = "/accounts/{account_id}/devices/{device_id}/registration",
    operation_id = "unregister_device",
    tag = "monitoring",
    params(openapi::DevicePath),
    responses(
        (status = 200, description = "The device's bindings are removed (`unregistered` events recorded): `deviceId`, `status`, `unregisteredAt`, `removed`, `message`", body = Object),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn unregister(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_WRITE).await?;
    let account = caller.reach(&state, &account_id).await?;
    let now = crate::now_ms();
    let device = device_view(&state, &account.id, &device_id, now).await?;
    state.sip().unregister(&account.id, &device_id).await?;
    tracing::info!(account_id = %account.id, %device_id, removed = device.bindings.len(), "registration removed by the API");
    Ok(bare(
        StatusCode::OK,
        json!({
            "deviceId": device_id,
            "status": RegistrationState::Unregistered.as_str(),
            "unregisteredAt": rfc3339(crate::now_ms()),
            "removed": device.bindings.len(),
            "message": "Device unregistered successfully",
        }),
    ))
}

fn enum_error(field: &str, value: &str, allowed: &[&str]) -> ApiError {
    ApiError::Validation(json!({ field: { "enum": {
        "message": format!("Value not found in enumerated list of values"),
        "target": allowed,
        "value": value,
    } } }))
}

pub(crate) fn bounded_number(
    request: &ApiRequest,
    field: &str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ApiError> {
    let Some(text) = request.query.get(field) else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(ApiError::Validation(json!({ field: { "maximum": {
            "message": format!("{field} must be an integer from {min} to {max}"),
            "target": max,
            "value": text,
        } } }))),
    }
}

fn state_filter(request: &ApiRequest) -> Result<Option<RegistrationState>, ApiError> {
    match request.query.get("status").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => RegistrationState::parse(text).map(Some).ok_or_else(|| {
            let allowed: Vec<&str> = RegistrationState::ALL.iter().map(|s| s.as_str()).collect();
            enum_error("status", text, &allowed)
        }),
    }
}

fn counts_json(counts: &[u32; 6], total: u32) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("total".to_owned(), total.into());
    for state in RegistrationState::ALL {
        map.insert(state.as_str().to_owned(), counts[state.index()].into());
    }
    map
}

fn count_states(views: &[DeviceView]) -> [u32; 6] {
    let mut counts = [0_u32; 6];
    for view in views {
        counts[view.state.index()] += 1;
    }
    counts
}

/// `GET …/devices/registration/status`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/registration/status",
    operation_id = "registration_status",
    tag = "monitoring",
    params(
        openapi::AccountPath,
        ("status" = Option<String>, Query, description = "Only devices in this state"),
        ("type" = Option<String>, Query, description = "Only devices of this `device_type` (`sip` = `sip_device`)"),
        ("limit" = Option<usize>, Query, description = "Rows per page, 1–1000 (100)"),
        ("offset" = Option<usize>, Query, description = "Rows to skip (0)"),
    ),
    responses(
        (status = 200, description = "`data`: `deviceId`, `name`, `type`, `status`, `registeredAt`, `expiresAt`, `ipAddress`, `port` per device; `pagination`: `total` and the count per state of the devices of that type, with `limit`, `offset`", body = Object),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn status_list(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let wanted_state = state_filter(&request)?;
    let wanted_type = request.query.get("type").filter(|t| !t.is_empty()).cloned();
    let limit = bounded_number(&request, "limit", 100, 1, 1000)?;
    let offset = bounded_number(&request, "offset", 0, 0, usize::MAX)?;
    let now = crate::now_ms();
    let mut views = account_views(&state, &account.id, now).await?;
    if let Some(wanted) = &wanted_type {
        views.retain(|view| {
            type_key(&view.summary.device_type) == wanted || view.summary.device_type == *wanted
        });
    }
    let counts = count_states(&views);
    let total = u32::try_from(views.len()).unwrap_or(u32::MAX);
    let rows: Vec<Value> = views
        .iter()
        .filter(|view| wanted_state.is_none_or(|wanted| view.state == wanted))
        .skip(offset)
        .take(limit)
        .map(|view| {
            let mut row = json!({
                "deviceId": view.summary.id,
                "name": view.summary.name,
                "type": type_key(&view.summary.device_type),
                "status": view.state.as_str(),
                "bindings": view.live_bindings,
            });
            if let Some(binding) = &view.binding {
                extend(
                    &mut row,
                    json!({
                        "registeredAt": rfc3339(binding.registered_at_ms),
                        "expiresAt": rfc3339(binding.expires_at_ms),
                        "ipAddress": binding.received.ip().to_string(),
                        "port": binding.received.port(),
                    }),
                );
            }
            row
        })
        .collect();
    let mut pagination = counts_json(&counts, total);
    pagination.insert("limit".to_owned(), limit.into());
    pagination.insert("offset".to_owned(), offset.into());
    pagination.insert("returned".to_owned(), rows.len().into());
    Ok(bare(
        StatusCode::OK,
        json!({ "data": rows, "pagination": pagination }),
    ))
}

/// Alerts listed by the dashboard, at most.
const MAX_ALERTS: usize = 100;

/// `GET …/devices/registration/dashboard`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/registration/dashboard",
    operation_id = "registration_dashboard",
    tag = "monitoring",
    params(openapi::AccountPath),
    responses(
        (status = 200, description = "`timestamp`; `summary` (total and count per state); `byType` (the same per device type); `alerts` (offline devices and devices failing authentication, at most 100; `alertsTotal` counts them all)", body = Object),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn dashboard(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let now = crate::now_ms();
    let views = account_views(&state, &account.id, now).await?;
    let counts = count_states(&views);
    let total = u32::try_from(views.len()).unwrap_or(u32::MAX);
    let mut by_type: std::collections::BTreeMap<&str, ([u32; 6], u32)> = Default::default();
    let mut alerts = Vec::new();
    let mut alerts_total = 0_usize;
    for view in &views {
        let entry = by_type
            .entry(type_key(&view.summary.device_type))
            .or_default();
        entry.0[view.state.index()] += 1;
        entry.1 += 1;
        let alert = match view.state {
            RegistrationState::Offline => Some((
                "warning",
                format!("Device offline: {}", view.summary.name),
                "offline",
            )),
            RegistrationState::Invalid
                if view
                    .summary
                    .outcome
                    .as_ref()
                    .is_some_and(|o| o.kind == EventKind::AuthFailed) =>
            {
                Some((
                    "error",
                    format!("Authentication failing: {}", view.summary.name),
                    "auth_failed",
                ))
            }
            _ => None,
        };
        if let Some((severity, message, kind)) = alert {
            alerts_total += 1;
            if alerts.len() < MAX_ALERTS {
                alerts.push(json!({
                    "severity": severity,
                    "message": message,
                    "deviceId": view.summary.id,
                    "type": kind,
                    "since": view.summary.outcome.as_ref().map(|o| rfc3339(o.at_ms)),
                }));
            }
        }
    }
    let by_type: Map<String, Value> = by_type
        .into_iter()
        .map(|(kind, (counts, total))| {
            // Only the states present, plus the two the seed always shows.
            let mut row = Map::new();
            row.insert("total".to_owned(), total.into());
            for state in RegistrationState::ALL {
                let count = counts[state.index()];
                if count > 0
                    || matches!(
                        state,
                        RegistrationState::Registered | RegistrationState::Unregistered
                    )
                {
                    row.insert(state.as_str().to_owned(), count.into());
                }
            }
            (kind.to_owned(), Value::Object(row))
        })
        .collect();
    Ok(bare(
        StatusCode::OK,
        json!({
            "timestamp": rfc3339(now),
            "summary": counts_json(&counts, total),
            "byType": by_type,
            "alerts": alerts,
            "alertsTotal": alerts_total,
        }),
    ))
}

/// An analytics period: its length and the width of its buckets.
fn period(text: &str) -> Option<(i64, i64)> {
    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    Some(match text {
        "1h" => (HOUR, 5 * MINUTE),
        "24h" => (DAY, HOUR),
        "7d" => (7 * DAY, 6 * HOUR),
        "30d" => (30 * DAY, DAY),
        _ => return None,
    })
}

/// `GET …/devices/registration/analytics?period=1h|24h|7d|30d`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/registration/analytics",
    operation_id = "registration_analytics",
    tag = "monitoring",
    params(
        openapi::AccountPath,
        ("period" = Option<String>, Query, description = "`1h` (5-minute buckets), `24h` (hourly, the default), `7d` (6-hourly) or `30d` (daily)"),
    ),
    responses(
        (status = 200, description = "`period`; `data`: per bucket its end `timestamp` and the count per state at the last sample in it, then the state now; `averageUptime`: registered devices as a percentage of all, averaged over the samples; `peakRegistrations`, `lowestRegistrations`; `samples`", body = Object),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn analytics(
    State(state): State<ApiState>,
    Path(account_id): Path<String>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let period_text = request
        .query
        .get("period")
        .cloned()
        .unwrap_or_else(|| "24h".to_owned());
    let (length, bucket) = period(&period_text)
        .ok_or_else(|| enum_error("period", &period_text, &["1h", "24h", "7d", "30d"]))?;
    let now = crate::now_ms();
    let since = now - length;
    let id = account.id.clone();
    let samples = state
        .blocking(move |store| store.samples(&id, since, now + 1))
        .await?;
    let live = count_states(&account_views(&state, &account.id, now).await?);
    let point = |at_ms: i64, counts: &[u32; 6]| {
        let mut row = counts_json(counts, counts.iter().sum());
        row.insert("timestamp".to_owned(), rfc3339(at_ms).into());
        Value::Object(row)
    };
    let mut data = Vec::new();
    let mut current: Option<(i64, [u32; 6])> = None;
    for sample in &samples {
        let slot = (sample.at_ms - since).div_euclid(bucket);
        if let Some((open, counts)) = current
            && open != slot
        {
            data.push(point(since + (open + 1) * bucket, &counts));
        }
        current = Some((slot, sample.counts));
    }
    if let Some((open, counts)) = current {
        let end = (since + (open + 1) * bucket).min(now);
        if end < now {
            data.push(point(end, &counts));
        }
    }
    data.push(point(now, &live));
    let registered = RegistrationState::Registered.index();
    let every = samples
        .iter()
        .map(|sample| sample.counts)
        .chain(std::iter::once(live));
    let (mut uptime_sum, mut uptime_n) = (0.0_f64, 0_u32);
    let (mut peak, mut lowest) = (0_u32, u32::MAX);
    for counts in every {
        let total: u32 = counts.iter().sum();
        if total > 0 {
            uptime_sum += f64::from(counts[registered]) / f64::from(total);
            uptime_n += 1;
        }
        peak = peak.max(counts[registered]);
        lowest = lowest.min(counts[registered]);
    }
    let average_uptime = if uptime_n == 0 {
        0.0
    } else {
        (uptime_sum / f64::from(uptime_n) * 1000.0).round() / 10.0
    };
    Ok(bare(
        StatusCode::OK,
        json!({
            "period": period_text,
            "from": rfc3339(since),
            "to": rfc3339(now),
            "bucketSeconds": bucket / 1000,
            "data": data,
            "averageUptime": average_uptime,
            "peakRegistrations": peak,
            "lowestRegistrations": lowest,
            "samples": samples.len() + 1,
        }),
    ))
}

/// The public form of an event, one shape for webhooks, the live stream and device logs:
/// the seed's `{event, timestamp, data}` plus `eventId` (`evt_<history id>`, the same on every
/// delivery) and `accountId`; `data` in camelCase, absent facts left out.
pub fn event_payload(event: &Event) -> Value {
    let mut data = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            data.insert(key.to_owned(), value);
        }
    };
    put("deviceId", event.device_id.clone().map(Value::from));
    put(
        "status",
        event
            .kind
            .implied_state()
            .map(|state| state.as_str().into()),
    );
    let (ip, port) = event.address.as_deref().map_or((None, None), host_port);
    put("ipAddress", ip.map(Value::from));
    put("port", port.map(Value::from));
    put(
        "transportProtocol",
        event
            .transport
            .map(|transport| transport.via_token().into()),
    );
    put("userAgent", event.user_agent.clone().map(Value::from));
    put("contactUri", event.contact.clone().map(Value::from));
    if event.kind == EventKind::Registered {
        put("registeredAt", Some(rfc3339(event.at_ms).into()));
    }
    put("reason", event.reason.clone().map(Value::from));
    json!({
        "event": event.kind.event_name(),
        "eventId": public_event_id(event.id),
        "timestamp": rfc3339(event.at_ms),
        "accountId": event.account_id,
        "data": data,
    })
}

/// `evt_<history id>`: the event id clients see (webhook body and `X-Switchboard-Event-Id`,
/// the live stream's `id` carries the bare number).
pub(crate) fn public_event_id(event_id: i64) -> String {
    format!("evt_{event_id}")
}

/// `GET …/devices/{device_id}/logs?lines=N`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/{device_id}/logs",
    operation_id = "device_logs",
    tag = "monitoring",
    params(
        openapi::DevicePath,
        ("lines" = Option<usize>, Query, description = "How many entries, 1–1000 (50)"),
    ),
    responses(
        (status = 200, description = "`deviceId`, `lines`, `logs`: the device's registration history, newest first, each `{event, eventId, timestamp, data}`", body = Object),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn logs(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::REGISTRATIONS_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let lines = bounded_number(&request, "lines", 50, 1, 1000)?;
    let id = device_id.clone();
    let owner = account.id.clone();
    let events = state
        .blocking(move |store| {
            match store.device(&id)? {
                Some(device) if device.account_id == owner => {}
                _ => return Ok(None),
            }
            store
                .events(&EventQuery {
                    account_id: Some(owner),
                    device_id: Some(id),
                    limit: lines,
                    newest_first: true,
                    ..EventQuery::default()
                })
                .map(Some)
        })
        .await?
        .ok_or_else(|| ApiError::BadIdentifier(device_id.clone()))?;
    let logs: Vec<Value> = events.iter().map(event_payload).collect();
    Ok(bare(
        StatusCode::OK,
        json!({ "deviceId": device_id, "lines": logs.len(), "logs": logs }),
    ))
}

/// `GET …/devices/{device_id}/credentials`.
#[utoipa::path(
    get,
    path = "/accounts/{account_id}/devices/{device_id}/credentials",
    operation_id = "device_credentials",
    tag = "monitoring",
    params(openapi::DevicePath),
    responses(
        (status = 200, description = "What a user types into a phone: `sipServer`, `realm`, `username`, `password` (absent for IP-authenticated devices), `ports` per transport, `transports`, `registrationExpiry`, `authMethod`", body = Object),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn credentials(
    State(state): State<ApiState>,
    Path((account_id, device_id)): Path<(String, String)>,
    request: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = authorize(&state, &request, scope::DEVICES_READ).await?;
    let account = caller.reach(&state, &account_id).await?;
    let id = device_id.clone();
    let device = state
        .blocking(move |store| store.device(&id))
        .await?
        .filter(|device| device.account_id == account.id)
        .ok_or_else(|| ApiError::BadIdentifier(device_id.clone()))?;
    let options = state.monitoring();
    let ports: Map<String, Value> = options
        .sip_ports
        .iter()
        .map(|(transport, port)| (transport.clone(), Value::from(*port)))
        .collect();
    let transports: Vec<String> = options
        .sip_ports
        .iter()
        .map(|(transport, _)| transport.to_uppercase())
        .collect();
    let primary_port = options.sip_ports.first().map_or(5060, |(_, port)| *port);
    tracing::info!(account_id = %account.id, %device_id, "device credentials read");
    Ok(bare(
        StatusCode::OK,
        json!({
            "deviceId": device.id,
            "name": device.name,
            "authMethod": device.sip.method.as_str(),
            "username": device.sip.username,
            "password": device.sip.password,
            "realm": account.realm,
            "domain": account.realm,
            "sipServer": options.sip_server.clone().unwrap_or_else(|| account.realm.clone()),
            "port": primary_port,
            "ports": ports,
            "transports": transports,
            "registrationExpiry": device.sip.expire_seconds.unwrap_or(options.default_expires_secs),
        }),
    ))
}

/// The device count per state of every account at `now`, from one pass over the binding
/// table and one summary query per account (no per-account table scans).
pub(crate) async fn census(
    state: &ApiState,
    now: i64,
) -> Result<Vec<(String, [u32; 6])>, ApiError> {
    let mut liveness: HashMap<String, Liveness> = HashMap::new();
    state.sip().visit_bindings(&mut |binding| {
        if binding.expires_at_ms > now {
            match liveness.get_mut(&binding.device_id) {
                Some(entry) => entry.add(binding, now),
                None => {
                    liveness.insert(binding.device_id.clone(), Liveness::of([binding], now));
                }
            }
        }
    });
    let window = state.monitoring().provisioning_window_ms;
    state
        .blocking(move |store| {
            let mut counts = Vec::new();
            for account in store.accounts()? {
                let mut states = [0_u32; 6];
                for summary in store.device_summaries(&account.id)? {
                    let live = liveness.get(&summary.id).copied().unwrap_or_default();
                    let derived =
                        state_of(summary.facts(), live, summary.outcome.as_ref(), now, window);
                    states[derived.index()] += 1;
                }
                counts.push((account.id, states));
            }
            Ok(counts)
        })
        .await
}

/// The device count per state over every account now (Prometheus).
pub async fn state_totals(state: &ApiState) -> Result<[u32; 6], ApiError> {
    let mut totals = [0_u32; 6];
    for (_, counts) in census(state, crate::now_ms()).await? {
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
    }
    Ok(totals)
}

/// Records the state counts of every account now, for analytics. Returns how many accounts.
pub async fn sample_once(state: &ApiState) -> Result<usize, ApiError> {
    let now = crate::now_ms();
    let rows = census(state, now).await?;
    let written = rows.len();
    state
        .blocking(move |store| {
            let samples: Vec<StateSample<'_>> = rows
                .iter()
                .map(|(account_id, counts)| StateSample {
                    account_id,
                    at_ms: now,
                    counts: *counts,
                })
                .collect();
            store.record_samples(&samples)
        })
        .await?;
    Ok(written)
}

/// Samples every `interval` (the first one at once) and drops samples older than `retention`.
/// Runs until the runtime stops.
pub fn spawn_sampler(
    state: ApiState,
    interval: Duration,
    retention: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match sample_once(&state).await {
                Ok(accounts) => tracing::debug!(accounts, "registration states sampled"),
                Err(error) => tracing::warn!(%error, "sampling registration states failed"),
            }
            let before = crate::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            if let Err(error) = state
                .blocking(move |store| store.prune_samples(before))
                .await
            {
                tracing::warn!(%error, "pruning registration samples failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_cover_their_length_in_whole_buckets() {
        for text in ["1h", "24h", "7d", "30d"] {
            let (length, bucket) = period(text).expect("known");
            assert_eq!(length % bucket, 0, "{text}");
            assert!(length / bucket <= 30, "{text}");
        }
        assert_eq!(period("2h"), None);
    }

    #[test]
    fn addresses_split_into_ip_and_port() {
        assert_eq!(
            host_port("192.0.2.1:5060"),
            (Some("192.0.2.1".to_owned()), Some(5060))
        );
        assert_eq!(
            host_port("[2001:db8::1]:5061"),
            (Some("2001:db8::1".to_owned()), Some(5061))
        );
        assert_eq!(host_port("nonsense"), (Some("nonsense".to_owned()), None));
    }

    #[test]
    fn payloads_carry_the_seed_fields() {
        let event = Event {
            id: 42,
            at_ms: 1_697_796_000_000,
            kind: EventKind::Registered,
            account_id: "acc".into(),
            device_id: Some("dev".into()),
            binding_key: None,
            contact: Some("sip:john@203.0.113.50:52415".into()),
            address: Some("203.0.113.50:52415".into()),
            transport: Some(switchboard_model::Transport::Udp),
            user_agent: Some("Yealink".into()),
            reason: None,
        };
        let payload = event_payload(&event);
        assert_eq!(payload["event"], "device.registered");
        assert_eq!(payload["eventId"], "evt_42");
        assert_eq!(payload["accountId"], "acc");
        assert!(
            payload["data"].get("reason").is_none(),
            "absent facts are left out"
        );
        assert_eq!(payload["timestamp"], "2023-10-20T10:00:00Z");
        assert_eq!(payload["data"]["deviceId"], "dev");
        assert_eq!(payload["data"]["status"], "registered");
        assert_eq!(payload["data"]["ipAddress"], "203.0.113.50");
        assert_eq!(payload["data"]["port"], 52415);
        assert_eq!(payload["data"]["registeredAt"], "2023-10-20T10:00:00Z");
        assert_eq!(payload["data"]["transportProtocol"], "UDP");
    }
}
