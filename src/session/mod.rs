//! The swarm engine: a session listens for peers and runs torrents; each
//! torrent has a controller, an announcer and one task per peer.

pub mod announce;
pub mod choker;
pub mod coded;
pub mod controller;
pub mod magnet;
pub mod outer;
pub mod peer;
pub mod picker;
pub mod quic;
pub mod rate;
pub mod share;
pub mod status;
pub mod torrent;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use rand::distr::{Alphanumeric, SampleString};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wire::fountain::UplinkPacer;
use wire::{Bitfield, InfoHash, Metainfo, PeerId};

use crate::storage::{StartState, Storage};
use announce::UrlResolver;
use rate::RateLimiter;
use status::TorrentStatus;
use torrent::TorrentShared;

/// Whether to use fountain-coded transfer with peers that support it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CodedMode {
    /// Coded with coded peers, plain with everyone else.
    #[default]
    Auto,
    /// Plain BitTorrent only; the extension is not even advertised.
    Off,
    /// Coded peers only; legacy peers are dropped.
    Only,
}

/// Which transport coded peers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum CodedTransport {
    /// QUIC datagrams when both sides listen on UDP, else the TCP connection.
    #[default]
    Auto,
    /// QUIC (falls back to TCP if UDP is blocked).
    Quic,
    /// Coded messages over the TCP connection.
    Tcp,
}

/// How a session runs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Address to listen on (and connect from).
    pub bind_ip: IpAddr,
    /// Listen on the first free port of this range (the seeds used
    /// 6881-6889). `(0, 0)` lets the system choose.
    pub port_range: (u16, u16),
    /// The address reported to trackers (`--ip`), if not the one they see.
    pub announce_ip: Option<String>,
    pub peer_id: PeerId,
    pub max_peers: usize,
    /// Regular unchoke slots (one optimistic slot comes on top).
    pub upload_slots: usize,
    /// Bytes per second; 0 = unlimited.
    pub max_upload_rate: u64,
    pub max_download_rate: u64,
    /// TCP congestion control for peer connections (e.g. `cubic`, `bbr`);
    /// `None` keeps the system default. Benchmarks compare them per socket.
    pub tcp_congestion: Option<String>,
    pub coded: CodedMode,
    pub coded_transport: CodedTransport,
    /// `--seed-ratio`: once complete, upload at most this many times the
    /// torrent's size (`None`: seed until stopped).
    pub seed_ratio: Option<f64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_range: (6881, 6889),
            announce_ip: None,
            peer_id: new_peer_id(),
            max_peers: 80,
            upload_slots: 4,
            max_upload_rate: 0,
            max_download_rate: 0,
            tcp_congestion: None,
            coded: CodedMode::Auto,
            coded_transport: CodedTransport::Auto,
            seed_ratio: None,
        }
    }
}

/// A fresh Azureus-style peer id: `-BF0100-` and 12 random characters.
pub fn new_peer_id() -> PeerId {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-BF0100-");
    let tail = Alphanumeric.sample_string(&mut rand::rng(), 12);
    id[8..].copy_from_slice(tail.as_bytes());
    PeerId(id)
}

/// A listening node with its torrents.
pub struct Session {
    config: Arc<SessionConfig>,
    listen_addr: SocketAddr,
    torrents: Arc<Mutex<HashMap<InfoHash, Arc<TorrentShared>>>>,
    shutdown: CancellationToken,
    http: reqwest::Client,
    up_limit: Arc<RateLimiter>,
    down_limit: Arc<RateLimiter>,
    resolver: Option<UrlResolver>,
    /// QUIC endpoint for coded peers, on the UDP port of the same number.
    quic: Option<quinn::Endpoint>,
    /// Paces the sum of every connection's symbol datagrams.
    uplink: Arc<Mutex<UplinkPacer>>,
}

/// A running torrent.
#[derive(Clone)]
pub struct TorrentHandle {
    pub shared: Arc<TorrentShared>,
    pub start: StartState,
}

impl TorrentHandle {
    pub fn status(&self) -> TorrentStatus {
        self.shared.status()
    }

    /// Status snapshots published about once a second.
    pub fn watch(&self) -> watch::Receiver<TorrentStatus> {
        self.shared.status_tx.subscribe()
    }

    /// Adds peer addresses to try (besides what trackers return).
    pub fn add_peers(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        let mut st = self.shared.lock();
        for p in peers {
            st.known.entry(p).or_default();
        }
    }

    /// Resolves when every piece is verified and written.
    pub async fn wait_complete(&self) {
        loop {
            let notified = self.shared.completed.notified();
            if self.shared.is_complete() {
                return;
            }
            notified.await;
        }
    }
}

impl Session {
    /// Binds the listener on the first free port of the range.
    pub async fn start(config: SessionConfig) -> Result<Session> {
        let (low, high) = config.port_range;
        if low > high {
            bail!("--minport {low} is above --maxport {high}");
        }
        let mut listener = None;
        let mut last_error = None;
        for port in low..=high {
            match bind_listener(
                SocketAddr::new(config.bind_ip, port),
                config.tcp_congestion.as_deref(),
            ) {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                // Only a taken port moves on to the next one.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => bail!("cannot listen on {}:{port}: {e}", config.bind_ip),
            }
        }
        let Some(listener) = listener else {
            bail!(
                "no free port in {low}-{high} on {}: {}",
                config.bind_ip,
                last_error.map_or_else(|| "no port tried".to_owned(), |e| e.to_string())
            );
        };
        let listen_addr = listener.local_addr()?;
        let http = announce::http_client(Some(config.bind_ip));
        // Coded peers reach us over QUIC on the UDP port of the same number;
        // without it they use the TCP connection.
        let quic = match (config.coded, config.coded_transport) {
            (CodedMode::Off, _) | (_, CodedTransport::Tcp) => None,
            _ => match quic::bind(listen_addr) {
                Ok(endpoint) => Some(endpoint),
                Err(e) => {
                    tracing::warn!("no QUIC for coded peers ({e:#}); they will use TCP");
                    None
                }
            },
        };
        let session = Session {
            up_limit: Arc::new(RateLimiter::new(config.max_upload_rate)),
            down_limit: Arc::new(RateLimiter::new(config.max_download_rate)),
            uplink: Arc::new(Mutex::new(UplinkPacer::new(
                coded::link::datagram_pacing(config.max_upload_rate),
                std::time::Instant::now(),
            ))),
            config: Arc::new(config),
            listen_addr,
            torrents: Arc::default(),
            shutdown: CancellationToken::new(),
            http,
            resolver: None,
            quic,
        };
        tokio::spawn(accept_loop(
            listener,
            session.torrents.clone(),
            session.shutdown.clone(),
        ));
        if let Some(endpoint) = &session.quic {
            tokio::spawn(quic_accept_loop(
                endpoint.clone(),
                session.torrents.clone(),
                session.shutdown.clone(),
            ));
        }
        tracing::info!(%listen_addr, "listening for peers");
        Ok(session)
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// What announcing for a magnet link (before the torrent exists) needs.
    pub(crate) fn announce_ctx(&self) -> magnet::AnnounceCtx {
        magnet::AnnounceCtx {
            http: self.http.clone(),
            peer_id: self.config.peer_id,
            port: self.listen_addr.port(),
            announce_ip: self.config.announce_ip.clone(),
        }
    }

    /// Resolves announce URLs before use (Kenosis).
    pub fn set_url_resolver(&mut self, resolver: UrlResolver) {
        self.resolver = Some(resolver);
    }

    /// Opens the torrent's data at `saveas`, checks what is already there,
    /// and starts downloading or seeding. `on_check` reports bytes checked.
    pub async fn add_torrent(
        &self,
        meta: Metainfo,
        saveas: PathBuf,
        on_check: impl FnMut(u64) + Send + 'static,
    ) -> Result<TorrentHandle> {
        let info = Arc::new(meta.info.clone());
        let open_info = info.clone();
        let path = saveas.clone();
        let (storage, have, start) = tokio::task::spawn_blocking(move || -> Result<_> {
            let storage = Storage::open(&open_info, &path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let (have, start) = storage
                .check_existing(on_check)
                .context("cannot check existing data")?;
            let have_repair = match storage.repair() {
                Some(store) => store
                    .check()
                    .with_context(|| format!("cannot check {}", store.path().display()))?,
                None => Bitfield::new(0),
            };
            Ok((storage, (have, have_repair), start))
        })
        .await??;
        let (have, have_repair) = have;
        match &start {
            StartState::Resumed { rechecked } => {
                tracing::info!(
                    pieces = have.count(),
                    rechecked,
                    "resumed from {}",
                    storage.resume_path().display()
                )
            }
            StartState::Rechecked { reason } => {
                tracing::info!(
                    pieces = have.count(),
                    "checked existing data (resume data not used: {reason})"
                )
            }
        }
        let shared = TorrentShared::new(torrent::TorrentParts {
            info: info.clone(),
            trackers: meta.tracker_tiers(),
            storage: Arc::new(storage),
            config: self.config.clone(),
            listen_port: self.listen_addr.port(),
            have,
            have_repair,
            up_limit: self.up_limit.clone(),
            down_limit: self.down_limit.clone(),
            shutdown: self.shutdown.child_token(),
            quic: self.quic.clone(),
            uplink: self.uplink.clone(),
        });
        self.torrents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.info_hash, shared.clone());
        // A complete copy of a torrent with an outer code serves its repair
        // pieces too: build those not on disk yet (in the background).
        shared.generate_repair_pieces();
        let connector = {
            let torrent = shared.clone();
            let config = self.config.clone();
            move |addr: SocketAddr| {
                tokio::spawn(connect_peer(torrent.clone(), addr, config.clone()));
            }
        };
        tokio::spawn(controller::run_controller(shared.clone(), connector));
        tokio::spawn(announce::run_announcer(
            shared.clone(),
            self.http.clone(),
            self.resolver.clone(),
        ));
        let _ = shared.status_tx.send(shared.status());
        Ok(TorrentHandle { shared, start })
    }

    /// Stops every torrent: says `stopped` to trackers (briefly), records
    /// resume data, closes connections.
    pub async fn shutdown(&self) {
        let torrents: Vec<_> = self
            .torrents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        self.shutdown.cancel();
        // Give announcers and the final resume flush a moment.
        for t in torrents {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            while tokio::time::Instant::now() < deadline && !t.lock().peers.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let storage = t.storage.clone();
            let have = t.lock().picker.done().clone();
            let _ = tokio::task::spawn_blocking(move || storage.sync_and_record(&have)).await;
        }
    }
}

/// A listener; accepted connections inherit its congestion control.
fn bind_listener(addr: SocketAddr, congestion: Option<&str>) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    set_congestion(&socket, congestion)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Sets TCP congestion control on a socket (Linux `TCP_CONGESTION`).
fn set_congestion(socket: &tokio::net::TcpSocket, congestion: Option<&str>) -> std::io::Result<()> {
    if let Some(name) = congestion {
        socket2::SockRef::from(socket)
            .set_tcp_congestion(name.as_bytes())
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot use TCP congestion control {name:?}: {e}"),
                )
            })?;
    }
    Ok(())
}

/// Incoming connections still owing their handshake, counted in all and
/// per address.
#[derive(Clone, Default)]
struct PendingHandshakes(Arc<Mutex<HashMap<std::net::IpAddr, usize>>>);

/// Most incoming connections waiting for their handshake at once.
const MAX_PENDING_HANDSHAKES: usize = 128;
/// Most of them from one address.
const MAX_PENDING_HANDSHAKES_PER_IP: usize = 8;

/// A place among the pending handshakes, given back when dropped.
struct PendingSlot {
    ip: std::net::IpAddr,
    all: PendingHandshakes,
}

impl PendingHandshakes {
    fn admit(&self, ip: std::net::IpAddr) -> Option<PendingSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = map.values().sum();
        let mine = map.entry(ip).or_default();
        if total >= MAX_PENDING_HANDSHAKES || *mine >= MAX_PENDING_HANDSHAKES_PER_IP {
            if *mine == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        Some(PendingSlot {
            ip,
            all: self.clone(),
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut map = self.all.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    torrents: Arc<Mutex<HashMap<InfoHash, Arc<TorrentShared>>>>,
    shutdown: CancellationToken,
) {
    let handshakes = PendingHandshakes::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (mut stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Connections that have not sent their handshake yet each hold a
        // socket for up to the handshake timeout: bounded in all and per
        // address, so silent connections cannot use up our descriptors.
        let Some(pending) = handshakes.admit(addr.ip()) else {
            tracing::debug!(peer = %addr, "dropped: too many handshakes in progress");
            continue;
        };
        let torrents = torrents.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let theirs = match peer::read_handshake(&mut stream).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(peer = %addr, "dropped: {e:#}");
                    return;
                }
            };
            drop(pending);
            let torrent = torrents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&theirs.info_hash)
                .cloned();
            let Some(torrent) = torrent else {
                tracing::debug!(peer = %addr, "dropped: unknown torrent {}", theirs.info_hash);
                return;
            };
            if torrent.lock().banned.contains(&addr.ip()) {
                return;
            }
            if let Err(e) = peer::run_peer(torrent, stream, addr, false, Some(theirs), None).await {
                tracing::debug!(peer = %addr, "disconnected: {e:#}");
            }
        });
    }
}

/// Accepts coded peers over QUIC: the BitTorrent handshake on the first
/// stream says which torrent they want.
async fn quic_accept_loop(
    endpoint: quinn::Endpoint,
    torrents: Arc<Mutex<HashMap<InfoHash, Arc<TorrentShared>>>>,
    shutdown: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            _ = shutdown.cancelled() => {
                endpoint.close(0u32.into(), b"shutting down");
                return;
            }
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
        };
        let torrents = torrents.clone();
        tokio::spawn(async move {
            let result = async {
                let conn = tokio::time::timeout(quic::CONNECT_TIMEOUT, quic::accept(incoming)?)
                    .await
                    .map_err(|_| anyhow::anyhow!("QUIC handshake timed out"))??;
                let addr = conn.remote_address();
                let mut stream = quic::accept_stream(&conn).await?;
                let theirs = peer::read_handshake(&mut stream).await?;
                let torrent = torrents
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&theirs.info_hash)
                    .cloned();
                let torrent = torrent
                    .ok_or_else(|| anyhow::anyhow!("unknown torrent {}", theirs.info_hash))?;
                if torrent.lock().banned.contains(&addr.ip()) {
                    anyhow::bail!("banned");
                }
                peer::start_peer(torrent, stream, addr, false, Some(theirs), Some(conn))
                    .await?
                    .run()
                    .await
            }
            .await;
            if let Err(e) = result {
                tracing::debug!("QUIC peer ended: {e:#}");
            }
        });
    }
}

async fn connect_peer(torrent: Arc<TorrentShared>, addr: SocketAddr, config: Arc<SessionConfig>) {
    let started = async {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        set_congestion(&socket, config.tcp_congestion.as_deref())?;
        if !config.bind_ip.is_unspecified() && config.bind_ip.is_ipv4() == addr.is_ipv4() {
            socket.bind(SocketAddr::new(config.bind_ip, 0))?;
        }
        let stream: TcpStream =
            tokio::time::timeout(std::time::Duration::from_secs(10), socket.connect(addr))
                .await
                .map_err(|_| anyhow::anyhow!("connect timed out"))??;
        stream.set_nodelay(true)?;
        peer::start_peer(torrent.clone(), stream, addr, true, None, None).await
    }
    .await;
    torrent.attempt_done(addr, started.is_ok());
    let result = match started {
        Ok(peer) => peer.run().await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::debug!(peer = %addr, "connection ended: {e:#}");
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn pending_handshakes_are_bounded_in_all_and_per_address() {
        let pending = PendingHandshakes::default();
        let one: std::net::IpAddr = [10, 0, 0, 1].into();
        let mine: Vec<_> = (0..MAX_PENDING_HANDSHAKES_PER_IP)
            .map(|_| pending.admit(one).unwrap())
            .collect();
        assert!(pending.admit(one).is_none(), "per-address cap");
        drop(mine);
        assert!(pending.admit(one).is_some(), "slots come back");
        let all: Vec<_> = (0..MAX_PENDING_HANDSHAKES)
            .map(|i| {
                let ip: std::net::IpAddr = [10, 1, (i / 250) as u8, (i % 250) as u8].into();
                pending.admit(ip).unwrap()
            })
            .collect();
        assert!(pending.admit([10, 2, 0, 1].into()).is_none(), "total cap");
        drop(all);
        assert!(pending.0.lock().unwrap().is_empty());
    }
}
