//! The BEP 10 extended handshake, including bitfountain's `bf_raptorq`
//! capability keys.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::PeerWireError;
use crate::bencode::{self, Node, OwnedValue};
use crate::Limits;

/// Extended message id 0 is the handshake itself (BEP 10).
pub const EXT_HANDSHAKE_ID: u8 = 0;
/// The name under which coded peers announce the fountain extension in `m`.
pub const RAPTORQ_EXTENSION: &str = "bf_raptorq";

/// What a coded peer says about its fountain-coding support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaptorqCaps {
    /// Version of the `bf_raptorq` message set.
    pub version: u32,
    /// Symbol sizes T the peer can use (1024 is mandatory).
    pub symbol_sizes: Vec<u32>,
    /// UDP port of the peer's QUIC endpoint, when it listens on one.
    pub quic_port: Option<u16>,
}

/// The extended handshake dictionary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtendedHandshake {
    /// Extension names mapped to the message ids the sender wants to
    /// receive them under; 0 means "disabled".
    pub extensions: BTreeMap<String, u8>,
    /// `v`: client name and version.
    pub client: Option<String>,
    /// `p`: the sender's listen port.
    pub listen_port: Option<u16>,
    /// `reqq`: how many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// `yourip`: the receiver's address as the sender sees it.
    pub your_ip: Option<IpAddr>,
    /// `metadata_size` (BEP 9).
    pub metadata_size: Option<u64>,
    /// Present when `m` holds `bf_raptorq` with a non-zero id.
    pub raptorq: Option<RaptorqCaps>,
}

impl ExtendedHandshake {
    /// The id the sender wants for extension `name`, if enabled.
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.extensions.get(name).copied().filter(|id| *id != 0)
    }

    /// Parses an extended handshake payload. Unknown keys are ignored;
    /// known keys of the wrong type are ignored too (peers in the wild get
    /// them wrong), except `m`, without which the handshake means nothing.
    pub fn decode(payload: &[u8], limits: &Limits) -> Result<Self, PeerWireError> {
        let bad = |why: &str| PeerWireError::BadExtendedHandshake(why.to_owned());
        let root = bencode::decode(payload, limits)
            .map_err(|e| PeerWireError::BadExtendedHandshake(e.to_string()))?;
        if root.as_dict().is_none() {
            return Err(bad("not a dictionary"));
        }
        let m = root
            .get(b"m")
            .and_then(Node::as_dict)
            .ok_or_else(|| bad("missing `m` dictionary"))?;
        let extensions: BTreeMap<String, u8> = m
            .iter()
            .filter_map(|(name, id)| {
                let name = std::str::from_utf8(name).ok()?;
                let id = u8::try_from(id.as_int()?).ok()?;
                Some((name.to_owned(), id))
            })
            .collect();
        let int = |key: &[u8]| root.get(key).and_then(Node::as_int);
        let raptorq = extensions
            .get(RAPTORQ_EXTENSION)
            .filter(|id| **id != 0)
            .map(|_| RaptorqCaps {
                version: int(b"bf_v")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(1),
                symbol_sizes: root
                    .get(b"bf_t")
                    .and_then(Node::as_list)
                    .map(|l| {
                        l.iter()
                            .filter_map(|t| t.as_int().and_then(|t| u32::try_from(t).ok()))
                            .take(8)
                            .collect()
                    })
                    .unwrap_or_else(|| vec![1024]),
                quic_port: int(b"bf_q")
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
            });
        Ok(ExtendedHandshake {
            extensions,
            client: root
                .get(b"v")
                .and_then(Node::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            listen_port: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            reqq: int(b"reqq").and_then(|r| u32::try_from(r).ok()),
            your_ip: root
                .get(b"yourip")
                .and_then(Node::as_bytes)
                .and_then(ip_from_bytes),
            metadata_size: int(b"metadata_size").and_then(|s| u64::try_from(s).ok()),
            raptorq,
        })
    }

    /// Encodes the handshake payload (without the message header).
    pub fn encode(&self) -> Vec<u8> {
        let mut dict: BTreeMap<Vec<u8>, OwnedValue> = BTreeMap::new();
        dict.insert(
            b"m".to_vec(),
            OwnedValue::dict(
                self.extensions
                    .iter()
                    .map(|(name, id)| (name.as_bytes(), OwnedValue::Int(i64::from(*id)))),
            ),
        );
        if let Some(v) = &self.client {
            dict.insert(b"v".to_vec(), OwnedValue::bytes(v));
        }
        if let Some(p) = self.listen_port {
            dict.insert(b"p".to_vec(), OwnedValue::Int(i64::from(p)));
        }
        if let Some(r) = self.reqq {
            dict.insert(b"reqq".to_vec(), OwnedValue::Int(i64::from(r)));
        }
        if let Some(ip) = self.your_ip {
            let bytes = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            dict.insert(b"yourip".to_vec(), OwnedValue::Bytes(bytes));
        }
        if let Some(size) = self.metadata_size {
            dict.insert(
                b"metadata_size".to_vec(),
                OwnedValue::Int(i64::try_from(size).unwrap_or(i64::MAX)),
            );
        }
        if let Some(caps) = &self.raptorq {
            dict.insert(b"bf_v".to_vec(), OwnedValue::Int(i64::from(caps.version)));
            dict.insert(
                b"bf_t".to_vec(),
                OwnedValue::List(
                    caps.symbol_sizes
                        .iter()
                        .map(|t| OwnedValue::Int(i64::from(*t)))
                        .collect(),
                ),
            );
            if let Some(port) = caps.quic_port {
                dict.insert(b"bf_q".to_vec(), OwnedValue::Int(i64::from(port)));
            }
        }
        OwnedValue::Dict(dict).to_bytes()
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_raptorq_caps() {
        let hs = ExtendedHandshake {
            extensions: [("bf_raptorq".to_owned(), 3), ("ut_metadata".to_owned(), 2)].into(),
            client: Some("bitfountain 0.1".into()),
            listen_port: Some(6881),
            reqq: Some(500),
            your_ip: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2))),
            metadata_size: Some(1234),
            raptorq: Some(RaptorqCaps {
                version: 1,
                symbol_sizes: vec![1024, 4096],
                quic_port: Some(6881),
            }),
        };
        let decoded = ExtendedHandshake::decode(&hs.encode(), &Limits::DEFAULT).unwrap();
        assert_eq!(decoded, hs);
        assert_eq!(decoded.id_of("bf_raptorq"), Some(3));
    }

    #[test]
    fn legacy_handshake_has_no_caps_and_junk_is_refused() {
        let legacy = b"d1:md11:ut_metadatai2ee1:pi6881e1:v12:Transmissione";
        let hs = ExtendedHandshake::decode(legacy, &Limits::DEFAULT).unwrap();
        assert!(hs.raptorq.is_none());
        assert_eq!(hs.id_of("bf_raptorq"), None);
        assert_eq!(hs.listen_port, Some(6881));
        assert!(ExtendedHandshake::decode(b"le", &Limits::DEFAULT).is_err());
        assert!(ExtendedHandshake::decode(b"d1:pi1ee", &Limits::DEFAULT).is_err());
        let disabled = b"d1:md10:bf_raptorqi0eee";
        assert!(ExtendedHandshake::decode(disabled, &Limits::DEFAULT)
            .unwrap()
            .raptorq
            .is_none());
    }
}
