//! The `bf_raptorq` extension: coded-transfer messages carried inside BEP 10
//! extended messages (over TCP or a QUIC stream), and the datagram frame
//! that carries one symbol over QUIC.
//!
//! Everything code-related (K, T, padding) follows from the torrent, so no
//! message carries an OTI; the receiver checks every length against the T
//! it derived itself.

mod pacer;
#[cfg(test)]
mod sim;
mod uplink;

pub use pacer::{AckDelta, DatagramPacer, PacerConfig, PacerStats};
pub use uplink::UplinkPacer;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::Limits;

/// Version of the message set below.
pub const VERSION: u32 = 1;

const SYMBOL_REQUEST: u8 = 1;
const SYMBOLS: u8 = 2;
const CANCEL: u8 = 3;
const PIECE_DONE: u8 = 4;
const REJECT: u8 = 5;
const RANGE_SENT: u8 = 6;
const ACK: u8 = 7;
const HAVE_REPAIR: u8 = 8;
const REPAIR_BITFIELD: u8 = 9;
const SUGGEST: u8 = 10;
/// First byte of a datagram frame.
const DATAGRAM: u8 = 0x10;
/// Datagram type of an acknowledgement (the ACK message's fields), sent
/// unreliably: on the stream a lost packet holds back every acknowledgement
/// behind it, and the sender's window stalls on acknowledgements a round
/// trip or more late.
const DATAGRAM_ACK: u8 = 0x11;
/// Bytes of a datagram frame before the symbols: kind, sequence, piece,
/// first ESI, symbol count.
pub const DATAGRAM_HEADER: usize = 1 + 4 + 4 + 3 + 1;

/// How the requester wants the symbols delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// As [`CodedMessage::Symbols`] on the reliable connection.
    Stream,
    /// As datagram frames (QUIC), paced by the sender's rate control.
    Datagram,
}

/// Why a sender refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Choked,
    /// The sender does not have the piece.
    NotHeld,
    /// Too many symbols requested at once.
    OverQuota,
    /// Any other reason (forward compatibility).
    Other(u8),
}

impl RejectReason {
    fn to_u8(self) -> u8 {
        match self {
            RejectReason::Choked => 1,
            RejectReason::NotHeld => 2,
            RejectReason::OverQuota => 3,
            RejectReason::Other(x) => x,
        }
    }

    fn from_u8(x: u8) -> Self {
        match x {
            1 => RejectReason::Choked,
            2 => RejectReason::NotHeld,
            3 => RejectReason::OverQuota,
            x => RejectReason::Other(x),
        }
    }
}

/// A range of ESIs of one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymbolRange {
    pub piece: u32,
    pub first_esi: u32,
    pub count: u32,
}

impl SymbolRange {
    /// One past the last ESI.
    pub fn end(&self) -> u32 {
        self.first_esi.saturating_add(self.count)
    }

    pub fn contains(&self, esi: u32) -> bool {
        esi >= self.first_esi && esi < self.end()
    }
}

/// A coded-transfer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodedMessage {
    /// "Send me these symbols."
    SymbolRequest {
        range: SymbolRange,
        delivery: Delivery,
    },
    /// Consecutive symbols starting at `first_esi`, `data.len() / T` of them.
    Symbols {
        piece: u32,
        first_esi: u32,
        data: Bytes,
    },
    /// "Stop sending the rest of this range."
    Cancel(SymbolRange),
    /// "I have this piece: drop everything about it."
    PieceDone { piece: u32 },
    Reject {
        range: SymbolRange,
        reason: RejectReason,
    },
    /// The sender finished transmitting a range by datagrams, the last one
    /// with sequence number `last_seq`: once later datagrams have arrived,
    /// what has not is lost.
    RangeSent { range: SymbolRange, last_seq: u32 },
    /// Datagram acknowledgement: the highest sequence number seen, the
    /// symbol payload bytes received by datagram so far, and when (on the
    /// receiver's own clock, microseconds, wrapping) the highest arrived.
    /// The sender measures the delivery rate on the receiver's clock, since
    /// acknowledgements bunch up on the way back.
    Ack {
        highest_seq: u32,
        received: u64,
        receive_us: u32,
    },
    /// "I now hold repair piece `index` of the outer code" (DESIGN §3.6);
    /// coded peers address it as piece N + `index`.
    HaveRepair { index: u32 },
    /// The repair pieces the sender holds, one bit each as in a BEP 3
    /// bitfield (sent once, after the extended handshake). Its length is
    /// checked against the torrent's repair count by the receiver.
    RepairBitfield(Bytes),
    /// "Fetch this piece from me": a seed spreading its upload over pieces
    /// nobody has yet (like BEP 16's initial seeding). Piece N + r is
    /// repair piece r.
    Suggest { piece: u32 },
}

/// Why a coded message or datagram was refused. Every one is the sender's
/// fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FountainError {
    #[error("empty coded message")]
    Empty,
    #[error("unknown coded message type {0}")]
    UnknownType(u8),
    #[error("coded message type {kind} has {len} bytes, expected {expected}")]
    BadLength {
        kind: u8,
        len: usize,
        expected: usize,
    },
    #[error("ESI {0} is out of range")]
    EsiOutOfRange(u32),
    #[error("{count} symbols in one message (limit {limit})")]
    TooManySymbols { count: u32, limit: u32 },
    #[error("symbol data of {len} bytes is not a whole number of {t}-byte symbols")]
    RaggedSymbols { len: usize, t: u32 },
    #[error("unknown delivery mode {0}")]
    BadDelivery(u8),
}

fn need(kind: u8, body: &[u8], expected: usize) -> Result<(), FountainError> {
    if body.len() == expected {
        Ok(())
    } else {
        Err(FountainError::BadLength {
            kind,
            len: body.len(),
            expected,
        })
    }
}

fn range(mut b: &[u8], limits: &Limits) -> Result<SymbolRange, FountainError> {
    let r = SymbolRange {
        piece: b.get_u32(),
        first_esi: b.get_u32(),
        count: b.get_u32(),
    };
    check_range(&r, limits)?;
    Ok(r)
}

fn check_range(r: &SymbolRange, limits: &Limits) -> Result<(), FountainError> {
    if r.count > limits.max_symbols_per_message {
        return Err(FountainError::TooManySymbols {
            count: r.count,
            limit: limits.max_symbols_per_message,
        });
    }
    if r.first_esi > limits.max_esi || r.end().saturating_sub(1) > limits.max_esi {
        return Err(FountainError::EsiOutOfRange(r.end()));
    }
    Ok(())
}

fn put_range(out: &mut BytesMut, r: &SymbolRange) {
    out.put_u32(r.piece);
    out.put_u32(r.first_esi);
    out.put_u32(r.count);
}

impl CodedMessage {
    /// Parses an extended-message payload. `t` is the torrent's symbol size.
    pub fn decode(payload: &Bytes, t: u32, limits: &Limits) -> Result<Self, FountainError> {
        let (&kind, body) = payload.split_first().ok_or(FountainError::Empty)?;
        Ok(match kind {
            SYMBOL_REQUEST => {
                need(kind, body, 13)?;
                let delivery = match body.get(12) {
                    Some(0) => Delivery::Stream,
                    Some(1) => Delivery::Datagram,
                    Some(&x) => return Err(FountainError::BadDelivery(x)),
                    None => return Err(FountainError::Empty),
                };
                CodedMessage::SymbolRequest {
                    range: range(body, limits)?,
                    delivery,
                }
            }
            SYMBOLS => {
                if body.len() < 8 {
                    return Err(FountainError::BadLength {
                        kind,
                        len: body.len(),
                        expected: 8,
                    });
                }
                let mut head = body;
                let piece = head.get_u32();
                let first_esi = head.get_u32();
                let data = payload.slice(9..);
                if t == 0 || data.is_empty() || !data.len().is_multiple_of(t as usize) {
                    return Err(FountainError::RaggedSymbols { len: data.len(), t });
                }
                let count = u32::try_from(data.len() / t as usize).unwrap_or(u32::MAX);
                check_range(
                    &SymbolRange {
                        piece,
                        first_esi,
                        count,
                    },
                    limits,
                )?;
                CodedMessage::Symbols {
                    piece,
                    first_esi,
                    data,
                }
            }
            CANCEL => {
                need(kind, body, 12)?;
                CodedMessage::Cancel(range(body, limits)?)
            }
            RANGE_SENT => {
                need(kind, body, 16)?;
                let mut tail = body.get(12..).unwrap_or_default();
                CodedMessage::RangeSent {
                    range: range(body, limits)?,
                    last_seq: tail.get_u32(),
                }
            }
            REJECT => {
                need(kind, body, 13)?;
                CodedMessage::Reject {
                    range: range(body, limits)?,
                    reason: RejectReason::from_u8(body.get(12).copied().unwrap_or(0)),
                }
            }
            PIECE_DONE => {
                need(kind, body, 4)?;
                let mut b = body;
                CodedMessage::PieceDone { piece: b.get_u32() }
            }
            HAVE_REPAIR => {
                need(kind, body, 4)?;
                let mut b = body;
                CodedMessage::HaveRepair { index: b.get_u32() }
            }
            REPAIR_BITFIELD => CodedMessage::RepairBitfield(payload.slice(1..)),
            SUGGEST => {
                need(kind, body, 4)?;
                let mut b = body;
                CodedMessage::Suggest { piece: b.get_u32() }
            }
            ACK => {
                need(kind, body, 16)?;
                let mut b = body;
                CodedMessage::Ack {
                    highest_seq: b.get_u32(),
                    received: b.get_u64(),
                    receive_us: b.get_u32(),
                }
            }
            other => return Err(FountainError::UnknownType(other)),
        })
    }

    /// The extended-message payload.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16);
        match self {
            CodedMessage::SymbolRequest { range, delivery } => {
                out.put_u8(SYMBOL_REQUEST);
                put_range(&mut out, range);
                out.put_u8(match delivery {
                    Delivery::Stream => 0,
                    Delivery::Datagram => 1,
                });
            }
            CodedMessage::Symbols {
                piece,
                first_esi,
                data,
            } => {
                out.reserve(8 + data.len());
                out.put_u8(SYMBOLS);
                out.put_u32(*piece);
                out.put_u32(*first_esi);
                out.put_slice(data);
            }
            CodedMessage::Cancel(r) => {
                out.put_u8(CANCEL);
                put_range(&mut out, r);
            }
            CodedMessage::RangeSent { range, last_seq } => {
                out.put_u8(RANGE_SENT);
                put_range(&mut out, range);
                out.put_u32(*last_seq);
            }
            CodedMessage::Reject { range, reason } => {
                out.put_u8(REJECT);
                put_range(&mut out, range);
                out.put_u8(reason.to_u8());
            }
            CodedMessage::PieceDone { piece } => {
                out.put_u8(PIECE_DONE);
                out.put_u32(*piece);
            }
            CodedMessage::Ack {
                highest_seq,
                received,
                receive_us,
            } => {
                out.put_u8(ACK);
                out.put_u32(*highest_seq);
                out.put_u64(*received);
                out.put_u32(*receive_us);
            }
            CodedMessage::HaveRepair { index } => {
                out.put_u8(HAVE_REPAIR);
                out.put_u32(*index);
            }
            CodedMessage::RepairBitfield(bits) => {
                out.reserve(bits.len());
                out.put_u8(REPAIR_BITFIELD);
                out.put_slice(bits);
            }
            CodedMessage::Suggest { piece } => {
                out.put_u8(SUGGEST);
                out.put_u32(*piece);
            }
        }
        out.freeze()
    }

    /// Just the header of a SYMBOLS message (type, piece, first ESI), so the
    /// symbol bytes can be written from where they lie.
    pub fn symbols_header(piece: u32, first_esi: u32) -> [u8; 9] {
        let mut h = [SYMBOLS, 0, 0, 0, 0, 0, 0, 0, 0];
        for (dst, src) in h.iter_mut().skip(1).zip(
            piece
                .to_be_bytes()
                .into_iter()
                .chain(first_esi.to_be_bytes()),
        ) {
            *dst = src;
        }
        h
    }
}

/// A datagram from a coded peer: symbols, or an acknowledgement of the
/// symbol datagrams we sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    Symbols(DatagramFrame),
    /// As [`CodedMessage::Ack`].
    Ack {
        highest_seq: u32,
        received: u64,
        receive_us: u32,
    },
}

impl Datagram {
    /// Parses a datagram; `t` is the torrent's symbol size.
    pub fn decode(datagram: &Bytes, t: u32, limits: &Limits) -> Result<Self, FountainError> {
        if datagram.first() != Some(&DATAGRAM_ACK) {
            return DatagramFrame::decode(datagram, t, limits).map(Datagram::Symbols);
        }
        let body = datagram.get(1..).unwrap_or_default();
        need(DATAGRAM_ACK, body, 16)?;
        let mut b = body;
        Ok(Datagram::Ack {
            highest_seq: b.get_u32(),
            received: b.get_u64(),
            receive_us: b.get_u32(),
        })
    }

    /// An acknowledgement datagram.
    pub fn ack(highest_seq: u32, received: u64, receive_us: u32) -> Bytes {
        let mut out = BytesMut::with_capacity(17);
        out.put_u8(DATAGRAM_ACK);
        out.put_u32(highest_seq);
        out.put_u64(received);
        out.put_u32(receive_us);
        out.freeze()
    }
}

/// Consecutive symbols in one datagram: one on a 1500-byte path, several
/// where the path allows larger datagrams (loopback). Losing the datagram
/// loses them all, which the fountain code absorbs like any loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatagramFrame {
    /// Sender's sequence number, for acknowledgements and loss estimates.
    pub seq: u32,
    pub piece: u32,
    /// ESI of the first symbol.
    pub esi: u32,
    /// `count × T` bytes.
    pub symbols: Bytes,
}

impl DatagramFrame {
    /// Parses a datagram; `t` is the torrent's symbol size.
    pub fn decode(datagram: &Bytes, t: u32, limits: &Limits) -> Result<Self, FountainError> {
        let (&kind, _) = datagram.split_first().ok_or(FountainError::Empty)?;
        if kind != DATAGRAM {
            return Err(FountainError::UnknownType(kind));
        }
        if datagram.len() < DATAGRAM_HEADER {
            return Err(FountainError::BadLength {
                kind,
                len: datagram.len(),
                expected: DATAGRAM_HEADER,
            });
        }
        let mut b = datagram.slice(1..DATAGRAM_HEADER);
        let seq = b.get_u32();
        let piece = b.get_u32();
        let esi = u32::from(b.get_u8()) << 16 | u32::from(b.get_u16());
        let count = u32::from(b.get_u8());
        if t == 0 {
            // No torrent yields T = 0; without this check a frame claiming
            // symbols would parse with none.
            return Err(FountainError::RaggedSymbols {
                len: datagram.len().saturating_sub(DATAGRAM_HEADER),
                t,
            });
        }
        let expected = DATAGRAM_HEADER + count as usize * t as usize;
        if count == 0 || datagram.len() != expected {
            return Err(FountainError::BadLength {
                kind,
                len: datagram.len(),
                expected,
            });
        }
        if esi.saturating_add(count - 1) > limits.max_esi {
            return Err(FountainError::EsiOutOfRange(esi));
        }
        Ok(DatagramFrame {
            seq,
            piece,
            esi,
            symbols: datagram.slice(DATAGRAM_HEADER..),
        })
    }

    /// The frame's header for `count` (1..=255) symbols, which follow it in
    /// the datagram.
    pub fn header(seq: u32, piece: u32, esi: u32, count: u8) -> [u8; DATAGRAM_HEADER] {
        let esi = esi.min((1 << 24) - 1).to_be_bytes();
        let mut h = [0u8; DATAGRAM_HEADER];
        let parts = [DATAGRAM]
            .into_iter()
            .chain(seq.to_be_bytes())
            .chain(piece.to_be_bytes())
            .chain(esi.into_iter().skip(1))
            .chain([count]);
        for (dst, src) in h.iter_mut().zip(parts) {
            *dst = src;
        }
        h
    }

    /// Encodes the frame; `t` is the symbol size.
    pub fn encode(&self, t: u32) -> Bytes {
        let count = (self.symbols.len() / t.max(1) as usize).min(255) as u8;
        let mut out = BytesMut::with_capacity(DATAGRAM_HEADER + self.symbols.len());
        out.put_slice(&Self::header(self.seq, self.piece, self.esi, count));
        out.put_slice(&self.symbols);
        out.freeze()
    }

    /// Number of symbols carried, given the symbol size.
    pub fn count(&self, t: u32) -> u32 {
        (self.symbols.len() / t.max(1) as usize) as u32
    }
}

#[cfg(test)]
mod tests;
