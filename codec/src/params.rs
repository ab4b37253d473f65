//! Code parameters, derived from the torrent alone.
//!
//! One RaptorQ source block is one BitTorrent piece, zero-padded to K·T bytes
//! and truncated again after decoding. K = ceil(piece_len / T). Nothing here
//! is ever read from the wire: a peer can only choose among the symbol sizes
//! both sides announced, so it can never make us build a code we did not
//! expect (no OTI is exchanged).

use raptorq::ObjectTransmissionInformation;
use wire::PieceGeometry;

use crate::CodecError;

/// RFC 6330 §5.1.2: the largest number of source symbols in one source block
/// (K'max). raptorq asserts on anything larger, so we refuse it first.
pub const MAX_SOURCE_SYMBOLS: u32 = 56_403;

/// RFC 6330 §3.2: ESIs are 24-bit. raptorq asserts on anything larger, so
/// this caps whatever `Limits::max_esi` says.
pub const MAX_ESI: u32 = (1 << 24) - 1;

/// The symbol sizes (T) bitfountain speaks.
///
/// 1024 is mandatory: it fits a QUIC datagram at the minimum MTU and divides
/// the 16 KiB BEP 3 block, so legacy blocks are whole source symbols. The
/// larger sizes keep K small for big pieces (fewer symbols, cheaper decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SymbolSize {
    T1024,
    T4096,
    T16384,
}

impl SymbolSize {
    /// The size every coded peer must support.
    pub const DEFAULT: SymbolSize = SymbolSize::T1024;
    /// Every size, smallest first.
    pub const ALL: [SymbolSize; 3] = [SymbolSize::T1024, SymbolSize::T4096, SymbolSize::T16384];

    /// T in bytes.
    pub const fn bytes(self) -> u32 {
        match self {
            SymbolSize::T1024 => 1024,
            SymbolSize::T4096 => 4096,
            SymbolSize::T16384 => 16384,
        }
    }

    /// The size for a byte count announced by a peer; `None` for anything we
    /// do not speak (the caller should then fall back to 1024).
    pub const fn from_bytes(bytes: u32) -> Option<SymbolSize> {
        match bytes {
            1024 => Some(SymbolSize::T1024),
            4096 => Some(SymbolSize::T4096),
            16384 => Some(SymbolSize::T16384),
            _ => None,
        }
    }

    /// The size we prefer for a piece length (DESIGN §3.3): 1024 up to 4 MiB
    /// pieces, 4096 up to 16 MiB, 16384 beyond, which keeps K ≤ 4096 for
    /// every piece length `make` produces and within K'max up to 64 MiB.
    pub const fn preferred_for(piece_len: u32) -> SymbolSize {
        if piece_len <= 4 << 20 {
            SymbolSize::T1024
        } else if piece_len <= 16 << 20 {
            SymbolSize::T4096
        } else {
            SymbolSize::T16384
        }
    }
}

/// The code of one piece: its length, T and K.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PieceParams {
    piece_len: u32,
    symbol_size: SymbolSize,
    k: u32,
}

impl PieceParams {
    /// Parameters for a piece of `piece_len` bytes coded with symbols of
    /// `symbol_size`. Fails for an empty piece or one needing more than
    /// [`MAX_SOURCE_SYMBOLS`] symbols (use a larger T).
    pub fn new(piece_len: u32, symbol_size: SymbolSize) -> Result<Self, CodecError> {
        if piece_len == 0 {
            return Err(CodecError::EmptyPiece);
        }
        let k = piece_len.div_ceil(symbol_size.bytes());
        if k > MAX_SOURCE_SYMBOLS {
            return Err(CodecError::TooManySymbols {
                k,
                max: MAX_SOURCE_SYMBOLS,
            });
        }
        Ok(PieceParams {
            piece_len,
            symbol_size,
            k,
        })
    }

    /// The piece's real length in bytes.
    pub fn piece_len(&self) -> u32 {
        self.piece_len
    }

    pub fn symbol_size(&self) -> SymbolSize {
        self.symbol_size
    }

    /// T in bytes.
    pub fn t(&self) -> u32 {
        self.symbol_size.bytes()
    }

    /// T as a `usize`, for slicing.
    pub(crate) fn t_usize(&self) -> usize {
        self.symbol_size.bytes() as usize
    }

    /// K: the number of source symbols.
    pub fn k(&self) -> u32 {
        self.k
    }

    /// K·T: the source block length (piece plus zero padding).
    pub fn padded_len(&self) -> usize {
        self.k as usize * self.t_usize()
    }

    /// Bytes of the piece inside source symbol `esi` (< K): T except for the
    /// last symbol, whose tail is padding.
    pub fn source_bytes_in(&self, esi: u32) -> usize {
        let start = esi as usize * self.t_usize();
        (self.piece_len as usize)
            .saturating_sub(start)
            .min(self.t_usize())
    }
}

/// Transmission information for a single source block of `k` symbols of
/// `symbol_size` (callers guarantee 1 ≤ k ≤ [`MAX_SOURCE_SYMBOLS`]).
pub(crate) fn oti(k: u32, symbol_size: SymbolSize) -> ObjectTransmissionInformation {
    // T ≤ 16384 always fits u16; alignment 8 divides every T we allow.
    let t = symbol_size.bytes() as u16;
    ObjectTransmissionInformation::new(u64::from(k) * u64::from(t), t, 1, 1, 8)
}

/// The code parameters of a whole torrent: every piece's [`PieceParams`]
/// follow from its geometry and the chosen T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TorrentCode {
    geometry: PieceGeometry,
    symbol_size: SymbolSize,
    /// Repair pieces of the outer code, coded like pieces N .. N + R − 1.
    repair_count: u32,
    repair_len: u32,
}

impl TorrentCode {
    /// Fails when a full-length piece needs more than K'max symbols at this T.
    pub fn new(geometry: PieceGeometry, symbol_size: SymbolSize) -> Result<Self, CodecError> {
        PieceParams::new(geometry.piece_length(), symbol_size)?;
        Ok(TorrentCode {
            geometry,
            symbol_size,
            repair_count: 0,
            repair_len: 0,
        })
    }

    /// Adds the outer code's `count` repair pieces of `len` bytes each: coded
    /// peers address repair piece r as piece N + r (DESIGN §3.6).
    pub fn with_repair_pieces(self, count: u32, len: u32) -> Result<Self, CodecError> {
        if count > 0 {
            PieceParams::new(len, self.symbol_size)?;
        }
        Ok(TorrentCode {
            repair_count: count,
            repair_len: len,
            ..self
        })
    }

    /// Original pieces plus repair pieces.
    pub fn coded_piece_count(&self) -> u32 {
        self.geometry
            .piece_count()
            .saturating_add(self.repair_count)
    }

    pub fn geometry(&self) -> &PieceGeometry {
        &self.geometry
    }

    pub fn symbol_size(&self) -> SymbolSize {
        self.symbol_size
    }

    /// Parameters of piece `index`; the last piece gets its own, smaller K.
    /// Indexes from N on are the repair pieces, when there are any.
    pub fn piece(&self, index: u32) -> Result<PieceParams, CodecError> {
        let n = self.geometry.piece_count();
        let len = match self.geometry.piece_size(index) {
            Some(len) => len,
            None if index >= n && index - n < self.repair_count => self.repair_len,
            None => {
                return Err(CodecError::NoSuchPiece {
                    index,
                    count: self.coded_piece_count(),
                })
            }
        };
        PieceParams::new(len, self.symbol_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_pieces_follow_the_originals() {
        let g = PieceGeometry::new(64 * 1024, 64 * 1024 * 3 + 100).unwrap();
        let code = TorrentCode::new(g, SymbolSize::T1024)
            .unwrap()
            .with_repair_pieces(2, 64 * 1024)
            .unwrap();
        assert_eq!(code.coded_piece_count(), 6);
        assert_eq!(code.piece(3).unwrap().k(), 1);
        assert_eq!(code.piece(4).unwrap().k(), 64);
        assert_eq!(code.piece(5).unwrap().k(), 64);
        assert!(matches!(
            code.piece(6),
            Err(CodecError::NoSuchPiece { index: 6, count: 6 })
        ));
        let plain = TorrentCode::new(g, SymbolSize::T1024).unwrap();
        assert!(plain.piece(4).is_err());
    }

    #[test]
    fn k_and_padding() {
        let p = PieceParams::new(16 * 1024 + 1, SymbolSize::T1024).unwrap();
        assert_eq!(p.k(), 17);
        assert_eq!(p.padded_len(), 17 * 1024);
        assert_eq!(p.source_bytes_in(15), 1024);
        assert_eq!(p.source_bytes_in(16), 1);
        assert_eq!(p.source_bytes_in(17), 0);
        let one = PieceParams::new(1, SymbolSize::T16384).unwrap();
        assert_eq!(one.k(), 1);
    }

    #[test]
    fn rejects_empty_and_oversized() {
        assert_eq!(
            PieceParams::new(0, SymbolSize::T1024),
            Err(CodecError::EmptyPiece)
        );
        // 64 MiB at T = 1024 is 65536 symbols, beyond K'max.
        assert_eq!(
            PieceParams::new(64 << 20, SymbolSize::T1024),
            Err(CodecError::TooManySymbols {
                k: 65536,
                max: MAX_SOURCE_SYMBOLS
            })
        );
        assert_eq!(
            PieceParams::new(MAX_SOURCE_SYMBOLS * 1024, SymbolSize::T1024)
                .unwrap()
                .k(),
            MAX_SOURCE_SYMBOLS
        );
        assert!(PieceParams::new(64 << 20, SymbolSize::T4096).is_ok());
    }

    #[test]
    fn last_piece_has_its_own_k() {
        let g = PieceGeometry::new(256 << 10, (1 << 20) + 5000).unwrap();
        let code = TorrentCode::new(g, SymbolSize::T1024).unwrap();
        assert_eq!(code.piece(0).unwrap().k(), 256);
        assert_eq!(code.piece(4).unwrap().k(), 5);
        assert_eq!(code.piece(4).unwrap().piece_len(), 5000);
        assert_eq!(
            code.piece(5),
            Err(CodecError::NoSuchPiece { index: 5, count: 5 })
        );
        let huge = PieceGeometry::new(64 << 20, 1 << 30).unwrap();
        assert!(TorrentCode::new(huge, SymbolSize::T1024).is_err());
        assert!(TorrentCode::new(huge, SymbolSize::preferred_for(64 << 20)).is_ok());
    }

    #[test]
    fn symbol_sizes_round_trip() {
        for s in SymbolSize::ALL {
            assert_eq!(SymbolSize::from_bytes(s.bytes()), Some(s));
            assert_eq!(16384 % s.bytes(), 0, "T must divide a legacy block");
        }
        assert_eq!(SymbolSize::from_bytes(2048), None);
        assert_eq!(SymbolSize::preferred_for(4 << 20), SymbolSize::T1024);
        assert_eq!(SymbolSize::preferred_for(8 << 20), SymbolSize::T4096);
        assert_eq!(SymbolSize::preferred_for(32 << 20), SymbolSize::T16384);
    }
}
