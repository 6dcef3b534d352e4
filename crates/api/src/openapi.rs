//! The OpenAPI 3.1 document of the API, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /v2/openapi.json` (and `/v1`) without a token.
//!
//! The document is snapshot-tested against `crates/api/openapi.json` (rewrite it with
//! `UPDATE_OPENAPI=1 cargo test -p switchboard-api openapi`), and a drift test checks that its
//! paths and methods are exactly [`crate::routes`], the list the router is built from.
//!
//! The types below describe the wire only: the handlers build their JSON directly.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder, Schema};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use crate::{
    accounts, api_keys, auth, devices, events, monitoring, notify, phones, registrations, security,
    user_auth, users, webhooks,
};

/// The document (pretty JSON, newline-terminated: the snapshot file's exact bytes).
pub(crate) fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    text.push('\n');
    text
}

static DOCUMENT: LazyLock<String> = LazyLock::new(document_json);

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    security(()),
    responses(
        (status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json"),
        PublicErrors,
    ),
)]
pub(crate) async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard operator API",
        description = "Kazoo 4.3 crossbar-compatible API of the Switchboard SIP registrar. \
Every request and answer is Kazoo's JSON envelope; every error is Kazoo's error envelope. \
A token (from `PUT /api_auth` or `PUT /user_auth`) goes in `X-Auth-Token`, \
`Authorization: Bearer`, or the request body's `auth_token`; it reaches its own account and \
the accounts below it. An API key from `POST /accounts/{account_id}/api_keys` \
(`sbk_…`) can be sent the same way instead of a token, and holds only the scopes it was \
created with (accounts:read, accounts:write, users:read, users:write, devices:read, \
devices:write, registrations:read, registrations:write, webhooks:read, webhooks:write, \
events:read, pbx:phones:read, api_keys:write, security:read, security:write); a request needing another scope is 403 \
naming it in `data.scope`. Tokens from an account's own key or from `user_auth` hold every \
scope. Request bodies over 1 MiB are refused (413), as are bodies that are \
not JSON (415). Every client has a request budget (429 with `Retry-After`).",
    ),
    servers(
        (url = "/v2", description = "Kazoo's crossbar API, version 2"),
        (url = "/v1", description = "The same API (alias of /v2)"),
    ),
    paths(
        serve,
        auth::api_auth,
        user_auth::user_auth,
        user_auth::introspect,
        accounts::fetch,
        accounts::create,
        accounts::replace,
        accounts::patch,
        accounts::remove,
        accounts::api_key,
        api_keys::list,
        api_keys::create,
        api_keys::fetch,
        api_keys::revoke,
        devices::list,
        devices::create,
        devices::fetch,
        devices::replace,
        devices::patch,
        devices::remove,
        notify::action,
        notify::sync,
        notify::notify,
        registrations::status,
        registrations::device_status,
        registrations::list,
        registrations::flush_all,
        registrations::count,
        registrations::flush_username,
        phones::list,
        phones::stats,
        users::list,
        users::create,
        users::fetch,
        users::replace,
        users::patch,
        users::remove,
        users::devices,
        users::location,
        monitoring::registration,
        monitoring::renew,
        monitoring::unregister,
        monitoring::status_list,
        monitoring::dashboard,
        monitoring::analytics,
        monitoring::logs,
        monitoring::credentials,
        events::stream,
        webhooks::list,
        webhooks::create,
        webhooks::create_post,
        webhooks::account_attempts,
        webhooks::fetch,
        webhooks::replace,
        webhooks::patch,
        webhooks::remove,
        webhooks::attempts,
        security::bans,
        security::lift,
        security::counters,
        security::events,
        security::access_lists,
        security::set_access_lists,
        security::replace_access_lists,
        security::clear_access_lists,
    ),
    components(schemas(
        SuccessEnvelope,
        ErrorEnvelope,
        AccountRequest,
        DocumentRequest,
        ApiAuthRequest,
        ApiKeyRequest,
        AccessListsRequest,
        UserAuthRequest,
        NotifyBody,
        phones::PhoneList,
        phones::Phone,
        phones::PhoneStatsBody,
        phones::PhoneStats,
        phones::ByType,
        WebhookRequest,
    )),
    modifiers(&SecuritySchemes, &SharedResponses),
    security(("auth_token" = []), ("bearer" = []), ("api_key" = [])),
    tags(
        (name = "auth", description = "Tokens: api_auth, user_auth"),
        (name = "accounts", description = "Accounts and sub-accounts"),
        (name = "api_keys", description = "Scoped API keys"),
        (name = "devices", description = "Devices (Kazoo's `devices` schema)"),
        (name = "users", description = "Users (Kazoo's `users` schema)"),
        (name = "registrations", description = "Live registrations, from the registrar"),
        (name = "notify", description = "SIP NOTIFY to a device's registrations"),
        (name = "monitoring", description = "Registration state, dashboard, analytics, logs and credentials (seed shapes, no envelope)"),
        (name = "phones", description = "The phones view: every device with its registration and what its User-Agent says it is (plain JSON, not the Kazoo envelope)"),
        (name = "webhooks", description = "Webhooks: signed HTTP callbacks for device events, from a durable outbox"),
        (name = "security", description = "Abuse defences: current bans and failure counters (root accounts only), lifting a ban, an account's security events"),
        (name = "meta", description = "This document"),
    ),
)]
pub(crate) struct ApiDoc;

/// `X-Auth-Token: <token>`, `Authorization: Bearer <token>`, `Authorization: Bearer <key>`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "auth_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "A token from PUT /api_auth or PUT /user_auth",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The same token as `Authorization: Bearer <token>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sbk_")
                    .description(Some(
                        "A scoped API key used directly, `Authorization: Bearer sbk_…`: no \
                         token exchange; the key's scopes apply; revoked keys are refused at once",
                    ))
                    .build(),
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Responses shared by many routes, as `#/components/responses/…`.

/// Name, status and description of every shared error response (all in the error envelope).
const SHARED_ERRORS: &[(&str, &str, &str)] = &[
    (
        "BadRequest",
        "400",
        "`parse_error` (the body is not a JSON object), `validation error` (`data` is \
         `{dotted.path: {code: {message, …}}}`, Kazoo's shape), or another refusal named in \
         `message` (e.g. `invalid start_key`)",
    ),
    (
        "Unauthorized",
        "401",
        "`invalid_credentials`: no token, a bad or expired one, or a failed login",
    ),
    (
        "Forbidden",
        "403",
        "`forbidden`: the account is neither the caller's nor below it, or the credentials \
         lack the scope the request needs (`data.scope` names it)",
    ),
    (
        "NotFound",
        "404",
        "`bad_identifier`: no such account or document (its id in `data.cause`)",
    ),
    (
        "MethodNotAllowed",
        "405",
        "`invalid_method`: the path does not serve this method",
    ),
    (
        "PayloadTooLarge",
        "413",
        "`request_too_large`: the body is over 1 MiB",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "`unsupported_media_type`: the body's Content-Type is not JSON",
    ),
    (
        "TooManyRequests",
        "429",
        "`too_many_requests`: the client's request budget is spent; see `Retry-After`",
    ),
    ("InternalError", "500", "`unspecified_fault`: a bug"),
    (
        "DatastoreFault",
        "503",
        "`datastore_fault` (envelope status `fatal`): the store failed",
    ),
];

fn error_envelope() -> ContentBuilder {
    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorEnvelope")))
}

struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, _, description) in SHARED_ERRORS {
            let mut response = ResponseBuilder::new()
                .description(*description)
                .content("application/json", error_envelope().build());
            if *name == "TooManyRequests" {
                response = response.header(
                    "Retry-After",
                    utoipa::openapi::HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::Integer))
                        .description(Some("Seconds until a request is accepted again"))
                        .build(),
                );
            }
            components
                .responses
                .insert((*name).to_owned(), response.build().into());
        }
    }
}

/// The shared responses named, as references.
fn shared(names: &[&str]) -> BTreeMap<String, RefOr<Response>> {
    SHARED_ERRORS
        .iter()
        .filter(|(name, _, _)| names.contains(name))
        .map(|(name, status, _)| {
            (
                (*status).to_owned(),
                RefOr::Ref(Ref::from_response_name(*name)),
            )
        })
        .collect()
}

/// What any route with a token can answer besides its own outcomes: the body checks, the
/// token, tenancy, the router, the throttle, the store.
pub(crate) struct AuthenticatedErrors;

impl IntoResponses for AuthenticatedErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        shared(&[
            "BadRequest",
            "Unauthorized",
            "Forbidden",
            "NotFound",
            "MethodNotAllowed",
            "PayloadTooLarge",
            "UnsupportedMediaType",
            "TooManyRequests",
            "InternalError",
            "DatastoreFault",
        ])
    }
}

/// What a login (`api_auth`, `user_auth`) can answer besides its token.
pub(crate) struct LoginErrors;

impl IntoResponses for LoginErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        shared(&[
            "BadRequest",
            "Unauthorized",
            "MethodNotAllowed",
            "PayloadTooLarge",
            "UnsupportedMediaType",
            "TooManyRequests",
            "InternalError",
            "DatastoreFault",
        ])
    }
}

/// What a route without a token or a body (this document) can answer besides 200.
pub(crate) struct PublicErrors;

impl IntoResponses for PublicErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        shared(&["MethodNotAllowed", "TooManyRequests"])
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters.

/// `{account_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct AccountPath {
    /// The account's 32-hex id.
    account_id: String,
}

/// `{account_id}/…/{device_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct DevicePath {
    /// The account's 32-hex id.
    account_id: String,
    /// The device's 32-hex id.
    device_id: String,
}

/// `{account_id}/…/{user_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct UserPath {
    /// The account's 32-hex id.
    account_id: String,
    /// The user's 32-hex id.
    user_id: String,
}

/// `{account_id}/registrations/{username}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct RegistrationPath {
    /// The account's 32-hex id.
    account_id: String,
    /// A device's SIP username.
    username: String,
}

/// `{account_id}/api_keys/{key_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct ApiKeyPath {
    /// The account's 32-hex id.
    account_id: String,
    /// The key's 32-hex id (not the key itself).
    key_id: String,
}

/// `{account_id}/webhooks/{webhook_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct WebhookPath {
    /// The account's 32-hex id.
    account_id: String,
    /// The webhook's 32-hex id.
    webhook_id: String,
}

/// How many attempts to list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct AttemptLimit {
    /// At most this many, newest first (default 50, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `If-Match`, on the writes of one document.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct Revision {
    /// The document's revision (its `ETag`, quoted or not); a stale one is 412.
    #[param(rename = "If-Match")]
    if_match: Option<String>,
}

/// Kazoo's pagination (query string, or the body's `data`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct Pagination {
    /// Rows per page (default 50).
    #[param(minimum = 1)]
    page_size: Option<u64>,
    /// The previous page's `next_start_key`.
    start_key: Option<String>,
    /// `false`: every row at once, unpaginated.
    paginate: Option<bool>,
}

/// The phones view's account and paging (query string).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct PhonesQuery {
    /// The account (the caller's own, or one below it); default: the caller's account.
    account_id: Option<String>,
    /// At most this many phones (default: all).
    #[param(minimum = 0)]
    limit: Option<u64>,
    /// Skip this many phones first (by device id).
    #[param(minimum = 0)]
    offset: Option<u64>,
}

/// The phones view's account (query string).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct PhonesAccountQuery {
    /// The account (the caller's own, or one below it); default: the caller's account.
    account_id: Option<String>,
}

/// Kazoo's list filters (crossbar_filter), AND-ed, on the full stored document.
pub(crate) struct Filters;

impl IntoParams for Filters {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let text = || ObjectBuilder::new().schema_type(Type::String).build();
        let gregorian = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("Gregorian seconds (since year 0), inclusive"))
                .build()
        };
        let key_path = |what: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(format!("A dotted key path; {what}")))
                .build()
        };
        let schema = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("has_key", key_path("keeps documents that have it"))
            .property("key_missing", key_path("keeps documents that lack it"))
            .property(
                "has_value",
                key_path("keeps documents where it is non-empty"),
            )
            .property(
                "value_missing",
                key_path("keeps documents where it is missing or empty"),
            )
            .property("created_from", gregorian())
            .property("created_to", gregorian())
            .property("modified_from", gregorian())
            .property("modified_to", gregorian())
            // Any `filter_{key}` / `filter_not_{key}` (a string) besides the named ones.
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
                text(),
            )))))
            .property_names(Some(
                ObjectBuilder::new().schema_type(Type::String).pattern(Some(
                    "^(filter_(not_)?.+|has_key|key_missing|has_value|value_missing\
                     |(created|modified)_(from|to))$",
                )),
            ))
            .build();
        vec![
            ParameterBuilder::new()
                .name("filters")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .style(Some(ParameterStyle::Form))
                .explode(Some(true))
                .description(Some(
                    "Kazoo's list filters, each its own query parameter: `filter_{key}=v` \
                     keeps documents whose value at the dotted path `key` equals `v` (as \
                     text; a JSON array value means any of these), `filter_not_{key}=v` the \
                     others (a missing key never equals anything); `has_key`, `key_missing`, \
                     `has_value`, `value_missing` name a dotted key path; `created_from`, \
                     `created_to`, `modified_from`, `modified_to` are Gregorian seconds. \
                     A bad date is 400.",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas.

/// Kazoo's success envelope.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct SuccessEnvelope {
    /// The request's token (a login's new token).
    auth_token: String,
    /// Always `success`.
    #[schema(example = "success")]
    status: String,
    request_id: String,
    /// `switchboard@<host>`.
    node: String,
    version: String,
    /// `YYYY-MM-DDTHH:MM:SS`, UTC.
    timestamp: String,
    /// A document's revision (also its `ETag`), or a digest of `data`.
    revision: String,
    /// The answer: a document, a list of rows, or a string.
    data: serde_json::Value,
    /// Lists: rows in this page.
    page_size: Option<u64>,
    /// Lists: the `start_key` asked for.
    start_key: Option<String>,
    /// Lists: pass as `start_key` for the next page; absent on the last.
    next_start_key: Option<String>,
}

/// Kazoo's error envelope.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct ErrorEnvelope {
    /// The request's token, when it had one.
    auth_token: String,
    /// `error`, or `fatal` for a datastore fault.
    #[schema(example = "error")]
    status: String,
    /// The HTTP status, as text.
    #[schema(example = "404")]
    error: String,
    /// Kazoo's error name (`bad_identifier`, `validation error`, …).
    #[schema(example = "bad_identifier")]
    message: String,
    request_id: String,
    node: String,
    version: String,
    timestamp: String,
    /// Details: `{message, cause?}`, or the validation errors by dotted path.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// `{"data": {"name", "realm"}}`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct AccountRequest {
    data: AccountData,
    /// The token, when not in a header.
    auth_token: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct AccountData {
    name: String,
    /// Unique across accounts (case-insensitive); devices register at this SIP domain.
    realm: String,
}

/// `{"data": {…}}` with a device or user document, validated against Kazoo 4.3's `devices`
/// or `users` JSON schema (with its defaults written in); `id`, `_rev` and `pvt_*` keys are
/// ignored. PATCH merges it into the stored document (RFC 7386: `null` deletes).
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct DocumentRequest {
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// The token, when not in a header.
    auth_token: Option<String>,
}

/// `{"data": {"allow", "deny"}}`: an account's own SIP source-address lists.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct AccessListsRequest {
    data: AccessListsData,
    /// The token, when not in a header.
    auth_token: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct AccessListsData {
    /// Only these networks may register for the account (empty or absent: any address). At
    /// most 256 entries, each an IPv4/IPv6 address or CIDR network.
    #[schema(max_items = 256, example = json!(["10.0.0.0/8", "2001:db8::/32"]))]
    allow: Option<Vec<String>>,
    /// These networks may never register for the account; wins over `allow`. At most 256.
    #[schema(max_items = 256, example = json!(["192.0.2.0/24"]))]
    deny: Option<Vec<String>>,
}

/// `{"data": {"api_key"}}`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct ApiAuthRequest {
    data: ApiAuthData,
}

#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct ApiAuthData {
    /// The bootstrap key, or an account's key (`GET /accounts/{id}/api_key`).
    api_key: String,
}

/// `{"data": {"name", "scopes"}}`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct ApiKeyRequest {
    data: ApiKeyData,
    /// The token, when not in a header.
    auth_token: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct ApiKeyData {
    /// 1 to 128 characters.
    #[schema(example = "CRM integration")]
    name: String,
    /// At least one scope; each must be one the caller holds itself.
    #[schema(min_items = 1, example = json!(["devices:read", "pbx:phones:read"]))]
    scopes: Vec<ScopeName>,
}

/// A scope name.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) enum ScopeName {
    #[schema(rename = "accounts:read")]
    AccountsRead,
    #[schema(rename = "accounts:write")]
    AccountsWrite,
    #[schema(rename = "users:read")]
    UsersRead,
    #[schema(rename = "users:write")]
    UsersWrite,
    #[schema(rename = "devices:read")]
    DevicesRead,
    #[schema(rename = "devices:write")]
    DevicesWrite,
    #[schema(rename = "registrations:read")]
    RegistrationsRead,
    #[schema(rename = "registrations:write")]
    RegistrationsWrite,
    #[schema(rename = "webhooks:read")]
    WebhooksRead,
    #[schema(rename = "webhooks:write")]
    WebhooksWrite,
    #[schema(rename = "events:read")]
    EventsRead,
    #[schema(rename = "pbx:phones:read")]
    PhonesRead,
    #[schema(rename = "api_keys:write")]
    ApiKeysWrite,
    #[schema(rename = "security:read")]
    SecurityRead,
    #[schema(rename = "security:write")]
    SecurityWrite,
}

/// `{"data": {"credentials", "account_name" | "account_realm" | "phone_number", "method"?}}`
/// (Kazoo's `user_auth` schema).
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct UserAuthRequest {
    data: UserAuthData,
}

#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct UserAuthData {
    /// Hex `md5("username:password")`, or SHA-1 with `"method": "sha"`.
    credentials: String,
    /// `md5` (default) or `sha`.
    method: Option<String>,
    account_name: Option<String>,
    account_realm: Option<String>,
    phone_number: Option<String>,
}

/// Kazoo's `devices_notify`: `{"data": {"data": {"event", "body"?}}}` (with
/// `"action": "notify"` beside the inner `data` on `PUT …/devices/{id}`); a body whose `data`
/// is the inner object itself is accepted too.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct NotifyBody {
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// The token, when not in a header.
    auth_token: Option<String>,
}

/// A webhook: the seed's `{"url", "events"}` at the top level, or Kazoo's document in
/// `data` (`name`, `uri`, `hook`, `http_verb` get|post|put, `retries` 0..4 (default 4),
/// `custom_data` (strings, added to the payload's top level), `enabled`,
/// `include_subaccounts`). `url` and `uri` are the same field; `events` lists `device.*`
/// event names or `*` (Kazoo hooks subscribe to every device event); `secret` (16..256
/// characters) sets the signing key, generated otherwise. PATCH `{"re-enable": true}` (or
/// `{"data": {"enabled": true}}`) turns a hook disabled by failures back on.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the wire only")]
pub(crate) struct WebhookRequest {
    /// Kazoo's shape: the document.
    #[schema(value_type = Object)]
    data: Option<serde_json::Value>,
    /// The seed's shape: the receiver's absolute http(s) URL.
    url: Option<String>,
    /// The seed's shape: `device.registered`, `device.unregistered`, `device.expired`,
    /// `device.offline`, `device.online`, `device.refreshed`, `device.auth_failed`,
    /// `device.rejected`, … or `*`.
    events: Option<Vec<String>>,
    /// The token, when not in a header.
    auth_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

    /// (METHOD, path) of every operation in the document.
    fn documented() -> BTreeSet<(String, String)> {
        let document: serde_json::Value =
            serde_json::from_str(&document_json()).expect("the document is JSON");
        let mut found = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if [
                    "get", "put", "post", "patch", "delete", "head", "options", "trace",
                ]
                .contains(&method.as_str())
                {
                    found.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn every_served_route_is_documented_and_nothing_else() {
        let served: BTreeSet<(String, String)> = crate::routes()
            .iter()
            .map(|route| (route.method.to_string(), route.path.to_owned()))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let not_served: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty() && not_served.is_empty(),
            "served but not in the OpenAPI document: {undocumented:?}; \
             documented but not served: {not_served:?} \
             (annotate the handler with #[utoipa::path] and list it in ApiDoc's paths)"
        );
        assert_eq!(
            crate::routes().len(),
            served.len(),
            "a route is listed twice"
        );
    }

    #[test]
    fn the_document_matches_the_snapshot() {
        let generated = document_json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(SNAPSHOT, &generated).expect("write the snapshot");
            return;
        }
        let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
        assert!(
            committed == generated,
            "crates/api/openapi.json differs from the document the code generates; if the \
             change is intended, rewrite it with \
             `UPDATE_OPENAPI=1 cargo test -p switchboard-api openapi` and commit it"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_both_security_schemes() {
        let document: serde_json::Value =
            serde_json::from_str(&document_json()).expect("the document is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let schemes = &document["components"]["securitySchemes"];
        assert_eq!(schemes["auth_token"]["name"], "X-Auth-Token");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        // The document itself needs no token.
        assert_eq!(
            document["paths"]["/openapi.json"]["get"]["security"],
            serde_json::json!([{}])
        );
    }

    #[test]
    fn the_documented_scopes_are_the_scopes_checked() {
        let document: serde_json::Value =
            serde_json::from_str(&document_json()).expect("the document is JSON");
        let documented: Vec<&str> = document["components"]["schemas"]["ScopeName"]["enum"]
            .as_array()
            .expect("an enum of names")
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect();
        assert_eq!(documented, auth::scope::ALL);
        let schemes = &document["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["scheme"], "bearer");
    }

    #[test]
    fn operation_ids_are_unique() {
        let document: serde_json::Value =
            serde_json::from_str(&document_json()).expect("the document is JSON");
        let mut seen = BTreeSet::new();
        for item in document["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("path item").values() {
                if let Some(id) = operation["operationId"].as_str() {
                    assert!(seen.insert(id.to_owned()), "operationId {id} twice");
                }
            }
        }
    }
}
