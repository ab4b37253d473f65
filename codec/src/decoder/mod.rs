//! Receiving a piece as symbols.
//!
//! [`PieceDecoder`] validates every symbol before raptorq sees it (raptorq
//! asserts on bad lengths and ESIs), drops duplicates, holds at most
//! K + `Limits::decoder_spare_symbols` symbols and records who sent each one.
//! When all K source symbols arrive, the piece is just those bytes: no
//! decoding. Otherwise [`PieceDecoder::decode`] runs raptorq on exactly K
//! symbols, then K+1, … up to `Limits::decode_attempts` tries (a K-symbol
//! set fails about 0.4% of the time). Decoding is CPU work: the session moves
//! the decoder off the reactor with [`Decoders::take`] and back with
//! [`Decoders::restore`].
//!
//! Legacy BEP 3 blocks feed the same decoder ([`PieceDecoder::push_block`]):
//! T divides 16 KiB, so the block at offset o is source symbols o/T, ….

use std::collections::HashSet;

mod set;
pub use set::Decoders;

use wire::Limits;

use crate::params::{PieceParams, MAX_ESI};
use crate::provenance::{DecodedPiece, DigestKey, Evidence, Record};
use crate::{raptor, Action, SenderId};

/// Why a symbol or block was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("ESI {esi} is beyond the largest allowed ({max})")]
    EsiOutOfRange { esi: u32, max: u32 },
    #[error("symbol of {got} bytes where T is {expected}")]
    WrongLength { expected: u32, got: usize },
    #[error("the padding of the last source symbol ({esi}) is not zero")]
    NonZeroPadding { esi: u32 },
    #[error("block at offset {offset} of {len} bytes does not fit the piece's symbols")]
    BadBlock { offset: u32, len: usize },
    #[error("piece {piece} was not requested")]
    NotRequested { piece: u32 },
    #[error("ESI {esi} was already received")]
    Duplicate { esi: u32 },
    #[error("the decoder already holds K plus its spare symbols")]
    Full,
    #[error("the piece is being decoded")]
    Busy,
    #[error("the decoder has finished with this piece")]
    Finished,
}

impl Reject {
    /// Malformed data is the sender's fault; everything else is ordinary
    /// churn (late, duplicate or surplus symbols) and is simply dropped. A
    /// session that knows it never asked this sender for the piece may strike
    /// on [`Reject::NotRequested`] too.
    pub fn action(&self) -> Action {
        match self {
            Reject::EsiOutOfRange { .. }
            | Reject::WrongLength { .. }
            | Reject::NonZeroPadding { .. }
            | Reject::BadBlock { .. } => Action::StrikeSender,
            Reject::NotRequested { .. }
            | Reject::Duplicate { .. }
            | Reject::Full
            | Reject::Busy
            | Reject::Finished => Action::Drop,
        }
    }
}

/// What a push did.
#[derive(Debug)]
pub enum Push {
    /// Stored; `missing` more distinct symbols are needed before the next
    /// decode attempt.
    NeedMore { missing: u32 },
    /// Enough symbols for a decode attempt: call [`PieceDecoder::decode`]
    /// (off the reactor).
    ReadyToDecode,
    /// All K source symbols are here, so this is the piece (no decoding was
    /// needed). Verify it.
    Decoded(DecodedPiece),
    /// Not taken; see [`Reject::action`].
    Rejected(Reject),
}

/// What a decode step did.
#[derive(Debug)]
pub enum DecodeStep {
    /// The piece: verify it.
    Decoded(DecodedPiece),
    /// The symbols so far did not determine the piece (or too few are held):
    /// get `missing` more, then decode again.
    NeedMore { missing: u32 },
    /// Every allowed attempt failed: discard this decoder and re-fetch the
    /// piece ([`Action::RefetchPiece`]).
    GaveUp,
    /// This decoder already produced its piece or gave up (a caller bug).
    Finished,
}

/// The decoder of one requested piece.
#[derive(Debug)]
pub struct PieceDecoder {
    params: PieceParams,
    key: DigestKey,
    max_esi: u32,
    /// K + spare: the most distinct symbols held.
    capacity: u32,
    max_attempts: u32,
    /// Received source symbols in place: the piece's bytes, initialised
    /// only up to the furthest symbol received so far (gaps are zero until
    /// filled). When all K arrive this *is* the piece.
    source: Vec<u8>,
    have: Vec<bool>,
    source_count: u32,
    /// Repair symbols, T bytes each, in arrival order.
    repair: Vec<u8>,
    repair_esis: Vec<u32>,
    repair_seen: HashSet<u32>,
    records: Vec<Record>,
    attempts: u32,
    finished: bool,
}

impl PieceDecoder {
    pub fn new(params: PieceParams, limits: &Limits, key: DigestKey) -> Self {
        PieceDecoder {
            params,
            key,
            max_esi: limits.max_esi.min(MAX_ESI),
            capacity: params.k().saturating_add(limits.decoder_spare_symbols),
            max_attempts: limits.decode_attempts,
            source: Vec::new(),
            have: Vec::new(),
            source_count: 0,
            repair: Vec::new(),
            repair_esis: Vec::new(),
            repair_seen: HashSet::new(),
            records: Vec::new(),
            attempts: 0,
            finished: false,
        }
    }

    pub fn params(&self) -> &PieceParams {
        &self.params
    }

    /// Distinct symbols held.
    pub fn buffered(&self) -> u32 {
        self.source_count + self.repair_esis.len() as u32
    }

    /// Decode attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether the decoder has produced its piece or given up.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Takes symbol `esi` (exactly T bytes) from `sender`.
    pub fn push(&mut self, esi: u32, payload: &[u8], sender: SenderId) -> Push {
        if self.finished {
            return Push::Rejected(Reject::Finished);
        }
        if esi > self.max_esi {
            return Push::Rejected(Reject::EsiOutOfRange {
                esi,
                max: self.max_esi,
            });
        }
        let t = self.params.t_usize();
        if payload.len() != t {
            return Push::Rejected(Reject::WrongLength {
                expected: self.params.t(),
                got: payload.len(),
            });
        }
        if esi < self.params.k() {
            // Padding must be zero: it takes part in the code, so non-zero
            // padding would corrupt repair decoding while the source-only
            // path silently truncated it away.
            let piece_part = self.params.source_bytes_in(esi);
            let padding = payload.get(piece_part..).unwrap_or_default();
            if padding.iter().any(|b| *b != 0) {
                return Push::Rejected(Reject::NonZeroPadding { esi });
            }
        }
        match self.accept(esi, payload, sender) {
            Ok(()) => self.status(),
            Err(reject) => Push::Rejected(reject),
        }
    }

    /// Takes a legacy block: `data` at byte `offset` of the piece. The offset
    /// must be a multiple of T and the block must end on a symbol boundary or
    /// at the end of the piece (16 KiB blocks always do).
    pub fn push_block(&mut self, offset: u32, data: &[u8], sender: SenderId) -> Push {
        if self.finished {
            return Push::Rejected(Reject::Finished);
        }
        let t = self.params.t_usize();
        let piece_len = self.params.piece_len() as usize;
        let start = offset as usize;
        let fits = start.is_multiple_of(t)
            && !data.is_empty()
            && start
                .checked_add(data.len())
                .is_some_and(|end| end <= piece_len && (end % t == 0 || end == piece_len));
        if !fits {
            return Push::Rejected(Reject::BadBlock {
                offset,
                len: data.len(),
            });
        }
        let first = (start / t) as u32;
        let mut accepted = false;
        let mut last_reject = None;
        for (esi, chunk) in (first..).zip(data.chunks(t)) {
            match self.accept(esi, chunk, sender) {
                Ok(()) => accepted = true,
                Err(Reject::Duplicate { esi }) => {
                    last_reject.get_or_insert(Reject::Duplicate { esi });
                }
                Err(other) => {
                    last_reject = Some(other);
                    break;
                }
            }
        }
        match (accepted, last_reject) {
            (false, Some(reject)) => Push::Rejected(reject),
            _ => self.status(),
        }
    }

    /// Stores a validated symbol. A source `bytes` may be shorter than T
    /// only for the last symbol of a legacy block (the rest is padding).
    fn accept(&mut self, esi: u32, bytes: &[u8], sender: SenderId) -> Result<(), Reject> {
        let k = self.params.k();
        let t = self.params.t_usize();
        let duplicate = if esi < k {
            self.have.get(esi as usize).copied().unwrap_or(false)
        } else {
            self.repair_seen.contains(&esi)
        };
        if duplicate {
            return Err(Reject::Duplicate { esi });
        }
        if self.buffered() >= self.capacity {
            return Err(Reject::Full);
        }
        if self.records.is_empty() {
            // Nearly every piece ends with about K records; one allocation.
            self.records.reserve(k as usize);
        }
        let slot = if esi < k {
            if self.have.is_empty() {
                self.source = Vec::with_capacity(self.params.piece_len() as usize);
                self.have = vec![false; k as usize];
            }
            let start = esi as usize * t;
            let piece_part = bytes
                .get(..self.params.source_bytes_in(esi))
                .unwrap_or(bytes);
            if start >= self.source.len() {
                // Beyond what is initialised: zero the gap of symbols still
                // missing (nothing when symbols arrive in order) and append,
                // rather than zeroing the whole piece up front.
                self.source.resize(start, 0);
                self.source.extend_from_slice(piece_part);
            } else if let Some(dst) = self.source.get_mut(start..start + piece_part.len()) {
                dst.copy_from_slice(piece_part);
            }
            if let Some(h) = self.have.get_mut(esi as usize) {
                *h = true;
            }
            self.source_count += 1;
            0
        } else {
            self.repair.extend_from_slice(bytes);
            self.repair_seen.insert(esi);
            self.repair_esis.push(esi);
            self.repair_esis.len() as u32 - 1
        };
        self.records.push(Record { sender, esi, slot });
        Ok(())
    }

    fn status(&mut self) -> Push {
        if self.source_count == self.params.k() {
            return Push::Decoded(self.assemble());
        }
        let need = self.params.k() + self.attempts;
        // With no attempts left, `decode` reports that it gave up.
        if self.attempts >= self.max_attempts || self.buffered() >= need {
            Push::ReadyToDecode
        } else {
            Push::NeedMore {
                missing: need - self.buffered(),
            }
        }
    }

    /// Runs decode attempts while symbols and attempts remain: attempt n uses
    /// every source symbol plus the earliest repair symbols, K + n − 1 in
    /// all; the rest stay as surplus for the audit.
    pub fn decode(&mut self) -> DecodeStep {
        if self.finished {
            return DecodeStep::Finished;
        }
        let k = self.params.k();
        if self.source_count == k {
            return DecodeStep::Decoded(self.assemble());
        }
        while self.attempts < self.max_attempts {
            let need = k + self.attempts;
            if self.buffered() < need {
                return DecodeStep::NeedMore {
                    missing: need - self.buffered(),
                };
            }
            self.attempts += 1;
            let used_repair = need - self.source_count;
            if let Some(mut data) =
                raptor::decode(k, self.params.symbol_size(), self.symbols(used_repair))
            {
                data.truncate(self.params.piece_len() as usize);
                let source = std::mem::take(&mut self.source);
                let evidence = self.evidence(Some(source), used_repair);
                return DecodeStep::Decoded(DecodedPiece::new(data, evidence));
            }
        }
        self.finished = true;
        self.source = Vec::new();
        self.repair = Vec::new();
        DecodeStep::GaveUp
    }

    /// Copies of the held source symbols and the first `used_repair` repair
    /// symbols, as raptorq wants them (owned).
    fn symbols(&self, used_repair: u32) -> impl Iterator<Item = (u32, Vec<u8>)> + '_ {
        let t = self.params.t_usize();
        let source =
            self.have
                .iter()
                .zip(0u32..)
                .filter(|(have, _)| **have)
                .map(move |(_, esi)| {
                    let start = esi as usize * t;
                    let end = (start + t).min(self.source.len());
                    let mut bytes = self.source.get(start..end).unwrap_or_default().to_vec();
                    bytes.resize(t, 0); // the last symbol's padding
                    (esi, bytes)
                });
        let repair = self
            .repair_esis
            .iter()
            .zip(self.repair.chunks_exact(t))
            .take(used_repair as usize)
            .map(|(esi, bytes)| (*esi, bytes.to_vec()));
        source.chain(repair)
    }

    /// All K source symbols are here: the piece is the buffer itself (the
    /// last symbol ends it, so it holds exactly the piece length).
    fn assemble(&mut self) -> DecodedPiece {
        let data = std::mem::take(&mut self.source);
        debug_assert_eq!(data.len(), self.params.piece_len() as usize);
        DecodedPiece::new(data, self.evidence(None, 0))
    }

    fn evidence(&mut self, source: Option<Vec<u8>>, used_repair: u32) -> Evidence {
        self.finished = true;
        Evidence {
            params: self.params,
            key: self.key,
            records: std::mem::take(&mut self.records),
            source,
            repair: std::mem::take(&mut self.repair),
            used_repair,
            exact: self.source_count + used_repair == self.params.k(),
        }
    }
}

#[cfg(test)]
mod tests;
