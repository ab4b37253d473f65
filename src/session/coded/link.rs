//! What a connection to a coded peer carries besides the plain protocol:
//! the extension id, the symbol size, requests it made of us, the datagram
//! pacer, and acknowledgement counters for datagrams it sends us.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wire::fountain::{DatagramPacer, Delivery, PacerConfig, SymbolRange};

/// The id under which we receive `bf_raptorq` messages (our `m` entry).
pub const RAPTORQ_ID: u8 = 3;
/// Version of the extension we speak.
pub const RAPTORQ_VERSION: u32 = wire::fountain::VERSION;
/// Symbol sizes we can use.
pub const SYMBOL_SIZES: [u32; 3] = [1024, 4096, 16384];
/// Most symbols a peer may have queued with us (about 32 MiB at T = 1 KiB).
pub const MAX_QUEUED_SYMBOLS: u32 = 32_768;
/// Symbols a peer may send that we never asked for before it is dropped.
pub const MAX_UNREQUESTED: u32 = 256;

/// Datagram pacing settings: the defaults, capped by the upload limit.
pub fn datagram_pacing(max_upload_rate: u64) -> PacerConfig {
    let mut config = PacerConfig::default();
    if max_upload_rate > 0 {
        config.max_rate = max_upload_rate as f64;
    }
    config
}

/// Names each connection's datagram flow for the session's uplink pacer.
static NEXT_FLOW: AtomicU64 = AtomicU64::new(0);

/// A request being served: the range as asked, and how far we got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    pub range: SymbolRange,
    /// Next ESI to send.
    pub next: u32,
    pub delivery: Delivery,
}

impl Serving {
    pub fn new(range: SymbolRange, delivery: Delivery) -> Self {
        Serving {
            range,
            next: range.first_esi,
            delivery,
        }
    }

    pub fn left(&self) -> u32 {
        self.range.end().saturating_sub(self.next)
    }
}

/// The coded side of one connection.
pub struct CodedLink {
    /// Their id for `bf_raptorq` messages (from their extended handshake).
    pub their_id: u8,
    /// The torrent's symbol size.
    pub t: u32,
    /// How we ask them to deliver symbols to us.
    pub delivery: Delivery,
    /// Requests they made of us, in order.
    pub serving: VecDeque<Serving>,
    /// Symbols still to send over all of `serving`.
    pub serving_symbols: u32,
    /// Paces the datagrams we send them (QUIC only).
    pub pacer: Option<DatagramPacer>,
    /// Our datagrams to them, as the session's uplink pacer knows them.
    pub flow: u64,
    /// Highest datagram sequence they sent us, and payload bytes received
    /// by datagram (for our acknowledgements).
    pub dg_highest: Option<u32>,
    /// When the highest datagram arrived, microseconds since `dg_epoch`.
    pub dg_highest_us: u32,
    pub dg_epoch: Instant,
    pub dg_received: u64,
    pub dg_acked: u64,
    /// Symbols they sent that we never asked for.
    pub unrequested: u32,
    /// Symbols we asked them for, and symbols they sent, over the whole
    /// connection: a receiver-driven sender never sends more than asked,
    /// whatever became of the pieces meanwhile.
    pub asked: u64,
    pub got: u64,
    /// Symbols of no use: (late, after their range was written off; other
    /// surplus: duplicates, decoder full, piece already done).
    pub late: u64,
    pub surplus: u64,
    /// Pieces we suggested to them (seeding) and they do not have yet.
    pub suggested_to: Vec<u32>,
    /// Pieces they suggested to us, oldest first; `suggesting` once any
    /// came: such a seed is asked for its suggestions first.
    pub suggestions: VecDeque<u32>,
    pub suggesting: bool,
    /// Every piece they ever suggested: the only ones a suggesting seed is
    /// asked to send symbols of while someone else has them too.
    pub suggested_by_them: std::collections::HashSet<u32>,
}

impl CodedLink {
    pub fn new(their_id: u8, t: u32, quic: bool, now: Instant, max_rate: u64) -> Self {
        let pacer = quic.then(|| DatagramPacer::new(datagram_pacing(max_rate), now));
        CodedLink {
            their_id,
            t,
            delivery: if quic {
                Delivery::Datagram
            } else {
                Delivery::Stream
            },
            serving: VecDeque::new(),
            serving_symbols: 0,
            pacer,
            flow: NEXT_FLOW.fetch_add(1, Ordering::Relaxed),
            dg_highest: None,
            dg_highest_us: 0,
            dg_epoch: now,
            dg_received: 0,
            dg_acked: 0,
            unrequested: 0,
            asked: 0,
            got: 0,
            late: 0,
            surplus: 0,
            suggested_to: Vec::new(),
            suggestions: VecDeque::new(),
            suggesting: false,
            suggested_by_them: Default::default(),
        }
    }

    /// Drops what we were to send them of `piece` (done, or cancelled).
    pub fn drop_piece(&mut self, piece: u32) {
        self.serving.retain(|s| s.range.piece != piece);
        self.recount();
    }

    /// Stops sending what `cancel` covers of queued requests.
    pub fn drop_range(&mut self, cancel: SymbolRange) {
        for s in self
            .serving
            .iter_mut()
            .filter(|s| s.range.piece == cancel.piece)
        {
            let end = s.range.end();
            if s.next >= cancel.first_esi && s.next < cancel.end() {
                // What remains from here on is cancelled up to its end.
                s.next = if cancel.end() >= end {
                    end
                } else {
                    cancel.end()
                };
            } else if s.next < cancel.first_esi && cancel.first_esi < end && cancel.end() >= end {
                // Shorten: stop where the cancelled part begins.
                s.range.count = cancel.first_esi - s.range.first_esi;
            }
        }
        self.serving.retain(|s| s.left() > 0);
        self.recount();
    }

    fn recount(&mut self) {
        self.serving_symbols = self.serving.iter().map(Serving::left).sum();
    }

    /// Whether datagrams are waiting to be sent.
    pub fn has_datagrams(&self) -> bool {
        self.pacer.is_some()
            && self
                .serving
                .iter()
                .any(|s| s.delivery == Delivery::Datagram)
    }

    /// Whether stream symbols are waiting to be sent.
    pub fn has_stream_symbols(&self) -> bool {
        self.serving.iter().any(|s| s.delivery == Delivery::Stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(piece: u32, first_esi: u32, count: u32) -> SymbolRange {
        SymbolRange {
            piece,
            first_esi,
            count,
        }
    }

    #[test]
    fn cancels_trim_queued_ranges() {
        let mut link = CodedLink::new(7, 1024, false, Instant::now(), 0);
        link.serving
            .push_back(Serving::new(r(1, 0, 100), Delivery::Stream));
        link.serving
            .push_back(Serving::new(r(2, 0, 50), Delivery::Stream));
        link.serving
            .push_back(Serving::new(r(1, 200, 10), Delivery::Stream));
        link.recount();
        assert_eq!(link.serving_symbols, 160);
        link.drop_range(r(1, 40, 1000));
        let left: Vec<_> = link
            .serving
            .iter()
            .map(|s| (s.range.piece, s.next, s.left()))
            .collect();
        assert_eq!(left, vec![(1, 0, 40), (2, 0, 50)]);
        link.drop_piece(2);
        assert_eq!(link.serving_symbols, 40);
        assert!(!link.has_datagrams());
    }
}
