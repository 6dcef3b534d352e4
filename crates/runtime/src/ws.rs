//! SIP over WebSocket (RFC 7118): `ws` and `wss` listeners for browser and mobile clients
//! (JsSIP, SIP.js).
//!
//! The opening handshake must offer the `sip` subprotocol (`Sec-WebSocket-Protocol: sip`); the
//! answer names it, and any other offer is refused with HTTP 400. Every text or binary frame
//! carries exactly one SIP message (no Content-Length framing); answers and our own requests
//! (NOTIFY, keepalive OPTIONS) go back as text frames on the same socket. The connection is in
//! the [`crate::transport::Outbound`] table like a TCP one, so bindings registered over it are
//! reached over it — never at their Contact host, which is typically `*.invalid` — and its
//! close marks them offline at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_model::Transport;
use switchboard_registrar::Origin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, warn};

use crate::service::SipService;
use crate::tracker::Tracker;
use crate::transport::{Peer, next_connection_id};

/// How long a client may take to finish the HTTP upgrade (after TLS, for `wss`).
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// The subprotocol RFC 7118 registers.
pub const SUBPROTOCOL: &str = "sip";

/// Accepts WebSocket connections (`ws` when `tls` is `None`, else `wss`) until `shutdown`
/// flips.
pub async fn serve_ws(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
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
                warn!(%error, "websocket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A banned address, or one over its connection cap, is closed at once (as on TCP).
        let Some(slot) = service.admit_connection(source.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = serve_ws_connection(
            stream,
            source,
            tls.clone(),
            service.clone(),
            tracker.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            connection.await;
        });
    }
}

async fn serve_ws_connection(
    stream: TcpStream,
    source: SocketAddr,
    tls: Option<TlsAcceptor>,
    service: Arc<SipService>,
    tracker: Tracker,
    shutdown: watch::Receiver<bool>,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    match tls {
        None => {
            let peer = Peer {
                source,
                local,
                transport: Transport::Ws,
            };
            serve_websocket(stream, peer, service, tracker, shutdown).await;
        }
        Some(acceptor) => {
            let Some(stream) = crate::tls::handshake(&acceptor, stream, source).await else {
                return;
            };
            let peer = Peer {
                source,
                local,
                transport: Transport::Wss,
            };
            serve_websocket(stream, peer, service, tracker, shutdown).await;
        }
    }
}

/// Whether a `Sec-WebSocket-Protocol` offer (a comma-separated list) includes `sip`.
pub fn offers_sip(offer: &str) -> bool {
    offer
        .split(',')
        .any(|protocol| protocol.trim().eq_ignore_ascii_case(SUBPROTOCOL))
}

/// The upgrade answer: `Sec-WebSocket-Protocol: sip` when offered, else HTTP 400.
#[allow(clippy::result_large_err)] // the shape tungstenite's callback requires
fn choose_subprotocol(
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(offers_sip);
    if !offered {
        let mut refusal = ErrorResponse::new(Some(
            "SIP over WebSocket requires Sec-WebSocket-Protocol: sip (RFC 7118)\n".to_owned(),
        ));
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refusal);
    }
    response.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(response)
}

async fn serve_websocket<S>(
    stream: S,
    peer: Peer,
    service: Arc<SipService>,
    tracker: Tracker,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Peer {
        source,
        local,
        transport,
    } = peer;
    // SIP messages are small and a registrar holds many idle sockets: tungstenite's 128 KiB
    // default read buffer per socket would dominate memory (166 KB per WSS connection
    // measured with it); the buffer still grows for a large frame.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(switchboard_sip::MAX_MESSAGE_SIZE))
        .max_frame_size(Some(switchboard_sip::MAX_MESSAGE_SIZE));
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, choose_subprotocol, Some(config));
    // Nobody registered over a connection still upgrading: the idle limit bounds it too.
    let upgrade_timeout = UPGRADE_TIMEOUT.min(service.idle_unregistered());
    let mut socket = match tokio::time::timeout(upgrade_timeout, upgrade).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(error)) => {
            debug!(%source, %transport, %error, "websocket upgrade failed");
            return;
        }
        Err(_) => {
            debug!(%source, %transport, "websocket upgrade timed out");
            return;
        }
    };
    let connection_id = next_connection_id();
    let (to_peer, mut outbox) = mpsc::channel::<Vec<u8>>(64);
    service.outbound().open_connection(connection_id, &to_peer);
    let origin = Origin {
        source,
        local,
        transport,
        connection_id: Some(connection_id),
    };
    loop {
        // As on every stream: silent and carrying no registration → closed.
        let idle_limit = (!service.outbound().carries_registrations(connection_id))
            .then(|| service.idle_unregistered());
        tokio::select! {
            () = crate::transport::idle(idle_limit) => {
                if service.outbound().carries_registrations(connection_id) {
                    continue;
                }
                debug!(%source, %transport, "idle websocket without registrations; closing");
                break;
            }
            frame = socket.next() => {
                let data = match frame {
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    // tungstenite answers pings itself (queued, flushed on the next I/O).
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(error)) => {
                        debug!(%source, %transport, %error, "websocket read failed; closing");
                        break;
                    }
                };
                // A frame of nothing but CRLFs is a keepalive some clients send; never SIP.
                if data.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t')) {
                    continue;
                }
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
            Some(bytes) = outbox.recv() => {
                let message = match String::from_utf8(bytes) {
                    Ok(text) => Message::text(text),
                    Err(error) => Message::binary(error.into_bytes()),
                };
                if let Err(error) = socket.send(message).await {
                    debug!(%source, %transport, %error, "websocket write failed; closing");
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    let devices = service.outbound().close_connection(connection_id);
    let _ = socket.close(None).await;
    // Bindings that lived on this socket are unreachable now (RFC 5626 flow failure).
    service.connection_closed(connection_id, &devices).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sip_subprotocol_must_be_offered() {
        assert!(offers_sip("sip"));
        assert!(offers_sip("chat, SIP"));
        assert!(!offers_sip("sips"));
        assert!(!offers_sip(""));

        let request = |protocol: Option<&str>| {
            let mut builder = Request::builder().uri("/").method("GET");
            if let Some(protocol) = protocol {
                builder = builder.header("Sec-WebSocket-Protocol", protocol);
            }
            builder.body(()).expect("request")
        };
        let answer =
            choose_subprotocol(&request(Some("xmpp, sip")), Response::new(())).expect("accepted");
        assert_eq!(answer.headers()["sec-websocket-protocol"], "sip");
        let refusal =
            choose_subprotocol(&request(Some("xmpp")), Response::new(())).expect_err("refused");
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        let refusal = choose_subprotocol(&request(None), Response::new(())).expect_err("refused");
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
    }
}
