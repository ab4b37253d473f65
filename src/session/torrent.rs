//! One torrent at run time: shared state behind a short-held lock, the
//! controller task (choking, connecting, resume flushes, completion), and
//! what happens when a piece completes (verify, write, HAVE, strikes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use wire::{Bitfield, BlockRef, Info, PeerId, BLOCK_SIZE};

use super::coded::state::CodedState;
use super::picker::{CompletedPiece, PeerKey, Picker};
use super::rate::{RateLimiter, RateMeter};
use super::status::{PeerStatus, TorrentPhase, TorrentStatus};
use super::{CodedMode, SessionConfig};
use crate::storage::Storage;

/// Confirmed bad blocks before a peer's address is banned.
const BAN_STRIKES: u32 = 2;
/// Failed copies kept for attribution.
const MAX_FAILED_COPIES: usize = 8;

/// A command from the torrent to one peer task.
#[derive(Debug, Clone)]
pub enum PeerCmd {
    /// We have a new piece: tell the peer.
    Have(u32),
    /// We hold a new repair piece (its index among the repair pieces): tell
    /// the peer if it is coded.
    HaveRepair(u32),
    Choke,
    Unchoke,
    /// Another peer delivered this block first (endgame).
    Cancel(BlockRef),
    /// Pieces became available to request (a failure, a departure).
    Refill,
    /// Disconnect with this reason (banned, shutting down).
    Close(String),
    /// A piece it was sending us symbols of is complete: tell it to stop.
    CodedDone(u32),
    /// A piece it took from our suggestions is now held by another peer
    /// too: it may be suggested more (`coded::suggest`).
    Replicated,
    /// The connection is now coded (its ext handshake arrived).
    CodedLinked,
}

/// Byte counters of one peer, shared with its task.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Payload received as plain blocks.
    pub down_plain: AtomicU64,
    /// Payload received as coded symbols.
    pub down_coded: AtomicU64,
    pub up: AtomicU64,
    /// Extended messages sent other than the extended handshake: a legacy
    /// peer must see none it did not negotiate.
    pub extended_sent: AtomicU64,
}

impl PeerCounters {
    pub fn down_total(&self) -> u64 {
        self.down_plain.load(Ordering::Relaxed) + self.down_coded.load(Ordering::Relaxed)
    }
}

/// What the torrent knows about a connected peer.
pub struct PeerEntry {
    pub addr: SocketAddr,
    pub peer_id: PeerId,
    pub client: String,
    pub tx: mpsc::UnboundedSender<PeerCmd>,
    pub counters: Arc<PeerCounters>,
    pub pieces: Bitfield,
    /// Repair pieces of the outer code it holds (coded peers only).
    pub repair: Bitfield,
    pub interested: bool,
    pub choked: bool,
    pub outgoing: bool,
    pub down_meter: RateMeter,
    pub up_meter: RateMeter,
    pub connected_at: Instant,
    /// Runs over QUIC (else TCP).
    pub quic: bool,
    /// Speaks the coded extension with us.
    pub coded: bool,
}

/// An address we may connect to, and when to try it next.
#[derive(Debug, Clone, Copy, Default)]
pub struct KnownPeer {
    /// `None`: try now.
    pub next_attempt: Option<Instant>,
    /// Failed attempts in a row.
    pub failures: u32,
}

/// First retry delay after a failed connection; it doubles per failure.
const RETRY_FIRST: Duration = Duration::from_secs(5);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Completed pieces waiting for hash and write before we stop requesting
/// more: bounds the memory held by received pieces.
pub const MAX_VERIFY_BACKLOG: usize = 8;

/// A copy of a piece that failed its hash, kept until a good copy shows
/// which blocks were wrong and so who sent them.
struct FailedCopy {
    data: Vec<u8>,
    senders: Vec<IpAddr>,
}

/// State behind the torrent's lock.
pub struct TorrentState {
    pub picker: Picker,
    pub peers: HashMap<PeerKey, PeerEntry>,
    next_key: PeerKey,
    /// Addresses learnt from trackers or given by the user.
    pub known: HashMap<SocketAddr, KnownPeer>,
    pub connecting: HashSet<SocketAddr>,
    /// Our own listen addresses as seen by others (self-connections).
    pub own_addrs: HashSet<SocketAddr>,
    pub banned: HashSet<IpAddr>,
    strikes: HashMap<IpAddr, u32>,
    failed: HashMap<u32, FailedCopy>,
    /// Set when writing failed (e.g. disk full); downloading pauses.
    pub disk_error: Option<String>,
    /// Pieces recorded in the resume data.
    pub(super) recorded: u32,
    pub(super) optimistic: Option<PeerKey>,
    pub completed_at: Option<Instant>,
    pub phase: TorrentPhase,
    /// Reception of pieces as symbols; `None` when coded transfer is off.
    pub coded: Option<CodedState>,
    /// Coded pieces that failed their hash, kept until a good copy names
    /// the poisoners.
    pub failed_coded: HashMap<u32, codec::HashFailure>,
    /// Rebuilding from and generating the outer code.
    pub outer: super::outer::OuterProgress,
    /// Times each piece (original, then repair) was suggested to a coded
    /// peer while seeding (`coded::suggest`).
    pub suggested: Vec<u32>,
    /// Pieces (original, then repair) a coded peer has asked us symbols
    /// of: a suggestion not yet asked for may be given to another peer.
    pub asked_of_us: Vec<bool>,
    /// Pieces (coded numbering) a peer took from our suggestions that no
    /// other peer has announced yet, with the peer: lost if it leaves
    /// with us (`coded::suggest`).
    pub held_alone: HashMap<u32, PeerKey>,
}

/// Everything a torrent's tasks share.
pub struct TorrentShared {
    pub info: Arc<Info>,
    pub trackers: Vec<Vec<String>>,
    pub storage: Arc<Storage>,
    pub config: Arc<SessionConfig>,
    pub listen_port: u16,
    pub state: Mutex<TorrentState>,
    /// Payload uploaded, and `--seed-ratio`'s limit on it.
    pub upload: super::share::UploadBudget,
    pub downloaded: AtomicU64,
    pub wasted: AtomicU64,
    /// Useful payload received as plain blocks and as coded symbols, over
    /// every peer ever connected.
    pub received_plain: AtomicU64,
    pub received_coded: AtomicU64,
    pub up_limit: Arc<RateLimiter>,
    pub down_limit: Arc<RateLimiter>,
    /// Completed pieces being hashed and written.
    pub verifying: std::sync::atomic::AtomicUsize,
    /// The download made no progress lately (set by the stall log): each
    /// peer task then says, at debug level, why it asks its peer nothing.
    pub stalled: std::sync::atomic::AtomicBool,
    /// Pieces being read ahead for symbol requests (`prefetch_symbols`).
    pub prefetching: std::sync::atomic::AtomicUsize,
    pub rechoke: Notify,
    pub completed: Notify,
    /// Woken (all waiters) whenever a piece is verified and written: reads
    /// of the mounted torrent wait on it.
    pub piece_done: Notify,
    pub shutdown: CancellationToken,
    pub status_tx: watch::Sender<TorrentStatus>,
    cache: Mutex<VecDeque<(u32, Bytes)>>,
    /// Pieces being read from the disk for serving, so that tasks wanting
    /// the same piece at once (a sender and its read-ahead, several peers)
    /// share one read.
    reading: Mutex<HashMap<u32, Arc<tokio::sync::OnceCell<Bytes>>>>,
    /// Encoders of pieces we serve repair symbols of.
    pub encoders: Mutex<codec::EncoderCache>,
    pub quic: Option<quinn::Endpoint>,
    /// The session's pacer of all symbol datagrams together.
    pub uplink: Arc<Mutex<wire::fountain::UplinkPacer>>,
    started: Instant,
}

/// What a torrent starts from.
pub struct TorrentParts {
    pub info: Arc<Info>,
    pub trackers: Vec<Vec<String>>,
    pub storage: Arc<Storage>,
    pub config: Arc<SessionConfig>,
    pub listen_port: u16,
    /// Pieces verified on disk at start.
    pub have: Bitfield,
    /// Repair pieces of the outer code on disk at start (empty without one).
    pub have_repair: Bitfield,
    pub up_limit: Arc<RateLimiter>,
    pub down_limit: Arc<RateLimiter>,
    pub shutdown: CancellationToken,
    /// The session's QUIC endpoint, when it listens on UDP.
    pub quic: Option<quinn::Endpoint>,
    pub uplink: Arc<Mutex<wire::fountain::UplinkPacer>>,
}

impl TorrentShared {
    pub fn new(parts: TorrentParts) -> Arc<Self> {
        let TorrentParts {
            info,
            trackers,
            storage,
            config,
            listen_port,
            have,
            have_repair,
            up_limit,
            down_limit,
            shutdown,
            quic,
            uplink,
        } = parts;
        let complete = have.is_complete();
        // Nothing counts as recorded yet: the first flush writes the resume
        // file even when no piece arrives, so one found void (truncated,
        // foreign, missing) is replaced by what the re-check found instead
        // of forcing a re-check on every start.
        let recorded = u32::MAX;
        // Repair pieces help only a peer that can rebuild from them; a
        // torrent too large to rebuild in memory is traded without them.
        let rebuildable = info.geometry.total_length() <= super::outer::MAX_REBUILD_BYTES;
        if storage.repair().is_some() && !rebuildable {
            tracing::info!("too large to rebuild from its outer code: repair pieces not traded");
        }
        let (have_repair, repair) = match storage.repair() {
            Some(r) if rebuildable => (have_repair, (r.count(), r.piece_len())),
            _ => (Bitfield::new(0), (0, 0)),
        };
        let picker = Picker::new(info.geometry, have).with_repair(have_repair);
        // Coded transfer needs the piece size to suit RaptorQ; a torrent that
        // does not simply stays plain.
        let coded = match (
            config.coded,
            CodedState::new(info.geometry, repair, &wire::Limits::DEFAULT),
        ) {
            (CodedMode::Off, _) => None,
            (_, Ok(c)) => Some(c),
            (_, Err(e)) => {
                tracing::info!("coded transfer unavailable for this torrent: {e:#}");
                None
            }
        };
        let (status_tx, _) = watch::channel(TorrentStatus::default());
        let upload =
            super::share::UploadBudget::new(config.seed_ratio, info.geometry.total_length());
        Arc::new(TorrentShared {
            trackers,
            storage,
            config,
            listen_port,
            state: Mutex::new(TorrentState {
                picker,
                peers: HashMap::new(),
                next_key: 1,
                known: HashMap::new(),
                connecting: HashSet::new(),
                own_addrs: HashSet::new(),
                banned: HashSet::new(),
                strikes: HashMap::new(),
                failed: HashMap::new(),
                disk_error: None,
                recorded,
                optimistic: None,
                coded,
                failed_coded: HashMap::new(),
                outer: Default::default(),
                suggested: Vec::new(),
                asked_of_us: Vec::new(),
                held_alone: HashMap::new(),
                completed_at: complete.then(Instant::now),
                phase: if complete {
                    TorrentPhase::Seeding
                } else {
                    TorrentPhase::Downloading
                },
            }),
            info,
            upload,
            downloaded: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
            received_plain: AtomicU64::new(0),
            received_coded: AtomicU64::new(0),
            up_limit,
            down_limit,
            verifying: std::sync::atomic::AtomicUsize::new(0),
            stalled: std::sync::atomic::AtomicBool::new(false),
            prefetching: std::sync::atomic::AtomicUsize::new(0),
            rechoke: Notify::new(),
            completed: Notify::new(),
            piece_done: Notify::new(),
            shutdown,
            status_tx,
            cache: Mutex::new(VecDeque::new()),
            reading: Mutex::new(HashMap::new()),
            encoders: Mutex::new(codec::EncoderCache::new(64 << 20)),
            quic,
            uplink,
            started: Instant::now(),
        })
    }

    /// Counts payload handed to a peer; past `--seed-ratio`'s share of a
    /// complete torrent, [`UploadBudget::reached`](super::share::UploadBudget::reached)
    /// tells peer tasks to send no more. Call without the state lock.
    pub fn record_upload(&self, bytes: u64) {
        self.upload
            .record(bytes, || self.lock().completed_at.is_some());
    }

    pub fn lock(&self) -> MutexGuard<'_, TorrentState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session's uplink pacer (shared by every torrent's datagrams).
    pub fn lock_uplink(&self) -> MutexGuard<'_, wire::fountain::UplinkPacer> {
        self.uplink.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_complete(&self) -> bool {
        self.lock().picker.done().is_complete()
    }

    /// Registers a connected peer; `None` when it must not stay (banned,
    /// already connected to that peer id, too many peers).
    pub fn register_peer(&self, mut entry: PeerEntry) -> Option<PeerKey> {
        let mut st = self.lock();
        if st.banned.contains(&entry.addr.ip()) || st.peers.len() >= self.config.max_peers {
            return None;
        }
        if let Some((&old, old_entry)) = st.peers.iter().find(|(_, p)| p.peer_id == entry.peer_id) {
            // The same peer over QUIC replaces its TCP connection (the
            // coded upgrade); any other duplicate is refused.
            if !entry.quic || old_entry.quic {
                return None;
            }
            let _ = old_entry.tx.send(PeerCmd::Close("moved to QUIC".into()));
            Self::forget(&mut st, old);
        }
        let key = st.next_key;
        st.next_key += 1;
        entry.connected_at = Instant::now();
        st.peers.insert(key, entry);
        Some(key)
    }

    /// Forgets a peer: its pieces and requests go back to the picker.
    pub fn unregister_peer(&self, key: PeerKey) {
        let mut st = self.lock();
        if Self::forget(&mut st, key) {
            let others: Vec<_> = st.peers.values().map(|p| p.tx.clone()).collect();
            drop(st);
            for tx in others {
                let _ = tx.send(PeerCmd::Refill);
            }
            self.rechoke.notify_one();
        }
    }

    /// Removes a peer's entry, its pieces from availability and its
    /// requests and symbol assignments; false if it was already gone.
    fn forget(st: &mut TorrentState, key: PeerKey) -> bool {
        let Some(entry) = st.peers.remove(&key) else {
            return false;
        };
        st.picker.remove_peer(key, &entry.pieces);
        st.picker.remove_peer_repair(&entry.repair);
        if let Some(coded) = st.coded.as_mut() {
            coded.peer_gone(key);
        }
        if st.optimistic == Some(key) {
            st.optimistic = None;
        }
        st.held_alone.retain(|_, k| *k != key);
        true
    }

    /// A whole piece for serving blocks, from the cache or the disk.
    pub async fn piece_data(self: &Arc<Self>, piece: u32) -> std::io::Result<Bytes> {
        if let Some(data) = self.cached(piece) {
            return Ok(data);
        }
        let cell = self
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(piece)
            .or_default()
            .clone();
        // The first caller reads; the others wait for its result (or take
        // over if it is dropped or fails).
        let result = cell
            .get_or_try_init(|| async {
                let storage = self.storage.clone();
                let data = tokio::task::spawn_blocking(move || storage.read_piece(piece))
                    .await
                    .map_err(std::io::Error::other)??;
                let data = Bytes::from(data);
                self.cache_piece(piece, data.clone());
                Ok::<_, std::io::Error>(data)
            })
            .await
            .cloned();
        let mut reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        if reading.get(&piece).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            reading.remove(&piece);
        }
        result
    }

    /// Whether `piece` is in the cache (without touching its recency).
    pub fn is_cached(&self, piece: u32) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.iter().any(|(p, _)| *p == piece)
    }

    /// Whether `piece` is being read from the disk for serving.
    pub fn is_reading(&self, piece: u32) -> bool {
        let reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        reading.contains_key(&piece)
    }

    fn cached(&self, piece: u32) -> Option<Bytes> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let at = cache.iter().position(|(p, _)| *p == piece)?;
        let entry = cache.remove(at)?;
        let data = entry.1.clone();
        cache.push_front(entry);
        Some(data)
    }

    fn cache_piece(&self, piece: u32, data: Bytes) {
        // About 16 MiB of recent pieces: what several peers are fetching,
        // and what their queued requests will fetch next (prefetched).
        let capacity = ((16usize << 20) / self.info.geometry.piece_length() as usize).clamp(2, 512);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(p, _)| *p != piece);
        cache.push_front((piece, data));
        cache.truncate(capacity);
    }

    /// Hashes and writes a completed piece off the reactor, then records the
    /// outcome: HAVE to every peer, or a re-download and strikes.
    pub fn piece_completed(self: &Arc<Self>, done: CompletedPiece) {
        let this = self.clone();
        self.verifying.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            let storage = this.storage.clone();
            let CompletedPiece {
                piece,
                data,
                senders,
                ..
            } = done;
            let result = tokio::task::spawn_blocking(move || {
                if !storage.verify(piece, &data) {
                    return (Ok(false), data);
                }
                let written = storage.write_piece(piece, &data).map(|_| true);
                (written, data)
            })
            .await;
            let backlog = this.verifying.fetch_sub(1, Ordering::AcqRel);
            match result {
                Ok((Ok(true), data)) => this.piece_verified(piece, data),
                Ok((Ok(false), data)) => this.piece_failed(piece, data, &senders),
                Ok((Err(e), _)) => this.write_failed(piece, e),
                Err(e) => this.write_failed(piece, std::io::Error::other(e)),
            }
            // Peers stopped requesting while the backlog was full.
            if backlog == MAX_VERIFY_BACKLOG {
                this.refill_all();
            }
        });
    }

    /// Asks every peer task to request more blocks.
    pub fn refill_all(&self) {
        let txs: Vec<_> = self.lock().peers.values().map(|p| p.tx.clone()).collect();
        for tx in txs {
            let _ = tx.send(PeerCmd::Refill);
        }
    }

    /// Records the outcome of a connection attempt to a known address:
    /// after a connection that worked, it may be retried soon; after a
    /// failure, later and later.
    pub fn attempt_done(&self, addr: SocketAddr, connected: bool) {
        let mut st = self.lock();
        st.connecting.remove(&addr);
        let now = Instant::now();
        let known = st.known.entry(addr).or_default();
        if connected {
            known.failures = 0;
            known.next_attempt = Some(now + RETRY_FIRST);
        } else {
            known.failures += 1;
            let delay = RETRY_FIRST
                .saturating_mul(1 << (known.failures - 1).min(6))
                .min(RETRY_MAX);
            known.next_attempt = Some(now + delay);
        }
    }

    pub(crate) fn piece_verified(self: &Arc<Self>, piece: u32, data: Vec<u8>) {
        // A coded copy that failed earlier: this good one names who poisoned it.
        self.attribute_coded(piece, &data);
        if let Some(index) = piece.checked_sub(self.info.piece_count()) {
            self.repair_verified(piece, index);
            return;
        }
        let mut st = self.lock();
        st.picker.piece_verified(piece);
        self.piece_done.notify_waiters();
        let length = data.len() as u64;
        // A good copy shows which blocks of the failed one were wrong.
        if let Some(failed) = st.failed.remove(&piece) {
            let culprits = attribute(&failed, &data);
            for ip in culprits {
                self.strike(&mut st, ip, "sent a corrupt block");
            }
        }
        let txs: Vec<_> = st.peers.values().map(|p| p.tx.clone()).collect();
        let complete = st.picker.done().is_complete();
        if complete && st.completed_at.is_none() {
            st.completed_at = Some(Instant::now());
            st.phase = TorrentPhase::Seeding;
        }
        st.picker.recycle(data);
        drop(st);
        tracing::trace!(piece, length, "piece verified");
        for tx in txs {
            let _ = tx.send(PeerCmd::Have(piece));
        }
        if complete {
            // Publish at once rather than at the next status tick: a
            // `get --exit-on-complete` waits on this.
            let _ = self.status_tx.send(self.status());
            self.completed.notify_waiters();
            self.completed.notify_one();
            self.upload.recheck(|| true);
        } else {
            self.maybe_rebuild();
        }
    }

    fn piece_failed(self: &Arc<Self>, piece: u32, data: Vec<u8>, senders: &[PeerKey]) {
        let mut st = self.lock();
        self.wasted.fetch_add(data.len() as u64, Ordering::Relaxed);
        let ips: Vec<IpAddr> = senders
            .iter()
            .map(|k| {
                st.peers
                    .get(k)
                    .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.addr.ip())
            })
            .collect();
        // Senders already gone show as 0.0.0.0: unknown, but another sender
        // all the same, so whoever remains is not alone to blame.
        let mut distinct = ips.clone();
        distinct.sort_unstable();
        distinct.dedup();
        tracing::warn!(piece, senders = ?distinct, "piece failed its hash check; fetching it again");
        if let [only] = distinct[..] {
            // One sender: no doubt who sent the bad data (unless it is gone:
            // 0.0.0.0 is nobody's address).
            if !only.is_unspecified() {
                self.strike(&mut st, only, "sent a piece that failed its hash");
            }
        } else if st.failed.len() < MAX_FAILED_COPIES {
            st.failed.insert(piece, FailedCopy { data, senders: ips });
        }
        st.picker.piece_failed(piece, senders);
        let txs: Vec<_> = st.peers.values().map(|p| p.tx.clone()).collect();
        drop(st);
        for tx in txs {
            let _ = tx.send(PeerCmd::Refill);
        }
    }

    pub(crate) fn write_failed(&self, piece: u32, error: std::io::Error) {
        let mut st = self.lock();
        st.picker.piece_abandoned(piece);
        let message = if error.kind() == std::io::ErrorKind::StorageFull {
            "disk full: downloading paused, still seeding verified pieces".to_owned()
        } else {
            format!("cannot write: {error}; downloading paused")
        };
        if st.disk_error.is_none() {
            tracing::error!("{message}");
        }
        st.disk_error = Some(message);
    }

    /// Counts a strike against an address (banned after a few).
    pub(crate) fn strike_ip(&self, ip: IpAddr, why: &str) {
        let mut st = self.lock();
        self.strike(&mut st, ip, why);
    }

    fn strike(&self, st: &mut TorrentState, ip: IpAddr, why: &str) {
        let strikes = st.strikes.entry(ip).or_insert(0);
        *strikes += 1;
        tracing::warn!(%ip, strikes = *strikes, "strike: {why}");
        if *strikes >= BAN_STRIKES {
            self.ban_locked(st, ip, why);
        }
    }

    /// Bans an address for the rest of the session and drops its peers.
    pub fn ban(&self, ip: IpAddr, why: &str) {
        let mut st = self.lock();
        self.ban_locked(&mut st, ip, why);
    }

    fn ban_locked(&self, st: &mut TorrentState, ip: IpAddr, why: &str) {
        if st.banned.insert(ip) {
            tracing::warn!(%ip, "banned: {why}");
        }
        for peer in st.peers.values().filter(|p| p.addr.ip() == ip) {
            let _ = peer.tx.send(PeerCmd::Close(format!("banned: {why}")));
        }
    }

    /// Whether downloading is paused by a disk error.
    pub fn downloads_paused(&self) -> bool {
        self.lock().disk_error.is_some()
    }

    /// Snapshot for status displays.
    pub fn status(&self) -> TorrentStatus {
        let st = self.lock();
        let done = st.picker.done();
        let geometry = self.info.geometry;
        let have_bytes: u64 = done
            .iter_set()
            .map(|p| u64::from(geometry.piece_size(p).unwrap_or(0)))
            .sum();
        let mut peers: Vec<PeerStatus> = st
            .peers
            .values()
            .map(|p| PeerStatus {
                addr: p.addr,
                client: p.client.clone(),
                outgoing: p.outgoing,
                down_rate: p.down_meter.rate(),
                up_rate: p.up_meter.rate(),
                downloaded_plain: p.counters.down_plain.load(Ordering::Relaxed),
                downloaded_coded: p.counters.down_coded.load(Ordering::Relaxed),
                uploaded: p.counters.up.load(Ordering::Relaxed),
                extended_sent: p.counters.extended_sent.load(Ordering::Relaxed),
                pieces: p.pieces.count(),
                interested: p.interested,
                choked: p.choked,
                coded: p.coded,
            })
            .collect();
        peers.sort_by_key(|p| p.addr);
        TorrentStatus {
            name: self.info.name.clone(),
            info_hash: self.info.info_hash.to_hex(),
            total_bytes: geometry.total_length(),
            have_bytes,
            pieces_have: done.count(),
            pieces_total: geometry.piece_count(),
            down_rate: peers.iter().map(|p| p.down_rate).sum(),
            up_rate: peers.iter().map(|p| p.up_rate).sum(),
            downloaded: self.downloaded.load(Ordering::Relaxed),
            uploaded: self.upload.uploaded(),
            wasted: self.wasted.load(Ordering::Relaxed),
            received_plain: self.received_plain.load(Ordering::Relaxed),
            received_coded: self.received_coded.load(Ordering::Relaxed),
            repair_have: st.picker.repair_done().count(),
            repair_total: st.picker.repair_done().len(),
            rebuilt: st.outer.rebuilt,
            peers,
            phase: match &st.disk_error {
                Some(e) => TorrentPhase::Error(e.clone()),
                None => st.phase.clone(),
            },
            elapsed: self.started.elapsed(),
            completed_after: st.completed_at.map(|t| t.duration_since(self.started)),
        }
    }
}

/// The addresses whose blocks in `failed` differ from the good copy.
fn attribute(failed: &FailedCopy, good: &[u8]) -> Vec<IpAddr> {
    let mut culprits: Vec<IpAddr> = failed
        .data
        .chunks(BLOCK_SIZE as usize)
        .zip(good.chunks(BLOCK_SIZE as usize))
        .zip(&failed.senders)
        .filter(|((bad, good), ip)| bad != good && !ip.is_unspecified())
        .map(|(_, ip)| *ip)
        .collect();
    culprits.sort_unstable();
    culprits.dedup();
    culprits
}
