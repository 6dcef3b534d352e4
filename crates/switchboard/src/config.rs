//! Configuration: defaults, then a TOML file, then `SWITCHBOARD_*` environment variables,
//! then command-line flags. Unknown keys (in the file or as `SWITCHBOARD_*` variables) are
//! errors, so a typo never silently falls back to a default. Every default is written down
//! here, once, and in `switchboard.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use switchboard_model::Transport;
use switchboard_registrar::{Algorithm, ChallengeStyle, RegistrarConfig};
use switchboard_runtime::TlsFiles;
use switchboard_runtime::{
    BanAction, Cidr, DefenceConfig, KeepaliveConfig, Listen, OverloadConfig, ServerConfig,
};
use switchboard_store::Synchronous;

/// The file's shape. Every field is optional: absent means "the default".
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http_listen: Option<String>,
    pub sip_listen: Option<Vec<String>>,
    pub sip_aliases: Option<Vec<String>>,
    /// PEM certificate chain for `tls` listeners (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates client certificates on `tls` listeners must chain to.
    pub tls_client_ca: Option<PathBuf>,
    pub log_format: Option<String>,
    #[serde(default)]
    pub registrar: RegistrarSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub monitoring: MonitoringSection,
    #[serde(default)]
    pub webhooks: WebhooksSection,
    #[serde(default)]
    pub security: SecuritySection,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// Wrong digest responses from one address that ban it (default 10; 0 = never).
    pub ip_failures: Option<u32>,
    /// Seconds those failures are counted over (default 60).
    pub ip_window: Option<u64>,
    /// Wrong responses for one username that slow it (default 20; 0 = never).
    pub username_failures: Option<u32>,
    /// Seconds those are counted over (default 3600).
    pub username_window: Option<u64>,
    /// Seconds a username stays slowed (default 900).
    pub username_slowdown: Option<u64>,
    /// Seconds of a first ban; each repeat doubles it (default 300).
    pub ban_time: Option<u64>,
    /// Longest ban, seconds (default 86400).
    pub max_ban_time: Option<u64>,
    /// `"403"` (default) or `"drop"`.
    pub ban_action: Option<String>,
    /// Requests per second per source address (default 50; 0 = no limit).
    pub rate_limit_per_second: Option<u32>,
    /// Requests one address may send at once (default 100).
    pub rate_limit_burst: Option<u32>,
    /// Addresses and usernames tracked at most, each (default 65536).
    pub max_tracked: Option<usize>,
    /// Networks never banned nor rate-limited (CIDR or bare addresses).
    pub allow: Option<Vec<String>>,
    /// Networks always refused.
    pub deny: Option<Vec<String>>,
    /// REGISTERs in progress at most; beyond it 503 at once (default 16384; 0 = unbounded).
    pub max_registers_in_flight: Option<usize>,
    /// Milliseconds of standing REGISTER delay above which new REGISTERs get 503 at once
    /// (default 1000; 0 = never).
    pub max_register_delay_ms: Option<u32>,
    /// `Retry-After` of a REGISTER shed for overload, seconds (default 5).
    pub overload_retry_after: Option<u32>,
    /// TCP connections one address may hold open (default 64; 0 = unbounded).
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a stream connection nobody registered over may stay silent (default 60).
    pub idle_connection_timeout: Option<u32>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSection {
    /// Seconds a device created but never registered counts as `provisioning` (default 86400).
    pub provisioning_window: Option<u64>,
    /// Seconds between two samples of the state counts analytics reads (default 300).
    pub sample_interval: Option<u64>,
    /// Days samples are kept (default 35).
    pub sample_retention_days: Option<u64>,
    /// The SIP server name phones are told to use (`/credentials`); the account realm when
    /// unset.
    pub sip_server: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    /// Run the delivery worker (default true).
    pub enabled: Option<bool>,
    /// Between two fan-out/send rounds (default 200).
    pub poll_interval_ms: Option<u64>,
    /// The first retry's wait; each next one doubles, ±20 % (default 1000).
    pub retry_base_ms: Option<u64>,
    /// HTTP requests in flight at once (default 32).
    pub max_in_flight: Option<usize>,
    /// Failed attempts in a row that disable a hook (default 6, Kazoo's; 0 = never).
    pub disable_after_failures: Option<u32>,
    /// Connect and request timeout (default 10000).
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Per-client token bucket (Kazoo's 429 `too_many_requests`); default on.
    pub rate_limit: Option<bool>,
    /// Bucket size: the burst a client may send (default 100).
    pub rate_limit_burst: Option<u32>,
    /// Tokens refilled per second (default 10).
    pub rate_limit_per_second: Option<u32>,
    /// What `api_auth`/`user_auth` cost (default 35, Kazoo's): login guessing is slow.
    pub login_cost: Option<u32>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistrarSection {
    pub min_expires: Option<u32>,
    pub default_expires: Option<u32>,
    pub max_expires: Option<u32>,
    pub max_contacts: Option<usize>,
    /// `401` (WWW-Authenticate, default) or `407` (Proxy-Authenticate).
    pub challenge: Option<u16>,
    /// Offered digest algorithms, preferred first: `MD5`, `SHA-256`.
    pub algorithms: Option<Vec<String>>,
    /// Seconds a nonce stays valid.
    pub nonce_lifetime: Option<u32>,
    /// Accept digest responses without qop (RFC 2069 phones).
    pub allow_legacy_digest: Option<bool>,
    /// How long a NOTIFY to a device waits for its final response (RFC 3261 Timer F).
    pub notify_timeout_ms: Option<u64>,
    /// Seconds between two keepalive OPTIONS to a binding (default 30; 0 = off).
    pub keepalive_interval: Option<u64>,
    /// Keepalives missed in a row before a binding is `offline` (default 3).
    pub keepalive_failures: Option<u32>,
    /// How long a keepalive OPTIONS waits for its final response (default 5000).
    pub keepalive_timeout_ms: Option<u64>,
    /// RFC 5626 `Flow-Timer` in seconds, told to outbound clients (default 120).
    pub flow_timer: Option<u32>,
    /// Granted expiries are shortened by a spread of 0 to this many percent, never below
    /// min_expires, so re-registrations after an outage spread out (default 10; 0 = off).
    pub expires_jitter: Option<u32>,
    /// Contact values one REGISTER may carry (default 32; more: 400).
    pub max_contacts_per_request: Option<usize>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `full` (default: an acknowledged REGISTER survives power loss) or `normal` (survives a
    /// crash of the process).
    pub synchronous: Option<String>,
}

/// Environment variables that are configuration, and where they go.
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("SWITCHBOARD_DATA_DIR", "data_dir", Kind::Text),
    ("SWITCHBOARD_HTTP_LISTEN", "http_listen", Kind::Text),
    ("SWITCHBOARD_SIP_LISTEN", "sip_listen", Kind::List),
    ("SWITCHBOARD_SIP_ALIASES", "sip_aliases", Kind::List),
    ("SWITCHBOARD_TLS_CERT", "tls_cert", Kind::Text),
    ("SWITCHBOARD_TLS_KEY", "tls_key", Kind::Text),
    ("SWITCHBOARD_TLS_CLIENT_CA", "tls_client_ca", Kind::Text),
    ("SWITCHBOARD_LOG_FORMAT", "log_format", Kind::Text),
    (
        "SWITCHBOARD_REGISTRAR_MIN_EXPIRES",
        "registrar.min_expires",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_DEFAULT_EXPIRES",
        "registrar.default_expires",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_MAX_EXPIRES",
        "registrar.max_expires",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_MAX_CONTACTS",
        "registrar.max_contacts",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_CHALLENGE",
        "registrar.challenge",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_ALGORITHMS",
        "registrar.algorithms",
        Kind::List,
    ),
    (
        "SWITCHBOARD_REGISTRAR_NONCE_LIFETIME",
        "registrar.nonce_lifetime",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_ALLOW_LEGACY_DIGEST",
        "registrar.allow_legacy_digest",
        Kind::Bool,
    ),
    (
        "SWITCHBOARD_REGISTRAR_NOTIFY_TIMEOUT_MS",
        "registrar.notify_timeout_ms",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL",
        "registrar.keepalive_interval",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_KEEPALIVE_FAILURES",
        "registrar.keepalive_failures",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_KEEPALIVE_TIMEOUT_MS",
        "registrar.keepalive_timeout_ms",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_FLOW_TIMER",
        "registrar.flow_timer",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_EXPIRES_JITTER",
        "registrar.expires_jitter",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_REGISTRAR_MAX_CONTACTS_PER_REQUEST",
        "registrar.max_contacts_per_request",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_IP_FAILURES",
        "security.ip_failures",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_IP_WINDOW",
        "security.ip_window",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_USERNAME_FAILURES",
        "security.username_failures",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_USERNAME_WINDOW",
        "security.username_window",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_USERNAME_SLOWDOWN",
        "security.username_slowdown",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_BAN_TIME",
        "security.ban_time",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_MAX_BAN_TIME",
        "security.max_ban_time",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_BAN_ACTION",
        "security.ban_action",
        Kind::Text,
    ),
    (
        "SWITCHBOARD_SECURITY_RATE_LIMIT_PER_SECOND",
        "security.rate_limit_per_second",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_RATE_LIMIT_BURST",
        "security.rate_limit_burst",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_MAX_TRACKED",
        "security.max_tracked",
        Kind::Integer,
    ),
    ("SWITCHBOARD_SECURITY_ALLOW", "security.allow", Kind::List),
    ("SWITCHBOARD_SECURITY_DENY", "security.deny", Kind::List),
    (
        "SWITCHBOARD_SECURITY_MAX_REGISTERS_IN_FLIGHT",
        "security.max_registers_in_flight",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_MAX_REGISTER_DELAY_MS",
        "security.max_register_delay_ms",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_OVERLOAD_RETRY_AFTER",
        "security.overload_retry_after",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_MAX_CONNECTIONS_PER_IP",
        "security.max_connections_per_ip",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_SECURITY_IDLE_CONNECTION_TIMEOUT",
        "security.idle_connection_timeout",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_STORAGE_SYNCHRONOUS",
        "storage.synchronous",
        Kind::Text,
    ),
    ("SWITCHBOARD_API_RATE_LIMIT", "api.rate_limit", Kind::Bool),
    (
        "SWITCHBOARD_API_RATE_LIMIT_BURST",
        "api.rate_limit_burst",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_API_RATE_LIMIT_PER_SECOND",
        "api.rate_limit_per_second",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_API_LOGIN_COST",
        "api.login_cost",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_MONITORING_PROVISIONING_WINDOW",
        "monitoring.provisioning_window",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_MONITORING_SAMPLE_INTERVAL",
        "monitoring.sample_interval",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_MONITORING_SAMPLE_RETENTION_DAYS",
        "monitoring.sample_retention_days",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_MONITORING_SIP_SERVER",
        "monitoring.sip_server",
        Kind::Text,
    ),
    (
        "SWITCHBOARD_WEBHOOKS_ENABLED",
        "webhooks.enabled",
        Kind::Bool,
    ),
    (
        "SWITCHBOARD_WEBHOOKS_POLL_INTERVAL_MS",
        "webhooks.poll_interval_ms",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_WEBHOOKS_RETRY_BASE_MS",
        "webhooks.retry_base_ms",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT",
        "webhooks.max_in_flight",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_WEBHOOKS_DISABLE_AFTER_FAILURES",
        "webhooks.disable_after_failures",
        Kind::Integer,
    ),
    (
        "SWITCHBOARD_WEBHOOKS_TIMEOUT_MS",
        "webhooks.timeout_ms",
        Kind::Integer,
    ),
];

/// `SWITCHBOARD_*` variables that are not configuration keys (the last one locates the
/// shared fixtures for the tests and the benchmark scripts).
const ENV_OTHER: &[&str] = &[
    "SWITCHBOARD_CONFIG",
    "SWITCHBOARD_LOG",
    "SWITCHBOARD_BOOTSTRAP_API_KEY",
    "SWITCHBOARD_SHARED_DIR",
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Bool,
    List,
}

/// Reads the file (when given) and overlays the environment.
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<FileConfig> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?
        }
        None => toml::Table::new(),
    };
    for (name, value) in env {
        if !name.starts_with("SWITCHBOARD_") || ENV_OTHER.contains(&name.as_str()) {
            continue;
        }
        let Some((_, path, kind)) = ENV_KEYS.iter().find(|(key, _, _)| key == name) else {
            bail!(
                "unknown configuration variable {name}; known: {}",
                ENV_KEYS
                    .iter()
                    .map(|(key, _, _)| *key)
                    .chain(ENV_OTHER.iter().copied())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let value = match kind {
            Kind::Text => toml::Value::String(value.clone()),
            Kind::Integer => toml::Value::Integer(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}: '{value}' is not a whole number"))?,
            ),
            Kind::Bool => toml::Value::Boolean(
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}: '{value}' is not true or false"))?,
            ),
            Kind::List => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            ),
        };
        set_path(&mut table, path, value);
    }
    let config: FileConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|error: toml::de::Error| anyhow::anyhow!("invalid configuration: {error}"))?;
    Ok(config)
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) {
    match path.split_once('.') {
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set_path(inner, rest, value);
            }
        }
        None => {
            table.insert(path.to_owned(), value);
        }
    }
}

/// The settings the binary runs with, every default filled in.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub log_json: bool,
    pub synchronous: Synchronous,
    pub server: ServerConfig,
    /// `None`: API rate limiting off.
    pub api_throttle: Option<switchboard_api::throttle::ThrottleConfig>,
    pub monitoring: MonitoringSettings,
    /// `None`: no webhook delivery worker.
    pub webhooks: Option<switchboard_api::WebhookConfig>,
}

/// Registration monitoring, resolved.
#[derive(Debug, Clone)]
pub struct MonitoringSettings {
    pub options: switchboard_api::MonitoringOptions,
    pub sample_interval: Duration,
    pub sample_retention: Duration,
}

/// Command-line overrides.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub sip_listen: Vec<String>,
    pub http_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
}

pub const DEFAULT_DATA_DIR: &str = "./switchboard-data";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_SIP_LISTEN: &[&str] = &["udp:0.0.0.0:5060", "tcp:0.0.0.0:5060"];
/// Added to the defaults when a certificate is configured (`ws` is off unless configured).
pub const DEFAULT_TLS_LISTEN: &[&str] = &["tls:0.0.0.0:5061", "wss:0.0.0.0:7443"];

impl Settings {
    pub fn resolve(file: FileConfig, overrides: Overrides) -> anyhow::Result<Settings> {
        let data_dir = overrides
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let http_text = overrides
            .http_listen
            .or(file.http_listen)
            .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
        let http_listen: SocketAddr = http_text
            .parse()
            .with_context(|| format!("http_listen '{http_text}' is not HOST:PORT"))?;
        let client_ca = overrides.tls_client_ca.or(file.tls_client_ca);
        if client_ca.is_some() && overrides.tls_cert.is_none() && file.tls_cert.is_none() {
            bail!("tls_client_ca is set but tls_cert and tls_key are not");
        }
        let tls = match (
            overrides.tls_cert.or(file.tls_cert),
            overrides.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: client_ca.clone(),
            }),
            (None, None) => None,
            (Some(_), None) => bail!("tls_cert is set but tls_key is not: both are needed"),
            (None, Some(_)) => bail!("tls_key is set but tls_cert is not: both are needed"),
        };
        let sip_specs = if !overrides.sip_listen.is_empty() {
            overrides.sip_listen
        } else {
            file.sip_listen.unwrap_or_else(|| {
                let tls_defaults = if tls.is_some() {
                    DEFAULT_TLS_LISTEN
                } else {
                    &[]
                };
                DEFAULT_SIP_LISTEN
                    .iter()
                    .chain(tls_defaults)
                    .map(|s| (*s).to_owned())
                    .collect()
            })
        };
        if sip_specs.is_empty() {
            bail!("sip_listen is empty: at least one SIP listener is needed");
        }
        let sip_listen = sip_specs
            .iter()
            .map(|spec| spec.parse::<Listen>().map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if tls.is_none()
            && let Some(listen) = sip_listen
                .iter()
                .find(|listen| matches!(listen.transport, Transport::Tls | Transport::Wss))
        {
            bail!(
                "sip_listen {listen} needs a certificate: set --tls-cert and --tls-key (or tls_cert and tls_key)"
            );
        }
        let log_json = match file.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("log_format '{other}': expected text or json"),
        };
        let synchronous = match file.storage.synchronous.as_deref() {
            None | Some("full") => Synchronous::Full,
            Some("normal") => Synchronous::Normal,
            Some(other) => bail!("storage.synchronous '{other}': expected full or normal"),
        };
        let registrar = registrar_config(&file.registrar)?;
        let api_throttle = api_throttle(&file.api)?;
        let webhooks = webhooks_config(&file.webhooks)?;
        let server = ServerConfig {
            sip_listen,
            aliases: file.sip_aliases.unwrap_or_default(),
            registrar,
            nonce_lifetime_secs: file.registrar.nonce_lifetime.unwrap_or(300),
            notify_timeout_ms: file
                .registrar
                .notify_timeout_ms
                .unwrap_or(switchboard_runtime::client::TIMER_F_MS),
            keepalive: keepalive_config(&file.registrar)?,
            tls,
            defence: defence_config(&file.security)?,
            overload: overload_config(&file.security)?,
            ..ServerConfig::default()
        };
        if !(100..=600_000).contains(&server.notify_timeout_ms) {
            bail!("registrar.notify_timeout_ms must lie between 100 and 600000");
        }
        if server.nonce_lifetime_secs < 10 {
            bail!("registrar.nonce_lifetime must be at least 10 seconds");
        }
        let monitoring = monitoring_settings(&file.monitoring, &server)?;
        Ok(Settings {
            data_dir,
            http_listen,
            log_json,
            synchronous,
            server,
            api_throttle,
            monitoring,
            webhooks,
        })
    }

    /// How long shutdown waits for requests in flight.
    pub fn drain_period(&self) -> Duration {
        Duration::from_secs(5)
    }
}

fn api_throttle(
    section: &ApiSection,
) -> anyhow::Result<Option<switchboard_api::throttle::ThrottleConfig>> {
    if section.rate_limit == Some(false) {
        return Ok(None);
    }
    let defaults = switchboard_api::throttle::ThrottleConfig::default();
    let burst = section
        .rate_limit_burst
        .map_or(defaults.capacity, f64::from);
    let per_second = section
        .rate_limit_per_second
        .map_or(defaults.refill_per_second, f64::from);
    if burst < 1.0 || per_second <= 0.0 {
        bail!("api.rate_limit_burst and api.rate_limit_per_second must be at least 1");
    }
    Ok(Some(switchboard_api::throttle::ThrottleConfig {
        capacity: burst,
        refill_per_second: per_second,
        login_cost: section.login_cost.map_or(defaults.login_cost, f64::from),
    }))
}

fn monitoring_settings(
    section: &MonitoringSection,
    server: &ServerConfig,
) -> anyhow::Result<MonitoringSettings> {
    let window = section.provisioning_window.unwrap_or(86_400);
    if window > 365 * 86_400 {
        bail!("monitoring.provisioning_window must be at most 31536000 seconds");
    }
    let interval = section.sample_interval.unwrap_or(300);
    if !(1..=86_400).contains(&interval) {
        bail!("monitoring.sample_interval must lie between 1 and 86400 seconds");
    }
    let retention_days = section.sample_retention_days.unwrap_or(35);
    if !(1..=3650).contains(&retention_days) {
        bail!("monitoring.sample_retention_days must lie between 1 and 3650");
    }
    let mut sip_ports: Vec<(String, u16)> = Vec::new();
    for listen in &server.sip_listen {
        let entry = (listen.transport.as_str().to_owned(), listen.addr.port());
        if !sip_ports.contains(&entry) {
            sip_ports.push(entry);
        }
    }
    Ok(MonitoringSettings {
        options: switchboard_api::MonitoringOptions {
            provisioning_window_ms: i64::try_from(window * 1000).unwrap_or(i64::MAX),
            sip_server: section.sip_server.clone().filter(|name| !name.is_empty()),
            sip_ports,
            default_expires_secs: server.registrar.default_expires,
            ..switchboard_api::MonitoringOptions::default()
        },
        sample_interval: Duration::from_secs(interval),
        sample_retention: Duration::from_secs(retention_days * 86_400),
    })
}

fn webhooks_config(
    section: &WebhooksSection,
) -> anyhow::Result<Option<switchboard_api::WebhookConfig>> {
    if section.enabled == Some(false) {
        return Ok(None);
    }
    let defaults = switchboard_api::WebhookConfig::default();
    let millis = |value: Option<u64>,
                  default: Duration,
                  name: &str,
                  range: std::ops::RangeInclusive<u64>| {
        let Some(value) = value else {
            return Ok(default);
        };
        if !range.contains(&value) {
            bail!(
                "webhooks.{name} must lie between {} and {}",
                range.start(),
                range.end()
            );
        }
        Ok(Duration::from_millis(value))
    };
    let max_in_flight = section.max_in_flight.unwrap_or(defaults.max_in_flight);
    if !(1..=1024).contains(&max_in_flight) {
        bail!("webhooks.max_in_flight must lie between 1 and 1024");
    }
    let disable_after_failures = section
        .disable_after_failures
        .unwrap_or(defaults.disable_after_failures);
    if disable_after_failures > 1000 {
        bail!("webhooks.disable_after_failures must be at most 1000 (0 = never)");
    }
    Ok(Some(switchboard_api::WebhookConfig {
        poll_interval: millis(
            section.poll_interval_ms,
            defaults.poll_interval,
            "poll_interval_ms",
            10..=60_000,
        )?,
        retry_base: millis(
            section.retry_base_ms,
            defaults.retry_base,
            "retry_base_ms",
            10..=600_000,
        )?,
        max_in_flight,
        disable_after_failures,
        timeout: millis(
            section.timeout_ms,
            defaults.timeout,
            "timeout_ms",
            100..=120_000,
        )?,
    }))
}

fn keepalive_config(section: &RegistrarSection) -> anyhow::Result<KeepaliveConfig> {
    let defaults = KeepaliveConfig::default();
    let interval = section
        .keepalive_interval
        .map_or(defaults.interval, Duration::from_secs);
    if interval > Duration::from_secs(86_400) {
        bail!("registrar.keepalive_interval must be at most 86400 seconds (0 turns it off)");
    }
    let failures = section.keepalive_failures.unwrap_or(defaults.failures);
    if !(1..=100).contains(&failures) {
        bail!("registrar.keepalive_failures must lie between 1 and 100");
    }
    let timeout_ms = section.keepalive_timeout_ms.unwrap_or(defaults.timeout_ms);
    if !(100..=600_000).contains(&timeout_ms) {
        bail!("registrar.keepalive_timeout_ms must lie between 100 and 600000");
    }
    Ok(KeepaliveConfig {
        interval,
        failures,
        timeout_ms,
        ..defaults
    })
}

fn defence_config(section: &SecuritySection) -> anyhow::Result<DefenceConfig> {
    let defaults = DefenceConfig::default();
    let seconds = |value: Option<u64>, default_ms: i64, name: &str| -> anyhow::Result<i64> {
        let Some(value) = value else {
            return Ok(default_ms);
        };
        if !(1..=30 * 86_400).contains(&value) {
            bail!("security.{name} must lie between 1 and 2592000 seconds");
        }
        Ok(i64::try_from(value * 1000).unwrap_or(i64::MAX))
    };
    let networks = |list: &Option<Vec<String>>, name: &str| -> anyhow::Result<Vec<Cidr>> {
        list.iter()
            .flatten()
            .map(|text| {
                text.parse::<Cidr>()
                    .map_err(|error| anyhow::anyhow!("security.{name}: {error}"))
            })
            .collect()
    };
    let ban_action = match section.ban_action.as_deref() {
        None | Some("403") => BanAction::Forbid,
        Some("drop") => BanAction::Drop,
        Some(other) => bail!("security.ban_action '{other}': expected \"403\" or \"drop\""),
    };
    let ban_ms = seconds(section.ban_time, defaults.ban_ms, "ban_time")?;
    let max_ban_ms = seconds(section.max_ban_time, defaults.max_ban_ms, "max_ban_time")?;
    if max_ban_ms < ban_ms {
        bail!("security.max_ban_time is below security.ban_time");
    }
    let rate_burst = section.rate_limit_burst.unwrap_or(defaults.rate_burst);
    if rate_burst == 0 {
        bail!("security.rate_limit_burst must be at least 1");
    }
    let max_tracked = section.max_tracked.unwrap_or(defaults.max_tracked);
    if !(16..=10_000_000).contains(&max_tracked) {
        bail!("security.max_tracked must lie between 16 and 10000000");
    }
    Ok(DefenceConfig {
        ip_failures: section.ip_failures.unwrap_or(defaults.ip_failures),
        ip_window_ms: seconds(section.ip_window, defaults.ip_window_ms, "ip_window")?,
        username_failures: section
            .username_failures
            .unwrap_or(defaults.username_failures),
        username_window_ms: seconds(
            section.username_window,
            defaults.username_window_ms,
            "username_window",
        )?,
        username_slowdown_ms: seconds(
            section.username_slowdown,
            defaults.username_slowdown_ms,
            "username_slowdown",
        )?,
        ban_ms,
        max_ban_ms,
        ban_action,
        rate_per_second: section
            .rate_limit_per_second
            .unwrap_or(defaults.rate_per_second),
        rate_burst,
        max_tracked,
        allow: networks(&section.allow, "allow")?,
        deny: networks(&section.deny, "deny")?,
    })
}

fn overload_config(section: &SecuritySection) -> anyhow::Result<OverloadConfig> {
    let defaults = OverloadConfig::default();
    let retry_after_secs = section
        .overload_retry_after
        .unwrap_or(defaults.retry_after_secs);
    if !(1..=3600).contains(&retry_after_secs) {
        bail!("security.overload_retry_after must lie between 1 and 3600 seconds");
    }
    let idle_unregistered_secs = section
        .idle_connection_timeout
        .unwrap_or(defaults.idle_unregistered_secs);
    if !(1..=86_400).contains(&idle_unregistered_secs) {
        bail!("security.idle_connection_timeout must lie between 1 and 86400 seconds");
    }
    let max_delay_ms = section
        .max_register_delay_ms
        .unwrap_or(defaults.max_delay_ms);
    if max_delay_ms > 60_000 {
        bail!("security.max_register_delay_ms must lie between 0 (never) and 60000");
    }
    Ok(OverloadConfig {
        max_in_flight: section
            .max_registers_in_flight
            .unwrap_or(defaults.max_in_flight),
        max_delay_ms,
        retry_after_secs,
        max_connections_per_ip: section
            .max_connections_per_ip
            .unwrap_or(defaults.max_connections_per_ip),
        idle_unregistered_secs,
    })
}

fn registrar_config(section: &RegistrarSection) -> anyhow::Result<RegistrarConfig> {
    let defaults = RegistrarConfig::default();
    let min_expires = section.min_expires.unwrap_or(defaults.min_expires);
    let max_expires = section.max_expires.unwrap_or(defaults.max_expires);
    let default_expires = section.default_expires.unwrap_or(defaults.default_expires);
    if min_expires > max_expires {
        bail!(
            "registrar.min_expires ({min_expires}) is above registrar.max_expires ({max_expires})"
        );
    }
    if !(min_expires..=max_expires).contains(&default_expires) {
        bail!(
            "registrar.default_expires ({default_expires}) must lie between min_expires ({min_expires}) and max_expires ({max_expires})"
        );
    }
    let challenge = match section.challenge {
        None | Some(401) => ChallengeStyle::Www,
        Some(407) => ChallengeStyle::Proxy,
        Some(other) => bail!("registrar.challenge {other}: expected 401 or 407"),
    };
    let algorithms = match &section.algorithms {
        None => defaults.algorithms.clone(),
        Some(names) => {
            let mut algorithms = Vec::new();
            for name in names {
                match Algorithm::parse(Some(name)) {
                    Some(algorithm @ (Algorithm::Md5 | Algorithm::Sha256)) => {
                        algorithms.push(algorithm);
                    }
                    _ => bail!("registrar.algorithms: '{name}' is not MD5 or SHA-256"),
                }
            }
            if algorithms.is_empty() {
                bail!("registrar.algorithms is empty");
            }
            algorithms
        }
    };
    let max_contacts = section.max_contacts.unwrap_or(defaults.max_contacts);
    if max_contacts == 0 {
        bail!("registrar.max_contacts must be at least 1");
    }
    let flow_timer = section.flow_timer.unwrap_or(defaults.flow_timer);
    if !(1..=3600).contains(&flow_timer) {
        bail!("registrar.flow_timer must lie between 1 and 3600 seconds");
    }
    let expires_jitter_percent = section
        .expires_jitter
        .unwrap_or(defaults.expires_jitter_percent);
    if expires_jitter_percent > 50 {
        bail!("registrar.expires_jitter must lie between 0 and 50 (percent)");
    }
    let max_contacts_per_request = section
        .max_contacts_per_request
        .unwrap_or(defaults.max_contacts_per_request);
    if !(1..=1024).contains(&max_contacts_per_request) {
        bail!("registrar.max_contacts_per_request must lie between 1 and 1024");
    }
    Ok(RegistrarConfig {
        min_expires,
        default_expires,
        max_expires,
        max_contacts,
        challenge,
        algorithms,
        allow_legacy_digest: section
            .allow_legacy_digest
            .unwrap_or(defaults.allow_legacy_digest),
        flow_timer,
        expires_jitter_percent,
        max_contacts_per_request,
        ..defaults
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let settings =
            Settings::resolve(load(None, &[]).expect("empty"), Overrides::default()).expect("ok");
        assert_eq!(settings.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(settings.http_listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(settings.server.sip_listen.len(), 2);
        assert_eq!(settings.server.registrar.min_expires, 60);
        assert_eq!(settings.server.registrar.max_expires, 3600);
        assert_eq!(settings.server.registrar.max_contacts, 1);
        assert_eq!(settings.synchronous, Synchronous::Full);
        assert_eq!(settings.server.keepalive.interval, Duration::from_secs(30));
        assert_eq!(settings.server.keepalive.failures, 3);
        assert_eq!(settings.server.keepalive.timeout_ms, 5_000);
        assert_eq!(
            settings.api_throttle,
            Some(switchboard_api::throttle::ThrottleConfig::default())
        );
        assert_eq!(
            settings.webhooks,
            Some(switchboard_api::WebhookConfig::default())
        );
    }

    #[test]
    fn webhook_settings_come_from_the_file_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[webhooks]\npoll_interval_ms = 50\nretry_base_ms = 100\nmax_in_flight = 8\ndisable_after_failures = 3\ntimeout_ms = 2000\n",
        )
        .expect("write");
        let file = load(
            Some(&path),
            &env(&[("SWITCHBOARD_WEBHOOKS_RETRY_BASE_MS", "20")]),
        )
        .expect("loads");
        let settings = Settings::resolve(file, Overrides::default()).expect("resolves");
        let webhooks = settings.webhooks.expect("on");
        assert_eq!(webhooks.poll_interval, Duration::from_millis(50));
        assert_eq!(webhooks.retry_base, Duration::from_millis(20));
        assert_eq!(webhooks.max_in_flight, 8);
        assert_eq!(webhooks.disable_after_failures, 3);
        assert_eq!(webhooks.timeout, Duration::from_secs(2));
        let off = load(None, &env(&[("SWITCHBOARD_WEBHOOKS_ENABLED", "false")]))
            .and_then(|file| Settings::resolve(file, Overrides::default()))
            .expect("resolves");
        assert_eq!(off.webhooks, None);
        std::fs::write(&path, "[webhooks]\nretry_base = 5\n").expect("write");
        let error = load(Some(&path), &[]).expect_err("unknown key");
        assert!(error.to_string().contains("retry_base"), "{error}");
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../switchboard.example.toml");
        let file = load(Some(&path), &[]).expect("example config parses");
        let settings = Settings::resolve(file, Overrides::default()).expect("example resolves");
        assert_eq!(settings.server.registrar.challenge, ChallengeStyle::Www);
        assert_eq!(settings.server.keepalive, KeepaliveConfig::default());
        assert_eq!(settings.server.defence, DefenceConfig::default());
        assert_eq!(settings.server.overload, OverloadConfig::default());
        assert_eq!(settings.server.registrar.expires_jitter_percent, 10);
        assert_eq!(settings.server.registrar.max_contacts_per_request, 32);
        assert_eq!(
            settings.webhooks,
            Some(switchboard_api::WebhookConfig::default())
        );
    }

    #[test]
    fn keepalive_settings_come_from_env_and_zero_turns_it_off() {
        let resolve = |pairs: &[(&str, &str)]| {
            let file = load(None, &env(pairs)).expect("loads");
            Settings::resolve(file, Overrides::default()).expect("resolves")
        };
        let settings = resolve(&[
            ("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "1"),
            ("SWITCHBOARD_REGISTRAR_KEEPALIVE_FAILURES", "2"),
            ("SWITCHBOARD_REGISTRAR_KEEPALIVE_TIMEOUT_MS", "400"),
        ]);
        assert_eq!(settings.server.keepalive.interval, Duration::from_secs(1));
        assert_eq!(settings.server.keepalive.failures, 2);
        assert_eq!(settings.server.keepalive.timeout_ms, 400);
        let off = resolve(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_INTERVAL", "0")]);
        assert!(off.server.keepalive.interval.is_zero());
    }

    #[test]
    fn a_certificate_adds_the_tls_listener_and_tls_without_one_is_an_error() {
        let resolve = |pairs: &[(&str, &str)], overrides: Overrides| {
            load(None, &env(pairs)).and_then(|file| Settings::resolve(file, overrides))
        };
        let plain = resolve(&[], Overrides::default()).expect("resolves");
        assert!(plain.server.tls.is_none());
        assert!(
            plain
                .server
                .sip_listen
                .iter()
                .all(|listen| listen.transport != Transport::Tls)
        );
        let with_cert = resolve(
            &[
                ("SWITCHBOARD_TLS_CERT", "/etc/sb/cert.pem"),
                ("SWITCHBOARD_TLS_KEY", "/etc/sb/key.pem"),
            ],
            Overrides::default(),
        )
        .expect("resolves");
        let files = with_cert.server.tls.expect("tls files");
        assert_eq!(files.cert, PathBuf::from("/etc/sb/cert.pem"));
        assert_eq!(files.key, PathBuf::from("/etc/sb/key.pem"));
        let tls: Vec<_> = with_cert
            .server
            .sip_listen
            .iter()
            .filter(|listen| listen.transport == Transport::Tls)
            .collect();
        assert_eq!(tls.len(), 1);
        assert_eq!(tls[0].addr.port(), 5061);
        let wss: Vec<_> = with_cert
            .server
            .sip_listen
            .iter()
            .filter(|listen| listen.transport == Transport::Wss)
            .collect();
        assert_eq!(wss.len(), 1);
        assert_eq!(wss[0].addr.port(), 7443);
        assert!(
            with_cert
                .server
                .sip_listen
                .iter()
                .all(|listen| listen.transport != Transport::Ws)
        );
        // Flags win over the environment.
        let flagged = resolve(
            &[
                ("SWITCHBOARD_TLS_CERT", "/env/cert.pem"),
                ("SWITCHBOARD_TLS_KEY", "/env/key.pem"),
            ],
            Overrides {
                tls_cert: Some(PathBuf::from("/flag/cert.pem")),
                tls_key: Some(PathBuf::from("/flag/key.pem")),
                ..Overrides::default()
            },
        )
        .expect("resolves");
        assert_eq!(
            flagged.server.tls.expect("tls").cert,
            PathBuf::from("/flag/cert.pem")
        );
        let error = resolve(
            &[],
            Overrides {
                sip_listen: vec!["tls:127.0.0.1:5061".to_owned()],
                ..Overrides::default()
            },
        )
        .expect_err("no certificate");
        assert!(error.to_string().contains("--tls-cert"), "{error}");
        let error = resolve(
            &[(
                "SWITCHBOARD_SIP_LISTEN",
                "udp:127.0.0.1:5060,wss:127.0.0.1:7443",
            )],
            Overrides::default(),
        )
        .expect_err("wss without certificate");
        assert!(error.to_string().contains("wss:127.0.0.1:7443"), "{error}");
        let plain_ws = resolve(
            &[("SWITCHBOARD_SIP_LISTEN", "ws:127.0.0.1:5066")],
            Overrides::default(),
        )
        .expect("ws needs no certificate");
        assert_eq!(plain_ws.server.sip_listen[0].transport, Transport::Ws);
        let error = resolve(&[("SWITCHBOARD_TLS_CERT", "/c.pem")], Overrides::default())
            .expect_err("cert without key");
        assert!(error.to_string().contains("tls_key"), "{error}");
        let error = resolve(
            &[("SWITCHBOARD_TLS_CLIENT_CA", "/ca.pem")],
            Overrides::default(),
        )
        .expect_err("client CA without certificate");
        assert!(error.to_string().contains("tls_client_ca"), "{error}");
        let verified = resolve(
            &[
                ("SWITCHBOARD_TLS_CERT", "/c.pem"),
                ("SWITCHBOARD_TLS_KEY", "/k.pem"),
                ("SWITCHBOARD_TLS_CLIENT_CA", "/ca.pem"),
            ],
            Overrides::default(),
        )
        .expect("resolves");
        assert_eq!(
            verified.server.tls.expect("tls").client_ca,
            Some(PathBuf::from("/ca.pem"))
        );
    }

    #[test]
    fn security_settings_come_from_the_file_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[security]\nip_failures = 3\nban_time = 10\nban_action = \"drop\"\nallow = [\"10.0.0.0/8\"]\nmax_registers_in_flight = 0\n",
        )
        .expect("write");
        let file = load(
            Some(&path),
            &env(&[
                ("SWITCHBOARD_SECURITY_DENY", "192.0.2.0/24, 2001:db8::/32"),
                ("SWITCHBOARD_SECURITY_RATE_LIMIT_PER_SECOND", "0"),
            ]),
        )
        .expect("loads");
        let settings = Settings::resolve(file, Overrides::default()).expect("resolves");
        let defence = &settings.server.defence;
        assert_eq!(defence.ip_failures, 3);
        assert_eq!(defence.ban_ms, 10_000);
        assert_eq!(defence.ban_action, BanAction::Drop);
        assert_eq!(defence.allow.len(), 1);
        assert_eq!(defence.deny.len(), 2);
        assert_eq!(defence.rate_per_second, 0);
        assert_eq!(settings.server.overload.max_in_flight, 0);
        let bad = |pairs: &[(&str, &str)]| {
            load(None, &env(pairs))
                .and_then(|file| Settings::resolve(file, Overrides::default()))
                .expect_err("must fail")
                .to_string()
        };
        assert!(bad(&[("SWITCHBOARD_SECURITY_BAN_ACTION", "404")]).contains("ban_action"));
        assert!(bad(&[("SWITCHBOARD_SECURITY_ALLOW", "10.0.0.0/99")]).contains("security.allow"));
        assert!(bad(&[("SWITCHBOARD_SECURITY_MAX_BAN_TIME", "5")]).contains("max_ban_time"));
        assert!(bad(&[("SWITCHBOARD_REGISTRAR_EXPIRES_JITTER", "80")]).contains("expires_jitter"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[registrar]\nmin_expire = 30\n").expect("write");
        let error = load(Some(&path), &[]).expect_err("typo must fail");
        assert!(error.to_string().contains("min_expire"), "{error}");
        let error = load(None, &env(&[("SWITCHBOARD_DATADIR", "/x")])).expect_err("unknown env");
        assert!(error.to_string().contains("SWITCHBOARD_DATADIR"), "{error}");
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "data_dir = \"/from/file\"\nsip_listen = [\"udp:127.0.0.1:5070\"]\n[registrar]\nmin_expires = 30\nmax_contacts = 3\n",
        )
        .expect("write");
        let file = load(
            Some(&path),
            &env(&[
                ("SWITCHBOARD_REGISTRAR_MIN_EXPIRES", "45"),
                ("SWITCHBOARD_DATA_DIR", "/from/env"),
                ("SWITCHBOARD_BOOTSTRAP_API_KEY", "not config"),
            ]),
        )
        .expect("loads");
        let settings = Settings::resolve(
            file,
            Overrides {
                data_dir: Some(PathBuf::from("/from/flag")),
                ..Overrides::default()
            },
        )
        .expect("resolves");
        assert_eq!(settings.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(settings.server.registrar.min_expires, 45);
        assert_eq!(settings.server.registrar.max_contacts, 3);
        assert_eq!(settings.server.sip_listen.len(), 1);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let bad = |pairs: &[(&str, &str)]| {
            load(None, &env(pairs))
                .and_then(|file| Settings::resolve(file, Overrides::default()))
                .expect_err("must fail")
                .to_string()
        };
        assert!(bad(&[("SWITCHBOARD_REGISTRAR_CHALLENGE", "403")]).contains("401 or 407"));
        assert!(bad(&[("SWITCHBOARD_REGISTRAR_MIN_EXPIRES", "soon")]).contains("whole number"));
        assert!(bad(&[("SWITCHBOARD_SIP_LISTEN", "sctp:1.2.3.4:5060")]).contains("sctp"));
        assert!(bad(&[("SWITCHBOARD_REGISTRAR_ALGORITHMS", "SHA-1")]).contains("SHA-1"));
        assert!(bad(&[("SWITCHBOARD_REGISTRAR_MIN_EXPIRES", "4000")]).contains("max_expires"));
        assert!(
            bad(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_FAILURES", "0")])
                .contains("keepalive_failures")
        );
        assert!(
            bad(&[("SWITCHBOARD_REGISTRAR_KEEPALIVE_TIMEOUT_MS", "5")])
                .contains("keepalive_timeout_ms")
        );
        assert!(bad(&[("SWITCHBOARD_WEBHOOKS_RETRY_BASE_MS", "1")]).contains("retry_base_ms"));
        assert!(bad(&[("SWITCHBOARD_REGISTRAR_FLOW_TIMER", "0")]).contains("flow_timer"));
        assert!(bad(&[("SWITCHBOARD_WEBHOOKS_MAX_IN_FLIGHT", "0")]).contains("max_in_flight"));
    }
}
