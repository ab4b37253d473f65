//! The swarm store: every swarm's peers, sharded for the announce hot path.
//!
//! Why it looks like this:
//! - Swarms live in [`SHARDS`] independently locked maps, so two announces
//!   only contend when their info-hashes land in the same shard; nothing on
//!   the hot path takes a global lock (the two atomics counting swarms and
//!   peers change only when a swarm or peer appears or leaves).
//! - A peer is identified by (peer id, IP), hashed with a per-process SipHash
//!   key into a `u64`. Nobody can touch another peer's entry without owning
//!   its address, and nobody can aim collisions at a map they cannot key.
//! - Expiry is a periodic sweep, one shard at a time, not a per-request cost.
//! - Per-shard running totals make `/stats` cost O(shards), not O(swarms).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use wire::tracker::{Event, ScrapeStats};
use wire::{InfoHash, PeerId};

use super::swarm::{write_empty_reply, Swarm};

/// Number of independently locked shards.
const SHARDS: usize = 256;

/// Per-shard running totals, so `/stats` costs O(shards), not O(swarms).
#[derive(Default, Clone, Copy)]
struct Totals {
    peers: u64,
    seeders: u64,
    completed: u64,
    announces: u64,
}

#[derive(Default)]
struct Shard {
    swarms: HashMap<InfoHash, Swarm>,
    totals: Totals,
}

/// Aggregate figures over every swarm.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreTotals {
    pub swarms: u64,
    pub peers: u64,
    pub seeders: u64,
    pub leechers: u64,
    pub completed: u64,
    pub announces: u64,
}

/// What the response needs besides the peers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyParams {
    pub interval: u32,
    pub min_interval: u32,
    /// Seconds a peer stays listed after its last announce.
    pub peer_timeout: u32,
}

/// One parsed and vetted announce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub addr: SocketAddr,
    pub left: u64,
    pub event: Event,
    pub numwant: usize,
    pub compact: bool,
    pub no_peer_id: bool,
}

/// Why the store refused an announce (the state is unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("tracker is full: it already tracks {0} swarms")]
    TooManySwarms(usize),
    #[error("tracker is full: it already tracks {0} peers")]
    TooManyPeers(usize),
}

/// A peer as restored from the dfile or shown in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredPeer {
    pub peer_id: PeerId,
    pub addr: SocketAddr,
    pub seeder: bool,
    /// Store clock (seconds since the store started).
    pub expires: u32,
}

/// One swarm's figures, for the index page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SwarmRow {
    pub info_hash: InfoHash,
    pub seeders: u32,
    pub leechers: u32,
    pub downloaded: u32,
}

pub(crate) struct SwarmStore {
    shards: Box<[Mutex<Shard>]>,
    keys: RandomState,
    shard_key: u64,
    swarms: AtomicUsize,
    peers: AtomicUsize,
    max_swarms: usize,
    max_peers: usize,
    params: ReplyParams,
}

impl SwarmStore {
    pub fn new(params: ReplyParams, max_swarms: usize, max_peers: usize) -> Self {
        SwarmStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keys: RandomState::new(),
            shard_key: rand::random(),
            swarms: AtomicUsize::new(0),
            peers: AtomicUsize::new(0),
            max_swarms,
            max_peers,
            params,
        }
    }

    pub fn params(&self) -> ReplyParams {
        self.params
    }

    fn shard(&self, hash: &InfoHash) -> MutexGuard<'_, Shard> {
        let mut head = [0u8; 8];
        head.copy_from_slice(&hash.0[..8]);
        // A keyed multiply-shift: cheap, and spreads any info-hashes evenly.
        let mixed = (u64::from_le_bytes(head) ^ self.shard_key).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let i = (mixed >> 56) as usize % SHARDS;
        // A poisoned shard only means a panic elsewhere mid-update; the
        // data is still structurally valid, so keep serving.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peer_key(&self, peer_id: &PeerId, ip: IpAddr) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(&peer_id.0);
        match ip {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        h.finish()
    }

    /// Records an announce and writes the bencoded answer into `out`.
    pub fn announce(&self, a: &Announce, now: u32, out: &mut Vec<u8>) -> Result<(), Refused> {
        let key = self.peer_key(&a.peer_id, a.addr.ip());
        let mut guard = self.shard(&a.info_hash);
        let Shard { swarms, totals } = &mut *guard;
        totals.announces += 1;
        let swarm = match swarms.entry(a.info_hash) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                if a.event == Event::Stopped {
                    write_empty_reply(out, &self.params, 0, 0);
                    return Ok(());
                }
                let n = self.swarms.load(Ordering::Relaxed);
                if n >= self.max_swarms {
                    return Err(Refused::TooManySwarms(n));
                }
                let p = self.peers.load(Ordering::Relaxed);
                if p >= self.max_peers {
                    return Err(Refused::TooManyPeers(p));
                }
                self.swarms.fetch_add(1, Ordering::Relaxed);
                v.insert(Swarm::default())
            }
        };
        let found = swarm.find(key);
        let seeder = a.left == 0;
        if a.event == Event::Stopped {
            if let Some(pos) = found {
                let was_seeder = swarm.remove(pos);
                self.peers.fetch_sub(1, Ordering::Relaxed);
                totals.peers = totals.peers.saturating_sub(1);
                totals.seeders = totals.seeders.saturating_sub(u64::from(was_seeder));
            }
            let (s, l) = swarm.counts();
            write_empty_reply(out, &self.params, s, l);
            return Ok(());
        }
        let expires = now.saturating_add(self.params.peer_timeout);
        let was_seeder = match found {
            Some(pos) => Some(swarm.update(pos, a.addr, expires, seeder)),
            None => {
                let n = self.peers.load(Ordering::Relaxed);
                if n >= self.max_peers {
                    return Err(Refused::TooManyPeers(n));
                }
                self.peers.fetch_add(1, Ordering::Relaxed);
                totals.peers += 1;
                swarm.insert(key, a.peer_id, a.addr, expires, seeder);
                None
            }
        };
        totals.seeders = (totals.seeders + u64::from(seeder))
            .saturating_sub(u64::from(was_seeder == Some(true)));
        // `completed` counts a download once: a peer already known as a
        // seeder repeating the event does not inflate the figure.
        if a.event == Event::Completed && was_seeder != Some(true) {
            swarm.downloaded = swarm.downloaded.saturating_add(1);
            totals.completed += 1;
        }
        swarm.reply(a, key, &self.params, out);
        Ok(())
    }

    /// Scrape figures; unknown swarms count as empty.
    pub fn scrape(&self, hash: &InfoHash) -> ScrapeStats {
        let shard = self.shard(hash);
        match shard.swarms.get(hash) {
            Some(s) => {
                let (complete, incomplete) = s.counts();
                ScrapeStats {
                    complete,
                    downloaded: s.downloaded,
                    incomplete,
                }
            }
            None => ScrapeStats::default(),
        }
    }

    /// Drops peers whose time ran out, and swarms left empty unless
    /// `keep_empty` says so (allow-listed torrents keep their counts).
    /// Returns (peers removed, swarms removed).
    pub fn sweep(&self, now: u32, keep_empty: &dyn Fn(&InfoHash) -> bool) -> (usize, usize) {
        let (mut peers, mut swarms) = (0, 0);
        for shard in self.shards.iter() {
            let mut guard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let shard = &mut *guard;
            let totals = &mut shard.totals;
            shard.swarms.retain(|hash, swarm| {
                let (gone, gone_seeders) = swarm.expire(now);
                peers += gone;
                totals.peers = totals.peers.saturating_sub(gone as u64);
                totals.seeders = totals.seeders.saturating_sub(gone_seeders as u64);
                let keep = swarm.len() > 0 || keep_empty(hash);
                if !keep {
                    swarms += 1;
                    totals.completed = totals.completed.saturating_sub(u64::from(swarm.downloaded));
                }
                keep
            });
        }
        self.peers.fetch_sub(peers, Ordering::Relaxed);
        self.swarms.fetch_sub(swarms, Ordering::Relaxed);
        (peers, swarms)
    }

    pub fn totals(&self) -> StoreTotals {
        let mut t = StoreTotals::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            t.swarms += shard.swarms.len() as u64;
            t.peers += shard.totals.peers;
            t.seeders += shard.totals.seeders;
            t.completed += shard.totals.completed;
            t.announces += shard.totals.announces;
        }
        t.leechers = t.peers.saturating_sub(t.seeders);
        t
    }

    /// Every swarm's figures (one shard locked at a time).
    pub fn rows(&self) -> Vec<SwarmRow> {
        let mut rows = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            rows.extend(shard.swarms.iter().map(|(h, s)| {
                let (seeders, leechers) = s.counts();
                SwarmRow {
                    info_hash: *h,
                    seeders,
                    leechers,
                    downloaded: s.downloaded,
                }
            }));
        }
        rows
    }

    /// Calls `f` for every swarm with its downloaded count and live peers,
    /// holding one shard's lock at a time (used to write the dfile).
    pub fn for_each(
        &self,
        mut f: impl FnMut(&InfoHash, u32, &mut dyn Iterator<Item = StoredPeer>),
    ) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (hash, swarm) in &shard.swarms {
                f(hash, swarm.downloaded, &mut swarm.peers());
            }
        }
    }

    /// Puts a swarm back from the dfile. Peers past the caps are dropped.
    pub fn restore(&self, hash: InfoHash, downloaded: u32, peers: &[StoredPeer]) -> bool {
        let mut guard = self.shard(&hash);
        let Shard { swarms, totals } = &mut *guard;
        let swarm = match swarms.entry(hash) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                if self.swarms.load(Ordering::Relaxed) >= self.max_swarms {
                    return false;
                }
                self.swarms.fetch_add(1, Ordering::Relaxed);
                v.insert(Swarm::default())
            }
        };
        totals.completed += u64::from(downloaded.saturating_sub(swarm.downloaded));
        swarm.downloaded = swarm.downloaded.max(downloaded);
        for p in peers {
            let key = self.peer_key(&p.peer_id, p.addr.ip());
            if swarm.find(key).is_some() || self.peers.load(Ordering::Relaxed) >= self.max_peers {
                continue;
            }
            self.peers.fetch_add(1, Ordering::Relaxed);
            totals.peers += 1;
            totals.seeders += u64::from(p.seeder);
            swarm.insert(key, p.peer_id, p.addr, p.expires, p.seeder);
        }
        true
    }
}

/// The store's time: whole seconds since the tracker started (peer expiry
/// fits a `u32`), convertible to Unix time for the dfile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: std::time::Instant,
    start_unix: u64,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: std::time::Instant::now(),
            start_unix: unix_now(),
        }
    }

    /// Seconds since start. Starts at 1 so that 0 can never look "live".
    pub fn now(&self) -> u32 {
        u32::try_from(self.start.elapsed().as_secs())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    pub fn unix_of(&self, t: u32) -> u64 {
        self.start_unix + u64::from(t.saturating_sub(1))
    }

    /// The store time of a Unix time; `None` if it is already past.
    pub fn local_of(&self, unix: u64) -> Option<u32> {
        let now = self.now();
        let local = unix.checked_sub(self.start_unix)?.saturating_add(1);
        let local = u32::try_from(local).unwrap_or(u32::MAX);
        (local > now).then_some(local)
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;
    use wire::tracker::{AnnounceResponse, TrackerReply};
    use wire::Limits;

    pub(crate) const PARAMS: ReplyParams = ReplyParams {
        interval: 1800,
        min_interval: 60,
        peer_timeout: 3600,
    };

    pub(crate) fn store() -> SwarmStore {
        SwarmStore::new(PARAMS, 1000, 100_000)
    }

    pub(crate) fn id(n: u32) -> PeerId {
        let mut id = [b'-'; 20];
        id[..4].copy_from_slice(&n.to_be_bytes());
        PeerId(id)
    }

    pub(crate) fn addr(n: u32) -> SocketAddr {
        SocketAddr::from(([198, 18, (n >> 8) as u8, n as u8], 6881))
    }

    pub(crate) fn announce(
        s: &SwarmStore,
        hash: u8,
        peer: u32,
        at: SocketAddr,
        left: u64,
        event: Event,
        compact: bool,
    ) -> AnnounceResponse {
        let a = Announce {
            info_hash: InfoHash([hash; 20]),
            peer_id: id(peer),
            addr: at,
            left,
            event,
            numwant: 200,
            compact,
            no_peer_id: false,
        };
        let mut out = Vec::new();
        s.announce(&a, 10, &mut out).unwrap();
        match TrackerReply::decode(&out, &Limits::DEFAULT).unwrap() {
            TrackerReply::Announce(r) => r,
            TrackerReply::Failure(f) => panic!("failure {f}"),
        }
    }

    fn addrs(r: &AnnounceResponse) -> HashSet<SocketAddr> {
        r.peers.iter().map(|p| p.addr).collect()
    }

    #[test]
    fn lists_others_never_self_and_counts() {
        let s = store();
        let r = announce(&s, 1, 1, addr(1), 100, Event::Started, true);
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete, r.interval), (0, 1, 1800));
        announce(&s, 1, 2, addr(2), 0, Event::Started, true);
        let r = announce(&s, 1, 3, addr(3), 5, Event::None, true);
        assert_eq!(addrs(&r), HashSet::from([addr(1), addr(2)]));
        assert_eq!((r.complete, r.incomplete), (1, 2));
        // Re-announcing does not duplicate; `completed` counts once.
        let r = announce(&s, 1, 3, addr(3), 0, Event::Completed, true);
        assert_eq!((r.complete, r.incomplete), (2, 1));
        announce(&s, 1, 3, addr(3), 0, Event::Completed, true);
        assert_eq!(
            s.scrape(&InfoHash([1; 20])),
            ScrapeStats {
                complete: 2,
                downloaded: 1,
                incomplete: 1
            }
        );
        // The same address under a new peer id is still the requester.
        let r = announce(&s, 1, 99, addr(3), 0, Event::None, true);
        assert!(!addrs(&r).contains(&addr(3)));
        announce(&s, 1, 99, addr(3), 0, Event::Stopped, true);
        // `stopped` removes the peer and lists nobody.
        let r = announce(&s, 1, 2, addr(2), 0, Event::Stopped, true);
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete), (1, 1));
        let t = s.totals();
        assert_eq!(
            (t.swarms, t.peers, t.seeders, t.leechers, t.completed),
            (1, 2, 1, 1, 1)
        );
        // A stopped announce for an unknown swarm creates nothing.
        announce(&s, 9, 1, addr(1), 0, Event::Stopped, true);
        assert_eq!(s.totals().swarms, 1);
    }

    #[test]
    fn dictionary_form_ipv6_and_numwant() {
        let s = store();
        let v6: SocketAddr = "[2001:db8::5]:7000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:198.18.0.9]:7001".parse().unwrap();
        announce(&s, 2, 1, v6, 1, Event::None, true);
        announce(&s, 2, 2, mapped, 1, Event::None, true);
        let r = announce(&s, 2, 3, addr(3), 1, Event::None, false);
        let ids: HashSet<_> = r.peers.iter().map(|p| (p.addr, p.peer_id)).collect();
        let plain: SocketAddr = "198.18.0.9:7001".parse().unwrap();
        assert_eq!(
            ids,
            HashSet::from([(v6, Some(id(1))), (plain, Some(id(2)))])
        );
        // Compact: IPv4 in `peers`, IPv6 in `peers6` (decoded together).
        let r = announce(&s, 2, 3, addr(3), 1, Event::None, true);
        assert_eq!(addrs(&r), HashSet::from([v6, plain]));
        for n in 10..300 {
            announce(&s, 2, n, addr(n), 1, Event::None, true);
        }
        let a = Announce {
            info_hash: InfoHash([2; 20]),
            peer_id: id(10),
            addr: addr(10),
            left: 1,
            event: Event::None,
            numwant: 25,
            compact: true,
            no_peer_id: true,
        };
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let mut out = Vec::new();
            s.announce(&a, 10, &mut out).unwrap();
            let Ok(TrackerReply::Announce(r)) = TrackerReply::decode(&out, &Limits::DEFAULT) else {
                panic!("bad reply");
            };
            let got = addrs(&r);
            assert_eq!((r.peers.len(), got.len()), (25, 25));
            assert!(!got.contains(&addr(10)));
            seen.extend(got);
        }
        // Random starting points: 20 answers cover far more than 25 peers.
        assert!(seen.len() > 150, "{}", seen.len());
    }

    #[test]
    fn expiry_and_caps() {
        let s = SwarmStore::new(PARAMS, 2, 3);
        announce(&s, 1, 1, addr(1), 1, Event::None, true);
        announce(&s, 2, 2, addr(2), 0, Event::Completed, true);
        let mut out = Vec::new();
        let mut a = Announce {
            info_hash: InfoHash([3; 20]),
            peer_id: id(3),
            addr: addr(3),
            left: 1,
            event: Event::None,
            numwant: 50,
            compact: true,
            no_peer_id: false,
        };
        assert_eq!(s.announce(&a, 10, &mut out), Err(Refused::TooManySwarms(2)));
        a.info_hash = InfoHash([1; 20]);
        s.announce(&a, 10, &mut out).unwrap();
        a.peer_id = id(4);
        assert_eq!(s.announce(&a, 10, &mut out), Err(Refused::TooManyPeers(3)));
        assert_eq!(s.totals().peers, 3);
        // Peers announced at t=10 live until 10 + 3600.
        assert_eq!(s.sweep(3609, &|_| false), (0, 0));
        assert_eq!(s.sweep(3610, &|h| *h == InfoHash([2; 20])), (3, 1));
        let t = s.totals();
        assert_eq!((t.swarms, t.peers, t.seeders, t.completed), (1, 0, 0, 1));
        assert_eq!(s.scrape(&InfoHash([2; 20])).downloaded, 1);
    }

    #[test]
    fn big_swarm_matches_a_model() {
        // Crosses the index threshold up and down with a deterministic
        // random mix of announces, completions and stops.
        let s = store();
        let mut model: HashMap<u32, bool> = HashMap::new();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..6000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let peer = (x % 160) as u32;
            let seeder = x >> 40 & 1 == 1;
            let stop = x >> 41 & 7 == 0 || (x >> 44 & 1 == 1 && model.len() > 120);
            let event = if stop { Event::Stopped } else { Event::None };
            announce(&s, 4, peer, addr(peer), u64::from(!seeder), event, true);
            if stop {
                model.remove(&peer);
            } else {
                model.insert(peer, seeder);
            }
            let st = s.scrape(&InfoHash([4; 20]));
            let seeds = model.values().filter(|v| **v).count() as u32;
            assert_eq!(
                (st.complete, st.incomplete),
                (seeds, model.len() as u32 - seeds)
            );
        }
        let r = announce(&s, 4, 1000, addr(1000), 1, Event::None, true);
        let expected: HashSet<_> = model.keys().map(|p| addr(*p)).collect();
        assert_eq!(addrs(&r), expected);
    }
}
