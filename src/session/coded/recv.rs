//! The receiving side of a coded connection: negotiation, symbol requests
//! sized to the peer's delivery rate, symbols into decoders, datagram
//! acknowledgements and loss accounting.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use wire::fountain::{CodedMessage, Datagram, Delivery, SymbolRange};
use wire::peer::{ExtendedHandshake, Message, RaptorqCaps, Violation};
use wire::{BlockRef, Limits, BLOCK_SIZE};

use super::link::{CodedLink, MAX_UNREQUESTED, RAPTORQ_ID, RAPTORQ_VERSION, SYMBOL_SIZES};
use super::state::{Ask, Received};
use crate::session::peer::PeerTask;
use crate::session::torrent::{PeerCmd, MAX_VERIFY_BACKLOG};
use crate::session::{quic, CodedMode, CodedTransport};

/// Datagrams that may arrive out of order before a gap counts as loss.
const REORDER_ALLOWANCE: u32 = 32;
/// Datagram payload received between acknowledgements, at most.
const ACK_EVERY_BYTES: u64 = 32 << 10;

impl PeerTask {
    /// What we say about the coded extension in our extended handshake.
    pub(crate) fn coded_caps(&self) -> Option<RaptorqCaps> {
        if self.torrent.config.coded == CodedMode::Off || self.torrent.lock().coded.is_none() {
            return None;
        }
        Some(RaptorqCaps {
            version: RAPTORQ_VERSION,
            symbol_sizes: SYMBOL_SIZES.to_vec(),
            quic_port: self
                .torrent
                .quic
                .as_ref()
                .and_then(|e| e.local_addr().ok())
                .map(|a| a.port()),
        })
    }

    /// Our `m` entries: the coded extension when we offer it.
    pub(crate) fn our_extensions(&self) -> std::collections::BTreeMap<String, u8> {
        let mut m = std::collections::BTreeMap::new();
        // Every torrent serves its metadata (BEP 9), so magnet-link
        // downloaders can start from us.
        m.insert(
            wire::peer::METADATA_EXTENSION.to_owned(),
            crate::session::peer::METADATA_ID,
        );
        if self.coded_caps().is_some() {
            m.insert(wire::peer::RAPTORQ_EXTENSION.to_owned(), RAPTORQ_ID);
        }
        m
    }

    /// Their extended handshake arrived: agree on the coded extension if we
    /// both speak it with this torrent's symbol size, and move to QUIC when
    /// we can.
    pub(crate) fn on_extended_handshake(&mut self, hs: &ExtendedHandshake) -> Result<()> {
        self.ext_wait_until = None;
        let mode = self.torrent.config.coded;
        let ours = self.coded_caps().is_some();
        let t = self.torrent.lock().coded.as_ref().map(|c| c.t());
        let theirs = match (&hs.raptorq, hs.id_of(wire::peer::RAPTORQ_EXTENSION), t) {
            (Some(caps), Some(id), Some(t)) if ours && caps.symbol_sizes.contains(&t) => {
                Some((caps.clone(), id, t))
            }
            _ => None,
        };
        let Some((caps, id, t)) = theirs else {
            if mode == CodedMode::Only {
                anyhow::bail!("not a coded peer (--coded only)");
            }
            return Ok(());
        };
        if self.link.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        let quic = self.quic.is_some();
        self.link = Some(CodedLink::new(
            id,
            t,
            quic,
            now,
            self.torrent.config.max_upload_rate,
        ));
        if let Some(p) = self.torrent.lock().peers.get_mut(&self.key) {
            p.coded = true;
        }
        tracing::debug!(peer = %self.addr, quic, "coded peer (T = {t})");
        self.announce_repair();
        self.suggest_more();
        // The side that opened the TCP connection moves it to QUIC.
        let want_quic = self.torrent.config.coded_transport != CodedTransport::Tcp;
        if !quic && want_quic && self.outgoing {
            if let (Some(endpoint), Some(port)) = (self.torrent.quic.clone(), caps.quic_port) {
                let torrent = self.torrent.clone();
                let target = SocketAddr::new(self.addr.ip(), port);
                tokio::spawn(upgrade_to_quic(torrent, endpoint, target));
            }
        }
        // Both ends speak QUIC (a peer offers a port only when it does), so
        // this connection is about to be replaced. Symbols asked for on it
        // would be sent and then dropped with it, and asked for again as
        // repair symbols: ask nothing until the move, or until the grace
        // is over (UDP blocked: the connect fails, and TCP it is).
        if !quic && self.torrent.quic.is_some() && caps.quic_port.is_some() {
            self.ext_wait_until = Some(now + QUIC_MOVE_GRACE);
        }
        self.refill();
        Ok(())
    }

    /// Sends a coded message to the peer (only ever to a coded peer).
    pub(crate) fn send_coded(&mut self, msg: CodedMessage) {
        let Some(id) = self.link.as_ref().map(|l| l.their_id) else {
            return;
        };
        self.send(Message::Extended {
            id,
            payload: msg.encode(),
        });
    }

    /// Handles one `bf_raptorq` message.
    pub(crate) async fn on_coded_message(&mut self, payload: Bytes) -> Result<()> {
        let Some(t) = self.link.as_ref().map(|l| l.t) else {
            return Ok(());
        };
        let msg = CodedMessage::decode(&payload, t, &Limits::DEFAULT)
            .map_err(|e| Violation::Coded(e.to_string()))?;
        let now = Instant::now();
        match msg {
            CodedMessage::SymbolRequest { range, delivery } => {
                self.queue_symbol_request(range, delivery).await?
            }
            CodedMessage::Symbols {
                piece,
                first_esi,
                data,
            } => self.receive_symbols(piece, first_esi, data, now)?,
            CodedMessage::Cancel(range) => {
                if let Some(link) = self.link.as_mut() {
                    link.drop_range(range);
                }
            }
            CodedMessage::PieceDone { piece } => {
                if let Some(link) = self.link.as_mut() {
                    link.drop_piece(piece);
                }
            }
            CodedMessage::Reject { range, .. } => {
                if let Some(coded) = self.torrent.lock().coded.as_mut() {
                    coded.close(self.key, range);
                }
                self.refill();
            }
            CodedMessage::RangeSent { range, last_seq } => {
                if let Some(coded) = self.torrent.lock().coded.as_mut() {
                    coded.range_sent(self.key, range, last_seq, now);
                }
            }
            CodedMessage::Ack {
                highest_seq,
                received,
                receive_us,
            } => self.on_symbol_ack(highest_seq, received, receive_us, now),
            CodedMessage::HaveRepair { index } => self.on_peer_have_repair(index)?,
            CodedMessage::RepairBitfield(bits) => self.on_repair_bitfield(&bits)?,
            CodedMessage::Suggest { piece } => self.on_suggest(piece)?,
        }
        Ok(())
    }

    /// Symbols to keep in flight from this peer: the same bandwidth-delay
    /// budget as for blocks, in symbols.
    fn symbol_budget(&self, t: u32) -> u32 {
        (self.pipeline_target() as u32).saturating_mul(BLOCK_SIZE / t.max(1))
    }

    /// Asks the peer for more symbols: first for coded pieces in progress
    /// that it has, then new pieces, and in endgame extra ranges on pieces
    /// others are sending too (and plain pieces turned coded).
    pub(crate) fn refill_coded(&mut self) {
        let Some(link) = self.link.as_ref() else {
            return;
        };
        let (t, delivery) = (link.t, link.delivery);
        if self.read_resume_at.is_some() {
            // Over the download limit: ask for nothing until it passes, so
            // the senders (who send only what is asked) slow down too.
            return;
        }
        if self.torrent.verifying.load(Ordering::Acquire) >= MAX_VERIFY_BACKLOG {
            return;
        }
        let target = self.symbol_budget(t);
        let key = self.key;
        let theirs = self.conn.peer_pieces.clone();
        let theirs_repair = self.their_repair.clone();
        // A suggesting seed is asked for its suggestions before anything
        // of our own choosing (`coded::suggest`).
        let mut suggestions = link.suggestions.clone();
        let suggesting = link.suggesting;
        let suggested_by_them = &link.suggested_by_them;
        let n = theirs.len();
        // Repair piece r is coded piece N + r.
        let has = |p: u32| match p.checked_sub(n) {
            Some(r) => theirs_repair.has(r),
            None => theirs.has(p),
        };
        let mut ranges: Vec<SymbolRange> = Vec::new();
        let mut decoded = Vec::new();
        let mut taken_over = Vec::new();
        {
            let mut guard = self.torrent.lock();
            let st = &mut *guard;
            // A task whose peer was already forgotten (replaced by its QUIC
            // connection, banned) must not take work: nobody would ever
            // release it.
            if st.disk_error.is_some() || !st.peers.contains_key(&key) {
                return;
            }
            // Exact asks until the last pieces, then hedged ones that
            // do not wait a round trip on a loss.
            let ask = if st.picker.is_endgame() {
                Ask::Hedged
            } else {
                Ask::Exact
            };
            // Connected peers holding every original: a piece no more
            // available than that is held by seeds alone (counted only
            // where it matters: this peer suggests).
            let seeds = if suggesting {
                st.peers.values().filter(|p| p.pieces.is_complete()).count() as u32
            } else {
                0
            };
            let Some(coded) = st.coded.as_mut() else {
                return;
            };
            let mut budget = target.saturating_sub(coded.in_flight(key));
            // Ask in batches: a request per arriving symbol would cost a
            // message per symbol and cut ranges into one-symbol datagrams.
            if budget < (target / 4).max(1) {
                return;
            }
            // A suggesting seed spends its upload on pieces nobody else
            // has: it is not asked for symbols of pieces others hold unless
            // it suggested them — or only seeds hold them (leechers that
            // completed by rebuilding suggest too, and pieces held by them
            // alone were asked of nobody: the download stalled).
            let from_here = |p: u32, picker: &crate::session::picker::Picker| {
                has(p) && asks_suggesting_seed(suggesting, suggested_by_them, p, picker, seeds)
            };
            let mut started: Vec<u32> = coded
                .pieces()
                .filter(|&p| from_here(p, &st.picker))
                .collect();
            started.sort_unstable();
            for piece in started {
                if budget == 0 {
                    break;
                }
                for r in coded.plan(key, piece, budget, ask) {
                    budget = budget.saturating_sub(r.count);
                    ranges.push(r);
                }
            }
            // Plain pieces nobody works on (restarted after a failure) are
            // ours to take; then new pieces.
            let idle = st.picker.idle_plain_partials(&theirs);
            let mut idle = idle.into_iter();
            while budget > 0 {
                let piece = match idle.next() {
                    Some(piece) => {
                        if st.picker.convert_to_coded(piece).is_none() {
                            continue;
                        }
                        piece
                    }
                    None if suggesting => match next_suggested(&mut st.picker, &mut suggestions) {
                        Some(piece) => piece,
                        None => break,
                    },
                    None => match st.picker.start_coded(&theirs, Some(&theirs_repair)) {
                        Some(piece) => piece,
                        None => break,
                    },
                };
                if coded.start(piece).is_err() {
                    st.picker.piece_abandoned(piece);
                    break;
                }
                for r in coded.plan(key, piece, budget, ask) {
                    budget = budget.saturating_sub(r.count);
                    ranges.push(r);
                }
            }
            if budget > 0 && st.picker.is_endgame() {
                // Plain pieces still missing blocks from legacy peers: their
                // blocks so far become source symbols of a decoder, and this
                // peer adds symbols for the rest.
                for piece in st.picker.plain_partials(&theirs) {
                    let Some(blocks) = st.picker.convert_to_coded(piece) else {
                        continue;
                    };
                    if coded.start(piece).is_err() {
                        continue;
                    }
                    for (begin, bytes, sender) in blocks {
                        if let Received::Decoded(d) = coded.push_block(sender, piece, begin, &bytes)
                        {
                            decoded.push((piece, d));
                        }
                    }
                }
                let mut pieces: Vec<u32> = coded
                    .pieces()
                    .filter(|&p| from_here(p, &st.picker))
                    .collect();
                pieces.sort_unstable();
                for piece in pieces {
                    if budget == 0 {
                        break;
                    }
                    for slower in coded.take_over(key, piece, budget) {
                        taken_over.push((slower, piece));
                    }
                    for r in coded.plan(key, piece, budget, Ask::Race) {
                        budget = budget.saturating_sub(r.count);
                        ranges.push(r);
                    }
                }
            }
        }
        if let Some(link) = self.link.as_mut() {
            link.suggestions = suggestions;
        }
        for (slower, piece) in taken_over {
            self.torrent.tell(&[slower], PeerCmd::CodedDone(piece));
        }
        for (piece, d) in decoded {
            self.torrent.coded_decoded(piece, d);
        }
        for range in ranges {
            if let Some(link) = self.link.as_mut() {
                link.asked += u64::from(range.count);
            }
            self.send_coded(CodedMessage::SymbolRequest { range, delivery });
        }
    }

    /// Symbols arrived (a SYMBOLS message or a datagram): into the decoder.
    pub(crate) fn receive_symbols(
        &mut self,
        piece: u32,
        first_esi: u32,
        data: Bytes,
        now: Instant,
    ) -> Result<()> {
        let Some(t) = self.link.as_ref().map(|l| l.t as usize) else {
            return Ok(());
        };
        self.last_block = now;
        self.torrent
            .downloaded
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut useful = 0u64;
        let mut unrequested = 0u32;
        let (mut late, mut surplus) = (0u64, 0u64);
        let mut ready = false;
        let mut decoded = None;
        let mut stop = Vec::new();
        {
            let mut st = self.torrent.lock();
            let Some(coded) = st.coded.as_mut() else {
                return Ok(());
            };
            for (i, symbol) in data.chunks(t).enumerate() {
                match coded.push(self.key, piece, first_esi + i as u32, symbol) {
                    Received::Stored => useful += t as u64,
                    Received::ReadyToDecode => {
                        useful += t as u64;
                        ready = true;
                    }
                    Received::Decoded(d) => {
                        useful += t as u64;
                        decoded = Some(d);
                    }
                    Received::Late => late += 1,
                    Received::Surplus => surplus += 1,
                    Received::NotCoded => {
                        tracing::trace!(piece, "symbol for a piece no longer coded");
                        surplus += 1
                    }
                    Received::Unrequested => unrequested += 1,
                }
            }
            if ready || decoded.is_some() {
                stop = coded.stop_senders(piece);
            }
        }
        if late + surplus > 0 {
            tracing::trace!(peer = %self.addr, piece, first_esi, late, surplus, "symbols of no use");
        }
        // Other senders of the piece stop now rather than after the hash
        // check and the write: what they would send meanwhile is waste.
        if !stop.is_empty() {
            let (this, others): (Vec<_>, Vec<_>) = stop.into_iter().partition(|&k| k == self.key);
            if !this.is_empty() {
                self.send_coded(CodedMessage::PieceDone { piece });
            }
            self.torrent.tell(&others, PeerCmd::CodedDone(piece));
        }
        self.counters
            .down_coded
            .fetch_add(useful, Ordering::Relaxed);
        self.torrent
            .received_coded
            .fetch_add(useful, Ordering::Relaxed);
        self.torrent
            .wasted
            .fetch_add(data.len() as u64 - useful, Ordering::Relaxed);
        if let Some(link) = self.link.as_mut() {
            link.late += late;
            link.surplus += surplus;
            link.unrequested += unrequested;
            link.got += (data.len() / t) as u64;
            if link.got > link.asked + u64::from(MAX_UNREQUESTED) {
                // Symbols of pieces we never started, or already finished,
                // count as surplus above; none may exceed what was asked.
                return Err(Violation::Coded(format!(
                    "{} symbols sent, {} requested",
                    link.got, link.asked
                ))
                .into());
            }
            if link.unrequested > MAX_UNREQUESTED {
                return Err(Violation::Coded(format!(
                    "{} symbols never requested",
                    link.unrequested
                ))
                .into());
            }
        }
        if let Some(d) = decoded {
            self.torrent.coded_decoded(piece, d);
        } else if ready {
            self.torrent.coded_ready(piece);
        }
        self.refill();
        Ok(())
    }

    /// A legacy block of a piece received as symbols.
    pub(crate) fn block_to_decoder(&mut self, block: BlockRef, data: &[u8]) {
        let outcome = {
            let mut st = self.torrent.lock();
            let Some(coded) = st.coded.as_mut() else {
                return;
            };
            coded.push_block(self.key, block.piece, block.begin, data)
        };
        match outcome {
            Received::Decoded(d) => self.torrent.coded_decoded(block.piece, d),
            Received::ReadyToDecode => self.torrent.coded_ready(block.piece),
            _ => {}
        }
    }

    /// A datagram arrived over QUIC.
    pub(crate) fn on_datagram(&mut self, datagram: Bytes) -> Result<()> {
        let Some(t) = self.link.as_ref().map(|l| l.t) else {
            // Not coded yet: nothing to do with symbols.
            return Ok(());
        };
        let frame = match Datagram::decode(&datagram, t, &Limits::DEFAULT)
            .map_err(|e| Violation::Coded(e.to_string()))?
        {
            Datagram::Symbols(frame) => frame,
            Datagram::Ack {
                highest_seq,
                received,
                receive_us,
            } => {
                self.on_symbol_ack(highest_seq, received, receive_us, Instant::now());
                return Ok(());
            }
        };
        if let Some(link) = self.link.as_mut() {
            link.dg_received += frame.symbols.len() as u64;
            let newer = link
                .dg_highest
                .is_none_or(|h| (frame.seq.wrapping_sub(h) as i32) > 0);
            if newer {
                link.dg_highest = Some(frame.seq);
                // Microseconds on our clock, wrapping: only differences count.
                link.dg_highest_us = link.dg_epoch.elapsed().as_micros() as u32;
            }
            // Acknowledge promptly once a good batch arrived: at least
            // every 32 KiB, so every 64 KiB datagram of a loopback path (the
            // sender's window may hold only a few), and every 32 symbols of
            // a 1 KiB-symbol Ethernet path; the tick covers the rest.
            if link.dg_received - link.dg_acked >= ACK_EVERY_BYTES {
                self.send_ack();
            }
        }
        self.receive_symbols(frame.piece, frame.esi, frame.symbols, Instant::now())
    }

    fn send_ack(&mut self) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let (Some(highest), received) = (link.dg_highest, link.dg_received) else {
            return;
        };
        if received == link.dg_acked {
            return;
        }
        link.dg_acked = received;
        let receive_us = link.dg_highest_us;
        // As a datagram: on the stream, one lost packet would hold back
        // every acknowledgement behind it. A lost one is superseded by the
        // next (they are cumulative).
        let sent = self.quic.as_ref().is_some_and(|quic| {
            quic.send_datagram(Datagram::ack(highest, received, receive_us))
                .is_ok()
        });
        if !sent {
            self.send_coded(CodedMessage::Ack {
                highest_seq: highest,
                received,
                receive_us,
            });
        }
    }

    /// The peer acknowledged our symbol datagrams: feeds our pacer, and the
    /// session's uplink pacer what it learnt.
    fn on_symbol_ack(&mut self, highest_seq: u32, received: u64, receive_us: u32, now: Instant) {
        let delta = self
            .link
            .as_mut()
            .and_then(|l| l.pacer.as_mut())
            .and_then(|pacer| pacer.on_ack(highest_seq, received, receive_us, now));
        if let Some(delta) = delta {
            self.torrent.lock_uplink().on_ack(delta, now);
        }
    }

    /// Every 10 ms: acknowledge datagrams, write off lost symbols, and ask
    /// for replacements.
    pub(crate) fn on_coded_tick(&mut self) {
        self.send_ack();
        if self
            .link
            .as_ref()
            .is_none_or(|l| l.delivery != Delivery::Datagram)
        {
            return;
        }
        // A range is lost where it was overtaken by datagrams sent after
        // it (datagrams queue in the receive buffer while the notice came
        // on the stream, so a timer alone would write off symbols that are
        // merely waiting); a long timer covers a sender that went quiet.
        let highest = self.link.as_ref().and_then(|l| l.dg_highest);
        let fallback = self
            .rtt_estimate()
            .saturating_mul(8)
            .max(Duration::from_millis(500));
        let touched = {
            let mut st = self.torrent.lock();
            st.coded.as_mut().map_or(Vec::new(), |c| {
                c.expire(
                    self.key,
                    highest,
                    REORDER_ALLOWANCE,
                    Instant::now(),
                    fallback,
                )
            })
        };
        if !touched.is_empty() {
            self.refill();
        }
    }

    fn rtt_estimate(&self) -> Duration {
        self.rtt.get().unwrap_or(Duration::from_millis(20))
    }
}

/// How long a connection between two QUIC-capable coded peers waits for
/// its move to QUIC before it asks for symbols itself. The move takes a
/// round trip or two; a peer whose UDP is blocked starts this much later.
const QUIC_MOVE_GRACE: Duration = Duration::from_secs(1);

/// Opens a QUIC connection to a coded peer and runs the peer protocol over
/// it; the TCP connection is replaced once it is up (see `register_peer`).
/// If UDP is blocked the connect times out and the TCP connection stays.
async fn upgrade_to_quic(
    torrent: std::sync::Arc<crate::session::torrent::TorrentShared>,
    endpoint: quinn::Endpoint,
    target: SocketAddr,
) {
    let result = async {
        let (conn, stream) = quic::connect(&endpoint, target).await?;
        crate::session::peer::start_peer(torrent, stream, target, true, None, Some(conn))
            .await?
            .run()
            .await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(peer = %target, "QUIC: {e:#}");
    }
}

/// Whether a piece the peer holds may be asked of it: anything, unless it
/// is a suggesting seed, which is asked only for what it suggested or what
/// no more peers hold than the `seeds` connected (complete peers).
pub(crate) fn asks_suggesting_seed(
    suggesting: bool,
    suggested_by_them: &std::collections::HashSet<u32>,
    piece: u32,
    picker: &crate::session::picker::Picker,
    seeds: u32,
) -> bool {
    !suggesting
        || suggested_by_them.contains(&piece)
        || picker.availability_of(piece) <= seeds.max(1)
}

/// Starts the oldest suggested piece that can start; suggestions of
/// pieces held or under way are dropped, those there is no room for yet
/// are kept.
fn next_suggested(
    picker: &mut crate::session::picker::Picker,
    suggestions: &mut std::collections::VecDeque<u32>,
) -> Option<u32> {
    use crate::session::picker::Suggested;
    let mut kept = std::collections::VecDeque::new();
    let mut started = None;
    while let Some(piece) = suggestions.pop_front() {
        match picker.start_suggested(piece) {
            Suggested::Started => {
                started = Some(piece);
                break;
            }
            Suggested::Useless => {}
            Suggested::NotNow => kept.push_back(piece),
        }
    }
    kept.append(suggestions);
    *suggestions = kept;
    started
}
