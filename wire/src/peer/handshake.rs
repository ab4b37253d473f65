//! The 68-byte BEP 3 handshake and its reserved bits.

use super::PeerWireError;
use crate::ids::{InfoHash, PeerId};

/// The protocol string every BitTorrent handshake starts with.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of the whole handshake.
pub const HANDSHAKE_LEN: usize = 68;

/// The eight reserved bytes, where extensions announce themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    // (byte, mask) of each bit we know.
    const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10); // BEP 10
    const FAST: (usize, u8) = (7, 0x04); // BEP 6
    const DHT: (usize, u8) = (7, 0x01); // BEP 5

    fn bit(&self, (byte, mask): (usize, u8)) -> bool {
        self.0.get(byte).is_some_and(|b| b & mask != 0)
    }

    fn with(mut self, (byte, mask): (usize, u8)) -> Self {
        if let Some(b) = self.0.get_mut(byte) {
            *b |= mask;
        }
        self
    }

    /// What bitfountain sends: extension protocol and fast extension.
    pub fn ours() -> Self {
        Reserved::default()
            .with(Self::EXTENSION_PROTOCOL)
            .with(Self::FAST)
    }

    pub fn supports_extension_protocol(&self) -> bool {
        self.bit(Self::EXTENSION_PROTOCOL)
    }

    pub fn supports_fast(&self) -> bool {
        self.bit(Self::FAST)
    }

    pub fn supports_dht(&self) -> bool {
        self.bit(Self::DHT)
    }
}

/// A decoded handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: Reserved,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        let parts: [&[u8]; 5] = [
            &[19],
            PROTOCOL,
            &self.reserved.0,
            &self.info_hash.0,
            &self.peer_id.0,
        ];
        let mut at = 0;
        for part in parts {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        out
    }

    /// Decodes the first 68 bytes of `buf`: `Ok(None)` while fewer are there.
    /// The protocol string is checked as soon as its bytes arrive, so a
    /// non-BitTorrent client is dropped early.
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, PeerWireError> {
        let seen = buf.len().min(20);
        let expected = [&[19u8][..], PROTOCOL].concat();
        if buf.get(..seen) != expected.get(..seen) {
            return Err(PeerWireError::BadProtocol);
        }
        let Some(whole) = buf.get(..HANDSHAKE_LEN) else {
            return Ok(None);
        };
        let field = |range: std::ops::Range<usize>| whole.get(range).unwrap_or_default();
        Ok(Some(Handshake {
            reserved: Reserved(<[u8; 8]>::try_from(field(20..28)).unwrap_or_default()),
            info_hash: InfoHash::from_slice(field(28..48)).unwrap_or_default(),
            peer_id: PeerId::from_slice(field(48..68)).unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_early_rejection() {
        let hs = Handshake {
            reserved: Reserved::ours(),
            info_hash: InfoHash([7; 20]),
            peer_id: PeerId([9; 20]),
        };
        let bytes = hs.encode();
        assert!(hs.reserved.supports_extension_protocol() && hs.reserved.supports_fast());
        assert!(!hs.reserved.supports_dht());
        for n in 0..HANDSHAKE_LEN {
            assert_eq!(Handshake::decode(&bytes[..n]), Ok(None));
        }
        assert_eq!(Handshake::decode(&bytes), Ok(Some(hs)));
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1"),
            Err(PeerWireError::BadProtocol)
        );
        assert_eq!(
            Handshake::decode(&[19, b'B', b'X']),
            Err(PeerWireError::BadProtocol)
        );
    }
}
