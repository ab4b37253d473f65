//! The sending side of a coded connection: requests the peer made of us,
//! served as SYMBOLS messages on the connection (TCP, or QUIC's stream) or
//! as datagrams paced by our rate control.

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use wire::fountain::{
    CodedMessage, DatagramFrame, Delivery, RejectReason, SymbolRange, DATAGRAM_HEADER,
};

use super::link::{Serving, MAX_QUEUED_SYMBOLS};
use crate::session::peer::{PeerTask, WRITE_HIGH_WATER};

/// Symbols per SYMBOLS message: 16 KiB of payload, like a block.
const STREAM_MESSAGE_BYTES: u32 = 16 << 10;
/// How far ahead of the sender its pieces are read (in symbol bytes still
/// to send): enough to hide a read at full speed, and little enough that
/// the piece cache (16 MiB for every peer together) still holds a piece
/// when its turn comes — reading all of a deep queue ahead made the seed
/// read each piece about twice.
const READ_AHEAD_BYTES: u64 = 2 << 20;

impl PeerTask {
    /// A symbol request from the peer: refused if we choke it, lack the
    /// piece or it asks too much at once; otherwise queued.
    pub(crate) async fn queue_symbol_request(
        &mut self,
        range: SymbolRange,
        delivery: Delivery,
    ) -> Result<()> {
        let reason = if self.conn.am_choking {
            Some(RejectReason::Choked)
        } else if !self.holds(range.piece) {
            Some(RejectReason::NotHeld)
        } else if self
            .link
            .as_ref()
            .is_some_and(|l| l.serving_symbols + range.count > MAX_QUEUED_SYMBOLS)
        {
            Some(RejectReason::OverQuota)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.send_coded(CodedMessage::Reject { range, reason });
            return Ok(());
        }
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        // Datagrams only exist over QUIC.
        let delivery = if link.pacer.is_some() {
            delivery
        } else {
            Delivery::Stream
        };
        link.serving.push_back(Serving::new(range, delivery));
        link.serving_symbols += range.count;
        self.torrent.lock().note_asked_of_us(range.piece);
        self.read_ahead();
        if delivery == Delivery::Stream {
            self.serve_coded_stream().await?;
        }
        Ok(())
    }

    /// Refuses everything queued (we choked the peer).
    pub(crate) fn reject_coded_requests(&mut self, reason: RejectReason) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let queued: Vec<SymbolRange> = link.serving.drain(..).map(|s| s.range).collect();
        link.serving_symbols = 0;
        for range in queued {
            self.send_coded(CodedMessage::Reject { range, reason });
        }
    }

    /// Sends queued stream symbols while the socket keeps up.
    pub(crate) async fn serve_coded_stream(&mut self) -> Result<()> {
        while self.writer.queued() < WRITE_HIGH_WATER
            && self.serve_resume_at.is_none()
            && !self.torrent.upload.reached()
        {
            let Some((t, their_id)) = self.link.as_ref().map(|l| (l.t, l.their_id)) else {
                return Ok(());
            };
            let Some((range, finished)) =
                self.take_next(Delivery::Stream, STREAM_MESSAGE_BYTES / t)
            else {
                return Ok(());
            };
            if let Some(done) = finished {
                self.range_served(done);
            }
            let data = self
                .torrent
                .symbols(range.piece, range.first_esi, range.count)
                .await?;
            // Extended-message header and SYMBOLS header, then the symbols
            // from where they lie.
            let header = CodedMessage::symbols_header(range.piece, range.first_esi);
            let mut head = BytesMut::with_capacity(6 + header.len());
            head.put_u32((2 + header.len() + data.len()) as u32);
            head.put_u8(20);
            head.put_u8(their_id);
            head.put_slice(&header);
            self.conn.sent(Instant::now());
            self.writer.send(head.freeze());
            self.account_upload(data.len() as u64);
            self.writer.send(data);
        }
        Ok(())
    }

    /// Takes up to `max` symbols from the first queued request of
    /// `delivery`; also returns the request when this finished it.
    fn take_next(
        &mut self,
        delivery: Delivery,
        max: u32,
    ) -> Option<(SymbolRange, Option<SymbolRange>)> {
        let link = self.link.as_mut()?;
        let at = link.serving.iter().position(|s| s.delivery == delivery)?;
        let serving = link.serving.get_mut(at)?;
        let n = serving.left().min(max.max(1));
        let taken = SymbolRange {
            piece: serving.range.piece,
            first_esi: serving.next,
            count: n,
        };
        serving.next += n;
        let finished = (serving.left() == 0).then_some(serving.range);
        if finished.is_some() {
            link.serving.remove(at);
        }
        link.serving_symbols = link.serving_symbols.saturating_sub(n);
        Some((taken, finished))
    }

    /// A request was sent in full: the read-ahead moves on.
    fn range_served(&self, range: SymbolRange) {
        tracing::trace!(peer = %self.addr, piece = range.piece, first_esi = range.first_esi, count = range.count, "range served");
        self.read_ahead();
    }

    /// Starts reading the pieces of the first requests in our queue, up to
    /// [`READ_AHEAD_BYTES`] of symbols, unless cached or being read.
    fn read_ahead(&self) {
        let Some(link) = self.link.as_ref() else {
            return;
        };
        let mut ahead = 0u64;
        for serving in link.serving.iter() {
            if ahead >= READ_AHEAD_BYTES {
                break;
            }
            ahead += u64::from(serving.left()) * u64::from(link.t);
            self.torrent.prefetch_symbols(SymbolRange {
                piece: serving.range.piece,
                first_esi: serving.next,
                count: serving.left(),
            });
        }
    }

    fn account_upload(&mut self, bytes: u64) {
        self.counters.up.fetch_add(bytes, Ordering::Relaxed);
        self.torrent.record_upload(bytes);
        let delay = self.torrent.up_limit.reserve(bytes);
        if !delay.is_zero() {
            self.serve_resume_at = Some(tokio::time::Instant::now() + delay);
        }
    }

    /// Once a second at debug level: symbols of no use, and how our
    /// datagrams to this peer are paced (this flow and the whole uplink).
    pub(crate) fn log_coded_figures(&self, now: Instant) {
        if let Some(link) = self.link.as_ref().filter(|l| l.late + l.surplus > 0) {
            tracing::debug!(peer = %self.addr, late = link.late, surplus = link.surplus, "symbols of no use");
        }
        if let Some(pacer) = self.link.as_ref().and_then(|l| l.pacer.as_ref()) {
            let path = self.quic.as_ref().map(|q| q.stats().path);
            let (uplink_mbit, uplink_bottleneck_mbit, uplink_loss, uplink_flows) = {
                let uplink = self.torrent.lock_uplink();
                (
                    uplink.rate() * 8e-6,
                    uplink.bottleneck() * 8e-6,
                    uplink.loss(),
                    uplink.active_flows(now),
                )
            };
            tracing::debug!(
                peer = %self.addr,
                max_datagram = ?self.quic.as_ref().and_then(|q| q.max_datagram_size()),
                quic_lost = path.map(|p| p.lost_packets),
                quic_sent = path.map(|p| p.sent_packets),
                black_holes = path.map(|p| p.black_holes_detected),
                rate_mbit = pacer.rate() * 8e-6,
                bottleneck_mbit = pacer.bottleneck() * 8e-6,
                loss = pacer.loss(),
                min_rtt = ?pacer.min_rtt(),
                latest_rtt = ?pacer.latest_rtt(),
                forward_queue = ?pacer.path_delays().0,
                ack_path = ?pacer.path_delays().1,
                in_flight = pacer.in_flight(),
                window = pacer.window() as u64,
                queued = self.link.as_ref().map_or(0, |l| l.serving_symbols),
                stats = ?pacer.stats,
                uplink_mbit,
                uplink_bottleneck_mbit,
                uplink_loss,
                uplink_flows,
                "datagram pacing"
            );
        }
    }

    /// When the next datagram may go out, if any is waiting.
    pub(crate) fn datagrams_due(&self) -> Option<tokio::time::Instant> {
        if self.torrent.upload.reached() {
            return None;
        }
        let link = self.link.as_ref().filter(|l| l.has_datagrams())?;
        let at = link.pacer.as_ref()?.next_send_time(Instant::now());
        let at = match self.serve_resume_at {
            Some(limit) => tokio::time::Instant::from_std(at).max(limit),
            None => tokio::time::Instant::from_std(at),
        };
        Some(at)
    }

    /// Sends the datagrams the pacer allows now; tells the peer when a
    /// range has been sent in full (what did not arrive is then lost).
    pub(crate) async fn send_datagrams(&mut self) -> Result<()> {
        let Some(conn) = self.quic.clone() else {
            return Ok(());
        };
        loop {
            let now = Instant::now();
            let Some(link) = self.link.as_ref() else {
                return Ok(());
            };
            let t = link.t;
            let due = link
                .pacer
                .as_ref()
                .is_some_and(|p| p.next_send_time(now) <= now);
            let idle = due && !link.has_datagrams();
            if !due
                || !link.has_datagrams()
                || self.serve_resume_at.is_some()
                || self.torrent.upload.reached()
            {
                if idle {
                    // Nothing requested: the gap is ours, not the path's.
                    if let Some(p) = self.link.as_mut().and_then(|l| l.pacer.as_mut()) {
                        p.on_idle();
                    }
                }
                return Ok(());
            }
            // As many symbols as the path's datagram size allows.
            let max_datagram = conn.max_datagram_size().unwrap_or(1200);
            if conn.datagram_send_buffer_space() < max_datagram {
                // quinn drops the oldest queued datagram when its buffer is
                // full: a loss we would cause ourselves. Look again shortly.
                self.serve_resume_at =
                    Some(tokio::time::Instant::now() + std::time::Duration::from_millis(1));
                return Ok(());
            }
            let room = max_datagram.saturating_sub(DATAGRAM_HEADER);
            let per_datagram = ((room / t as usize) as u32).clamp(1, 255);
            let Some((range, finished)) = self.take_next(Delivery::Datagram, per_datagram) else {
                return Ok(());
            };
            let symbols = self
                .torrent
                .symbols(range.piece, range.first_esi, range.count)
                .await?;
            let seq = self
                .link
                .as_mut()
                .and_then(|l| l.pacer.as_mut())
                .map_or(0, |p| p.on_send(symbols.len(), now));
            let mut dg = BytesMut::with_capacity(DATAGRAM_HEADER + symbols.len());
            dg.put_slice(&DatagramFrame::header(
                seq,
                range.piece,
                range.first_esi,
                range.count as u8,
            ));
            dg.put_slice(&symbols);
            match conn.send_datagram(dg.freeze()) {
                Ok(()) => {}
                // The path shrank: what did not fit counts as lost.
                Err(quinn::SendDatagramError::TooLarge) => {
                    tracing::trace!(len = symbols.len(), "datagram too large for the path");
                }
                Err(e) => return Err(e).context("QUIC datagram"),
            }
            self.account_upload(symbols.len() as u64);
            // Our other datagram flows share the uplink: wait our turn.
            let flow = self.link.as_ref().map_or(0, |l| l.flow);
            let wait = self.torrent.lock_uplink().on_send(flow, symbols.len(), now);
            if !wait.is_zero() {
                let at = tokio::time::Instant::now() + wait;
                self.serve_resume_at = Some(self.serve_resume_at.map_or(at, |t| t.max(at)));
            }
            // The end of a request: what did not arrive is lost.
            if let Some(range) = finished {
                self.range_served(range);
                self.send_coded(CodedMessage::RangeSent {
                    range,
                    last_seq: seq,
                });
            }
        }
    }
}

/// Concatenated symbols `first_esi .. first_esi + count` of a piece: source
/// symbols are the piece's own bytes (the last one zero-padded to T), repair
/// symbols come from the piece's encoder.
pub(crate) fn source_symbols(piece: &Bytes, t: u32, k: u32, first_esi: u32, count: u32) -> Bytes {
    let (t, first, end) = (
        t as usize,
        first_esi as usize,
        (first_esi + count).min(k) as usize,
    );
    let start = first * t;
    let stop = end * t;
    if stop <= piece.len() {
        return piece.slice(start..stop);
    }
    // The last source symbol runs past the piece: pad with zeros.
    let mut out = BytesMut::with_capacity(stop - start);
    out.put_slice(piece.get(start..).unwrap_or_default());
    out.resize(stop - start, 0);
    out.freeze()
}
