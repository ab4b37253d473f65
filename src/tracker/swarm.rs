//! One swarm's peers, laid out for fast announce answers.
//!
//! Each swarm keeps its peers in two dense vectors (IPv4, IPv6) of
//! fixed-size slots holding the compact address (BEP 23 / BEP 7) ready to
//! copy, so an answer is a walk over contiguous memory and a `memcpy` per
//! peer, written straight into the response buffer. Small swarms (most of
//! them) are searched linearly; only swarms above [`INDEX_ABOVE`] peers carry
//! a hash index, which keeps memory near 60 bytes per peer.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use wire::tracker::{AnnounceResponse, PeerEntry};
use wire::PeerId;

use super::store::{Announce, ReplyParams, StoredPeer};

/// Swarms with more peers than this get a hash index; below half of it the
/// index is dropped again (hysteresis, so a swarm at the edge does not flap).
const INDEX_ABOVE: usize = 48;

/// One peer, with its address already in compact form (`N` = 6 or 18).
#[derive(Clone)]
struct Slot<const N: usize> {
    key: u64,
    expires: u32,
    seeder: bool,
    addr: [u8; N],
    peer_id: PeerId,
}

impl<const N: usize> Slot<N> {
    fn stored(&self) -> StoredPeer {
        StoredPeer {
            peer_id: self.peer_id,
            addr: decompact(&self.addr),
            seeder: self.seeder,
            expires: self.expires,
        }
    }
}

/// Where a peer sits: which vector, which position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pos {
    V4(usize),
    V6(usize),
}

/// The peer keys are already keyed SipHash outputs, so the index map hashes
/// them by identity.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Index = HashMap<u64, Pos, BuildHasherDefault<Identity>>;

#[derive(Default)]
pub(super) struct Swarm {
    v4: Vec<Slot<6>>,
    v6: Vec<Slot<18>>,
    /// Empty unless the swarm has more than [`INDEX_ABOVE`] peers.
    index: Index,
    seeders: u32,
    pub(super) downloaded: u32,
}

impl Swarm {
    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub(super) fn counts(&self) -> (u32, u32) {
        let total = u32::try_from(self.len()).unwrap_or(u32::MAX);
        (self.seeders, total.saturating_sub(self.seeders))
    }

    pub(super) fn find(&self, key: u64) -> Option<Pos> {
        if !self.index.is_empty() {
            return self.index.get(&key).copied();
        }
        if let Some(i) = self.v4.iter().position(|s| s.key == key) {
            return Some(Pos::V4(i));
        }
        self.v6.iter().position(|s| s.key == key).map(Pos::V6)
    }

    pub(super) fn insert(
        &mut self,
        key: u64,
        peer_id: PeerId,
        addr: SocketAddr,
        expires: u32,
        seeder: bool,
    ) {
        let pos = match compact(addr) {
            Compact::V4(addr) => {
                self.v4.push(Slot {
                    key,
                    expires,
                    seeder,
                    addr,
                    peer_id,
                });
                Pos::V4(self.v4.len() - 1)
            }
            Compact::V6(addr) => {
                self.v6.push(Slot {
                    key,
                    expires,
                    seeder,
                    addr,
                    peer_id,
                });
                Pos::V6(self.v6.len() - 1)
            }
        };
        self.seeders += u32::from(seeder);
        if !self.index.is_empty() {
            self.index.insert(key, pos);
        } else if self.len() > INDEX_ABOVE {
            self.rebuild_index();
        }
    }

    /// Every peer, for the dfile.
    pub(super) fn peers(&self) -> impl Iterator<Item = StoredPeer> + '_ {
        let v4 = self.v4.iter().map(Slot::stored);
        v4.chain(self.v6.iter().map(Slot::stored))
    }

    fn rebuild_index(&mut self) {
        let mut index = Index::with_capacity_and_hasher(self.len(), Default::default());
        index.extend(self.v4.iter().enumerate().map(|(i, s)| (s.key, Pos::V4(i))));
        index.extend(self.v6.iter().enumerate().map(|(i, s)| (s.key, Pos::V6(i))));
        self.index = index;
    }

    /// Refreshes a known peer; returns whether it was a seeder before. A
    /// peer whose port changed (or whose family changed, which cannot
    /// happen for a fixed IP) keeps its slot.
    pub(super) fn update(
        &mut self,
        pos: Pos,
        addr: SocketAddr,
        expires: u32,
        seeder: bool,
    ) -> bool {
        let was = match (pos, compact(addr)) {
            (Pos::V4(i), Compact::V4(c)) => self.v4.get_mut(i).map(|s| {
                s.addr = c;
                s.expires = expires;
                std::mem::replace(&mut s.seeder, seeder)
            }),
            (Pos::V6(i), Compact::V6(c)) => self.v6.get_mut(i).map(|s| {
                s.addr = c;
                s.expires = expires;
                std::mem::replace(&mut s.seeder, seeder)
            }),
            _ => None,
        }
        .unwrap_or(seeder);
        self.seeders = (self.seeders + u32::from(seeder)).saturating_sub(u32::from(was));
        was
    }

    /// Removes one peer (swap-remove, fixing the index of the moved one);
    /// returns whether it was a seeder.
    pub(super) fn remove(&mut self, pos: Pos) -> bool {
        let (removed, moved) = match pos {
            Pos::V4(i) if i < self.v4.len() => {
                let s = self.v4.swap_remove(i);
                (
                    Some((s.key, s.seeder)),
                    self.v4.get(i).map(|m| (m.key, Pos::V4(i))),
                )
            }
            Pos::V6(i) if i < self.v6.len() => {
                let s = self.v6.swap_remove(i);
                (
                    Some((s.key, s.seeder)),
                    self.v6.get(i).map(|m| (m.key, Pos::V6(i))),
                )
            }
            _ => (None, None),
        };
        let Some((key, seeder)) = removed else {
            return false;
        };
        self.seeders = self.seeders.saturating_sub(u32::from(seeder));
        if !self.index.is_empty() {
            if self.len() < INDEX_ABOVE / 2 {
                self.index = Index::default();
            } else {
                self.index.remove(&key);
                if let Some((k, p)) = moved {
                    self.index.insert(k, p);
                }
            }
        }
        seeder
    }

    /// Removes expired peers; returns (removed, of which seeders).
    pub(super) fn expire(&mut self, now: u32) -> (usize, usize) {
        let before = (self.len(), self.seeders);
        self.v4.retain(|s| s.expires > now);
        self.v6.retain(|s| s.expires > now);
        let removed = before.0 - self.len();
        if removed > 0 {
            self.seeders = (self.v4.iter().filter(|s| s.seeder).count()
                + self.v6.iter().filter(|s| s.seeder).count()) as u32;
            if self.len() > INDEX_ABOVE {
                self.rebuild_index();
            } else {
                self.index = Index::default();
            }
            self.v4.shrink_to(self.v4.len() * 2);
            self.v6.shrink_to(self.v6.len() * 2);
        }
        (removed, (before.1 - self.seeders.min(before.1)) as usize)
    }

    /// Writes the answer to `a`: counts and up to `numwant` other peers.
    pub(super) fn reply(&self, a: &Announce, me: u64, params: &ReplyParams, out: &mut Vec<u8>) {
        let (seeders, leechers) = self.counts();
        let (n4, n6) = (self.v4.len(), self.v6.len());
        // Share the wanted count between the families in proportion.
        let want = a.numwant.min(n4 + n6);
        let mut q4 = if n4 + n6 == 0 {
            0
        } else {
            (want * n4).div_ceil(n4 + n6)
        };
        q4 = q4.min(n4);
        let q6 = (want - q4).min(n6);
        let start4 = random_below(n4);
        let start6 = random_below(n6);
        let (my4, my6) = match compact(a.addr) {
            Compact::V4(c) => (Some(c), None),
            Compact::V6(c) => (None, Some(c)),
        };
        if a.compact {
            // One pass counts (the bencode length comes first), the
            // second copies straight into the response.
            let c4 = walk(&self.v4, start4, q4, me, my4.as_ref(), |_| {});
            let c6 = walk(&self.v6, start6, q6, me, my6.as_ref(), |_| {});
            out.reserve(112 + c4 * 6 + c6 * 18);
            write_head(out, params, seeders, leechers);
            push_len(out, b"5:peers", c4 * 6);
            walk(&self.v4, start4, q4, me, my4.as_ref(), |s| {
                out.extend_from_slice(&s.addr)
            });
            if c6 > 0 {
                push_len(out, b"6:peers6", c6 * 18);
                walk(&self.v6, start6, q6, me, my6.as_ref(), |s| {
                    out.extend_from_slice(&s.addr)
                });
            }
            out.push(b'e');
        } else {
            let mut peers = Vec::with_capacity(q4 + q6);
            walk(&self.v4, start4, q4, me, my4.as_ref(), |s| {
                peers.push(PeerEntry {
                    addr: decompact(&s.addr),
                    peer_id: Some(s.peer_id),
                })
            });
            walk(&self.v6, start6, q6, me, my6.as_ref(), |s| {
                peers.push(PeerEntry {
                    addr: decompact(&s.addr),
                    peer_id: Some(s.peer_id),
                })
            });
            let resp = AnnounceResponse {
                interval: params.interval,
                min_interval: Some(params.min_interval),
                complete: seeders,
                incomplete: leechers,
                peers,
                warning: None,
                tracker_id: None,
            };
            out.extend_from_slice(&resp.encode(false, a.no_peer_id));
        }
    }
}

/// Visits up to `want` slots starting at `start` (wrapping), skipping the
/// requester (same key, or same address under another peer id).
fn walk<const N: usize>(
    list: &[Slot<N>],
    start: usize,
    want: usize,
    me: u64,
    my_addr: Option<&[u8; N]>,
    mut f: impl FnMut(&Slot<N>),
) -> usize {
    let mut taken = 0;
    let (tail, head) = list.split_at(start.min(list.len()));
    for s in head.iter().chain(tail) {
        if taken == want {
            break;
        }
        if s.key == me || Some(&s.addr) == my_addr {
            continue;
        }
        f(s);
        taken += 1;
    }
    taken
}

enum Compact {
    V4([u8; 6]),
    V6([u8; 18]),
}

/// The compact form; IPv4-mapped IPv6 addresses (dual-stack sockets) count
/// as IPv4.
fn compact(addr: SocketAddr) -> Compact {
    let port = addr.port().to_be_bytes();
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            let mut c = [0u8; 6];
            c[..4].copy_from_slice(&ip.octets());
            c[4..].copy_from_slice(&port);
            Compact::V4(c)
        }
        IpAddr::V6(ip) => {
            let mut c = [0u8; 18];
            c[..16].copy_from_slice(&ip.octets());
            c[16..].copy_from_slice(&port);
            Compact::V6(c)
        }
    }
}

fn decompact<const N: usize>(c: &[u8; N]) -> SocketAddr {
    let (ip, port) = c.split_at(N - 2);
    let port = u16::from_be_bytes([port[0], port[1]]);
    let ip = match <[u8; 4]>::try_from(ip) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).unwrap_or_default())),
    };
    SocketAddr::new(ip, port)
}

fn write_head(out: &mut Vec<u8>, p: &ReplyParams, seeders: u32, leechers: u32) {
    out.extend_from_slice(b"d8:completei");
    push_num(out, u64::from(seeders));
    out.extend_from_slice(b"e10:incompletei");
    push_num(out, u64::from(leechers));
    out.extend_from_slice(b"e8:intervali");
    push_num(out, u64::from(p.interval));
    out.extend_from_slice(b"e12:min intervali");
    push_num(out, u64::from(p.min_interval));
    out.push(b'e');
}

/// A reply without peers (for `stopped`: the client is leaving).
pub(super) fn write_empty_reply(out: &mut Vec<u8>, p: &ReplyParams, seeders: u32, leechers: u32) {
    write_head(out, p, seeders, leechers);
    out.extend_from_slice(b"5:peers0:e");
}

fn push_len(out: &mut Vec<u8>, key: &[u8], len: usize) {
    out.extend_from_slice(key);
    push_num(out, len as u64);
    out.push(b':');
}

/// Decimal digits without going through `fmt`.
fn push_num(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

thread_local! {
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new(rand::random::<u64>() | 1);
}

/// A uniform-enough start offset (xorshift64*; peer order is not a secret).
fn random_below(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize % n
    })
}
