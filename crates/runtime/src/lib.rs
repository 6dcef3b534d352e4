//! The tokio runtime around the sans-IO registrar: SIP listeners (UDP, TCP, TLS, WebSocket), the transaction
//! layer, the in-memory directory cache and binding table, and the timers (binding expiry,
//! directory refresh, transaction cleanup, keepalive OPTIONS).
//!
//! What it owns: sockets, tasks and the clock. What it does not: SIP syntax
//! (`switchboard-sip`), REGISTER rules and digest (`switchboard-registrar`), persistence
//! (`switchboard-store`). Every binding change is committed to the store before the 200 OK.
#![forbid(unsafe_code)]

pub mod client;
pub mod clock;
pub mod defence;
pub mod directory;
pub mod histogram;
pub mod keepalive;
pub mod location;
pub mod service;
pub mod stun;
pub mod tls;
pub mod tracker;
pub mod transaction;
pub mod transport;
pub mod ws;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_model::{Binding, Change, Event, EventKind, Transport};
use switchboard_registrar::{Registrar, RegistrarConfig};
use switchboard_store::{CommitFuture, Store, StoreError};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use client::{Notify, NotifyOutcome};
pub use defence::{BanAction, Cidr, DefenceConfig};
pub use directory::DirectoryCache;
pub use keepalive::KeepaliveConfig;
pub use location::BindingTable;
pub use service::{LocalNames, OverloadConfig, SecuritySnapshot, SipService, Stats};
pub use tls::{Certificates, TlsError, TlsFiles};
pub use tracker::Tracker;

/// One SIP listener: `SCHEME:HOST:PORT` with scheme `udp`, `tcp`, `tls`, `ws` or `wss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (scheme, address) = text
            .split_once(':')
            .ok_or_else(|| format!("'{text}': expected SCHEME:HOST:PORT, e.g. udp:0.0.0.0:5060"))?;
        let transport = Transport::parse(scheme).ok_or_else(|| {
            format!("'{text}': unknown transport '{scheme}' (udp, tcp, tls, ws, wss)")
        })?;
        let addr = address
            .parse::<SocketAddr>()
            .map_err(|_| format!("'{text}': '{address}' is not HOST:PORT (IPv6 as [::]:5060)"))?;
        Ok(Listen { transport, addr })
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// Everything the runtime needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub sip_listen: Vec<Listen>,
    /// Host names that address this registrar in a Request-URI, besides listen addresses.
    pub aliases: Vec<String>,
    pub registrar: RegistrarConfig,
    /// Shared by all nodes: nonces issued by one verify on another.
    pub nonce_secret: [u8; 32],
    pub nonce_lifetime_secs: u32,
    pub sweep_interval: Duration,
    pub directory_refresh: Duration,
    /// Timer J for UDP transactions.
    pub transaction_linger_ms: i64,
    /// Timer F for requests we originate (NOTIFY): how long to wait for a final response.
    pub notify_timeout_ms: u64,
    /// The keepalive pinger (OPTIONS to every binding); `interval` zero turns it off.
    pub keepalive: KeepaliveConfig,
    /// The certificate for `tls` and `wss` listeners; required when one is configured.
    pub tls: Option<TlsFiles>,
    /// Failed-authentication bans, rate limits, allow/deny lists.
    pub defence: DefenceConfig,
    /// The bound on REGISTERs in progress.
    pub overload: OverloadConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            sip_listen: vec![
                Listen {
                    transport: Transport::Udp,
                    addr: SocketAddr::from(([0, 0, 0, 0], 5060)),
                },
                Listen {
                    transport: Transport::Tcp,
                    addr: SocketAddr::from(([0, 0, 0, 0], 5060)),
                },
            ],
            aliases: Vec::new(),
            registrar: RegistrarConfig::default(),
            nonce_secret: [0; 32],
            nonce_lifetime_secs: 300,
            sweep_interval: Duration::from_secs(1),
            directory_refresh: Duration::from_secs(2),
            transaction_linger_ms: 32_000,
            notify_timeout_ms: client::TIMER_F_MS,
            keepalive: KeepaliveConfig::default(),
            tls: None,
            defence: DefenceConfig::default(),
            overload: OverloadConfig::default(),
        }
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: Listen,
        source: std::io::Error,
    },
    #[error("cannot load state from the store: {0}")]
    Store(#[from] StoreError),
    #[error("{listen} needs a certificate: set --tls-cert and --tls-key (tls_cert, tls_key)")]
    NoCertificate { listen: Listen },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A running server. Dropping it does not stop it: call [`Server::shutdown`].
pub struct Server {
    service: Arc<SipService>,
    bindings: Arc<BindingTable>,
    directory: Arc<DirectoryCache>,
    store: Arc<dyn Store>,
    local_addrs: Vec<Listen>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    tracker: Tracker,
    certificates: Option<Arc<Certificates>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs)
            .field("bindings", &self.bindings)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads the directory and the bindings, binds every listener and starts serving.
    pub async fn start(config: ServerConfig, store: Arc<dyn Store>) -> Result<Server, StartError> {
        // Certificates first: a TLS listener without one is a configuration error, found
        // before anything is loaded or bound.
        if let Some(listen) = config
            .sip_listen
            .iter()
            .find(|listen| matches!(listen.transport, Transport::Tls | Transport::Wss))
            && config.tls.is_none()
        {
            return Err(StartError::NoCertificate { listen: *listen });
        }
        let certificates = match &config.tls {
            Some(files) => {
                let certificates = Certificates::load(files.clone())?;
                tls::log_loaded(&certificates, "tls certificate loaded");
                Some(certificates)
            }
            None => None,
        };
        let directory = Arc::new(DirectoryCache::new(store.clone()));
        let bindings = Arc::new(BindingTable::new());
        {
            let directory = directory.clone();
            let store = store.clone();
            let bindings = bindings.clone();
            let loaded =
                tokio::task::spawn_blocking(move || -> Result<(usize, usize), StoreError> {
                    let devices = directory.load_all()?;
                    let stored = store.bindings()?;
                    let count = stored.len();
                    bindings.load(stored);
                    Ok((devices, count))
                })
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))??;
            info!(devices = loaded.0, bindings = loaded.1, "state loaded");
        }

        let (shutdown, shutdown_rx) = watch::channel(false);
        let tracker = Tracker::default();
        let mut udp_sockets = Vec::new();
        let mut stream_listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for listen in &config.sip_listen {
            match listen.transport {
                Transport::Udp => {
                    let socket =
                        UdpSocket::bind(listen.addr)
                            .await
                            .map_err(|source| StartError::Bind {
                                listen: *listen,
                                source,
                            })?;
                    let addr = socket.local_addr().map_err(|source| StartError::Bind {
                        listen: *listen,
                        source,
                    })?;
                    local_addrs.push(Listen {
                        transport: Transport::Udp,
                        addr,
                    });
                    udp_sockets.push(Arc::new(socket));
                }
                _ => {
                    let listener = TcpListener::bind(listen.addr).await.map_err(|source| {
                        StartError::Bind {
                            listen: *listen,
                            source,
                        }
                    })?;
                    let addr = listener.local_addr().map_err(|source| StartError::Bind {
                        listen: *listen,
                        source,
                    })?;
                    local_addrs.push(Listen {
                        transport: listen.transport,
                        addr,
                    });
                    stream_listeners.push((listen.transport, listener));
                }
            }
        }

        let registrar = Registrar::new(
            config.registrar.clone(),
            config.nonce_secret,
            config.nonce_lifetime_secs,
            1 << 20,
            rand::random(),
        );
        let local = LocalNames {
            listeners: local_addrs.iter().map(|l| l.addr).collect(),
            aliases: config.aliases.clone(),
        };
        let service = Arc::new(
            SipService::new(
                registrar,
                directory.clone(),
                bindings.clone(),
                store.clone(),
                local,
                config.transaction_linger_ms,
                config.notify_timeout_ms,
            )
            .with_defences(config.defence.clone(), config.overload),
        );
        for socket in &udp_sockets {
            service.outbound().add_udp(socket.clone());
        }

        let mut tasks = Vec::new();
        for socket in udp_sockets {
            // Two receive loops per socket keep both cores busy under load.
            for _ in 0..2 {
                tasks.push(tokio::spawn(transport::serve_udp(
                    socket.clone(),
                    service.clone(),
                    tracker.clone(),
                    shutdown_rx.clone(),
                )));
            }
        }
        for (transport, listener) in stream_listeners {
            let task = match (transport, &certificates) {
                (Transport::Tls, Some(certificates)) => {
                    let acceptor =
                        tokio_rustls::TlsAcceptor::from(certificates.server_config(&[], true)?);
                    tokio::spawn(tls::serve_tls(
                        listener,
                        acceptor,
                        service.clone(),
                        tracker.clone(),
                        shutdown_rx.clone(),
                    ))
                }
                (Transport::Wss, Some(certificates)) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(
                        certificates.server_config(&[b"http/1.1"], false)?,
                    );
                    tokio::spawn(ws::serve_ws(
                        listener,
                        Some(acceptor),
                        service.clone(),
                        tracker.clone(),
                        shutdown_rx.clone(),
                    ))
                }
                (Transport::Ws, _) => tokio::spawn(ws::serve_ws(
                    listener,
                    None,
                    service.clone(),
                    tracker.clone(),
                    shutdown_rx.clone(),
                )),
                _ => tokio::spawn(transport::serve_tcp(
                    listener,
                    service.clone(),
                    tracker.clone(),
                    shutdown_rx.clone(),
                )),
            };
            tasks.push(task);
        }
        tasks.push(tokio::spawn(sweep_loop(
            service.clone(),
            bindings.clone(),
            store.clone(),
            config.sweep_interval,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(keepalive::keepalive_loop(
            service.clone(),
            config.keepalive,
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(refresh_loop(
            directory.clone(),
            config.directory_refresh,
            shutdown_rx,
        )));
        for listen in &local_addrs {
            info!(%listen, "sip listening");
        }
        Ok(Server {
            service,
            bindings,
            directory,
            store,
            local_addrs,
            shutdown,
            tasks,
            tracker,
            certificates,
        })
    }

    /// Reads the TLS certificate and key again (SIGHUP): new handshakes get the new
    /// certificate, established connections are not touched. `Ok(false)` when no certificate
    /// is configured; on error the old certificate stays in use.
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        match &self.certificates {
            Some(certificates) => {
                certificates.reload()?;
                tls::log_loaded(certificates, "tls certificate reloaded");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The bound listeners (with the real ports when 0 was asked for).
    pub fn local_addrs(&self) -> &[Listen] {
        &self.local_addrs
    }

    pub fn service(&self) -> &Arc<SipService> {
        &self.service
    }

    pub fn bindings(&self) -> &Arc<BindingTable> {
        &self.bindings
    }

    pub fn directory(&self) -> &Arc<DirectoryCache> {
        &self.directory
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stops accepting, answers what is in flight (at most `drain`), and stops the timers.
    pub async fn shutdown(self, drain: Duration) {
        let _ = self.shutdown.send(true);
        if !self.tracker.drain(drain).await {
            warn!(
                in_flight = self.tracker.in_flight(),
                "shutdown: requests still in flight after the drain period"
            );
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Removes expired bindings, records `expired` events, and forgets finished transactions.
async fn sweep_loop(
    service: Arc<SipService>,
    bindings: Arc<BindingTable>,
    store: Arc<dyn Store>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        let now = clock::now_ms();
        let closed_flows = service.sweep_closed_flows(now);
        for commit in sweep_expired(&bindings, store.as_ref(), now)
            .into_iter()
            .chain(closed_flows)
        {
            if let Err(error) = commit.await {
                warn!(%error, "recording expired bindings failed");
            }
        }
        service.transactions().sweep(now);
        service.expire_bans(now);
    }
}

/// One expiry pass: the changes are enqueued while each shard is locked.
pub fn sweep_expired(bindings: &BindingTable, store: &dyn Store, now: i64) -> Vec<CommitFuture> {
    let mut commits = Vec::new();
    bindings.sweep_expired(now, |expired| {
        let mut changes = Vec::with_capacity(expired.len() * 2);
        for binding in expired {
            changes.push(Change::AppendEvent(expired_event(&binding, now)));
            changes.push(Change::RemoveBinding {
                device_id: binding.device_id,
                key: binding.key,
            });
        }
        commits.push(store.commit(changes));
    });
    commits
}

/// Removes every binding of a device at once (its credentials, owner or enabled state changed,
/// or it was deleted): the table entry is cleared and `unregistered` events plus the removal
/// are enqueued while the device's shard is locked, so the store sees them in table order.
/// The device is also dropped from the directory cache, so its next REGISTER reads the store.
pub fn flush_device(
    bindings: &BindingTable,
    directory: &DirectoryCache,
    store: &dyn Store,
    device_id: &str,
    now: i64,
) -> CommitFuture {
    directory.remove_device(device_id);
    bindings.with_device(device_id, |list| {
        let mut changes: Vec<Change> = list
            .drain(..)
            .map(|binding| {
                Change::AppendEvent(Event {
                    kind: EventKind::Unregistered,
                    reason: Some("flushed: device changed".to_owned()),
                    ..expired_event(&binding, now)
                })
            })
            .collect();
        changes.push(Change::RemoveDeviceBindings {
            device_id: device_id.to_owned(),
        });
        store.commit(changes)
    })
}

pub(crate) fn expired_event(binding: &Binding, now: i64) -> Event {
    Event {
        id: 0,
        at_ms: now,
        kind: EventKind::Expired,
        account_id: binding.account_id.clone(),
        device_id: Some(binding.device_id.clone()),
        binding_key: Some(binding.key.clone()),
        contact: Some(binding.contact.clone()),
        address: Some(binding.received.to_string()),
        transport: Some(binding.transport),
        user_agent: binding.user_agent.clone(),
        reason: Some("not refreshed".to_owned()),
    }
}

/// Picks up accounts and devices written by other processes (the CLI) or other nodes.
/// How far back a writer's clock or commit order may lag ours.
const REFRESH_LOOKBACK_MS: i64 = 5_000;

/// Where a directory refresh starts reading, given the newest modification seen: a few
/// seconds back while that modification is recent (a write stamped earlier may still be
/// committing), and only newer ones after that. Without the second half, a bulk import was
/// re-read every two seconds forever.
fn refresh_from(newest_seen_ms: i64, now_ms: i64) -> i64 {
    if now_ms - newest_seen_ms <= 2 * REFRESH_LOOKBACK_MS {
        newest_seen_ms - REFRESH_LOOKBACK_MS
    } else {
        newest_seen_ms + 1
    }
}

async fn refresh_loop(
    directory: Arc<DirectoryCache>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // Everything up to now was loaded at start; later writes (with the look-back) are new.
    let mut since = clock::now_ms();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        let directory = directory.clone();
        let from = refresh_from(since, clock::now_ms());
        match tokio::task::spawn_blocking(move || directory.refresh(from)).await {
            Ok(Ok(newest)) => since = since.max(newest),
            Ok(Err(error)) => warn!(%error, "directory refresh failed"),
            Err(error) => warn!(%error, "directory refresh task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_look_back_only_while_the_last_write_is_recent() {
        assert_eq!(refresh_from(100_000, 101_000), 95_000);
        assert_eq!(refresh_from(100_000, 110_000), 95_000);
        assert_eq!(refresh_from(100_000, 110_001), 100_001);
    }

    #[test]
    fn listen_specs() {
        let listen: Listen = "udp:127.0.0.1:5060".parse().expect("valid");
        assert_eq!(listen.transport, Transport::Udp);
        assert_eq!(listen.addr.port(), 5060);
        let listen: Listen = "tcp:[::1]:5070".parse().expect("valid");
        assert_eq!(listen.transport, Transport::Tcp);
        assert!(listen.addr.is_ipv6());
        assert!("sctp:1.2.3.4:5060".parse::<Listen>().is_err());
        assert!("udp:nohost".parse::<Listen>().is_err());
        assert_eq!(listen.to_string(), "tcp:[::1]:5070");
        for (spec, transport) in [
            ("tls:0.0.0.0:5061", Transport::Tls),
            ("ws:0.0.0.0:5066", Transport::Ws),
            ("wss:0.0.0.0:7443", Transport::Wss),
        ] {
            let listen: Listen = spec.parse().expect("valid");
            assert_eq!(listen.transport, transport);
            assert_eq!(listen.to_string(), spec);
        }
    }

    #[test]
    fn flushing_a_device_clears_table_and_store_and_records_unregistered() {
        use switchboard_store::{
            Directory, History, Location, SqliteOptions, SqliteStore, battery,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
        let account = battery::account("flush");
        store.create_account(&account).expect("account");
        let device = battery::device(&account.id, "dora");
        store.create_device(&device).expect("device");
        let other = battery::device(&account.id, "eve");
        store.create_device(&other).expect("device");
        let far = clock::now_ms() + 60_000;
        let bindings = BindingTable::new();
        let kept = battery::binding(&account.id, &other.id, "c:sip:eve@192.0.2.2", far);
        let mut stored = vec![kept.clone()];
        for key in ["c:sip:dora@192.0.2.1", "c:sip:dora@192.0.2.9"] {
            stored.push(battery::binding(&account.id, &device.id, key, far));
        }
        let upserts = stored.iter().cloned().map(Change::UpsertBinding).collect();
        store.commit(upserts).wait().expect("commit");
        bindings.load(stored);
        assert_eq!(bindings.account_bindings(&account.id).len(), 3);

        let dyn_store: Arc<dyn Store> = store.clone();
        let directory = DirectoryCache::new(dyn_store);
        flush_device(
            &bindings,
            &directory,
            store.as_ref(),
            &device.id,
            clock::now_ms(),
        )
        .wait()
        .expect("flush");
        assert_eq!(bindings.account_bindings(&account.id), vec![kept]);
        assert!(store.device_bindings(&device.id).expect("read").is_empty());
        assert_eq!(store.device_bindings(&other.id).expect("read").len(), 1);
        let events = store
            .events(&switchboard_store::EventQuery {
                device_id: Some(device.id.clone()),
                ..Default::default()
            })
            .expect("events");
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|event| event.kind == EventKind::Unregistered)
        );
    }
}
