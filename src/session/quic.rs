//! QUIC for coded peers (quinn): the peer protocol runs on one
//! bidirectional stream, symbols travel as datagrams.
//!
//! - Peers are identified by the BitTorrent handshake on the stream, not by
//!   TLS: each node makes a throwaway self-signed certificate and accepts
//!   any certificate (the same trust BitTorrent over TCP has).
//! - Datagrams are paced by our own controller ([`wire::fountain::DatagramPacer`]):
//!   quinn's congestion control reads random loss as congestion and would
//!   throttle them, so it is replaced by an unlimited window (quinn then
//!   also stops pacing). The stream only carries control messages.
//! - Datagrams may be as large as the path allows (MTU discovery up to
//!   64 KiB, which loopback supports), so several symbols share one.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use quinn::congestion::{Controller, ControllerFactory};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Endpoint, EndpointConfig, ServerConfig, TransportConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// ALPN of the coded peer protocol.
pub const ALPN: &[u8] = b"bf-raptorq/1";
/// How long connecting may take before the TCP fallback is used.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A QUIC stream pair usable wherever the peer protocol needs a byte stream.
pub type QuicStream = tokio::io::Join<quinn::RecvStream, quinn::SendStream>;

/// Binds a QUIC endpoint (server and client) on `addr`.
pub fn bind(addr: SocketAddr) -> Result<Endpoint> {
    let mut endpoint_config = EndpointConfig::default();
    // Let loopback and jumbo-frame paths carry big datagrams.
    endpoint_config
        .max_udp_payload_size(65_527)
        .map_err(|e| anyhow!("QUIC endpoint config: {e}"))?;
    let socket =
        std::net::UdpSocket::bind(addr).with_context(|| format!("cannot bind UDP {addr}"))?;
    enlarge_buffers(&socket);
    let runtime = quinn::default_runtime().ok_or_else(|| anyhow!("no async runtime for QUIC"))?;
    // A server config makes the endpoint accept connections at all; each
    // one is then accepted (`accept`) and opened (`connect`) with the
    // settings for its own path, so no default client config is needed.
    Endpoint::new(
        endpoint_config,
        Some(server_config(provider(), PathLimit::UNKNOWN)?),
        socket,
        runtime,
    )
    .context("cannot start the QUIC endpoint")
}

/// The largest UDP payload our side of the path to a peer allows: the MTU
/// of the route the kernel would use (64 KiB for loopback and for our own
/// addresses, 1500 for Ethernet) less the IP and UDP headers. MTU discovery
/// then finds what the whole path carries, up to this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PathLimit {
    max_payload: u16,
}

impl PathLimit {
    /// Where the route's MTU cannot be read: Ethernet-sized and below.
    const UNKNOWN: PathLimit = PathLimit {
        max_payload: OFFLOAD_SAFE_MTU,
    };

    fn to(peer: SocketAddr) -> Self {
        let headers = if peer.is_ipv4() { 20 + 8 } else { 40 + 8 };
        match route_mtu(peer) {
            Some(mtu) => PathLimit {
                max_payload: mtu.saturating_sub(headers).clamp(1200, 65_000) as u16,
            },
            None => PathLimit::UNKNOWN,
        }
    }

    /// Segmentation offload only where ten packets fit in one call.
    fn offload(self) -> bool {
        self.max_payload <= OFFLOAD_SAFE_MTU
    }
}

/// The MTU of the route to `peer` (IP_MTU of a connected UDP socket: a
/// route lookup, nothing is sent).
fn route_mtu(peer: SocketAddr) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(peer),
        socket2::Type::DGRAM,
        None,
    )
    .ok()?;
    socket.connect(&peer.into()).ok()?;
    let (level, name) = if peer.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket fd, and a c_int with its size for the value.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::addr_of_mut!(mtu).cast(),
            &mut len,
        )
    };
    (rc == 0 && mtu > 0).then_some(mtu as u32)
}

/// Symbols arrive in bursts of large datagrams: the default socket buffer
/// (about 200 KiB) holds three 64 KiB datagrams, and every burst the
/// endpoint task does not drain at once would be lost in the kernel. The
/// kernel caps the request at `net.core.rmem_max` / `wmem_max`.
fn enlarge_buffers(socket: &std::net::UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    force_buffers(&socket);
    // Only where forcing did not already go past the request: a plain
    // request would shrink a forced buffer back to the sysctl cap.
    if socket.recv_buffer_size().unwrap_or(0) < SOCKET_BUFFER {
        if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
            tracing::debug!("cannot enlarge the UDP receive buffer: {e}");
        }
    }
    if socket.send_buffer_size().unwrap_or(0) < SOCKET_BUFFER {
        if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
            tracing::debug!("cannot enlarge the UDP send buffer: {e}");
        }
    }
}

/// Requested UDP socket buffer size.
const SOCKET_BUFFER: usize = 16 << 20;

/// With CAP_NET_ADMIN (root), SO_RCVBUFFORCE / SO_SNDBUFFORCE go past
/// `rmem_max`; without it they fail and the capped request below stands.
fn force_buffers(socket: &socket2::SockRef<'_>) {
    use std::os::fd::AsRawFd;
    let size = SOCKET_BUFFER as libc::c_int;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: a valid socket fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                std::ptr::addr_of!(size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// quinn sends up to ten packets in one segmentation-offload (GSO) call,
/// and the kernel refuses a call of more than 64 KiB with EMSGSIZE, which
/// quinn-udp ignores (it expects that error only from MTU probes): the
/// packets are dropped silently, quinn counts them lost, and its black-hole
/// detection falls back to 1200-byte packets. So offload (which saves CPU
/// per 1500-byte packet) is used only where packets stay below a tenth of
/// 64 KiB; larger packets (loopback: 64 KiB, jumbo frames) go one per call.
const OFFLOAD_SAFE_MTU: u16 = 6_500;

fn transport_config(path: PathLimit) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Duration::from_secs(60).try_into().ok())
        .keep_alive_interval(Some(Duration::from_secs(15)))
        .datagram_receive_buffer_size(Some(16 << 20))
        .datagram_send_buffer_size(4 << 20)
        .congestion_controller_factory(Arc::new(Unlimited))
        .enable_segmentation_offload(path.offload());
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    // A burst that overflows a socket buffer looks like a black hole to
    // quinn, which then falls back to 1200-byte packets for a minute by
    // default: try the large size again soon.
    mtu.upper_bound(path.max_payload)
        .interval(Duration::from_secs(30))
        .black_hole_cooldown(Duration::from_secs(2));
    t.mtu_discovery_config(Some(mtu));
    t
}

/// This process's throwaway certificate and key (made once: every
/// incoming connection gets a server config of its own).
fn certificate() -> Result<&'static (CertificateDer<'static>, Vec<u8>)> {
    static CERT: OnceLock<(CertificateDer<'static>, Vec<u8>)> = OnceLock::new();
    if let Some(c) = CERT.get() {
        return Ok(c);
    }
    let cert = rcgen::generate_simple_self_signed(vec!["bitfountain".to_owned()])
        .context("cannot make a certificate")?;
    let made = (
        CertificateDer::from(cert.cert.der().to_vec()),
        cert.key_pair.serialize_der(),
    );
    Ok(CERT.get_or_init(|| made))
}

fn server_config(provider: Arc<CryptoProvider>, path: PathLimit) -> Result<ServerConfig> {
    let (cert, key) = certificate()?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .context("TLS certificate")?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut server = ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(tls).context("QUIC TLS")?,
    ));
    server.transport_config(Arc::new(transport_config(path)));
    Ok(server)
}

fn client_config(provider: Arc<CryptoProvider>, path: PathLimit) -> Result<ClientConfig> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls).context("QUIC TLS")?,
    ));
    client.transport_config(Arc::new(transport_config(path)));
    Ok(client)
}

/// Connects to a peer's QUIC endpoint and opens the protocol stream.
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
) -> Result<(quinn::Connection, QuicStream)> {
    let config = client_config(provider(), PathLimit::to(addr))?;
    let connecting = endpoint
        .connect_with(config, addr, "bitfountain")
        .context("QUIC connect")?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow!("QUIC handshake with {addr} timed out (UDP blocked?)"))??;
    let (send, recv) = conn.open_bi().await.context("QUIC stream")?;
    Ok((conn, tokio::io::join(recv, send)))
}

/// Accepts an incoming connection with the transport settings for its path.
pub fn accept(incoming: quinn::Incoming) -> Result<quinn::Connecting> {
    let config = server_config(provider(), PathLimit::to(incoming.remote_address()))?;
    incoming
        .accept_with(Arc::new(config))
        .context("QUIC accept")
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts the protocol stream of an incoming connection.
pub async fn accept_stream(conn: &quinn::Connection) -> Result<QuicStream> {
    let (send, recv) = tokio::time::timeout(CONNECT_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| anyhow!("no QUIC stream opened"))??;
    Ok(tokio::io::join(recv, send))
}

/// Accepts whatever certificate the peer shows, but still checks that the
/// handshake signatures are valid for it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A congestion controller that never limits: our datagram pacer decides
/// the rate, and the stream carries only small control messages.
#[derive(Debug, Clone, Copy)]
struct Unlimited;

/// Large enough never to bind, small enough to keep quinn's arithmetic sane.
const UNLIMITED_WINDOW: u64 = 1 << 40;

impl ControllerFactory for Unlimited {
    fn build(self: Arc<Self>, _now: std::time::Instant, _mtu: u16) -> Box<dyn Controller> {
        Box::new(Unlimited)
    }
}

impl Controller for Unlimited {
    fn on_congestion_event(
        &mut self,
        _now: std::time::Instant,
        _sent: std::time::Instant,
        _persistent: bool,
        _lost: u64,
    ) {
    }

    fn on_mtu_update(&mut self, _mtu: u16) {}

    fn window(&self) -> u64 {
        UNLIMITED_WINDOW
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(*self)
    }

    fn initial_window(&self) -> u64 {
        UNLIMITED_WINDOW
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_routes_allow_large_packets_without_offload() {
        let path = PathLimit::to("127.0.0.1:6881".parse().unwrap());
        assert_eq!(path.max_payload, 65_000);
        assert!(!path.offload());
        assert!(PathLimit::UNKNOWN.offload());
    }

    #[tokio::test]
    async fn stream_and_datagrams_work_on_loopback() {
        let server = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let incoming = server.accept().await.unwrap();
            let conn = accept(incoming).unwrap().await.unwrap();
            let mut stream = accept_stream(&conn).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(b"world").await.unwrap();
            let dg = conn.read_datagram().await.unwrap();
            let mut big = Vec::new();
            while let Ok(Ok(d)) =
                tokio::time::timeout(Duration::from_secs(2), conn.read_datagram()).await
            {
                big.push(d.len());
                if big.len() == 20 {
                    break;
                }
            }
            (buf, dg.len(), big)
        });
        let (conn, mut stream) = connect(&client, addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(b"hello").await.unwrap();
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"world");
        // The initial path allows about 1200-byte datagrams.
        let max = conn.max_datagram_size().unwrap();
        assert!(max >= 1100, "{max}");
        conn.send_datagram(bytes::Bytes::from(vec![7u8; 1000]))
            .unwrap();
        // On loopback MTU discovery goes up to 64 KiB packets, and a run of
        // them arrives whole (with segmentation offload, quinn's batches of
        // such packets were dropped: see OFFLOAD_SAFE_MTU).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while conn.max_datagram_size().unwrap_or(0) < 60_000 {
            assert!(std::time::Instant::now() < deadline, "MTU stayed small");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..20 {
            conn.send_datagram(bytes::Bytes::from(vec![9u8; 60_000]))
                .unwrap();
        }
        let (hello, len, big) = accept.await.unwrap();
        assert_eq!(&hello, b"hello");
        assert_eq!(len, 1000);
        assert_eq!(big, vec![60_000; 20], "datagrams lost on loopback");
    }
}
