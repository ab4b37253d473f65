//! Starting from a magnet link: find peers (the link's `x.pe` peers, its
//! `tr` trackers, `--peer`), then fetch the info dictionary from them over
//! BEP 9 `ut_metadata`, one [`MetadataAssembly`] per peer so a peer sending
//! bad bytes fails alone. A few peers are asked at once; the first verified
//! copy wins.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use wire::peer::{
    Assembled, Decoded, ExtendedHandshake, Handshake, Message, MessageDecoder, MetadataAssembly,
    MetadataMessage, Reserved, EXT_HANDSHAKE_ID, METADATA_EXTENSION,
};
use wire::tracker::{AnnounceRequest, Event};
use wire::{Info, Limits, Magnet, Metainfo};

use super::peer::{read_handshake, METADATA_ID};
use super::Session;

/// Peers asked for the metadata at the same time.
const PARALLEL_PEERS: usize = 4;
/// One peer gets this long to hand over the whole metadata.
const PER_PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before trying again peers that all failed.
const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Trackers are asked again this often while no peer has given the metadata.
const REANNOUNCE: Duration = Duration::from_secs(15);

/// The torrent a magnet link names, once its metadata arrived, and every
/// peer address learnt on the way (for the download to start with).
pub struct Resolved {
    pub meta: Metainfo,
    pub peers: Vec<SocketAddr>,
}

/// Fetches the metadata for `magnet` within `timeout`. `note` hears about
/// progress in words.
pub async fn fetch_metadata(
    session: &Session,
    magnet: &Magnet,
    extra_peers: &[SocketAddr],
    timeout: Duration,
    mut note: impl FnMut(&str),
) -> Result<Resolved> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut known: Vec<SocketAddr> = Vec::new();
    let mut tried: HashSet<SocketAddr> = HashSet::new();
    for p in magnet.peers.iter().chain(extra_peers) {
        if !known.contains(p) {
            known.push(*p);
        }
    }
    let (peer_tx, mut peer_rx) = mpsc::unbounded_channel::<Vec<SocketAddr>>();
    let announcer = tokio::spawn(announce_loop(
        session.announce_ctx(),
        magnet.clone(),
        peer_tx,
    ));
    let _stop_announcer = AbortOnDrop(announcer);
    let mut attempts: JoinSet<(SocketAddr, Result<Vec<u8>>)> = JoinSet::new();
    let mut failures = 0usize;
    // When every known peer was tried and failed, they are tried again
    // after a pause (a busy peer may serve later), never in a tight loop.
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        // Start attempts with peers not tried yet.
        while attempts.len() < PARALLEL_PEERS {
            let Some(addr) = known.iter().find(|a| !tried.contains(a)).copied() else {
                break;
            };
            tried.insert(addr);
            let (info_hash, peer_id, bind) = (
                magnet.info_hash,
                session.config.peer_id,
                session.config.bind_ip,
            );
            attempts.spawn(async move {
                let got = tokio::time::timeout(
                    PER_PEER_TIMEOUT,
                    fetch_from(addr, info_hash, peer_id, bind),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow!("timed out")));
                (addr, got)
            });
        }
        if attempts.is_empty() && retry_at.is_none() && !known.is_empty() {
            retry_at = Some(tokio::time::Instant::now() + RETRY_PAUSE);
        }
        tokio::select! {
            _ = sleep_until_opt(retry_at) => {
                retry_at = None;
                tried.clear();
            }
            _ = tokio::time::sleep_until(deadline) => bail!(
                "no peer gave the metadata within {timeout:?} ({} peers known, {failures} failed)",
                known.len()
            ),
            Some(peers) = peer_rx.recv() => {
                for p in peers {
                    if !known.contains(&p) && known.len() < Limits::DEFAULT.tracker_max_response_peers {
                        known.push(p);
                    }
                }
            }
            Some(joined) = attempts.join_next(), if !attempts.is_empty() => {
                let Ok((addr, got)) = joined else { continue };
                match got.and_then(|raw| {
                    Info::from_bytes(&raw, &Limits::DEFAULT).context("the metadata is not a valid info dictionary")
                }) {
                    Ok(info) => {
                        note(&format!("metadata ({} bytes) from {addr}", info.raw.len()));
                        let tiers: Vec<Vec<String>> =
                            magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
                        let meta = Metainfo {
                            announce: magnet.trackers.first().cloned(),
                            announce_list: if tiers.len() > 1 { tiers } else { Vec::new() },
                            comment: None,
                            created_by: None,
                            creation_date: None,
                            info,
                        };
                        return Ok(Resolved { meta, peers: known });
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::info!(peer = %addr, "no metadata from this peer: {e:#}");
                    }
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the announce loop needs from the session.
pub(crate) struct AnnounceCtx {
    pub(crate) http: reqwest::Client,
    pub(crate) peer_id: wire::PeerId,
    pub(crate) port: u16,
    pub(crate) announce_ip: Option<String>,
}

/// Asks every `tr` tracker for peers, now and every [`REANNOUNCE`].
async fn announce_loop(
    ctx: AnnounceCtx,
    magnet: Magnet,
    tx: mpsc::UnboundedSender<Vec<SocketAddr>>,
) {
    if magnet.trackers.is_empty() {
        return;
    }
    let request = AnnounceRequest {
        info_hash: magnet.info_hash,
        peer_id: ctx.peer_id,
        port: ctx.port,
        uploaded: 0,
        downloaded: 0,
        // Unknown until the metadata arrives; anything but 0 (a seed).
        left: 1 << 14,
        event: Event::Started,
        compact: true,
        no_peer_id: true,
        numwant: Some(50),
        ip: ctx.announce_ip.clone(),
        key: None,
        tracker_id: None,
    };
    loop {
        for url in &magnet.trackers {
            match super::announce::peers_from(&ctx.http, url, &request).await {
                Ok(peers) => {
                    tracing::debug!(tracker = %url, peers = peers.len(), "peers for the magnet link");
                    if tx.send(peers).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("announce to {url} failed: {e:#}"),
            }
        }
        tokio::time::sleep(REANNOUNCE).await;
    }
}

/// Connects to one peer and fetches the whole metadata from it.
async fn fetch_from(
    addr: SocketAddr,
    info_hash: wire::InfoHash,
    peer_id: wire::PeerId,
    bind: std::net::IpAddr,
) -> Result<Vec<u8>> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if !bind.is_unspecified() && bind.is_ipv4() == addr.is_ipv4() {
        socket.bind(SocketAddr::new(bind, 0))?;
    }
    let mut stream = socket.connect(addr).await.context("cannot connect")?;
    stream.set_nodelay(true)?;
    let ours = Handshake {
        reserved: Reserved::ours(),
        info_hash,
        peer_id,
    };
    stream.write_all(&ours.encode()).await?;
    let theirs = read_handshake(&mut stream).await?;
    if theirs.info_hash != info_hash {
        bail!("peer answered for another torrent");
    }
    if theirs.peer_id == peer_id {
        bail!("connected to ourselves");
    }
    if !theirs.reserved.supports_extension_protocol() {
        bail!("peer does not speak the extension protocol (BEP 10)");
    }
    let hello = ExtendedHandshake {
        extensions: [(METADATA_EXTENSION.to_owned(), METADATA_ID)].into(),
        client: Some(concat!("bitfountain ", env!("CARGO_PKG_VERSION")).to_owned()),
        ..ExtendedHandshake::default()
    };
    let mut out = BytesMut::new();
    Message::Extended {
        id: EXT_HANDSHAKE_ID,
        payload: Bytes::from(hello.encode()),
    }
    .encode(&mut out);
    // With the fast extension on both sides a peer must say what it has.
    if theirs.reserved.supports_fast() {
        Message::HaveNone.encode(&mut out);
    }
    stream.write_all(&out).await?;

    let limits = Limits::DEFAULT;
    let decoder = MessageDecoder::new(limits.max_message_length);
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut assembly: Option<(MetadataAssembly, u8)> = None;
    loop {
        let msg = loop {
            match decoder.decode(&mut buf)? {
                Decoded::Message(m) => break m,
                Decoded::NeedMore(_) => {
                    if stream.read_buf(&mut buf).await? == 0 {
                        bail!("closed by peer");
                    }
                }
            }
        };
        let Message::Extended { id, payload } = msg else {
            continue;
        };
        if id == EXT_HANDSHAKE_ID {
            let hs = ExtendedHandshake::decode(&payload, &limits)?;
            let their_id = hs
                .id_of(METADATA_EXTENSION)
                .ok_or_else(|| anyhow!("peer does not serve metadata (no ut_metadata)"))?;
            let size = hs
                .metadata_size
                .ok_or_else(|| anyhow!("peer did not say the metadata size"))?;
            assembly = Some((MetadataAssembly::new(info_hash, size, &limits)?, their_id));
        } else if id == METADATA_ID {
            let Some((a, _)) = assembly.as_mut() else {
                continue;
            };
            let Ok(msg) = MetadataMessage::decode(&payload, &limits) else {
                continue;
            };
            if let Assembled::Done(raw) = a.on_message(msg)? {
                return Ok(raw);
            }
        } else {
            continue;
        }
        // Keep the allowed number of requests in flight.
        if let Some((a, their_id)) = assembly.as_mut() {
            let mut out = BytesMut::new();
            while let Some(req) = a.next_request() {
                Message::Extended {
                    id: *their_id,
                    payload: Bytes::from(req.encode()),
                }
                .encode(&mut out);
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
            }
        }
    }
}
