//! BEP 9 `ut_metadata`: the info dictionary in 16 KiB pieces over BEP 10
//! extended messages, and [`MetadataAssembly`], the state machine that
//! fetches it from one peer and checks it against the info-hash.
//!
//! A message is a bencoded dictionary (`msg_type`, `piece`, and for data
//! `total_size`) followed, for data, by the piece's raw bytes.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::{self, Node, OwnedValue};
use crate::ids::InfoHash;
use crate::Limits;

/// The name peers announce in the extended handshake's `m`.
pub const METADATA_EXTENSION: &str = "ut_metadata";
/// Metadata travels in pieces of this size; only the last may be shorter.
pub const METADATA_PIECE: usize = 16 << 10;

/// One `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMessage {
    Request {
        piece: u32,
    },
    Data {
        piece: u32,
        total_size: u64,
        data: Vec<u8>,
    },
    Reject {
        piece: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    #[error("ut_metadata: malformed message ({0})")]
    Malformed(String),
    #[error("ut_metadata: metadata_size {size} is out of range (1..={limit})")]
    BadSize { size: u64, limit: usize },
    #[error("ut_metadata: piece {piece} was not requested")]
    Unrequested { piece: u32 },
    #[error("ut_metadata: piece {piece} has {got} bytes, expected {expected}")]
    WrongLength {
        piece: u32,
        got: usize,
        expected: usize,
    },
    #[error("ut_metadata: total_size {got} differs from the handshake's {expected}")]
    SizeChanged { got: u64, expected: u64 },
    #[error("ut_metadata: the peer refused piece {piece}")]
    Rejected { piece: u32 },
    #[error("ut_metadata: the metadata does not hash to the info-hash")]
    HashMismatch,
}

impl MetadataMessage {
    /// Encodes the message payload (what goes inside the extended message).
    pub fn encode(&self) -> Vec<u8> {
        let (kind, piece) = match self {
            MetadataMessage::Request { piece } => (0, piece),
            MetadataMessage::Data { piece, .. } => (1, piece),
            MetadataMessage::Reject { piece } => (2, piece),
        };
        let mut dict: BTreeMap<Vec<u8>, OwnedValue> = BTreeMap::new();
        dict.insert(b"msg_type".to_vec(), OwnedValue::Int(kind));
        dict.insert(b"piece".to_vec(), OwnedValue::Int(i64::from(*piece)));
        let mut out;
        if let MetadataMessage::Data {
            total_size, data, ..
        } = self
        {
            dict.insert(
                b"total_size".to_vec(),
                OwnedValue::Int(i64::try_from(*total_size).unwrap_or(i64::MAX)),
            );
            out = OwnedValue::Dict(dict).to_bytes();
            out.extend_from_slice(data);
        } else {
            out = OwnedValue::Dict(dict).to_bytes();
        }
        out
    }

    /// Decodes a payload. Unknown message types are an error the caller may
    /// ignore (BEP 9 says to ignore them).
    pub fn decode(payload: &[u8], limits: &Limits) -> Result<Self, MetadataError> {
        let bad = |why: &str| MetadataError::Malformed(why.to_owned());
        let (root, used) =
            bencode::decode_prefix(payload, limits).map_err(|e| bad(&e.to_string()))?;
        if root.as_dict().is_none() {
            return Err(bad("not a dictionary"));
        }
        let int = |key: &[u8]| root.get(key).and_then(Node::as_int);
        let piece = int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| bad("no valid `piece`"))?;
        let rest = payload.get(used..).unwrap_or_default();
        match int(b"msg_type") {
            Some(0) => Ok(MetadataMessage::Request { piece }),
            Some(1) => {
                let total_size = int(b"total_size")
                    .and_then(|s| u64::try_from(s).ok())
                    .ok_or_else(|| bad("data without a valid `total_size`"))?;
                if rest.len() > METADATA_PIECE {
                    return Err(bad("data longer than a metadata piece"));
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: rest.to_vec(),
                })
            }
            Some(2) => Ok(MetadataMessage::Reject { piece }),
            _ => Err(bad("unknown msg_type")),
        }
    }
}

/// The number of pieces of metadata of `size` bytes.
pub fn metadata_pieces(size: usize) -> u32 {
    u32::try_from(size.div_ceil(METADATA_PIECE)).unwrap_or(u32::MAX)
}

/// The bytes of piece `piece` of `metadata`, for serving it.
pub fn metadata_piece(metadata: &[u8], piece: u32) -> Option<&[u8]> {
    let start = (piece as usize).checked_mul(METADATA_PIECE)?;
    if start >= metadata.len() {
        return None;
    }
    metadata.get(start..(start + METADATA_PIECE).min(metadata.len()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    Requested,
    Received,
}

/// Fetches the metadata from one peer: which pieces to request next, and
/// the checked info dictionary once every piece is in. One instance per
/// peer, so a peer that sends bad data is identified exactly (its own
/// pieces fail the hash) and never spoils what another peer sent.
#[derive(Debug)]
pub struct MetadataAssembly {
    info_hash: InfoHash,
    size: usize,
    buf: Vec<u8>,
    slots: Vec<Slot>,
    in_flight: usize,
    max_in_flight: usize,
}

/// What a received message amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// More pieces are needed; ask [`MetadataAssembly::next_request`].
    Pending,
    /// Every piece arrived and they hash to the info-hash: the raw info
    /// dictionary.
    Done(Vec<u8>),
}

impl MetadataAssembly {
    /// Starts fetching `size` bytes (the peer's `metadata_size`), refusing
    /// sizes beyond `limits.metadata_max_size` before allocating anything.
    pub fn new(info_hash: InfoHash, size: u64, limits: &Limits) -> Result<Self, MetadataError> {
        let bad = MetadataError::BadSize {
            size,
            limit: limits.metadata_max_size,
        };
        let size = usize::try_from(size).map_err(|_| bad.clone())?;
        if size == 0 || size > limits.metadata_max_size {
            return Err(bad);
        }
        let pieces = metadata_pieces(size) as usize;
        Ok(MetadataAssembly {
            info_hash,
            size,
            buf: vec![0; size],
            slots: vec![Slot::Missing; pieces],
            in_flight: 0,
            max_in_flight: limits.metadata_max_in_flight.max(1),
        })
    }

    /// The next piece to request, while fewer than the limit are in flight.
    pub fn next_request(&mut self) -> Option<MetadataMessage> {
        if self.in_flight >= self.max_in_flight {
            return None;
        }
        let piece = self.slots.iter().position(|s| *s == Slot::Missing)?;
        if let Some(slot) = self.slots.get_mut(piece) {
            *slot = Slot::Requested;
        }
        self.in_flight += 1;
        Some(MetadataMessage::Request {
            piece: u32::try_from(piece).ok()?,
        })
    }

    /// Pieces received so far and in all.
    pub fn progress(&self) -> (usize, usize) {
        let got = self.slots.iter().filter(|s| **s == Slot::Received).count();
        (got, self.slots.len())
    }

    /// Takes a message from the peer. Errors mean this peer cannot give us
    /// the metadata (it refused, lied about the size or sent bad bytes);
    /// requests from the peer are not for the assembly and are ignored.
    pub fn on_message(&mut self, msg: MetadataMessage) -> Result<Assembled, MetadataError> {
        let (piece, total_size, data) = match msg {
            MetadataMessage::Request { .. } => return Ok(Assembled::Pending),
            MetadataMessage::Reject { piece } => return Err(MetadataError::Rejected { piece }),
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => (piece, total_size, data),
        };
        if total_size != self.size as u64 {
            return Err(MetadataError::SizeChanged {
                got: total_size,
                expected: self.size as u64,
            });
        }
        let index = piece as usize;
        match self.slots.get(index) {
            Some(Slot::Requested) => {}
            _ => return Err(MetadataError::Unrequested { piece }),
        }
        let start = index * METADATA_PIECE;
        let end = (start + METADATA_PIECE).min(self.size);
        let target = self
            .buf
            .get_mut(start..end)
            .ok_or(MetadataError::Unrequested { piece })?;
        if data.len() != target.len() {
            return Err(MetadataError::WrongLength {
                piece,
                got: data.len(),
                expected: target.len(),
            });
        }
        target.copy_from_slice(&data);
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Slot::Received;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.slots.iter().any(|s| *s != Slot::Received) {
            return Ok(Assembled::Pending);
        }
        let digest: [u8; 20] = Sha1::digest(&self.buf).into();
        if digest != self.info_hash.0 {
            return Err(MetadataError::HashMismatch);
        }
        Ok(Assembled::Done(std::mem::take(&mut self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(b: &[u8]) -> InfoHash {
        InfoHash(Sha1::digest(b).into())
    }

    #[test]
    fn messages_round_trip() {
        for msg in [
            MetadataMessage::Request { piece: 3 },
            MetadataMessage::Reject { piece: 0 },
            MetadataMessage::Data {
                piece: 1,
                total_size: 20000,
                data: vec![7; 3616],
            },
        ] {
            assert_eq!(
                MetadataMessage::decode(&msg.encode(), &Limits::DEFAULT).unwrap(),
                msg
            );
        }
        // As libtorrent writes a request.
        let lt = b"d8:msg_typei0e5:piecei0ee";
        assert_eq!(
            MetadataMessage::decode(lt, &Limits::DEFAULT).unwrap(),
            MetadataMessage::Request { piece: 0 }
        );
        for junk in [
            &b"le"[..],
            b"d5:piecei-1e8:msg_typei0ee",
            b"d8:msg_typei1e5:piecei0ee",
        ] {
            assert!(MetadataMessage::decode(junk, &Limits::DEFAULT).is_err());
        }
    }

    #[test]
    fn assembles_and_checks_the_hash() {
        let meta: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut a =
            MetadataAssembly::new(hash_of(&meta), meta.len() as u64, &Limits::DEFAULT).unwrap();
        let mut requests = Vec::new();
        while let Some(MetadataMessage::Request { piece }) = a.next_request() {
            requests.push(piece);
        }
        assert_eq!(requests, vec![0, 1, 2]);
        // Out of order is fine.
        for piece in [2, 0, 1] {
            let data = metadata_piece(&meta, piece).unwrap().to_vec();
            let r = a.on_message(MetadataMessage::Data {
                piece,
                total_size: meta.len() as u64,
                data,
            });
            if piece == 1 {
                assert_eq!(r, Ok(Assembled::Done(meta.clone())));
            } else {
                assert_eq!(r, Ok(Assembled::Pending));
            }
        }
    }

    #[test]
    fn refuses_lies() {
        let meta = vec![1u8; 20_000];
        let l = Limits::DEFAULT;
        let new = || MetadataAssembly::new(hash_of(&meta), meta.len() as u64, &l).unwrap();
        assert!(MetadataAssembly::new(hash_of(&meta), 0, &l).is_err());
        assert!(MetadataAssembly::new(hash_of(&meta), u64::MAX, &l).is_err());
        let data = |piece: u32, bytes: Vec<u8>| MetadataMessage::Data {
            piece,
            total_size: 20_000,
            data: bytes,
        };
        // Unrequested piece.
        let mut a = new();
        assert!(matches!(
            a.on_message(data(0, vec![1; METADATA_PIECE])),
            Err(MetadataError::Unrequested { .. })
        ));
        // Wrong length of the last piece.
        let mut a = new();
        while a.next_request().is_some() {}
        assert!(matches!(
            a.on_message(data(1, vec![1; 100])),
            Err(MetadataError::WrongLength { .. })
        ));
        // Changed total size, and a reject.
        assert!(matches!(
            a.on_message(MetadataMessage::Data {
                piece: 0,
                total_size: 5,
                data: vec![]
            }),
            Err(MetadataError::SizeChanged { .. })
        ));
        assert!(matches!(
            a.on_message(MetadataMessage::Reject { piece: 0 }),
            Err(MetadataError::Rejected { piece: 0 })
        ));
        // Bytes that do not hash to the info-hash.
        let mut a = new();
        while a.next_request().is_some() {}
        assert_eq!(
            a.on_message(data(0, vec![2; METADATA_PIECE])),
            Ok(Assembled::Pending)
        );
        assert_eq!(
            a.on_message(data(1, vec![1; 20_000 - METADATA_PIECE])),
            Err(MetadataError::HashMismatch)
        );
    }

    #[test]
    fn pieces_for_serving() {
        let meta = vec![5u8; METADATA_PIECE + 10];
        assert_eq!(metadata_pieces(meta.len()), 2);
        assert_eq!(metadata_piece(&meta, 0).unwrap().len(), METADATA_PIECE);
        assert_eq!(metadata_piece(&meta, 1).unwrap().len(), 10);
        assert!(metadata_piece(&meta, 2).is_none());
        assert!(metadata_piece(&meta, u32::MAX).is_none());
    }
}
