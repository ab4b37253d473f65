//! The outer code across pieces (DESIGN §3.6).
//!
//! The inner code lets many peers finish one piece; it cannot recreate a
//! piece nobody holds. The outer code can: stripe `s` takes the `s`-th T-byte
//! segment of every piece as its N source symbols (N = number of pieces, the
//! last piece zero-padded to the piece length), and repair piece `r` is
//! repair symbol N + r of every stripe, concatenated. Any N of the original
//! and repair pieces (plus, rarely, one or two more) rebuild every original.
//!
//! Limits: N ≤ K'max = 56403 pieces per stripe (RaptorQ's largest source
//! block); a torrent with more pieces must use larger pieces. Repair pieces
//! are `stripes · T` bytes, which equals the piece length whenever T divides
//! it (every power-of-two piece length ≥ T).

use std::ops::Range;

use wire::PieceGeometry;

use crate::params::{SymbolSize, MAX_ESI, MAX_SOURCE_SYMBOLS};
use crate::provenance::sha1;
use crate::{raptor, Action};

/// Extra repair pieces [`OuterCode::repair_count_for`] adds so that losing
/// the stated share of pieces still decodes: with exactly N symbols RaptorQ
/// fails about 1 time in 256, with N + 2 about 1 in 16 million.
pub const REPAIR_HEADROOM: u32 = 2;

/// An original or a repair piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PieceRef {
    Original(u32),
    Repair(u32),
}

/// Outer-code errors; see [`OuterError::action`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OuterError {
    #[error("{count} pieces exceed RaptorQ's {max} source symbols per stripe; use larger pieces")]
    TooManyPieces { count: u32, max: u32 },
    #[error("{count} repair pieces after {pieces} pieces would need ESIs beyond 2^24")]
    TooManyRepairPieces { count: u32, pieces: u32 },
    #[error("{what}: expected {expected}, got {got}")]
    WrongInput {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("stripes {start}..{end} are not within 0..{stripes}")]
    BadStripes { start: u32, end: u32, stripes: u32 },
    #[error("{missing} pieces were never added to the repair builder")]
    MissingPieces { missing: u32 },
    #[error("{have} usable pieces of the {need} needed (refused: {refused:?})")]
    NotEnoughPieces {
        have: u32,
        need: u32,
        refused: Vec<PieceRef>,
    },
    #[error("rebuilt piece {index} does not match its hash")]
    RebuiltMismatch { index: u32 },
}

impl OuterError {
    pub fn action(&self) -> Action {
        match self {
            // Fetch more original or repair pieces (and strike whoever sent
            // the refused ones), then rebuild again.
            OuterError::NotEnoughPieces { .. } | OuterError::RebuiltMismatch { .. } => {
                Action::RefetchPiece
            }
            _ => Action::FixCaller,
        }
    }
}

/// Pieces rebuilt from the outer code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// Every original piece that was missing (or refused), in index order,
    /// each verified against its SHA-1.
    pub pieces: Vec<(u32, Vec<u8>)>,
    /// Supplied pieces that did not match their hash and were not used:
    /// strike whoever sent them.
    pub refused: Vec<PieceRef>,
}

/// The outer code of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterCode {
    geometry: PieceGeometry,
    symbol_size: SymbolSize,
    repair_count: u32,
    stripes: u32,
}

impl OuterCode {
    /// The outer code of a torrent with `repair_count` repair pieces.
    pub fn new(
        geometry: PieceGeometry,
        symbol_size: SymbolSize,
        repair_count: u32,
    ) -> Result<Self, OuterError> {
        let n = geometry.piece_count();
        if n > MAX_SOURCE_SYMBOLS {
            return Err(OuterError::TooManyPieces {
                count: n,
                max: MAX_SOURCE_SYMBOLS,
            });
        }
        // Repair ESIs run N .. N + R - 1 and must fit in 24 bits.
        if n.checked_add(repair_count)
            .is_none_or(|end| end > MAX_ESI + 1)
        {
            return Err(OuterError::TooManyRepairPieces {
                count: repair_count,
                pieces: n,
            });
        }
        Ok(OuterCode {
            geometry,
            symbol_size,
            repair_count,
            stripes: geometry.piece_length().div_ceil(symbol_size.bytes()),
        })
    }

    /// Repair pieces for surviving the loss of `percent`% of `piece_count`
    /// pieces: ceil(N·percent/100) plus [`REPAIR_HEADROOM`] (none at 0%).
    pub fn repair_count_for(piece_count: u32, percent: u32) -> u32 {
        if percent == 0 {
            return 0;
        }
        let share = (u64::from(piece_count) * u64::from(percent)).div_ceil(100);
        u32::try_from(share)
            .unwrap_or(u32::MAX)
            .saturating_add(REPAIR_HEADROOM)
    }

    pub fn piece_count(&self) -> u32 {
        self.geometry.piece_count()
    }

    pub fn repair_count(&self) -> u32 {
        self.repair_count
    }

    pub fn stripes(&self) -> u32 {
        self.stripes
    }

    /// Length of every repair piece: stripes · T.
    pub fn repair_piece_len(&self) -> usize {
        self.stripes as usize * self.t()
    }

    fn t(&self) -> usize {
        self.symbol_size.bytes() as usize
    }

    fn n(&self) -> u32 {
        self.geometry.piece_count()
    }

    /// All repair pieces from all original pieces at once (`pieces[i]` is
    /// piece i at its real length). Holds the whole file in stripe order;
    /// use [`OuterCode::builder`] over stripe ranges to bound memory.
    pub fn repair_pieces(&self, pieces: &[&[u8]]) -> Result<Vec<Vec<u8>>, OuterError> {
        check_count("pieces", self.n() as usize, pieces.len())?;
        let mut builder = self.builder(0..self.stripes)?;
        for (index, piece) in (0u32..).zip(pieces) {
            builder.add_piece(index, piece)?;
        }
        builder.finish()
    }

    /// BLAKE3 of a repair piece, as stored in the torrent's `bf` dictionary.
    pub fn repair_hash(repair_piece: &[u8]) -> [u8; 32] {
        *blake3::hash(repair_piece).as_bytes()
    }

    /// A builder of the repair pieces' bytes for `stripes` only; it needs
    /// `stripes.len() · N · T` bytes. Run it over consecutive ranges and
    /// concatenate to bound memory on big torrents.
    pub fn builder(&self, stripes: Range<u32>) -> Result<RepairBuilder, OuterError> {
        if stripes.start > stripes.end || stripes.end > self.stripes {
            return Err(OuterError::BadStripes {
                start: stripes.start,
                end: stripes.end,
                stripes: self.stripes,
            });
        }
        let n = self.n() as usize;
        let width = stripes.len();
        Ok(RepairBuilder {
            code: *self,
            stripes,
            buffer: vec![0; width * n * self.t()],
            added: vec![false; n],
        })
    }

    /// Segment `stripe` of a piece of real length `piece.len()`: up to T
    /// bytes, shorter or empty where the piece ends (the rest is padding).
    fn segment<'a>(&self, piece: &'a [u8], stripe: u32) -> &'a [u8] {
        let start = stripe as usize * self.t();
        let end = (start + self.t()).min(piece.len());
        piece.get(start..end).unwrap_or_default()
    }

    /// Rebuilds every missing original piece.
    ///
    /// `originals[i]` / `repairs[r]` are the pieces at hand (`None` when
    /// missing); `piece_hashes` are the torrent's SHA-1s and `repair_hashes`
    /// the BLAKE3s from its `bf` dictionary. A supplied piece that hashes
    /// wrong is refused before use and reported in [`Rebuilt::refused`].
    pub fn rebuild(
        &self,
        originals: &[Option<&[u8]>],
        repairs: &[Option<&[u8]>],
        piece_hashes: &[[u8; 20]],
        repair_hashes: &[[u8; 32]],
    ) -> Result<Rebuilt, OuterError> {
        let n = self.n();
        check_count("original pieces", n as usize, originals.len())?;
        check_count("piece hashes", n as usize, piece_hashes.len())?;
        check_count("repair pieces", self.repair_count as usize, repairs.len())?;
        check_count(
            "repair hashes",
            self.repair_count as usize,
            repair_hashes.len(),
        )?;

        let mut refused = Vec::new();
        let mut good: Vec<(u32, &[u8])> = Vec::new();
        let mut missing = Vec::new();
        for ((index, piece), hash) in (0u32..).zip(originals).zip(piece_hashes) {
            match piece {
                Some(p) if self.original_ok(index, p, hash) => good.push((index, p)),
                Some(_) => {
                    refused.push(PieceRef::Original(index));
                    missing.push(index);
                }
                None => missing.push(index),
            }
        }
        let mut good_repair: Vec<(u32, &[u8])> = Vec::new();
        for ((r, piece), hash) in (0u32..).zip(repairs).zip(repair_hashes) {
            match piece {
                Some(p) if p.len() == self.repair_piece_len() && Self::repair_hash(p) == *hash => {
                    good_repair.push((r, p))
                }
                Some(_) => refused.push(PieceRef::Repair(r)),
                None => {}
            }
        }
        if missing.is_empty() {
            return Ok(Rebuilt {
                pieces: Vec::new(),
                refused,
            });
        }
        let have = (good.len() + good_repair.len()) as u32;
        if have < n {
            return Err(OuterError::NotEnoughPieces {
                have,
                need: n,
                refused,
            });
        }
        // Decoding cost grows with the symbols given, so start with just
        // enough repair pieces plus headroom, and use them all only if that
        // set happens to be rank-deficient.
        let first_try = missing.len() + REPAIR_HEADROOM as usize;
        let mut used = first_try.min(good_repair.len());
        let mut out: Vec<Vec<u8>> = missing
            .iter()
            .map(|i| vec![0; self.geometry.piece_size(*i).unwrap_or(0) as usize])
            .collect();
        let mut stripe = 0;
        while stripe < self.stripes {
            let repair_set = good_repair.get(..used).unwrap_or_default();
            match self.decode_stripe(stripe, &good, repair_set) {
                Some(block) => {
                    self.scatter(stripe, &block, &missing, &mut out);
                    stripe += 1;
                }
                // Same ESIs give the same matrix in every stripe, so this
                // only ever happens on the first one.
                None if used < good_repair.len() => used = good_repair.len(),
                None => {
                    return Err(OuterError::NotEnoughPieces {
                        have,
                        need: have + 1,
                        refused,
                    })
                }
            }
        }
        let mut pieces = Vec::with_capacity(missing.len());
        for (index, piece) in missing.into_iter().zip(out) {
            let expected = piece_hashes.get(index as usize);
            if expected != Some(&sha1(&piece)) {
                return Err(OuterError::RebuiltMismatch { index });
            }
            pieces.push((index, piece));
        }
        Ok(Rebuilt { pieces, refused })
    }

    fn original_ok(&self, index: u32, piece: &[u8], hash: &[u8; 20]) -> bool {
        self.geometry.piece_size(index).map(|len| len as usize) == Some(piece.len())
            && sha1(piece) == *hash
    }

    /// Decodes stripe `stripe` from the good originals and the given repair
    /// pieces; returns its N·T source block.
    fn decode_stripe(
        &self,
        stripe: u32,
        originals: &[(u32, &[u8])],
        repairs: &[(u32, &[u8])],
    ) -> Option<Vec<u8>> {
        let t = self.t();
        let n = self.n();
        let symbol = |bytes: &[u8]| {
            let mut v = vec![0; t];
            if let Some(head) = v.get_mut(..bytes.len()) {
                head.copy_from_slice(bytes);
            }
            v
        };
        let source = originals
            .iter()
            .map(|(i, p)| (*i, symbol(self.segment(p, stripe))));
        let repair = repairs
            .iter()
            .map(|(r, p)| (n + *r, symbol(self.segment(p, stripe))));
        raptor::decode(n, self.symbol_size, source.chain(repair))
    }

    /// Copies stripe `stripe` of each missing piece out of a decoded block.
    fn scatter(&self, stripe: u32, block: &[u8], missing: &[u32], out: &mut [Vec<u8>]) {
        let t = self.t();
        let start = stripe as usize * t;
        for (index, piece) in missing.iter().zip(out.iter_mut()) {
            let end = (start + t).min(piece.len());
            let from = *index as usize * t;
            if let (Some(dst), Some(src)) = (
                piece.get_mut(start.min(end)..end),
                block.get(from..from + end.saturating_sub(start)),
            ) {
                dst.copy_from_slice(src);
            }
        }
    }
}

fn check_count(what: &'static str, expected: usize, got: usize) -> Result<(), OuterError> {
    if expected == got {
        Ok(())
    } else {
        Err(OuterError::WrongInput {
            what,
            expected,
            got,
        })
    }
}

/// Builds the repair pieces' bytes for a range of stripes, one original
/// piece at a time (see [`OuterCode::builder`]).
#[derive(Debug)]
pub struct RepairBuilder {
    code: OuterCode,
    stripes: Range<u32>,
    /// Stripe-major: stripe w of the window holds N symbols of T bytes.
    buffer: Vec<u8>,
    added: Vec<bool>,
}

impl RepairBuilder {
    /// Adds original piece `index` (its real length; the last one may be
    /// short). Adding a piece again replaces it.
    pub fn add_piece(&mut self, index: u32, piece: &[u8]) -> Result<(), OuterError> {
        let expected = self
            .code
            .geometry
            .piece_size(index)
            .ok_or(OuterError::WrongInput {
                what: "piece index",
                expected: self.code.n() as usize,
                got: index as usize,
            })?;
        check_count("piece length", expected as usize, piece.len())?;
        let t = self.code.t();
        let n = self.code.n() as usize;
        for (w, stripe) in self.stripes.clone().enumerate() {
            let seg = self.code.segment(piece, stripe);
            let at = (w * n + index as usize) * t;
            if let Some(dst) = self.buffer.get_mut(at..at + t) {
                dst.fill(0);
                if let Some(head) = dst.get_mut(..seg.len()) {
                    head.copy_from_slice(seg);
                }
            }
        }
        if let Some(a) = self.added.get_mut(index as usize) {
            *a = true;
        }
        Ok(())
    }

    /// Encodes each stripe of the window. Returns, for each repair piece r,
    /// its bytes for the window's stripes (`stripes.len() · T` bytes, at
    /// offset `stripes.start · T` of the full repair piece). CPU-heavy.
    pub fn finish(self) -> Result<Vec<Vec<u8>>, OuterError> {
        let missing = self.added.iter().filter(|a| !**a).count() as u32;
        if missing > 0 {
            return Err(OuterError::MissingPieces { missing });
        }
        let code = self.code;
        let (t, n, r) = (code.t(), code.n(), code.repair_count);
        let width = self.stripes.len();
        let mut out = vec![vec![0u8; width * t]; r as usize];
        if r == 0 {
            return Ok(out);
        }
        for (w, block) in self.buffer.chunks_exact(n as usize * t).enumerate() {
            let encoder = raptor::encoder(n, code.symbol_size, block);
            for (piece, symbol) in out
                .iter_mut()
                .zip(raptor::repair_symbols(&encoder, n, n, r))
            {
                if let Some(dst) = piece.get_mut(w * t..(w + 1) * t) {
                    dst.copy_from_slice(&symbol);
                }
            }
        }
        Ok(out)
    }
}
