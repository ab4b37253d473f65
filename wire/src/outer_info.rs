//! The `bf` dictionary inside `info`: bitfountain's outer code across pieces
//! (DESIGN §3.6). Legacy clients ignore unknown keys of `info`, so such a
//! torrent stays an ordinary BEP 3 torrent; its info-hash covers `bf` too,
//! so nobody can swap the repair hashes without changing the torrent.
//!
//! ```text
//! bf = { v: 1, t: T, r: R, h: R × 32 bytes of BLAKE3 }
//! ```
//! Repair piece r is symbol N + r of every stripe (stripe i: the i-th T-byte
//! segment of every piece, zero-padded), as `codec::OuterCode` builds it.

use thiserror::Error;

use crate::bencode::{Node, OwnedValue};

/// Version of the `bf` dictionary.
pub const OUTER_VERSION: i64 = 1;
/// Symbol sizes the outer code may use.
const SYMBOL_SIZES: [u32; 3] = [1024, 4096, 16384];

/// The outer code of a torrent, as its `info` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterInfo {
    /// Symbol size T of the stripes.
    pub symbol_size: u32,
    /// BLAKE3 of every repair piece, in order; their count is R.
    pub repair_hashes: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OuterInfoError {
    #[error("`bf` is not a dictionary")]
    NotADict,
    #[error("`bf` version {0} is not supported")]
    Version(i64),
    #[error("`bf` symbol size {0} is not 1024, 4096 or 16384")]
    SymbolSize(i64),
    #[error("`bf` names {0} repair pieces, more than the {1} allowed")]
    TooMany(i64, u32),
    #[error("`bf` hashes are {found} bytes, {expected} expected")]
    Hashes { found: usize, expected: usize },
}

impl OuterInfo {
    /// Reads the `bf` entry of `info`; `None` when absent. At most
    /// `max_repair` repair pieces.
    pub fn parse(bf: &Node<'_>, max_repair: u32) -> Result<Self, OuterInfoError> {
        if bf.get(b"v").is_none() && bf.as_bytes().is_some() {
            return Err(OuterInfoError::NotADict);
        }
        let int = |key: &[u8]| bf.get(key).and_then(Node::as_int);
        let version = int(b"v").ok_or(OuterInfoError::NotADict)?;
        if version != OUTER_VERSION {
            return Err(OuterInfoError::Version(version));
        }
        let t = int(b"t").unwrap_or(-1);
        let symbol_size = u32::try_from(t)
            .ok()
            .filter(|t| SYMBOL_SIZES.contains(t))
            .ok_or(OuterInfoError::SymbolSize(t))?;
        let r = int(b"r").unwrap_or(-1);
        let count = u32::try_from(r)
            .ok()
            .filter(|r| *r <= max_repair)
            .ok_or(OuterInfoError::TooMany(r, max_repair))?;
        let raw = bf.get(b"h").and_then(Node::as_bytes).unwrap_or_default();
        let expected = count as usize * 32;
        if raw.len() != expected {
            return Err(OuterInfoError::Hashes {
                found: raw.len(),
                expected,
            });
        }
        let repair_hashes = raw
            .chunks_exact(32)
            .filter_map(|c| <[u8; 32]>::try_from(c).ok())
            .collect();
        Ok(OuterInfo {
            symbol_size,
            repair_hashes,
        })
    }

    /// Number of repair pieces R.
    pub fn repair_count(&self) -> u32 {
        u32::try_from(self.repair_hashes.len()).unwrap_or(u32::MAX)
    }

    /// The `bf` value to put in `info`.
    pub fn to_bencode(&self) -> OwnedValue {
        OwnedValue::dict([
            ("v", OwnedValue::Int(OUTER_VERSION)),
            ("t", OwnedValue::Int(i64::from(self.symbol_size))),
            ("r", OwnedValue::Int(i64::from(self.repair_count()))),
            ("h", OwnedValue::Bytes(self.repair_hashes.concat())),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode;
    use crate::Limits;

    fn parse(v: &OwnedValue) -> Result<OuterInfo, OuterInfoError> {
        let bytes = v.to_bytes();
        let node =
            bencode::decode(&bytes, &Limits::DEFAULT).map_err(|_| OuterInfoError::NotADict)?;
        OuterInfo::parse(&node, 1000)
    }

    #[test]
    fn round_trip() {
        let info = OuterInfo {
            symbol_size: 4096,
            repair_hashes: vec![[7; 32], [9; 32]],
        };
        assert_eq!(parse(&info.to_bencode()), Ok(info));
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let dict = |v: i64, t: i64, r: i64, h: usize| {
            OwnedValue::dict([
                ("v", OwnedValue::Int(v)),
                ("t", OwnedValue::Int(t)),
                ("r", OwnedValue::Int(r)),
                ("h", OwnedValue::Bytes(vec![0; h])),
            ])
        };
        assert_eq!(
            parse(&dict(2, 1024, 1, 32)),
            Err(OuterInfoError::Version(2))
        );
        assert_eq!(
            parse(&dict(1, 1000, 1, 32)),
            Err(OuterInfoError::SymbolSize(1000))
        );
        assert_eq!(
            parse(&dict(1, 1024, -1, 0)),
            Err(OuterInfoError::TooMany(-1, 1000))
        );
        assert_eq!(
            parse(&dict(1, 1024, 1001, 0)),
            Err(OuterInfoError::TooMany(1001, 1000))
        );
        assert_eq!(
            parse(&dict(1, 1024, 2, 33)),
            Err(OuterInfoError::Hashes {
                found: 33,
                expected: 64
            })
        );
        assert_eq!(
            parse(&OwnedValue::bytes("x")),
            Err(OuterInfoError::NotADict)
        );
    }
}
