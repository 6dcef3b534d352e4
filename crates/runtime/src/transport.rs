//! UDP and TCP listeners, and the stream path TLS shares ([`crate::tls`]). A datagram or a
//! framed stream message is handed to the service on a task of its own, so a REGISTER waiting
//! for its commit never holds up the next one.
//!
//! [`Outbound`] is how the server reaches a device on its own initiative (NOTIFY, keepalive
//! OPTIONS): the UDP sockets by local address, and the live connections (TCP, TLS, WebSocket) by id (each
//! connection registers its writer channel while it is open, and the devices that registered
//! over it, so its close marks their bindings offline at once). A CRLFCRLF ping on a stream
//! is answered with CRLF (RFC 5626 §4.4.1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use switchboard_model::Transport;
use switchboard_registrar::Origin;
use switchboard_sip::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::service::SipService;
use crate::tracker::Tracker;

/// Largest message accepted on any transport (RFC 3261 leaves it to the implementation;
/// 64 KiB is the UDP limit and plenty for a REGISTER).
const MAX_MESSAGE: usize = switchboard_sip::MAX_MESSAGE_SIZE;

/// Where a request of ours can be sent: the UDP sockets we listen on and the open stream
/// connections.
#[derive(Debug, Default)]
pub struct Outbound {
    udp: Mutex<Vec<Arc<UdpSocket>>>,
    connections: Mutex<HashMap<u64, Flow>>,
}

/// One open connection: its writer and the devices that registered over it (so its close can
/// mark exactly their bindings offline, without scanning the binding table).
#[derive(Debug)]
struct Flow {
    /// Weak: an entry never keeps a closed connection's writer alive.
    sender: mpsc::WeakSender<Vec<u8>>,
    devices: Vec<String>,
}

/// Why a message could not be handed to the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No socket of ours has that local address, or the connection is closed.
    NoRoute,
    /// The socket refused the datagram (it may go through on a retransmission).
    Failed,
}

impl Outbound {
    pub fn add_udp(&self, socket: Arc<UdpSocket>) {
        self.udp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(socket);
    }

    fn udp_socket(&self, local: SocketAddr) -> Option<Arc<UdpSocket>> {
        let sockets = self.udp.lock().unwrap_or_else(|e| e.into_inner());
        sockets
            .iter()
            .find(|socket| socket.local_addr().is_ok_and(|addr| addr == local))
            .or_else(|| {
                // The binding may predate a restart on another address: any socket of the
                // same family and port will do, else any of the same family.
                sockets.iter().find(|socket| {
                    socket.local_addr().is_ok_and(|addr| {
                        addr.port() == local.port() && addr.is_ipv4() == local.is_ipv4()
                    })
                })
            })
            .or_else(|| {
                sockets.iter().find(|socket| {
                    socket
                        .local_addr()
                        .is_ok_and(|addr| addr.is_ipv4() == local.is_ipv4())
                })
            })
            .cloned()
    }

    pub(crate) fn open_connection(&self, id: u64, sender: &mpsc::Sender<Vec<u8>>) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Flow {
                    sender: sender.downgrade(),
                    devices: Vec::new(),
                },
            );
    }

    /// Forgets connection `id`; returns the devices that registered over it.
    pub(crate) fn close_connection(&self, id: u64) -> Vec<String> {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .map(|flow| flow.devices)
            .unwrap_or_default()
    }

    /// Notes that `device_id` has a binding on connection `id` (no-op once it closed: the
    /// keepalive then finds no route and marks the binding offline).
    pub fn note_device(&self, id: u64, device_id: &str) {
        let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flow) = connections.get_mut(&id)
            && !flow.devices.iter().any(|known| known == device_id)
        {
            flow.devices.push(device_id.to_owned());
        }
    }

    /// Whether a device registered over connection `id` (such a connection lives as long as
    /// the client keeps it; one that carries no registration is closed when idle).
    pub fn carries_registrations(&self, id: u64) -> bool {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .is_some_and(|flow| !flow.devices.is_empty())
    }

    /// Whether connection `id` is open.
    pub fn has_connection(&self, id: u64) -> bool {
        self.connection(id).is_some()
    }

    fn connection(&self, id: u64) -> Option<mpsc::Sender<Vec<u8>>> {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .and_then(|flow| flow.sender.upgrade())
    }

    /// Sends a datagram from our socket at `local` to `destination`.
    pub async fn send_udp(
        &self,
        local: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        let socket = self.udp_socket(local).ok_or(SendError::NoRoute)?;
        socket
            .send_to(bytes, destination)
            .await
            .map(drop)
            .map_err(|_| SendError::Failed)
    }

    /// Queues a message on connection `id`.
    pub async fn send_stream(&self, id: u64, bytes: Vec<u8>) -> Result<(), SendError> {
        let sender = self.connection(id).ok_or(SendError::NoRoute)?;
        sender.send(bytes).await.map_err(|_| SendError::NoRoute)
    }

    /// The local address of our UDP socket for `local` (to name in a Via when `local` is a
    /// wildcard address).
    pub fn udp_local_addr(&self, local: SocketAddr) -> Option<SocketAddr> {
        self.udp_socket(local)?.local_addr().ok()
    }
}

/// Serves one UDP socket until `shutdown` flips.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    service: Arc<SipService>,
    tracker: Tracker,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = match socket.local_addr() {
        Ok(local) => local,
        Err(error) => {
            warn!(%error, "udp socket has no local address");
            return;
        }
    };
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            _ = shutdown.changed() => break,
        };
        let (len, source) = match received {
            Ok(received) => received,
            Err(error) => {
                // ICMP port unreachable from an earlier send shows up here on Linux; go on.
                debug!(%error, "udp receive error");
                continue;
            }
        };
        if len == 0 || len > MAX_MESSAGE {
            continue;
        }
        // RFC 5626 §4.4.2 keepalive: a STUN Binding request on the SIP port, never SIP.
        if crate::stun::is_stun(&buf[..len]) {
            service.answer_stun(&socket, &buf[..len], source).await;
            continue;
        }
        let data = buf[..len].to_vec();
        let origin = Origin {
            source,
            local,
            transport: Transport::Udp,
            connection_id: None,
        };
        let service = service.clone();
        let socket = socket.clone();
        let guard = tracker.enter();
        tokio::spawn(async move {
            let _guard = guard;
            if let Some(out) = service.handle(&data, origin).await
                && let Err(error) = socket.send_to(&out.bytes, out.destination).await
            {
                debug!(%error, "udp send failed");
            }
        });
    }
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Accepts TCP connections until `shutdown` flips.
pub async fn serve_tcp(
    listener: TcpListener,
    service: Arc<SipService>,
    tracker: Tracker,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, source) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // A banned address, or one over its connection cap, is closed at once.
        let Some(slot) = service.admit_connection(source.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let tracker = tracker.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, source, service, tracker, shutdown).await;
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    source: SocketAddr,
    service: Arc<SipService>,
    tracker: Tracker,
    shutdown: watch::Receiver<bool>,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let (reader, writer) = stream.into_split();
    let peer = Peer {
        source,
        local,
        transport: Transport::Tcp,
    };
    serve_stream(reader, writer, peer, service, tracker, shutdown).await;
}

/// Who is at the other end of a stream, and over what.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub source: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
}

/// Serves one byte stream (TCP, or TLS over TCP) until the peer closes it or `shutdown`
/// flips: messages are framed by Content-Length, each handled on a task of its own, and the
/// answers written back in order of completion. The connection is in the [`Outbound`] table
/// while it is open; its close marks the bindings registered over it offline.
pub(crate) async fn serve_stream<R, W>(
    mut reader: R,
    mut writer: W,
    peer: Peer,
    service: Arc<SipService>,
    tracker: Tracker,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Peer {
        source,
        local,
        transport,
    } = peer;
    let connection_id = next_connection_id();
    let (to_peer, mut outbox) = mpsc::channel::<Vec<u8>>(64);
    service.outbound().open_connection(connection_id, &to_peer);
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = outbox.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let origin = Origin {
        source,
        local,
        transport,
        connection_id: Some(connection_id),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'connection: loop {
        // Take every complete message out of the buffer.
        loop {
            match switchboard_sip::frame_stream(&buf) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::Keepalive { len, ping }) => {
                    buf.drain(..len);
                    if ping && to_peer.send(b"\r\n".to_vec()).await.is_err() {
                        break 'connection;
                    }
                }
                Ok(Frame::Message { len }) => {
                    let data: Vec<u8> = buf.drain(..len).collect();
                    let service = service.clone();
                    let to_peer = to_peer.clone();
                    let guard = tracker.enter();
                    tokio::spawn(async move {
                        let _guard = guard;
                        if let Some(out) = service.handle(&data, origin).await {
                            let _ = to_peer.send(out.bytes).await;
                        }
                    });
                }
                Err(error) => {
                    // Framing is lost (bad or missing Content-Length): answer if we can, close.
                    debug!(%source, %transport, %error, "stream framing error; closing");
                    if let Some(out) = service.handle(&buf, origin).await {
                        let _ = to_peer.send(out.bytes).await;
                    }
                    break 'connection;
                }
            }
        }
        if buf.len() > MAX_MESSAGE {
            debug!(%source, %transport, "message too large on stream; closing");
            break;
        }
        // A connection nobody registered over may sit idle only so long (scanners and
        // half-open clients must not pin file descriptors); one that carries bindings lives
        // as long as its client keeps it (its keepalives and refreshes are the client's).
        let idle_limit = if service.outbound().carries_registrations(connection_id) {
            None
        } else {
            Some(service.idle_unregistered())
        };
        let read = tokio::select! {
            read = reader.read(&mut chunk) => read,
            _ = shutdown.changed() => break,
            () = idle(idle_limit) => {
                // A REGISTER read before the wait may have completed meanwhile.
                if service.outbound().carries_registrations(connection_id) {
                    continue;
                }
                debug!(%source, %transport, "idle connection without registrations; closing");
                break;
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let devices = service.outbound().close_connection(connection_id);
    drop(to_peer);
    let _ = writer_task.await;
    // Bindings that lived on this connection are unreachable now (RFC 5626 flow failure).
    service.connection_closed(connection_id, &devices).await;
}

/// Sleeps for `limit`, or forever without one.
pub(crate) async fn idle(limit: Option<std::time::Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => std::future::pending().await,
    }
}

/// A fresh connection id (unique for the life of the process, never 0).
pub(crate) fn next_connection_id() -> u64 {
    NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed)
}
