//! The schema files compiled into the binary. Names are the files' `_id`s, which is what a bare
//! `"$ref": "caller_id"` points at.

/// `(schema id, file contents)` for every embedded schema.
pub(crate) const EMBEDDED: &[(&str, &str)] = &[
    ("api_auth", include_str!("../schemas/api_auth.json")),
    (
        "call_recording",
        include_str!("../schemas/call_recording.json"),
    ),
    (
        "call_recording.parameters",
        include_str!("../schemas/call_recording.parameters.json"),
    ),
    (
        "call_recording.source",
        include_str!("../schemas/call_recording.source.json"),
    ),
    ("call_waiting", include_str!("../schemas/call_waiting.json")),
    ("caller_id", include_str!("../schemas/caller_id.json")),
    (
        "custom_sip_headers",
        include_str!("../schemas/custom_sip_headers.json"),
    ),
    (
        "devices.combo_key",
        include_str!("../schemas/devices.combo_key.json"),
    ),
    ("devices", include_str!("../schemas/devices.json")),
    (
        "devices_notify",
        include_str!("../schemas/devices_notify.json"),
    ),
    ("dialplans", include_str!("../schemas/dialplans.json")),
    (
        "endpoint.media",
        include_str!("../schemas/endpoint.media.json"),
    ),
    (
        "formatters.format_options",
        include_str!("../schemas/formatters.format_options.json"),
    ),
    ("formatters", include_str!("../schemas/formatters.json")),
    ("metaflow", include_str!("../schemas/metaflow.json")),
    ("metaflows", include_str!("../schemas/metaflows.json")),
    (
        "notify.callback",
        include_str!("../schemas/notify.callback.json"),
    ),
    ("profile", include_str!("../schemas/profile.json")),
    (
        "token_restrictions",
        include_str!("../schemas/token_restrictions.json"),
    ),
    ("user_auth", include_str!("../schemas/user_auth.json")),
    ("users", include_str!("../schemas/users.json")),
    ("webhooks", include_str!("../schemas/webhooks.json")),
];
