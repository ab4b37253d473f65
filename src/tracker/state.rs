//! The `--dfile`: the swarms saved across restarts.
//!
//! Format (bencoded, version 1), chosen to stay small at a million peers:
//!
//! ```text
//! d 5:saved i<unix time>e
//!   6:swarms l ( d 10:downloaded i<n>e 9:info_hash 20:<hash>
//!                  5:peers <31-byte records>  6:peers6 <43-byte records> e )* e
//!   7:version i1e
//!   [13:kenosis_nodes <6-byte records>] e
//! ```
//!
//! A record is peer id (20) · IP (4 or 16) · port (2, big-endian) ·
//! flags (1; bit 0 = seeder) · expiry (4, Unix seconds, big-endian). Expiry
//! is absolute, so a peer that announced just before a restart stays listed
//! for the rest of its time and one whose time ran out while the tracker was
//! down is not brought back.
//!
//! `kenosis_nodes` (optional, added without a version change: older builds
//! ignore unknown keys) lists DHT nodes the tracker's Kenosis node knew, as
//! IPv4 (4) · port (2, big-endian), so a restart rejoins the DHT at once.
//!
//! Reading is strict: anything that is not exactly this shape is treated as
//! corrupt, renamed aside (`<dfile>.corrupt-<unix time>`) and the tracker
//! starts empty. Writing goes through [`write_atomic`], so a crash while
//! saving leaves the previous file intact.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use wire::bencode::{self, Encoder, Node};
use wire::{InfoHash, Limits, PeerId};

use super::store::{unix_now, Clock, StoredPeer, SwarmStore};
use crate::fsutil::write_atomic;

pub(crate) const VERSION: i64 = 1;
const V4_RECORD: usize = 20 + 4 + 2 + 1 + 4;
const V6_RECORD: usize = 20 + 16 + 2 + 1 + 4;
const NODE_RECORD: usize = 4 + 2;
/// Most DHT nodes read back from a dfile.
const MAX_NODES: usize = 1000;

/// What happened when the dfile was read at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loaded {
    /// No dfile yet: a new one will be written.
    Missing,
    /// Restored this many swarms and live peers.
    Restored { swarms: usize, peers: usize },
    /// The file was unusable and now lives at `aside`.
    SetAside { reason: String, aside: PathBuf },
}

/// Writes the store's state to `path` atomically; returns the byte count.
pub(crate) fn save(
    path: &Path,
    store: &SwarmStore,
    clock: &Clock,
    nodes: &[SocketAddrV4],
) -> io::Result<usize> {
    let bytes = encode(store, clock, nodes);
    write_atomic(path, &bytes)?;
    Ok(bytes.len())
}

pub(crate) fn encode(store: &SwarmStore, clock: &Clock, nodes: &[SocketAddrV4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 16);
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut enc = Encoder::new(&mut out);
    enc.begin_dict();
    if !nodes.is_empty() {
        let mut records = Vec::with_capacity(nodes.len() * NODE_RECORD);
        for n in nodes.iter().take(MAX_NODES) {
            records.extend_from_slice(&n.ip().octets());
            records.extend_from_slice(&n.port().to_be_bytes());
        }
        enc.key_bytes(b"kenosis_nodes", &records);
    }
    enc.key_int(b"saved", i64::try_from(unix_now()).unwrap_or(0));
    enc.bytes(b"swarms");
    enc.begin_list();
    store.for_each(|hash, downloaded, peers| {
        v4.clear();
        v6.clear();
        for p in peers {
            let buf = if p.addr.is_ipv4() { &mut v4 } else { &mut v6 };
            buf.extend_from_slice(&p.peer_id.0);
            match p.addr.ip() {
                IpAddr::V4(ip) => buf.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => buf.extend_from_slice(&ip.octets()),
            }
            buf.extend_from_slice(&p.addr.port().to_be_bytes());
            buf.push(u8::from(p.seeder));
            let unix = u32::try_from(clock.unix_of(p.expires)).unwrap_or(u32::MAX);
            buf.extend_from_slice(&unix.to_be_bytes());
        }
        enc.begin_dict();
        enc.key_int(b"downloaded", i64::from(downloaded));
        enc.key_bytes(b"info_hash", &hash.0);
        enc.key_bytes(b"peers", &v4);
        if !v6.is_empty() {
            enc.key_bytes(b"peers6", &v6);
        }
        enc.end();
    });
    enc.end();
    enc.key_int(b"version", VERSION);
    enc.end();
    out
}

/// Reads `path` into `store` (which must be empty), and returns the DHT
/// nodes it lists. A corrupt file is renamed aside; only I/O errors other
/// than "not found" are errors.
pub(crate) fn load(
    path: &Path,
    store: &SwarmStore,
    clock: &Clock,
    limits: &Limits,
) -> io::Result<(Loaded, Vec<SocketAddrV4>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Loaded::Missing, Vec::new())),
        Err(e) => return Err(e),
    };
    match restore(&bytes, store, clock, limits) {
        Ok((swarms, peers, nodes)) => Ok((Loaded::Restored { swarms, peers }, nodes)),
        Err(reason) => {
            let aside = set_aside(path)?;
            Ok((Loaded::SetAside { reason, aside }, Vec::new()))
        }
    }
}

/// Renames a bad dfile to a name that says why and when.
fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let stamp = unix_now();
    let mut n = 0u32;
    loop {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{stamp}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let aside = PathBuf::from(name);
        if !aside.exists() {
            std::fs::rename(path, &aside)?;
            return Ok(aside);
        }
        n += 1;
        if n > 1000 {
            return Err(io::Error::other("too many set-aside dfiles"));
        }
    }
}

/// One swarm as read from the file, not yet applied.
struct Entry<'a> {
    hash: InfoHash,
    downloaded: u32,
    v4: &'a [u8],
    v6: &'a [u8],
}

/// Checks the whole document first, then fills the store, so a bad file
/// never leaves a half-restored tracker.
fn restore(
    bytes: &[u8],
    store: &SwarmStore,
    clock: &Clock,
    limits: &Limits,
) -> Result<(usize, usize, Vec<SocketAddrV4>), String> {
    let decode_limits = Limits {
        // Each swarm is a handful of values; allow the configured maximum.
        bencode_max_items: limits
            .tracker_max_swarms
            .saturating_mul(8)
            .saturating_add(64),
        ..limits.clone()
    };
    let root = bencode::decode(bytes, &decode_limits).map_err(|e| format!("not bencode: {e}"))?;
    let version = root
        .get(b"version")
        .and_then(Node::as_int)
        .ok_or("no `version`")?;
    if version != VERSION {
        return Err(format!("version {version}, this build reads {VERSION}"));
    }
    let list = root
        .get(b"swarms")
        .and_then(Node::as_list)
        .ok_or("no `swarms` list")?;
    let nodes = match root.get(b"kenosis_nodes") {
        None => Vec::new(),
        Some(n) => {
            let raw = n.as_bytes().ok_or("bad `kenosis_nodes`")?;
            if raw.len() % NODE_RECORD != 0 {
                return Err("`kenosis_nodes` records of the wrong size".to_owned());
            }
            raw.chunks_exact(NODE_RECORD)
                .take(MAX_NODES)
                .filter_map(node_record)
                .collect()
        }
    };
    let mut entries = Vec::with_capacity(list.len());
    for (i, node) in list.iter().enumerate() {
        entries.push(entry(node).map_err(|why| format!("swarm {i}: {why}"))?);
    }
    let (mut swarms, mut peers) = (0, 0);
    let mut scratch: Vec<StoredPeer> = Vec::new();
    // A clock that jumped, or a hand-edited file, must not pin a peer for
    // longer than a fresh announce would.
    let latest = clock.now().saturating_add(store.params().peer_timeout);
    for e in entries {
        scratch.clear();
        scratch.extend(
            e.v4.chunks_exact(V4_RECORD)
                .filter_map(|r| record(r, 4, clock)),
        );
        scratch.extend(
            e.v6.chunks_exact(V6_RECORD)
                .filter_map(|r| record(r, 16, clock)),
        );
        for p in &mut scratch {
            p.expires = p.expires.min(latest);
        }
        // Swarms with neither peers nor history are not worth bringing back.
        if scratch.is_empty() && e.downloaded == 0 {
            continue;
        }
        if store.restore(e.hash, e.downloaded, &scratch) {
            swarms += 1;
            peers += scratch.len();
        }
    }
    Ok((swarms, peers, nodes))
}

/// One DHT node record; `None` for port 0 or an unspecified address.
fn node_record(r: &[u8]) -> Option<SocketAddrV4> {
    let ip = Ipv4Addr::from(<[u8; 4]>::try_from(r.get(..4)?).ok()?);
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(r.get(4..6)?).ok()?);
    (port != 0 && !ip.is_unspecified()).then(|| SocketAddrV4::new(ip, port))
}

fn entry<'a>(node: &Node<'a>) -> Result<Entry<'a>, &'static str> {
    let hash = node
        .get(b"info_hash")
        .and_then(Node::as_bytes)
        .and_then(InfoHash::from_slice)
        .ok_or("bad `info_hash`")?;
    let downloaded = node
        .get(b"downloaded")
        .and_then(Node::as_int)
        .and_then(|d| u32::try_from(d).ok())
        .ok_or("bad `downloaded`")?;
    let v4 = node
        .get(b"peers")
        .and_then(Node::as_bytes)
        .ok_or("bad `peers`")?;
    let v6 = match node.get(b"peers6") {
        Some(n) => n.as_bytes().ok_or("bad `peers6`")?,
        None => &[],
    };
    if v4.len() % V4_RECORD != 0 || v6.len() % V6_RECORD != 0 {
        return Err("peer records of the wrong size");
    }
    Ok(Entry {
        hash,
        downloaded,
        v4,
        v6,
    })
}

/// One peer record; `None` when it has expired or holds port 0.
fn record(r: &[u8], ip_len: usize, clock: &Clock) -> Option<StoredPeer> {
    let peer_id = PeerId::from_slice(r.get(..20)?)?;
    let ip_bytes = r.get(20..20 + ip_len)?;
    let ip = match ip_len {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip_bytes).ok()?)),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip_bytes).ok()?)),
    };
    let rest = r.get(20 + ip_len..)?;
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(rest.get(..2)?).ok()?);
    let seeder = rest.get(2)? & 1 == 1;
    let unix = u32::from_be_bytes(<[u8; 4]>::try_from(rest.get(3..7)?).ok()?);
    if port == 0 {
        return None;
    }
    Some(StoredPeer {
        peer_id,
        addr: SocketAddr::new(ip, port),
        seeder,
        expires: clock.local_of(u64::from(unix))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::store::tests::{addr, announce, store};
    use wire::tracker::Event;

    fn filled() -> SwarmStore {
        let s = store();
        for n in 0..50u32 {
            let hash = (n % 5) as u8;
            announce(&s, hash, n, addr(n), u64::from(n % 3), Event::None, true);
        }
        let v6: SocketAddr = "[2001:db8::7]:9999".parse().unwrap();
        announce(&s, 1, 77, v6, 0, Event::Completed, true);
        s
    }

    fn sorted_rows(s: &SwarmStore) -> Vec<super::super::store::SwarmRow> {
        let mut rows = s.rows();
        rows.sort_by_key(|r| r.info_hash);
        rows
    }

    #[test]
    fn round_trip_keeps_swarms_and_peers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dstate");
        let clock = Clock::new();
        let s = filled();
        let nodes: Vec<SocketAddrV4> = vec!["127.0.0.9:4000".parse().unwrap()];
        save(&path, &s, &clock, &nodes).unwrap();
        let back = store();
        let (loaded, nodes_back) = load(&path, &back, &Clock::new(), &Limits::DEFAULT).unwrap();
        assert_eq!(nodes_back, nodes);
        assert_eq!(
            loaded,
            Loaded::Restored {
                swarms: 5,
                peers: 51
            }
        );
        assert_eq!(sorted_rows(&back), sorted_rows(&s));
        assert_eq!(back.totals(), StoreTotalsNoAnnounces::of(&s));
        // The restored peers are handed out again.
        let r = announce(&back, 1, 500, addr(500), 1, Event::None, true);
        assert_eq!(r.peers.len(), 11);
        assert!(r.peers.iter().any(|p| p.addr.port() == 9999));
        assert_eq!(
            load(&dir.path().join("none"), &back, &clock, &Limits::DEFAULT)
                .unwrap()
                .0,
            Loaded::Missing
        );
        // A file without nodes (as older builds wrote) still loads.
        save(&path, &s, &clock, &[]).unwrap();
        let (loaded, nodes_back) = load(&path, &store(), &clock, &Limits::DEFAULT).unwrap();
        assert!(matches!(loaded, Loaded::Restored { swarms: 5, .. }));
        assert!(nodes_back.is_empty());
    }

    /// Totals of a store as a fresh restore would have them (no announces).
    struct StoreTotalsNoAnnounces;
    impl StoreTotalsNoAnnounces {
        fn of(s: &SwarmStore) -> super::super::store::StoreTotals {
            let mut t = s.totals();
            t.announces = 0;
            t
        }
    }

    #[test]
    fn bad_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dstate");
        save(&path, &filled(), &Clock::new(), &[]).unwrap();
        let good = std::fs::read(&path).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() / 2].to_vec()),
            ("garbage", b"\x00\xffnot bencode at all".to_vec()),
            ("empty", Vec::new()),
            ("future", b"d6:swarmsle7:versioni2ee".to_vec()),
            ("bad record", b"d6:swarmsld10:downloadedi0e9:info_hash20:aaaaaaaaaaaaaaaaaaaa5:peers3:abcee7:versioni1ee".to_vec()),
            ("bad nodes", b"d13:kenosis_nodes5:abcde6:swarmsle7:versioni1ee".to_vec()),
        ];
        for (what, bytes) in cases {
            std::fs::write(&path, &bytes).unwrap();
            let s = store();
            let (Loaded::SetAside { reason, aside }, _) =
                load(&path, &s, &Clock::new(), &Limits::DEFAULT).unwrap()
            else {
                panic!("{what}: not set aside");
            };
            assert!(!reason.is_empty());
            assert!(!path.exists(), "{what}");
            assert_eq!(std::fs::read(&aside).unwrap(), bytes, "{what}");
            assert!(aside.to_string_lossy().contains("dstate.corrupt-"));
            assert_eq!(s.totals().swarms, 0, "{what}: half-restored");
        }
        // Six files aside, with distinct names.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 6);
    }

    #[test]
    fn expired_peers_stay_expired() {
        let clock = Clock::new();
        let mut rec = Vec::new();
        rec.extend_from_slice(&[b'x'; 20]);
        rec.extend_from_slice(&[198, 18, 0, 1, 0x1a, 0xe1, 1]);
        let past = u32::try_from(unix_now() - 10).unwrap();
        rec.extend_from_slice(&past.to_be_bytes());
        assert_eq!(record(&rec, 4, &clock), None);
        let future = u32::try_from(unix_now() + 100).unwrap();
        rec.truncate(27);
        rec.extend_from_slice(&future.to_be_bytes());
        let p = record(&rec, 4, &clock).unwrap();
        assert!(p.seeder && p.addr == "198.18.0.1:6881".parse().unwrap());
    }
}
