//! Tracker responses: announce (compact BEP 23 and dictionary peers, BEP 7
//! `peers6`), scrape (BEP 48) and failures.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::TrackerError;
use crate::bencode::{self, Encoder, Node};
use crate::ids::{InfoHash, PeerId};
use crate::Limits;

/// One peer in an announce response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerEntry {
    pub addr: SocketAddr,
    /// Only in dictionary-form responses without `no_peer_id`.
    pub peer_id: Option<PeerId>,
}

/// A successful announce response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceResponse {
    pub interval: u32,
    pub min_interval: Option<u32>,
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    pub peers: Vec<PeerEntry>,
    pub warning: Option<String>,
    pub tracker_id: Option<Vec<u8>>,
}

/// What a tracker said: peers, or a failure reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerReply {
    Announce(AnnounceResponse),
    Failure(String),
}

/// Per-swarm scrape figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    pub complete: u32,
    pub downloaded: u32,
    pub incomplete: u32,
}

/// A scrape response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeResponse {
    pub files: Vec<(InfoHash, ScrapeStats)>,
}

/// A bencoded `failure reason` response.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 24);
    let mut enc = Encoder::new(&mut out);
    enc.begin_dict();
    enc.key_bytes(b"failure reason", reason.as_bytes());
    enc.end();
    out
}

impl AnnounceResponse {
    /// Encodes the response. With `compact`, IPv4 peers go into `peers` as
    /// 6-byte entries and IPv6 peers into `peers6` as 18-byte entries;
    /// otherwise all go into a `peers` list of dictionaries.
    pub fn encode(&self, compact: bool, no_peer_id: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.peers.len() * 18);
        let mut enc = Encoder::new(&mut out);
        enc.begin_dict();
        // Keys in sorted order.
        enc.key_int(b"complete", i64::from(self.complete));
        enc.key_int(b"incomplete", i64::from(self.incomplete));
        enc.key_int(b"interval", i64::from(self.interval));
        if let Some(min) = self.min_interval {
            enc.key_int(b"min interval", i64::from(min));
        }
        if compact {
            let mut v4 = Vec::new();
            let mut v6 = Vec::new();
            for p in &self.peers {
                match p.addr {
                    SocketAddr::V4(a) => {
                        v4.extend_from_slice(&a.ip().octets());
                        v4.extend_from_slice(&a.port().to_be_bytes());
                    }
                    SocketAddr::V6(a) => {
                        v6.extend_from_slice(&a.ip().octets());
                        v6.extend_from_slice(&a.port().to_be_bytes());
                    }
                }
            }
            enc.key_bytes(b"peers", &v4);
            if !v6.is_empty() {
                enc.key_bytes(b"peers6", &v6);
            }
        } else {
            enc.bytes(b"peers");
            enc.begin_list();
            for p in &self.peers {
                enc.begin_dict();
                enc.key_bytes(b"ip", p.addr.ip().to_string().as_bytes());
                if let (false, Some(id)) = (no_peer_id, p.peer_id) {
                    enc.key_bytes(b"peer id", &id.0);
                }
                enc.key_int(b"port", i64::from(p.addr.port()));
                enc.end();
            }
            enc.end();
        }
        if let Some(id) = &self.tracker_id {
            enc.key_bytes(b"tracker id", id);
        }
        if let Some(w) = &self.warning {
            enc.key_bytes(b"warning message", w.as_bytes());
        }
        enc.end();
        out
    }
}

impl TrackerReply {
    /// Parses a tracker's announce response body.
    pub fn decode(body: &[u8], limits: &Limits) -> Result<Self, TrackerError> {
        let bad = |why: String| TrackerError::BadResponse(why);
        let root = bencode::decode(body, limits).map_err(|e| bad(e.to_string()))?;
        if root.as_dict().is_none() {
            return Err(bad(format!(
                "response is a {}, not a dictionary",
                root.kind()
            )));
        }
        if let Some(reason) = root.get(b"failure reason") {
            let text = reason
                .as_bytes()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            return Ok(TrackerReply::Failure(text.into_owned()));
        }
        let uint = |key: &[u8]| {
            root.get(key)
                .and_then(Node::as_int)
                .and_then(|i| u32::try_from(i).ok())
        };
        let interval =
            uint(b"interval").ok_or_else(|| bad("missing or invalid `interval`".into()))?;
        let mut peers = Vec::new();
        let max = limits.tracker_max_response_peers;
        match root.get(b"peers").map(|p| &p.value) {
            Some(bencode::Value::Bytes(compact)) => {
                for chunk in compact.chunks_exact(6).take(max) {
                    peers.push(compact_peer(chunk));
                }
            }
            Some(bencode::Value::List(list)) => {
                for entry in list.iter().take(max) {
                    if let Some(p) = dict_peer(entry) {
                        peers.push(p);
                    }
                }
            }
            Some(_) => return Err(bad("`peers` is neither a string nor a list".into())),
            None => {}
        }
        if let Some(v6) = root.get(b"peers6").and_then(Node::as_bytes) {
            for chunk in v6.chunks_exact(18).take(max.saturating_sub(peers.len())) {
                peers.push(compact_peer(chunk));
            }
        }
        Ok(TrackerReply::Announce(AnnounceResponse {
            interval,
            min_interval: uint(b"min interval"),
            complete: uint(b"complete").unwrap_or(0),
            incomplete: uint(b"incomplete").unwrap_or(0),
            peers,
            warning: root
                .get(b"warning message")
                .and_then(Node::as_bytes)
                .map(|w| String::from_utf8_lossy(w).into_owned()),
            tracker_id: root
                .get(b"tracker id")
                .and_then(Node::as_bytes)
                .map(<[u8]>::to_vec),
        }))
    }
}

/// A 6-byte (IPv4) or 18-byte (IPv6) compact peer.
fn compact_peer(chunk: &[u8]) -> PeerEntry {
    let (ip, port) = chunk.split_at(chunk.len().saturating_sub(2));
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(port).unwrap_or_default());
    let ip = match <[u8; 4]>::try_from(ip) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).unwrap_or_default())),
    };
    PeerEntry {
        addr: SocketAddr::new(ip, port),
        peer_id: None,
    }
}

fn dict_peer(entry: &Node<'_>) -> Option<PeerEntry> {
    let ip: IpAddr = entry.get(b"ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(entry.get(b"port")?.as_int()?).ok()?;
    Some(PeerEntry {
        addr: SocketAddr::new(ip, port),
        peer_id: entry
            .get(b"peer id")
            .and_then(Node::as_bytes)
            .and_then(PeerId::from_slice),
    })
}

impl ScrapeResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut files: Vec<&(InfoHash, ScrapeStats)> = self.files.iter().collect();
        files.sort_by_key(|(h, _)| *h);
        files.dedup_by_key(|(h, _)| *h);
        let mut out = Vec::with_capacity(16 + files.len() * 80);
        let mut enc = Encoder::new(&mut out);
        enc.begin_dict();
        enc.bytes(b"files");
        enc.begin_dict();
        for (hash, stats) in files {
            enc.bytes(&hash.0);
            enc.begin_dict();
            enc.key_int(b"complete", i64::from(stats.complete));
            enc.key_int(b"downloaded", i64::from(stats.downloaded));
            enc.key_int(b"incomplete", i64::from(stats.incomplete));
            enc.end();
        }
        enc.end();
        enc.end();
        out
    }

    pub fn decode(body: &[u8], limits: &Limits) -> Result<Self, TrackerError> {
        let root =
            bencode::decode(body, limits).map_err(|e| TrackerError::BadResponse(e.to_string()))?;
        if let Some(reason) = root.get(b"failure reason").and_then(Node::as_bytes) {
            return Err(TrackerError::BadResponse(
                String::from_utf8_lossy(reason).into_owned(),
            ));
        }
        let files = root
            .get(b"files")
            .and_then(Node::as_dict)
            .ok_or_else(|| TrackerError::BadResponse("missing `files`".into()))?;
        let uint = |n: &Node<'_>, k: &[u8]| {
            n.get(k)
                .and_then(Node::as_int)
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(0)
        };
        Ok(ScrapeResponse {
            files: files
                .iter()
                .filter_map(|(hash, stats)| {
                    Some((
                        InfoHash::from_slice(hash)?,
                        ScrapeStats {
                            complete: uint(stats, b"complete"),
                            downloaded: uint(stats, b"downloaded"),
                            incomplete: uint(stats, b"incomplete"),
                        },
                    ))
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AnnounceResponse {
        AnnounceResponse {
            interval: 1800,
            min_interval: Some(60),
            complete: 2,
            incomplete: 5,
            peers: vec![
                PeerEntry {
                    addr: "198.18.0.2:6881".parse().unwrap(),
                    peer_id: Some(PeerId([1; 20])),
                },
                PeerEntry {
                    addr: "[::1]:6882".parse().unwrap(),
                    peer_id: Some(PeerId([2; 20])),
                },
            ],
            warning: Some("careful".into()),
            tracker_id: None,
        }
    }

    #[test]
    fn compact_and_dict_forms_round_trip() {
        let l = Limits::DEFAULT;
        let resp = sample();
        let dict = TrackerReply::decode(&resp.encode(false, false), &l).unwrap();
        assert_eq!(dict, TrackerReply::Announce(resp.clone()));
        let compact = TrackerReply::decode(&resp.encode(true, false), &l).unwrap();
        let mut expected = resp.clone();
        for p in &mut expected.peers {
            p.peer_id = None;
        }
        assert_eq!(compact, TrackerReply::Announce(expected));
    }

    #[test]
    fn failure_and_scrape() {
        let l = Limits::DEFAULT;
        assert_eq!(
            TrackerReply::decode(&encode_failure("no such torrent"), &l),
            Ok(TrackerReply::Failure("no such torrent".into()))
        );
        let scrape = ScrapeResponse {
            files: vec![(
                InfoHash([3; 20]),
                ScrapeStats {
                    complete: 1,
                    downloaded: 9,
                    incomplete: 4,
                },
            )],
        };
        assert_eq!(ScrapeResponse::decode(&scrape.encode(), &l), Ok(scrape));
        assert!(TrackerReply::decode(b"d8:intervali-1ee", &l).is_err());
    }
}
