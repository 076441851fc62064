//! An endpoint: a quinn endpoint on its own tokio runtime, an accept loop
//! that hands verified connections to the host, and the deny list.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haifu_transport_abi::{Error, StreamEndpoint, Timeout};
use quinn::VarInt;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connection::{CLOSE_DENIED, Peer, QuicConnection, conn_error, with_timeout};
use crate::tls::{DenyList, Identity, cert_names, cert_role, is_denied};
use crate::{Quic, Settings};

/// Bytes both sides exchange on the stream right after the handshake: the
/// client learns that the server accepted it before `connect` returns.
const HELLO: &[u8; 4] = b"HFU1";

/// Connections that may need closing when the deny list changes.
type Live = Arc<Mutex<Vec<(Vec<String>, quinn::Connection)>>>;

fn track(live: &Live, names: Vec<String>, conn: &quinn::Connection) {
    let mut l = live.lock().unwrap_or_else(|p| p.into_inner());
    l.retain(|(_, c)| c.close_reason().is_none());
    l.push((names, conn.clone()));
}

/// The verified peer certificate's names (identity first) and role.
fn peer_cert(conn: &quinn::Connection) -> Result<(Vec<String>, &'static str), Error> {
    let certs = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| Error::denied("peer presented no certificate"))?;
    let first = certs
        .first()
        .ok_or_else(|| Error::denied("peer presented no certificate"))?;
    let names = cert_names(first).map_err(Error::denied)?;
    let role = cert_role(first).map_err(Error::denied)?;
    Ok((names, role))
}

struct Accepted {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    peer: Peer,
}

/// The endpoint handed to the host.
pub(crate) struct QuicEndpoint {
    rt: Arc<Runtime>,
    endpoint: quinn::Endpoint,
    accepted: Option<tokio::sync::Mutex<mpsc::Receiver<Accepted>>>,
    accept_task: Option<JoinHandle<()>>,
    deny: DenyList,
    live: Live,
    settings: Settings,
}

impl std::fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicEndpoint")
            .field("local", &self.endpoint.local_addr().ok())
            .finish()
    }
}

/// The server side of one incoming connection: handshake (the verifier
/// refuses denied and foreign identities), identity, hello.
async fn admit(
    incoming: quinn::Incoming,
    deny: &DenyList,
    live: &Live,
    hello_timeout: Duration,
) -> Result<Accepted, Error> {
    let conn = incoming.await.map_err(|e| conn_error(&e))?;
    let (names, role) = peer_cert(&conn)?;
    if is_denied(deny, &names) {
        conn.close(
            VarInt::from_u32(CLOSE_DENIED),
            b"certificate identity denied",
        );
        return Err(Error::denied("identity denied"));
    }
    let hello = async {
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| conn_error(&e))?;
        let mut got = [0u8; 4];
        recv.read_exact(&mut got)
            .await
            .map_err(|e| Error::io(format!("hello: {e}")))?;
        if &got != HELLO {
            return Err(Error::io("peer is not a haifu quic endpoint"));
        }
        send.write_all(HELLO)
            .await
            .map_err(|e| Error::io(format!("hello: {e}")))?;
        Ok((send, recv))
    };
    let (send, recv) = with_timeout(Some(hello_timeout), hello).await?;
    track(live, names.clone(), &conn);
    let peer = Peer {
        identity: names.into_iter().next().unwrap_or_default(),
        role,
    };
    Ok(Accepted {
        conn,
        send,
        recv,
        peer,
    })
}

impl StreamEndpoint for QuicEndpoint {
    type Transport = Quic;
    type Connection = QuicConnection;

    fn open(_: &Quic, config: &haifu_transport_abi::Config) -> Result<Self, Error> {
        let settings = Settings::parse(config)?;
        let identity = Identity::load(&settings.ca, &settings.cert, &settings.key)?;
        let deny: DenyList = Arc::new(std::sync::RwLock::new(
            settings.deny.iter().cloned().collect(),
        ));
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(settings.threads)
                .thread_name("haifu-quic")
                .enable_all()
                .build()
                .map_err(|e| Error::io(format!("cannot start runtime: {e}")))?,
        );
        let mut transport = quinn::TransportConfig::default();
        let idle = quinn::IdleTimeout::try_from(settings.idle_timeout)
            .map_err(|_| Error::invalid("configuration: idle_timeout_ms too large"))?;
        transport.max_idle_timeout(Some(idle));
        transport.keep_alive_interval(Some(settings.idle_timeout / 3));
        let transport = Arc::new(transport);

        let client_tls = identity.client_config(settings.alpn.as_bytes())?;
        let client_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)
            .map_err(|e| Error::internal(format!("quic client config: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(Arc::clone(&transport));

        let _enter = rt.enter();
        let live: Live = Arc::default();
        let (endpoint, accepted, accept_task) = match settings.listen {
            Some(addr) => {
                let server_tls =
                    identity.server_config(Arc::clone(&deny), settings.alpn.as_bytes())?;
                let server_crypto =
                    quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)
                        .map_err(|e| Error::internal(format!("quic server config: {e}")))?;
                let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
                server.transport_config(Arc::clone(&transport));
                let socket = std::net::UdpSocket::bind(addr)
                    .map_err(|e| Error::io(format!("cannot listen on {addr}: {e}")))?;
                // Reset key and connection-id key derived from the identity:
                // restarted, this listener resets the connections its last
                // run left open, so its peers reconnect at once.
                let mut endpoint_config =
                    quinn::EndpointConfig::new(Arc::new(identity.reset_key()));
                let cid_key = identity.cid_key();
                endpoint_config.cid_generator(move || {
                    Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
                });
                let runtime = quinn::default_runtime()
                    .ok_or_else(|| Error::internal("no async runtime for quinn"))?;
                let endpoint = quinn::Endpoint::new(endpoint_config, Some(server), socket, runtime)
                    .map_err(|e| Error::io(format!("cannot listen on {addr}: {e}")))?;
                let (tx, rx) = mpsc::channel::<Accepted>(settings.accept_queue);
                let ep = endpoint.clone();
                let (deny2, live2, hello_timeout) =
                    (Arc::clone(&deny), Arc::clone(&live), settings.hello_timeout);
                let task = rt.spawn(async move {
                    while let Some(incoming) = ep.accept().await {
                        let (tx, deny, live) = (tx.clone(), Arc::clone(&deny2), Arc::clone(&live2));
                        // One task per handshake: a slow or hostile peer
                        // never holds up the others.
                        tokio::spawn(async move {
                            if let Ok(a) = admit(incoming, &deny, &live, hello_timeout).await {
                                let _ = tx.send(a).await;
                            }
                        });
                    }
                });
                (endpoint, Some(tokio::sync::Mutex::new(rx)), Some(task))
            }
            None => {
                let endpoint = quinn::Endpoint::client(settings.bind)
                    .map_err(|e| Error::io(format!("cannot bind {}: {e}", settings.bind)))?;
                (endpoint, None, None)
            }
        };
        let mut endpoint = endpoint;
        endpoint.set_default_client_config(client);
        drop(_enter);
        Ok(Self {
            rt,
            endpoint,
            accepted,
            accept_task,
            deny,
            live,
            settings,
        })
    }

    fn local_addr(&self) -> Result<String, Error> {
        self.endpoint
            .local_addr()
            .map(|a| a.to_string())
            .map_err(|e| Error::io(format!("local address: {e}")))
    }

    fn accept(&self, timeout: Timeout) -> Result<QuicConnection, Error> {
        let Some(accepted) = &self.accepted else {
            return Err(Error::unsupported(
                "endpoint opened without listen= cannot accept",
            ));
        };
        let a = self.rt.block_on(with_timeout(timeout, async {
            accepted
                .lock()
                .await
                .recv()
                .await
                .ok_or_else(|| Error::closed("endpoint closed"))
        }))?;
        Ok(QuicConnection::new(
            Arc::clone(&self.rt),
            a.conn,
            a.send,
            a.recv,
            a.peer,
            self.settings.max_frame,
            self.settings.close_timeout,
        ))
    }

    fn connect(
        &self,
        addr: &str,
        server_name: &str,
        timeout: Timeout,
    ) -> Result<QuicConnection, Error> {
        let target: SocketAddr = match addr.parse() {
            Ok(a) => a,
            Err(_) => addr
                .to_socket_addrs()
                .map_err(|e| Error::invalid(format!("address {addr:?}: {e}")))?
                .next()
                .ok_or_else(|| Error::invalid(format!("address {addr:?} resolves to nothing")))?,
        };
        let (conn, send, recv, peer) = self.rt.block_on(with_timeout(timeout, async {
            let connecting = self.endpoint.connect(target, server_name).map_err(|e| {
                Error::invalid(format!("connect to {addr} as {server_name:?}: {e}"))
            })?;
            let conn = connecting.await.map_err(|e| conn_error(&e))?;
            let (names, role) = peer_cert(&conn)?;
            if is_denied(&self.deny, &names) {
                conn.close(
                    VarInt::from_u32(CLOSE_DENIED),
                    b"certificate identity denied",
                );
                return Err(Error::denied(format!("{server_name} is on the deny list")));
            }
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| conn_error(&e))?;
            send.write_all(HELLO).await.map_err(|e| match e {
                quinn::WriteError::ConnectionLost(c) => conn_error(&c),
                other => Error::io(format!("hello: {other}")),
            })?;
            let mut got = [0u8; 4];
            recv.read_exact(&mut got).await.map_err(|e| match e {
                quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(c)) => {
                    conn_error(&c)
                }
                other => Error::io(format!("hello: {other}")),
            })?;
            if &got != HELLO {
                return Err(Error::io("peer is not a haifu quic endpoint"));
            }
            track(&self.live, names.clone(), &conn);
            let peer = Peer {
                identity: names.into_iter().next().unwrap_or_default(),
                role,
            };
            Ok((conn, send, recv, peer))
        }))?;
        Ok(QuicConnection::new(
            Arc::clone(&self.rt),
            conn,
            send,
            recv,
            peer,
            self.settings.max_frame,
            self.settings.close_timeout,
        ))
    }

    fn set_denied(&self, identities: &[&str]) -> Result<(), Error> {
        {
            let mut set = self.deny.write().unwrap_or_else(|p| p.into_inner());
            set.clear();
            set.extend(identities.iter().map(|s| (*s).to_owned()));
        }
        // Cut off live connections of newly denied identities.
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|(names, conn)| {
            if conn.close_reason().is_some() {
                return false;
            }
            if is_denied(&self.deny, names) {
                conn.close(
                    VarInt::from_u32(CLOSE_DENIED),
                    b"certificate identity denied",
                );
                return false;
            }
            true
        });
        Ok(())
    }
}

impl Drop for QuicEndpoint {
    fn drop(&mut self) {
        // Stop accepting; connections already handed out stay open (they
        // hold the runtime), the rest are refused by the peer's next packet.
        if let Some(t) = self.accept_task.take() {
            t.abort();
        }
        self.endpoint.set_server_config(None);
    }
}
