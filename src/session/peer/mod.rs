//! One peer connection: the handshake, then a task that feeds received bytes
//! to the [`PeerConn`] state machine and acts on its events, plus a writer
//! task so that reading never waits on a slow write (two peers blocked
//! writing to each other would otherwise deadlock).
//!
//! Generic over the byte stream: TCP today, a QUIC stream for coded peers.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use wire::peer::{
    Decoded, ExtendedHandshake, Handshake, Message, MessageDecoder, PeerConn, PeerEvent,
    PeerWireError, Reserved, Violation, HANDSHAKE_LEN,
};
use wire::{Bitfield, BlockRef, Limits};

mod metadata;
mod util;
mod writer;

pub use util::client_from_peer_id;
use util::{describe, sleep_until, MinRtt};
use writer::Writer;

use super::coded::link::CodedLink;
use super::picker::{BlockOutcome, PeerKey};
use super::rate::RateMeter;
use super::torrent::{PeerCmd, PeerCounters, PeerEntry, TorrentShared, MAX_VERIFY_BACKLOG};
use super::CodedMode;

/// Time allowed for the handshake (a peer that connects and says nothing
/// is dropped after this).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Stop serving requests while this much is queued for the socket.
pub(crate) const WRITE_HIGH_WATER: usize = 1 << 20;
/// Requests kept in flight on top of the measured bandwidth-delay product
/// (and before it is known): enough for a fast peer on a short path.
const PIPELINE_MARGIN: usize = 64;
/// A peer that delivers nothing for this long while holding our requests
/// is snubbing us: its requests go to others.
const SNUB_AFTER: Duration = Duration::from_secs(45);
/// What we advertise as `reqq` and accept (Limits::max_queued_requests).
const OUR_REQQ: u32 = 2000;
/// How long to wait for the extended handshake of a peer that set the
/// BEP 10 bit before treating it as legacy.
const EXT_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);
/// The id under which we receive `ut_metadata` (BEP 9) messages.
pub const METADATA_ID: u8 = 2;

/// Reads the 68-byte handshake from a fresh connection.
pub async fn read_handshake<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Handshake> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, rd.read_exact(&mut buf))
        .await
        .map_err(|_| anyhow!("no handshake within {HANDSHAKE_TIMEOUT:?}"))??;
    Handshake::decode(&buf)?.ok_or_else(|| anyhow!("short handshake"))
}

/// Runs a connection to the end. `theirs` is their handshake when the
/// listener already read it (incoming connections).
pub async fn run_peer<S>(
    torrent: Arc<TorrentShared>,
    stream: S,
    addr: SocketAddr,
    outgoing: bool,
    theirs: Option<Handshake>,
    quic: Option<quinn::Connection>,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    start_peer(torrent, stream, addr, outgoing, theirs, quic)
        .await?
        .run()
        .await
}

/// A connection past the handshake, registered with its torrent.
pub struct StartedPeer<S> {
    task: PeerTask,
    rd: tokio::io::ReadHalf<S>,
    rx: mpsc::UnboundedReceiver<PeerCmd>,
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> StartedPeer<S> {
    /// Runs the connection until it ends; unregisters it; bans a peer that
    /// broke the protocol.
    pub async fn run(mut self) -> Result<()> {
        let (torrent, key, addr) = (self.task.torrent.clone(), self.task.key, self.task.addr);
        let result = self.task.run(&mut self.rd, self.rx).await;
        self.task.writer.close();
        torrent.unregister_peer(key);
        if let Err(e) = &result {
            if let Some(v) = e.downcast_ref::<Violation>() {
                if !matches!(v, Violation::Idle(_)) {
                    torrent.ban(addr.ip(), &v.to_string());
                }
            } else if let Some(w) = e.downcast_ref::<PeerWireError>() {
                // Malformed framing (an absurd length prefix, a message of
                // the wrong size): no honest client sends it.
                torrent.ban(addr.ip(), &w.to_string());
            }
        }
        result
    }
}

/// Exchanges handshakes and registers the peer with its torrent. `quic` is
/// the QUIC connection when the stream is one of its streams (symbols then
/// travel as its datagrams).
pub async fn start_peer<S>(
    torrent: Arc<TorrentShared>,
    stream: S,
    addr: SocketAddr,
    outgoing: bool,
    theirs: Option<Handshake>,
    quic: Option<quinn::Connection>,
) -> Result<StartedPeer<S>>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let ours = Handshake {
        reserved: Reserved::ours(),
        info_hash: torrent.info.info_hash,
        peer_id: torrent.config.peer_id,
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, wr.write_all(&ours.encode()))
        .await
        .map_err(|_| anyhow!("handshake write timed out"))??;
    let theirs = match theirs {
        Some(h) => h,
        None => read_handshake(&mut rd).await?,
    };
    if theirs.info_hash != ours.info_hash {
        bail!("peer wants another torrent ({})", theirs.info_hash);
    }
    if theirs.peer_id == ours.peer_id {
        torrent.lock().own_addrs.insert(addr);
        bail!("connected to ourselves");
    }
    let now = Instant::now();
    let limits = Limits::DEFAULT;
    let fast = theirs.reserved.supports_fast();
    let extended = theirs.reserved.supports_extension_protocol();
    let conn = PeerConn::new(torrent.info.geometry, &limits, fast, extended, now);
    let (tx, rx) = mpsc::unbounded_channel();
    let counters = Arc::new(PeerCounters::default());
    let entry = PeerEntry {
        addr,
        peer_id: theirs.peer_id,
        client: client_from_peer_id(&theirs.peer_id),
        tx,
        counters: counters.clone(),
        pieces: Bitfield::new(torrent.info.piece_count()),
        repair: Bitfield::new(torrent.lock().picker.repair_done().len()),
        interested: false,
        choked: true,
        outgoing,
        down_meter: RateMeter::default(),
        up_meter: RateMeter::default(),
        connected_at: now,
        quic: quic.is_some(),
        coded: false,
    };
    let (key, our_have, our_repair) = {
        // Register and snapshot our pieces under one lock, so no HAVE
        // broadcast can fall between the two.
        let key = torrent
            .register_peer(entry)
            .ok_or_else(|| anyhow!("not accepted (banned, duplicate or too many peers)"))?;
        let st = torrent.lock();
        (
            key,
            st.picker.done().clone(),
            st.picker.repair_done().clone(),
        )
    };
    let writer = Writer::spawn(wr);
    let task = PeerTask {
        torrent: torrent.clone(),
        key,
        addr,
        conn,
        writer,
        our_have,
        their_repair: Bitfield::new(our_repair.len()),
        our_repair,
        counters,
        they_have_we_lack: 0,
        reqq: 250,
        meter: RateMeter::default(),
        rtt: MinRtt::default(),
        last_block: now,
        serve_resume_at: None,
        read_resume_at: None,
        outgoing,
        quic,
        link: None,
        // A peer that speaks BEP 10 sends its extended handshake first
        // thing: wait for it (briefly) before asking for blocks, or a coded
        // peer would be fetched from as a legacy one until it arrived.
        ext_wait_until: (extended && torrent.config.coded != CodedMode::Off)
            .then(|| now + EXT_HANDSHAKE_WAIT),
    };
    Ok(StartedPeer { task, rd, rx })
}

/// The state of one connection's task (the coded parts live in
/// `session::coded`).
pub(crate) struct PeerTask {
    /// Until the peer's extended handshake arrives (or this passes), no
    /// block requests.
    pub(crate) ext_wait_until: Option<Instant>,
    pub(crate) torrent: Arc<TorrentShared>,
    pub(crate) key: PeerKey,
    pub(crate) addr: SocketAddr,
    pub(crate) conn: PeerConn,
    pub(crate) writer: Writer,
    pub(crate) our_have: Bitfield,
    /// Repair pieces of the outer code we hold, and the peer holds (told
    /// only between coded peers; see `coded::repair`).
    pub(crate) our_repair: Bitfield,
    pub(crate) their_repair: Bitfield,
    pub(crate) counters: Arc<PeerCounters>,
    /// Pieces the peer has that we lack: we are interested while > 0.
    they_have_we_lack: u32,
    /// How many requests the peer accepts (its `reqq`).
    reqq: usize,
    meter: RateMeter,
    pub(crate) rtt: MinRtt,
    pub(crate) last_block: Instant,
    pub(crate) serve_resume_at: Option<tokio::time::Instant>,
    pub(crate) read_resume_at: Option<tokio::time::Instant>,
    pub(crate) outgoing: bool,
    /// The QUIC connection when this peer runs over QUIC.
    pub(crate) quic: Option<quinn::Connection>,
    /// Present once both sides agreed on the coded extension.
    pub(crate) link: Option<CodedLink>,
}

impl PeerTask {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        mut rx: mpsc::UnboundedReceiver<PeerCmd>,
    ) -> Result<()> {
        self.send_greeting();
        let decoder = MessageDecoder::new(Limits::DEFAULT.max_message_length);
        let mut rbuf = BytesMut::with_capacity(256 << 10);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let shutdown = self.torrent.shutdown.clone();
        let writer_failed = self.writer.failed.clone();
        // Acknowledgements and loss accounting of coded datagrams.
        let mut coded_tick = tokio::time::interval(Duration::from_millis(10));
        coded_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let quic = self.quic.clone();
        loop {
            let serving = (self.conn.queued_requests() > 0
                || self.link.as_ref().is_some_and(|l| l.has_stream_symbols()))
                && self.serve_resume_at.is_none();
            let reading = self.read_resume_at.is_none();
            let drained = self.writer.drained.clone();
            let datagrams_due = self.datagrams_due();
            let coded_active = self.link.is_some();
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = writer_failed.cancelled() => bail!("write failed"),
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd)?,
                    None => return Ok(()),
                },
                read = rd.read_buf(&mut rbuf), if reading => {
                    let n = read.context("read failed")?;
                    if n == 0 {
                        bail!("closed by peer");
                    }
                    let delay = self.torrent.down_limit.reserve(n as u64);
                    if !delay.is_zero() {
                        self.read_resume_at = Some(tokio::time::Instant::now() + delay);
                    }
                    while let Decoded::Message(msg) = decoder.decode(&mut rbuf)? {
                        self.on_message(msg).await?;
                    }
                    if rbuf.capacity() - rbuf.len() < 32 << 10 {
                        rbuf.reserve(128 << 10);
                    }
                }
                _ = sleep_until(self.read_resume_at) => {
                    self.read_resume_at = None;
                    // Requests held back by the download limit go out now.
                    self.refill();
                }
                _ = sleep_until(self.serve_resume_at) => {
                    self.serve_resume_at = None;
                    self.serve().await?;
                }
                _ = drained.notified(), if serving => self.serve().await?,
                _ = tick.tick() => self.on_tick()?,
                // Datagrams count against the download limit like TCP reads.
                dg = read_datagram(&quic), if quic.is_some() && reading => {
                    let dg = dg?;
                    let delay = self.torrent.down_limit.reserve(dg.len() as u64);
                    if !delay.is_zero() {
                        self.read_resume_at = Some(tokio::time::Instant::now() + delay);
                    }
                    self.on_datagram(dg)?
                }
                _ = sleep_until(datagrams_due) => self.send_datagrams().await?,
                _ = coded_tick.tick(), if coded_active => self.on_coded_tick(),
            }
        }
    }

    pub(crate) fn send(&mut self, msg: Message) {
        if matches!(msg, Message::Extended { id, .. } if id != 0) {
            self.counters.extended_sent.fetch_add(1, Ordering::Relaxed);
        }
        self.conn.sent(Instant::now());
        self.writer.send(msg.to_bytes());
    }

    fn send_greeting(&mut self) {
        if self.conn.extended {
            let hs = ExtendedHandshake {
                extensions: self.our_extensions(),
                client: Some(concat!("bitfountain ", env!("CARGO_PKG_VERSION")).to_owned()),
                listen_port: Some(self.torrent.listen_port),
                reqq: Some(OUR_REQQ),
                your_ip: Some(self.addr.ip()),
                metadata_size: Some(self.torrent.info.raw.len() as u64),
                raptorq: self.coded_caps(),
            };
            self.send(Message::Extended {
                id: wire::peer::EXT_HANDSHAKE_ID,
                payload: Bytes::from(hs.encode()),
            });
        }
        if let Some(msg) = self.conn.announce_pieces(&self.our_have) {
            self.send(msg);
        }
    }

    async fn on_message(&mut self, msg: Message) -> Result<()> {
        let now = Instant::now();
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(peer = %self.addr, "received {}", describe(&msg));
        }
        let event = self.conn.receive(msg, &self.our_have, now)?;
        match event {
            PeerEvent::Nothing | PeerEvent::DhtPort(_) | PeerEvent::Suggest(_) => {}
            PeerEvent::Extended { id, payload } => {
                if id == super::coded::link::RAPTORQ_ID && self.link.is_some() {
                    self.on_coded_message(payload).await?;
                } else if id == METADATA_ID {
                    self.on_metadata_message(&payload);
                }
            }
            PeerEvent::Bitfield => {
                let pieces = self.conn.peer_pieces.clone();
                self.they_have_we_lack =
                    pieces.iter_set().filter(|&p| !self.our_have.has(p)).count() as u32;
                {
                    let mut st = self.torrent.lock();
                    if let Some(known) = st
                        .peers
                        .get_mut(&self.key)
                        .map(|p| std::mem::replace(&mut p.pieces, pieces.clone()))
                    {
                        // Count only what is new since the last message.
                        let added = pieces.iter_set().filter(|&i| !known.has(i));
                        for i in added.collect::<Vec<_>>() {
                            st.picker.add_peer_have(i);
                        }
                    }
                }
                self.update_interest();
                self.refill();
            }
            PeerEvent::Have(piece) => {
                {
                    let mut st = self.torrent.lock();
                    st.picker.add_peer_have(piece);
                    if let Some(p) = st.peers.get_mut(&self.key) {
                        p.pieces.set(piece);
                    }
                }
                self.peer_announced(piece);
                if !self.our_have.has(piece) {
                    self.they_have_we_lack += 1;
                    self.update_interest();
                    self.refill();
                }
            }
            PeerEvent::Unchoked | PeerEvent::AllowedFast(_) => self.refill(),
            PeerEvent::Choked { dropped } => {
                let mut st = self.torrent.lock();
                for block in dropped {
                    st.picker.release(self.key, block);
                }
            }
            PeerEvent::Rejected(block) => {
                self.torrent.lock().picker.release(self.key, block);
                self.refill();
            }
            PeerEvent::Interested | PeerEvent::NotInterested => {
                let interested = event == PeerEvent::Interested;
                if let Some(p) = self.torrent.lock().peers.get_mut(&self.key) {
                    p.interested = interested;
                }
                self.torrent.rechoke.notify_one();
            }
            PeerEvent::Block {
                block,
                data,
                requested_at,
            } => {
                self.rtt
                    .sample(now.saturating_duration_since(requested_at), now);
                self.on_block(block, data, now)
            }
            PeerEvent::RequestQueued => self.serve().await?,
            PeerEvent::Reject(msg) => self.send(msg),
            PeerEvent::ExtendedHandshake(hs) => {
                if let Some(r) = hs.reqq {
                    self.reqq = (r as usize).clamp(1, Limits::DEFAULT.max_outstanding_requests);
                }
                if let Some(client) = hs.client.as_ref().filter(|c| !c.is_empty()) {
                    if let Some(p) = self.torrent.lock().peers.get_mut(&self.key) {
                        p.client = client.chars().take(40).collect();
                    }
                }
                self.on_extended_handshake(&hs)?;
                self.refill();
            }
        }
        Ok(())
    }

    fn on_block(&mut self, block: BlockRef, data: Bytes, now: Instant) {
        self.last_block = now;
        let len = data.len() as u64;
        self.counters.down_plain.fetch_add(len, Ordering::Relaxed);
        self.torrent.downloaded.fetch_add(len, Ordering::Relaxed);
        let outcome = self.torrent.lock().picker.on_block(self.key, block, &data);
        if matches!(
            outcome,
            BlockOutcome::Accepted { .. }
                | BlockOutcome::Completed(_)
                | BlockOutcome::ToDecoder { .. }
        ) {
            self.torrent
                .received_plain
                .fetch_add(len, Ordering::Relaxed);
        }
        let cancel = match outcome {
            BlockOutcome::ToDecoder { cancel } => {
                // A legacy block of a piece received as symbols: its bytes
                // are source symbols for the same decoder.
                self.block_to_decoder(block, &data);
                cancel
            }
            BlockOutcome::Stale | BlockOutcome::Duplicate => {
                self.torrent.wasted.fetch_add(len, Ordering::Relaxed);
                Vec::new()
            }
            BlockOutcome::Accepted { cancel } => cancel,
            BlockOutcome::Completed(done) => {
                let cancel = done.cancel.clone();
                self.torrent.piece_completed(done);
                cancel
            }
        };
        if !cancel.is_empty() {
            let st = self.torrent.lock();
            for key in cancel {
                if let Some(p) = st.peers.get(&key) {
                    let _ = p.tx.send(PeerCmd::Cancel(block));
                }
            }
        }
        self.refill();
    }

    fn on_command(&mut self, cmd: PeerCmd) -> Result<()> {
        let now = Instant::now();
        match cmd {
            PeerCmd::Have(piece) => {
                if self.our_have.set(piece) {
                    // Every peer hears, even one that has the piece (as BEP 3
                    // does): it counts who holds what — who is a seed, and
                    // for a suggesting seed whether its suggestion was taken
                    // and passed on (`coded::suggest`).
                    self.send(Message::Have { piece });
                    if self.conn.peer_pieces.has(piece) {
                        self.they_have_we_lack = self.they_have_we_lack.saturating_sub(1);
                        self.update_interest();
                    }
                }
            }
            PeerCmd::Choke => {
                for msg in self.conn.choke(now) {
                    self.send(msg);
                }
                self.reject_coded_requests(wire::fountain::RejectReason::Choked);
            }
            PeerCmd::Unchoke => {
                if let Some(msg) = self.conn.unchoke(now) {
                    self.send(msg);
                }
            }
            PeerCmd::Cancel(block) => {
                if let Some(msg) = self.conn.cancel(block, now) {
                    self.send(msg);
                }
            }
            PeerCmd::Refill => self.refill(),
            PeerCmd::Close(reason) => bail!(reason),
            PeerCmd::CodedDone(piece) => {
                self.send_coded(wire::fountain::CodedMessage::PieceDone { piece })
            }
            PeerCmd::CodedLinked => {}
            PeerCmd::Replicated => self.suggest_more(),
            PeerCmd::HaveRepair(index) => self.on_have_repair(index),
        }
        Ok(())
    }

    fn on_tick(&mut self) -> Result<()> {
        let now = Instant::now();
        if self.ext_wait_until.is_some_and(|until| now >= until) {
            // No extended handshake came: a legacy peer after all.
            self.refill();
        }
        // Seeding with suggestions: a peer whose pieces were passed on
        // while nothing woke this task, or the move to QUIC that never came.
        self.suggest_more();
        let rate = self.meter.sample(self.counters.down_total(), now);
        if self.link.is_some() {
            if let Some(coded) = self.torrent.lock().coded.as_mut() {
                coded.set_rate(self.key, rate);
            }
        }
        if let Some(quic) = &self.quic {
            // Round trips for pipeline sizing: QUIC measures them for us.
            self.rtt.sample(quic.rtt(), now);
        }
        self.log_coded_figures(now);
        if self.torrent.stalled.load(Ordering::Relaxed) {
            self.log_idle();
        }
        if let Some(msg) = self.conn.poll_time(now)? {
            self.writer.send(msg.to_bytes());
        }
        if self.conn.outstanding_count() > 0 && now.duration_since(self.last_block) > SNUB_AFTER {
            let abandoned = self.conn.abandon_outstanding();
            let mut st = self.torrent.lock();
            for block in abandoned {
                st.picker.release(self.key, block);
            }
            tracing::debug!(peer = %self.addr, "snubbed: its requests go to others");
            self.last_block = now;
        }
        self.refill();
        Ok(())
    }

    /// The download is stalled: says (debug) what this peer could give us
    /// and why we ask it nothing, if we ask nothing.
    fn log_idle(&self) {
        let link = self.link.as_ref();
        let (in_flight, seeds, started, askable, entry) = {
            let st = self.torrent.lock();
            let seeds = st.peers.values().filter(|p| p.pieces.is_complete()).count() as u32;
            let n = self.conn.peer_pieces.len();
            let has = |p: u32| match p.checked_sub(n) {
                Some(r) => self.their_repair.has(r),
                None => self.conn.peer_pieces.has(p),
            };
            let started: Vec<u32> = st
                .coded
                .as_ref()
                .map(|c| c.pieces().filter(|&p| has(p)).collect())
                .unwrap_or_default();
            let askable = link.map_or(0, |l| {
                started
                    .iter()
                    .filter(|&&p| {
                        crate::session::coded::asks_suggesting_seed(
                            l.suggesting,
                            &l.suggested_by_them,
                            p,
                            &st.picker,
                            seeds,
                        )
                    })
                    .count()
            });
            let in_flight = st.coded.as_ref().map_or(0, |c| c.in_flight(self.key));
            let entry = st.peers.get(&self.key).map(|p| (p.pieces.count(), p.quic));
            (in_flight, seeds, started.len(), askable, entry)
        };
        if in_flight > 0 || self.conn.outstanding_count() > 0 {
            return;
        }
        tracing::debug!(
            peer = %self.addr,
            they_have_we_lack = self.they_have_we_lack,
            wants_repair = self.wants_repair(),
            interested = self.conn.am_interested,
            choked_by_them = self.conn.peer_choking,
            coded = link.is_some(),
            suggesting = link.is_some_and(|l| l.suggesting),
            suggestions = ?link.map(|l| &l.suggestions),
            waiting = self.ext_wait_until.is_some(),
            seeds,
            ?entry,
            conn_pieces = self.conn.peer_pieces.count(),
            quic = self.quic.is_some(),
            started_they_have = started,
            started_askable = askable,
            pipeline = self.pipeline_target(),
            over_download_limit = self.read_resume_at.is_some(),
            "asking this peer nothing"
        );
    }

    pub(crate) fn update_interest(&mut self) {
        let want = self.they_have_we_lack > 0 || self.wants_repair();
        if let Some(msg) = self.conn.set_interested(want, Instant::now()) {
            self.send(msg);
        }
    }

    /// How many requests to keep in flight: twice the bandwidth-delay
    /// product measured for this peer (its delivery rate times the smallest
    /// recent round trip), plus a margin, within its `reqq`. More would only
    /// queue at the sender and hold memory here.
    pub(crate) fn pipeline_target(&self) -> usize {
        let rtt = self
            .rtt
            .get()
            .unwrap_or(Duration::from_millis(100))
            .as_secs_f64();
        let bdp_blocks = self.meter.rate() * rtt / f64::from(wire::BLOCK_SIZE);
        let target = (2.0 * bdp_blocks) as usize + PIPELINE_MARGIN;
        target.clamp(PIPELINE_MARGIN, self.reqq.max(1))
    }

    /// Requests more blocks when we may and there is room in the pipeline.
    pub(crate) fn refill(&mut self) {
        if self.conn.peer_choking || !self.conn.am_interested {
            return;
        }
        if let Some(until) = self.ext_wait_until {
            if Instant::now() < until {
                return;
            }
            self.ext_wait_until = None;
        }
        if self.link.is_some() {
            self.refill_coded();
            return;
        }
        // Received pieces waiting to be hashed and written hold memory:
        // wait for them rather than receive more.
        if self.torrent.verifying.load(Ordering::Acquire) >= MAX_VERIFY_BACKLOG {
            return;
        }
        let outstanding = self.conn.outstanding_count();
        let target = self.pipeline_target();
        if outstanding >= target {
            return;
        }
        let blocks = {
            let mut st = self.torrent.lock();
            // Forgotten already (replaced, banned): take no work.
            if st.disk_error.is_some() || !st.peers.contains_key(&self.key) {
                return;
            }
            st.picker
                .pick(self.key, &self.conn.peer_pieces, target - outstanding)
        };
        let now = Instant::now();
        let mut refused = Vec::new();
        for block in blocks {
            match self.conn.request(block, now) {
                Some(msg) => self.send(msg),
                None => refused.push(block),
            }
        }
        if !refused.is_empty() {
            let mut st = self.torrent.lock();
            for block in refused {
                st.picker.release(self.key, block);
            }
        }
    }

    /// Sends queued blocks while the socket keeps up and the upload rate
    /// limit allows.
    async fn serve(&mut self) -> Result<()> {
        self.serve_coded_stream().await?;
        while self.writer.queued() < WRITE_HIGH_WATER
            && self.serve_resume_at.is_none()
            && !self.torrent.upload.reached()
        {
            let Some(block) = self.conn.next_request() else {
                break;
            };
            let data = self
                .torrent
                .piece_data(block.piece)
                .await
                .with_context(|| format!("cannot read piece {}", block.piece))?;
            let (begin, end) = (block.begin as usize, (block.begin + block.length) as usize);
            let Some(slice) = (end <= data.len()).then(|| data.slice(begin..end)) else {
                continue;
            };
            self.conn.sent(Instant::now());
            let header = Message::piece_header(block.piece, block.begin, block.length);
            self.writer.send(Bytes::copy_from_slice(&header));
            self.writer.send(slice);
            let len = u64::from(block.length);
            self.counters.up.fetch_add(len, Ordering::Relaxed);
            self.torrent.record_upload(len);
            let delay = self.torrent.up_limit.reserve(len);
            if !delay.is_zero() {
                self.serve_resume_at = Some(tokio::time::Instant::now() + delay);
            }
        }
        Ok(())
    }
}

/// The next datagram of a QUIC connection (pending forever without one).
async fn read_datagram(quic: &Option<quinn::Connection>) -> Result<Bytes> {
    match quic {
        Some(conn) => conn.read_datagram().await.context("QUIC connection lost"),
        None => std::future::pending().await,
    }
}
