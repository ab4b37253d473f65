//! Receiving pieces as symbols: one decoder per coded piece and the
//! receiver-driven allocation of ESIs to senders.
//!
//! A piece's first sender gets its source ESIs (0..K): on a clean path that
//! is the piece itself and costs the sender no coding. Every other sender
//! (several senders, stragglers, endgame) and every loss margin gets a fresh
//! range of repair ESIs from a per-piece counter starting at K, so no two
//! requests ever overlap and any K symbols that arrive finish the piece. A
//! sender that leaves wastes nothing: what it sent stays in the decoder and
//! the counter simply moves on. Pure state; the torrent calls it under its
//! lock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codec::{DecodedPiece, DigestKey, PieceDecoder, Push, SenderId, TorrentCode};
use wire::fountain::SymbolRange;
use wire::{Limits, PieceGeometry};

use crate::session::picker::PeerKey;

/// Symbols asked for beyond the strict deficit: a K-symbol decode fails
/// about 0.5% of the time, one more symbol makes that rare.
const MARGIN: u32 = 1;
/// How a plan asks a sender for symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Exactly what the decoder still needs, counting what is owed as if
    /// it will all arrive: every symbol a sender spends is one the piece
    /// uses, and a lost one is asked again once written off. The sender's
    /// upload is the scarce thing for most of a download (a seed that
    /// leaves after a fixed amount was losing an eighth of it to spare and
    /// loss-padded symbols that arrived after their piece was complete).
    Exact,
    /// Enough that what is missing arrives through the sender's measured
    /// losses, plus a spare against a failed decode once repair symbols
    /// take part: no round trip for a loss. For the last pieces, where
    /// waiting holds up the whole download.
    Hedged,
    /// Hedged, and the sender may also join a piece others are sending,
    /// racing them for what they will not bring soon (endgame).
    Race,
}

/// Most senders working on one piece at once.
const MAX_SENDERS: usize = 3;

/// Who was asked for which symbols.
#[derive(Debug, Clone)]
struct Assignment {
    peer: PeerKey,
    range: SymbolRange,
    arrived: u32,
    /// When the sender said the whole range was sent (datagrams), and the
    /// sequence number of its last datagram.
    sent: Option<(Instant, u32)>,
}

impl Assignment {
    fn outstanding(&self) -> u32 {
        self.range.count.saturating_sub(self.arrived)
    }
}

#[derive(Debug)]
struct CodedPiece {
    /// `None` while the decoder is away being decoded.
    decoder: Option<PieceDecoder>,
    k: u32,
    /// Next source ESI not yet requested from anyone.
    next_source: u32,
    /// Next repair ESI not yet requested from anyone.
    next_repair: u32,
    /// The sender that gets the source ESIs.
    owner: Option<PeerKey>,
    open: Vec<Assignment>,
}

impl CodedPiece {
    /// Symbols the decoder holds (all K while it is away being decoded).
    fn buffered(&self) -> u32 {
        self.decoder.as_ref().map_or(self.k, PieceDecoder::buffered)
    }
}

/// What a pushed symbol did.
#[derive(Debug)]
pub enum Received {
    /// Stored; more needed.
    Stored,
    /// Enough symbols: take the decoder and decode off the reactor.
    ReadyToDecode,
    /// Every source symbol is here: this is the piece (to verify).
    Decoded(DecodedPiece),
    /// Surplus or late (duplicate, piece finished or being decoded).
    Surplus,
    /// From a request already written off as lost: it was only late.
    Late,
    /// Not something we asked this sender for, or malformed: its fault.
    Unrequested,
    /// The piece is not being received as symbols.
    NotCoded,
}

/// Coded reception state of one torrent.
pub struct CodedState {
    code: TorrentCode,
    limits: Limits,
    key: DigestKey,
    pieces: HashMap<u32, CodedPiece>,
    /// Smoothed fraction of datagram symbols lost, per sender.
    loss: HashMap<PeerKey, f64>,
    /// How fast each sender delivers, for endgame races.
    rates: HashMap<PeerKey, SenderRate>,
}

/// A sender's delivery rate in bytes per second: now, and the most it has
/// shown (what it can do once given work).
#[derive(Debug, Clone, Copy, Default)]
struct SenderRate {
    now: f64,
    peak: f64,
}

impl CodedState {
    /// `repair` is the outer code's repair pieces (count, length), coded as
    /// pieces N .. N + R − 1; (0, 0) without one.
    pub fn new(
        geometry: PieceGeometry,
        repair: (u32, u32),
        limits: &Limits,
    ) -> anyhow::Result<Self> {
        let symbol_size = codec::SymbolSize::preferred_for(geometry.piece_length());
        let (count, len) = repair;
        Ok(CodedState {
            code: TorrentCode::new(geometry, symbol_size)?.with_repair_pieces(count, len)?,
            limits: limits.clone(),
            key: DigestKey::random(),
            pieces: HashMap::new(),
            loss: HashMap::new(),
            rates: HashMap::new(),
        })
    }

    /// The symbol size T of this torrent (from its piece length alone).
    pub fn t(&self) -> u32 {
        self.code.symbol_size().bytes()
    }

    pub fn code(&self) -> &TorrentCode {
        &self.code
    }

    pub fn is_coded(&self, piece: u32) -> bool {
        self.pieces.contains_key(&piece)
    }

    /// Pieces being received as symbols.
    pub fn pieces(&self) -> impl Iterator<Item = u32> + '_ {
        self.pieces.keys().copied()
    }

    /// Starts receiving `piece` as symbols.
    pub fn start(&mut self, piece: u32) -> anyhow::Result<()> {
        let params = self.code.piece(piece)?;
        let k = params.k();
        self.pieces.insert(
            piece,
            CodedPiece {
                decoder: Some(PieceDecoder::new(params, &self.limits, self.key)),
                k,
                next_source: 0,
                next_repair: k,
                owner: None,
                open: Vec::new(),
            },
        );
        Ok(())
    }

    /// Smoothed loss of a sender's datagram symbols.
    pub fn loss_of(&self, peer: PeerKey) -> f64 {
        self.loss.get(&peer).copied().unwrap_or(0.0)
    }

    /// The rate at which `peer` delivers to us now (bytes per second).
    pub fn set_rate(&mut self, peer: PeerKey, bytes_per_second: f64) {
        let r = self.rates.entry(peer).or_default();
        r.now = bytes_per_second;
        r.peak = r.peak.max(bytes_per_second);
    }

    /// Symbols requested from `peer` and not yet arrived or written off.
    pub fn in_flight(&self, peer: PeerKey) -> u32 {
        self.pieces
            .values()
            .flat_map(|p| &p.open)
            .filter(|a| a.peer == peer)
            .map(Assignment::outstanding)
            .sum()
    }

    /// Symbols still needed for `piece` beyond what is buffered and what is
    /// expected to arrive from open requests.
    fn deficit(&self, piece: &CodedPiece, ask: Ask) -> f64 {
        let buffered = piece.buffered();
        if ask == Ask::Exact {
            // What the decoder needs for its next attempt (K, one more
            // after each failed one) against what is held and owed.
            let attempts = piece.decoder.as_ref().map_or(0, PieceDecoder::attempts);
            let owed: u32 = piece.open.iter().map(Assignment::outstanding).sum();
            return f64::from(piece.k + attempts) - f64::from(buffered) - f64::from(owed);
        }
        let expected: f64 = piece
            .open
            .iter()
            .map(|a| f64::from(a.outstanding()) * (1.0 - self.loss_of(a.peer)))
            .sum();
        // Every source symbol decodes trivially; only once repair symbols
        // take part may a K-symbol decode fail and need the margin.
        let margin = if piece.next_repair > piece.k {
            MARGIN
        } else {
            0
        };
        f64::from(piece.k + margin) - f64::from(buffered) - expected
    }

    /// Symbols `peer` should race for on `piece` in endgame. What another
    /// sender has outstanding counts in proportion to its speed against
    /// `peer`'s: one ten times slower delivers a tenth of it while `peer`
    /// sends the rest; one as fast delivers all of it first, and racing it
    /// would only bring the same symbols twice, the second half arriving
    /// after the piece is done. With no measure of `peer` yet, or of the
    /// other sender, it races as if the other sent nothing.
    fn race_deficit(&self, piece: &CodedPiece, peer: PeerKey) -> f64 {
        let buffered = piece.buffered();
        let racer = self.rates.get(&peer).map_or(0.0, |r| r.peak);
        let expected: f64 = piece
            .open
            .iter()
            .map(|a| {
                let weight = if a.peer == peer {
                    1.0
                } else if racer > 0.0 {
                    let theirs = self.rates.get(&a.peer).map_or(0.0, |r| r.now);
                    (theirs / racer).min(1.0)
                } else {
                    0.0
                };
                f64::from(a.outstanding()) * (1.0 - self.loss_of(a.peer)) * weight
            })
            .sum();
        f64::from(piece.k + MARGIN) - f64::from(buffered) - expected
    }

    /// Requests for `peer` on `piece`, at most `budget` symbols, asked as
    /// `ask` says. With [`Ask::Race`], a sender may join a piece whose
    /// deficit is already covered by others (to finish it sooner); it then
    /// gets repair ESIs only.
    pub fn plan(&mut self, peer: PeerKey, piece: u32, budget: u32, ask: Ask) -> Vec<SymbolRange> {
        let endgame = ask == Ask::Race;
        let loss = if ask == Ask::Exact {
            0.0
        } else {
            self.loss_of(peer).min(0.5)
        };
        let max_message = self.limits.max_symbols_per_message;
        let Some(p) = self.pieces.get(&piece) else {
            return Vec::new();
        };
        // Away being decoded, or finished and waiting for its hash check:
        // nothing more to ask for.
        if p.decoder.as_ref().is_none_or(PieceDecoder::is_finished) {
            return Vec::new();
        }
        let deficit = self.deficit(p, ask);
        let joined = p.open.iter().any(|a| a.peer == peer);
        let senders = {
            let mut s: Vec<PeerKey> = p.open.iter().map(|a| a.peer).collect();
            s.sort_unstable();
            s.dedup();
            s.len()
        };
        let race = if endgame && (joined || senders < MAX_SENDERS) {
            self.race_deficit(p, peer)
        } else {
            0.0
        };
        let need = if deficit > 0.0 {
            deficit
        } else if race > 0.0 {
            // Race the current senders for what they will not bring soon.
            race
        } else {
            return Vec::new();
        };
        // Ask for enough that `need` arrive through this sender's losses;
        // with repair symbols in play, one spare against a failed decode.
        let source_covers = p.owner.is_none_or(|o| o == peer)
            && loss == 0.0
            && f64::from(p.k - p.next_source) >= need;
        let margin = if source_covers || ask == Ask::Exact {
            0.0
        } else {
            f64::from(MARGIN)
        };
        let wanted = (((need + margin) / (1.0 - loss)).ceil() as u32).min(budget);
        if wanted == 0 {
            return Vec::new();
        }
        let Some(p) = self.pieces.get_mut(&piece) else {
            return Vec::new();
        };
        let owner = *p.owner.get_or_insert(peer);
        let mut out = Vec::new();
        let mut left = wanted;
        if owner == peer && p.next_source < p.k {
            let count = left.min(p.k - p.next_source).min(max_message);
            out.push(SymbolRange {
                piece,
                first_esi: p.next_source,
                count,
            });
            p.next_source += count;
            left -= count;
        }
        if left > 0 {
            let max_esi = self.limits.max_esi;
            let count = left
                .min(max_message)
                .min(max_esi.saturating_sub(p.next_repair) + 1);
            if count > 0 {
                out.push(SymbolRange {
                    piece,
                    first_esi: p.next_repair,
                    count,
                });
                p.next_repair += count;
            }
        }
        tracing::trace!(piece, loss, need, ?ask, ?out, "symbols requested");
        for range in &out {
            p.open.push(Assignment {
                peer,
                range: *range,
                arrived: 0,
                sent: None,
            });
        }
        out
    }

    /// In endgame, `peer` takes `piece` over from senders less than half as
    /// fast as it has shown it can be, when `budget` lets it ask for all
    /// they still owe: their requests are closed, and the senders returned
    /// are to be told to drop the piece. Racing them instead would leave
    /// their next symbols (a datagram of up to 64 of them) arriving after
    /// the piece is done. Unmeasured senders are raced, never dropped.
    pub fn take_over(&mut self, peer: PeerKey, piece: u32, budget: u32) -> Vec<PeerKey> {
        let racer = self.rates.get(&peer).map_or(0.0, |r| r.peak);
        let Some(p) = self.pieces.get(&piece) else {
            return Vec::new();
        };
        if racer <= 0.0 || p.decoder.as_ref().is_none_or(PieceDecoder::is_finished) {
            return Vec::new();
        }
        let slow = |other: PeerKey| {
            other != peer && self.rates.get(&other).is_some_and(|r| r.now * 2.0 < racer)
        };
        let mut dropped: Vec<PeerKey> = p
            .open
            .iter()
            .filter(|a| a.outstanding() > 0 && slow(a.peer))
            .map(|a| a.peer)
            .collect();
        if dropped.is_empty() {
            return dropped;
        }
        let buffered = p.buffered();
        let kept: u32 = p
            .open
            .iter()
            .filter(|a| !slow(a.peer))
            .map(Assignment::outstanding)
            .sum();
        let need = (p.k + 2 * MARGIN).saturating_sub(buffered + kept);
        if need > budget {
            return Vec::new();
        }
        dropped.sort_unstable();
        dropped.dedup();
        if let Some(p) = self.pieces.get_mut(&piece) {
            p.open.retain(|a| !dropped.contains(&a.peer));
            if p.owner.is_some_and(|o| dropped.contains(&o)) {
                p.owner = None;
            }
        }
        tracing::trace!(piece, ?dropped, "taken over from slower senders");
        dropped
    }

    /// Takes one symbol from `peer`.
    pub fn push(&mut self, peer: PeerKey, piece: u32, esi: u32, symbol: &[u8]) -> Received {
        let Some(p) = self.pieces.get_mut(&piece) else {
            return Received::NotCoded;
        };
        let Some(a) = p
            .open
            .iter_mut()
            .find(|a| a.peer == peer && a.range.contains(esi))
        else {
            // A range written off as lost may still deliver a straggler.
            return if esi < p.next_source.max(p.next_repair) {
                Received::Late
            } else {
                Received::Unrequested
            };
        };
        a.arrived += 1;
        let Some(decoder) = p.decoder.as_mut() else {
            tracing::trace!(piece, esi, "symbol while the piece is being decoded");
            return Received::Surplus;
        };
        match decoder.push(esi, symbol, SenderId(peer)) {
            Push::NeedMore { .. } => Received::Stored,
            Push::ReadyToDecode => Received::ReadyToDecode,
            Push::Decoded(piece) => Received::Decoded(piece),
            Push::Rejected(r) => {
                tracing::trace!(piece, esi, "symbol refused: {r}");
                match r.action() {
                    codec::Action::StrikeSender => Received::Unrequested,
                    _ => Received::Surplus,
                }
            }
        }
    }

    /// Takes a plain block (legacy peers, or a plain piece turned coded):
    /// its bytes are source symbols and feed the same decoder.
    pub fn push_block(&mut self, peer: PeerKey, piece: u32, begin: u32, data: &[u8]) -> Received {
        let Some(decoder) = self.pieces.get_mut(&piece).and_then(|p| p.decoder.as_mut()) else {
            return Received::NotCoded;
        };
        match decoder.push_block(begin, data, SenderId(peer)) {
            Push::NeedMore { .. } => Received::Stored,
            Push::ReadyToDecode => Received::ReadyToDecode,
            Push::Decoded(piece) => Received::Decoded(piece),
            Push::Rejected(_) => Received::Surplus,
        }
    }

    /// The sender finished sending `range` by datagrams, the last one with
    /// sequence number `last_seq`.
    pub fn range_sent(&mut self, peer: PeerKey, range: SymbolRange, last_seq: u32, now: Instant) {
        if let Some(a) = self.pieces.get_mut(&range.piece).and_then(|p| {
            p.open
                .iter_mut()
                .find(|a| a.peer == peer && a.range == range)
        }) {
            a.sent = Some((now, last_seq));
        }
    }

    /// Writes off what `peer` has not delivered of ranges it finished
    /// sending, once datagrams it sent later have arrived (`highest_seq`,
    /// allowing `reorder` of reordering) or, failing that, `fallback` after
    /// it said so; updates its loss estimate. Returns the pieces that may
    /// need new requests.
    pub fn expire(
        &mut self,
        peer: PeerKey,
        highest_seq: Option<u32>,
        reorder: u32,
        now: Instant,
        fallback: Duration,
    ) -> Vec<u32> {
        let mut touched = Vec::new();
        let mut samples: Vec<(f64, u32)> = Vec::new();
        for (&piece, p) in self.pieces.iter_mut() {
            let before = p.open.len();
            p.open.retain(|a| {
                if a.peer != peer {
                    return true;
                }
                let Some((at, last_seq)) = a.sent else {
                    return a.outstanding() > 0;
                };
                let overtaken =
                    highest_seq.is_some_and(|h| (h.wrapping_sub(last_seq) as i32) > reorder as i32);
                let expired =
                    a.outstanding() == 0 || overtaken || now.duration_since(at) >= fallback;
                if expired && a.outstanding() > 0 {
                    tracing::trace!(
                        piece, ?a.range, arrived = a.arrived, last_seq, ?highest_seq,
                        overtaken, "symbols written off"
                    );
                }
                if expired && a.range.count > 0 {
                    samples.push((
                        f64::from(a.outstanding()) / f64::from(a.range.count),
                        a.range.count,
                    ));
                }
                !expired
            });
            if p.open.len() != before {
                touched.push(piece);
            }
        }
        for (lost, count) in samples {
            // Weight by range size: a long range says more than a short one.
            let w = (f64::from(count) / 512.0).clamp(0.05, 0.5);
            let e = self.loss.entry(peer).or_insert(0.0);
            *e += w * (lost - *e);
        }
        touched
    }

    /// Closes a request the sender refused or cancelled.
    pub fn close(&mut self, peer: PeerKey, range: SymbolRange) {
        if let Some(p) = self.pieces.get_mut(&range.piece) {
            p.open.retain(|a| !(a.peer == peer && a.range == range));
            if p.owner == Some(peer) && p.open.iter().all(|a| a.peer != peer) {
                // Source ESIs it never delivered go to the next sender.
                p.owner = None;
            }
        }
    }

    /// A sender left: its open requests are written off (what it sent stays).
    pub fn peer_gone(&mut self, peer: PeerKey) {
        for p in self.pieces.values_mut() {
            p.open.retain(|a| a.peer != peer);
            if p.owner == Some(peer) {
                p.owner = None;
            }
        }
        self.loss.remove(&peer);
        self.rates.remove(&peer);
    }

    /// A piece's reception in a few words, for stall logs.
    pub fn describe(&self, piece: u32) -> String {
        let Some(p) = self.pieces.get(&piece) else {
            return "not coded".to_owned();
        };
        let decoder = match &p.decoder {
            None => "decoding".to_owned(),
            Some(d) if d.is_finished() => format!("{} symbols, finished", d.buffered()),
            Some(d) => format!("{} symbols", d.buffered()),
        };
        format!(
            "K {}, {decoder}, {} open requests, deficit {:.1}",
            p.k,
            p.open.len(),
            self.deficit(p, Ask::Exact)
        )
    }

    /// Peers with open requests on `piece` (to tell them it is done).
    pub fn senders_of(&self, piece: u32) -> Vec<PeerKey> {
        let mut v: Vec<PeerKey> = self
            .pieces
            .get(&piece)
            .map_or(Vec::new(), |p| p.open.iter().map(|a| a.peer).collect());
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The decoder holds enough symbols: requests still open for `piece` are
    /// closed (what arrives for them now counts as late) and the senders
    /// that still owed symbols are returned, to be told to stop. Should the
    /// decode need more, the next plan asks afresh.
    pub fn stop_senders(&mut self, piece: u32) -> Vec<PeerKey> {
        let Some(p) = self.pieces.get_mut(&piece) else {
            return Vec::new();
        };
        let mut owing: Vec<PeerKey> = p
            .open
            .iter()
            .filter(|a| a.outstanding() > 0)
            .map(|a| a.peer)
            .collect();
        owing.sort_unstable();
        owing.dedup();
        p.open.clear();
        p.owner = None;
        owing
    }

    /// Takes the decoder to decode it elsewhere; `None` if already away.
    pub fn take_decoder(&mut self, piece: u32) -> Option<PieceDecoder> {
        self.pieces.get_mut(&piece)?.decoder.take()
    }

    /// Gives a decoder back after a decode that needs more symbols.
    pub fn restore_decoder(&mut self, piece: u32, decoder: PieceDecoder) {
        if let Some(p) = self.pieces.get_mut(&piece) {
            p.decoder = Some(decoder);
        }
    }

    /// Forgets a piece (done, or given up); returns who was still sending.
    pub fn finish(&mut self, piece: u32) -> Vec<PeerKey> {
        let senders = self.senders_of(piece);
        self.pieces.remove(&piece);
        senders
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
