//! The phones view: `GET /v1/pbx/phones` and `GET /v1/pbx/phones/stats` (also under `/v2`),
//! one row per device of the caller's account, registered or not, joined with its newest live
//! binding in the registrar's table and classified by its User-Agent
//! (`switchboard_model::user_agent`). The answers are plain JSON objects (`{"phones": […]}`,
//! `{"stats": {…}}`), not Kazoo envelopes; errors are still Kazoo's error envelope.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use switchboard_model::user_agent::{self, PhoneClass};
use switchboard_model::{Account, Binding, Device};
use switchboard_store::Store;
use utoipa::ToSchema;

use crate::auth::{Caller, authorize, scope};
use crate::envelope::rfc3339;
use crate::openapi;
use crate::request::ApiRequest;
use crate::{ApiError, ApiState};

/// Devices read from the store at a time: a large account is walked, never held whole.
const CHUNK: usize = 500;

/// One phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Phone {
    /// The device id.
    id: String,
    /// The device's `caller_id.internal.number`, else its owner's `presence_id`, else its
    /// SIP username.
    extension_number: String,
    /// The device's name.
    extension_name: String,
    /// `hardware`, `softphone`, `webrtc` or `mobile`: from the User-Agent when it is known,
    /// else from the device's `device_type`.
    #[schema(example = "hardware")]
    device_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Polycom")]
    manufacturer: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "VVX 450")]
    model: Option<String>,
    /// Upper-case, colon-separated: the device's `mac_address`, else one in the User-Agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "00:04:F2:AB:CD:EF")]
    mac_address: Option<String>,
    /// Where the newest live registration came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_address: Option<String>,
    /// Whether the device has a live registration.
    registered: bool,
    /// RFC 3339, when the newest live registration was last refreshed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "2026-03-26T08:00:00Z")]
    last_registered: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "PolycomVVX-VVX_450-UA/6.4.5")]
    user_agent: Option<String>,
}

/// `{"phones": […]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PhoneList {
    phones: Vec<Phone>,
}

/// `{"stats": {…}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PhoneStatsBody {
    stats: PhoneStats,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PhoneStats {
    total_phones: u64,
    registered: u64,
    unregistered: u64,
    by_type: ByType,
}

/// Phones per `deviceType`.
#[derive(Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub(crate) struct ByType {
    hardware: u64,
    softphone: u64,
    webrtc: u64,
    mobile: u64,
}

impl PhoneStats {
    fn count(&mut self, class: PhoneClass, registered: bool) {
        self.total_phones += 1;
        if registered {
            self.registered += 1;
        } else {
            self.unregistered += 1;
        }
        let by_type = &mut self.by_type;
        match class {
            PhoneClass::Hardware => by_type.hardware += 1,
            PhoneClass::Softphone => by_type.softphone += 1,
            PhoneClass::Webrtc => by_type.webrtc += 1,
            PhoneClass::Mobile => by_type.mobile += 1,
        }
    }
}

/// A JSON string or number as text.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The device's own extension (`caller_id.internal.number`).
fn own_extension(device: &Device) -> Option<String> {
    text(device.document.pointer("/caller_id/internal/number"))
}

fn class_of(device: &Device, identity: Option<&user_agent::PhoneIdentity>) -> PhoneClass {
    identity.map_or_else(
        || PhoneClass::from_device_type(&device.device_type),
        |identity| identity.class,
    )
}

/// One phone row: the device, its newest live binding, its owner's extension, and (for a
/// device not registered now) when it last registered, from its recorded outcome.
fn phone(
    device: &Device,
    binding: Option<&Binding>,
    owner_extension: Option<&str>,
    last_registered_ms: Option<i64>,
) -> Phone {
    let agent = binding.and_then(|binding| binding.user_agent.as_deref());
    let identity = agent.and_then(user_agent::classify);
    let mac_address = device
        .document
        .get("mac_address")
        .and_then(Value::as_str)
        .and_then(user_agent::normalize_mac)
        .or_else(|| agent.and_then(user_agent::mac_in));
    Phone {
        id: device.id.clone(),
        extension_number: own_extension(device)
            .or_else(|| owner_extension.map(str::to_owned))
            .or_else(|| device.sip.username.clone())
            .unwrap_or_default(),
        extension_name: device.name.clone(),
        device_type: class_of(device, identity.as_ref()).as_str(),
        manufacturer: identity.as_ref().and_then(|identity| identity.manufacturer),
        model: identity.and_then(|identity| identity.model),
        mac_address,
        ip_address: binding.map(|binding| binding.received.ip().to_string()),
        registered: binding.is_some(),
        last_registered: binding
            .map(|binding| binding.updated_ms)
            .or(last_registered_ms)
            .map(rfc3339),
        user_agent: agent.map(str::to_owned),
    }
}

/// Each device's most recently updated binding that has not lapsed.
fn newest_live_bindings(state: &ApiState, account_id: &str) -> HashMap<String, Binding> {
    let now = crate::now_ms();
    let mut newest: HashMap<String, Binding> = HashMap::new();
    for binding in state.sip().account_bindings(account_id) {
        if binding.expires_at_ms <= now {
            continue;
        }
        match newest.get(&binding.device_id) {
            Some(kept) if kept.updated_ms >= binding.updated_ms => {}
            _ => {
                newest.insert(binding.device_id.clone(), binding);
            }
        }
    }
    newest
}

/// The account asked for: `?account_id=` (the caller's own account or one below it), else
/// the caller's account.
async fn target(
    state: &ApiState,
    request: &ApiRequest,
    caller: &Caller,
) -> Result<Account, ApiError> {
    let wanted = request
        .param("account_id")
        .filter(|id| !id.trim().is_empty())
        .unwrap_or_else(|| caller.account_id.clone());
    caller.reach(state, wanted.trim()).await
}

/// A non-negative integer query parameter; 400 naming it when it is something else.
fn count_param(request: &ApiRequest, name: &str) -> Result<Option<usize>, ApiError> {
    match request.param(name) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid {name}"))),
    }
}

/// Calls `visit` with each device of the account, by id, until it returns false.
fn walk_devices(
    store: &dyn Store,
    account_id: &str,
    mut visit: impl FnMut(Device) -> bool,
) -> switchboard_store::Result<()> {
    let mut cursor: Option<String> = None;
    loop {
        let chunk = store.devices_page(account_id, cursor.as_deref(), CHUNK)?;
        let exhausted = chunk.len() < CHUNK;
        cursor = chunk.last().map(|device| device.id.clone());
        for device in chunk {
            if !visit(device) {
                return Ok(());
            }
        }
        if exhausted {
            return Ok(());
        }
    }
}

#[utoipa::path(
    get,
    path = "/pbx/phones",
    operation_id = "list_phones",
    tag = "phones",
    params(openapi::PhonesQuery),
    responses(
        (status = 200, description = "Every device of the account, registered or not, by id (a plain object, not the Kazoo envelope)", body = PhoneList),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    request: ApiRequest,
) -> Result<Json<PhoneList>, ApiError> {
    let caller = authorize(&state, &request, scope::PHONES_READ).await?;
    let account = target(&state, &request, &caller).await?;
    let offset = count_param(&request, "offset")?.unwrap_or(0);
    let limit = count_param(&request, "limit")?.unwrap_or(usize::MAX);
    let bindings = newest_live_bindings(&state, &account.id);
    let phones = state
        .blocking(move |store| {
            let mut devices = Vec::new();
            let mut skipped = 0;
            if limit > 0 {
                walk_devices(store, &account.id, |device| {
                    if skipped < offset {
                        skipped += 1;
                        return true;
                    }
                    devices.push(device);
                    devices.len() < limit
                })?;
            }
            // Owners' extensions, only for the devices without one of their own.
            let owners: BTreeSet<String> = devices
                .iter()
                .filter(|device| own_extension(device).is_none())
                .filter_map(|device| device.owner_id.clone())
                .collect();
            let mut extensions = HashMap::new();
            for owner in owners {
                if let Some(user) = store.user(&owner)?
                    && user.account_id == account.id
                    && let Some(extension) = text(user.document.get("presence_id"))
                {
                    extensions.insert(owner, extension);
                }
            }
            let mut rows = Vec::with_capacity(devices.len());
            for device in &devices {
                let owner = device
                    .owner_id
                    .as_ref()
                    .and_then(|owner| extensions.get(owner));
                let binding = bindings.get(&device.id);
                let last_registered = match binding {
                    Some(_) => None,
                    None => store
                        .device_outcome(&device.id)?
                        .and_then(|outcome| outcome.last_registered_ms),
                };
                rows.push(phone(
                    device,
                    binding,
                    owner.map(String::as_str),
                    last_registered,
                ));
            }
            Ok(rows)
        })
        .await?;
    Ok(Json(PhoneList { phones }))
}

#[utoipa::path(
    get,
    path = "/pbx/phones/stats",
    operation_id = "phone_stats",
    tag = "phones",
    params(openapi::PhonesAccountQuery),
    responses(
        (status = 200, description = "Counts of the account's phones: in all, registered or not, and per `deviceType` (a plain object, not the Kazoo envelope)", body = PhoneStatsBody),
        openapi::AuthenticatedErrors,
    ),
)]
pub(crate) async fn stats(
    State(state): State<ApiState>,
    request: ApiRequest,
) -> Result<Json<PhoneStatsBody>, ApiError> {
    let caller = authorize(&state, &request, scope::PHONES_READ).await?;
    let account = target(&state, &request, &caller).await?;
    let bindings = newest_live_bindings(&state, &account.id);
    let stats = state
        .blocking(move |store| {
            let mut stats = PhoneStats::default();
            walk_devices(store, &account.id, |device| {
                let binding = bindings.get(&device.id);
                let identity = binding
                    .and_then(|binding| binding.user_agent.as_deref())
                    .and_then(user_agent::classify);
                stats.count(class_of(&device, identity.as_ref()), binding.is_some());
                true
            })?;
            Ok(stats)
        })
        .await?;
    Ok(Json(PhoneStatsBody { stats }))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde_json::json;
    use switchboard_model::{DeviceSip, Transport};

    use super::*;

    fn device(document: Value, device_type: &str) -> Device {
        Device {
            id: "d1".to_owned(),
            account_id: "a1".to_owned(),
            name: "Front Desk".to_owned(),
            enabled: true,
            device_type: device_type.to_owned(),
            owner_id: None,
            sip: DeviceSip {
                username: Some("frontdesk".to_owned()),
                ..DeviceSip::default()
            },
            document,
            created_ms: 0,
            modified_ms: 0,
        }
    }

    fn binding(user_agent: Option<&str>, updated_ms: i64) -> Binding {
        let received: SocketAddr = "192.168.1.50:5060".parse().expect("addr");
        Binding {
            account_id: "a1".to_owned(),
            device_id: "d1".to_owned(),
            key: "c:sip:frontdesk@192.168.1.50".to_owned(),
            aor: "frontdesk@acme.test".to_owned(),
            contact: "sip:frontdesk@192.168.1.50:5060".to_owned(),
            contact_params: String::new(),
            instance: None,
            reg_id: None,
            q_milli: None,
            expires_at_ms: updated_ms + 3_600_000,
            registered_at_ms: updated_ms,
            updated_ms,
            call_id: "c".to_owned(),
            cseq: 1,
            user_agent: user_agent.map(str::to_owned),
            transport: Transport::Udp,
            received,
            local: received,
            connection_id: None,
            path: String::new(),
            last_keepalive_ms: None,
            keepalive_rtt_ms: None,
            keepalive_failures: 0,
            reachable: true,
        }
    }

    #[test]
    fn a_registered_polycom_is_the_seed_example() {
        let device = device(
            json!({"caller_id": {"internal": {"number": "101"}}, "mac_address": "0004f2abcdef"}),
            "sip_device",
        );
        // 2026-03-26T08:00:00Z
        let binding = binding(Some("PolycomVVX-VVX_450-UA/6.4.5"), 1_774_512_000_000);
        let row = serde_json::to_value(phone(&device, Some(&binding), None, None)).expect("json");
        assert_eq!(
            row,
            json!({
                "id": "d1",
                "extensionNumber": "101",
                "extensionName": "Front Desk",
                "deviceType": "hardware",
                "manufacturer": "Polycom",
                "model": "VVX 450",
                "macAddress": "00:04:F2:AB:CD:EF",
                "ipAddress": "192.168.1.50",
                "registered": true,
                "lastRegistered": "2026-03-26T08:00:00Z",
                "userAgent": "PolycomVVX-VVX_450-UA/6.4.5",
            })
        );
    }

    #[test]
    fn a_browser_has_no_maker_and_an_unregistered_device_only_what_is_known() {
        let device = device(json!({}), "sip_device");
        let webrtc = binding(Some("JsSIP/3.10.0"), 1_774_512_900_000);
        let row =
            serde_json::to_value(phone(&device, Some(&webrtc), Some("201"), None)).expect("json");
        assert_eq!(row["deviceType"], "webrtc");
        assert_eq!(row["extensionNumber"], "201", "the owner's presence_id");
        for absent in ["manufacturer", "model", "macAddress"] {
            assert!(row.get(absent).is_none(), "{absent} in {row}");
        }
        let row = serde_json::to_value(phone(&device, None, None, None)).expect("json");
        let seen = serde_json::to_value(phone(&device, None, None, Some(1_697_796_000_000)))
            .expect("json");
        assert_eq!(seen["lastRegistered"], "2023-10-20T10:00:00Z");
        assert_eq!(seen["registered"], false);
        assert_eq!(
            row,
            json!({
                "id": "d1",
                "extensionNumber": "frontdesk",
                "extensionName": "Front Desk",
                "deviceType": "hardware",
                "registered": false,
            })
        );
    }

    #[test]
    fn unknown_agents_fall_back_to_the_device_type_and_macs_come_from_the_agent() {
        let softphone = device(json!({}), "softphone");
        let row = phone(&softphone, Some(&binding(Some("SIPp"), 0)), None, None);
        assert_eq!((row.device_type, row.manufacturer), ("softphone", None));
        let yealink = device(json!({}), "sip_device");
        let row = phone(
            &yealink,
            Some(&binding(
                Some("Yealink SIP-T54W 96.85.0.5 80:5e:c0:12:34:56"),
                0,
            )),
            None,
            None,
        );
        assert_eq!(row.mac_address.as_deref(), Some("80:5E:C0:12:34:56"));
        assert_eq!(row.model.as_deref(), Some("T54W"));
    }

    #[test]
    fn stats_count_every_phone_once() {
        let mut stats = PhoneStats::default();
        stats.count(PhoneClass::Hardware, true);
        stats.count(PhoneClass::Webrtc, true);
        stats.count(PhoneClass::Mobile, false);
        assert_eq!(
            serde_json::to_value(PhoneStatsBody { stats }).expect("json"),
            json!({"stats": {
                "totalPhones": 3,
                "registered": 2,
                "unregistered": 1,
                "byType": {"hardware": 1, "softphone": 0, "webrtc": 1, "mobile": 1},
            }})
        );
    }
}
