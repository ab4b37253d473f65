//! Finding the tracker for a key: DHT lookup, ranking, probing, the 30 s
//! cache, single-flight, and failover.
//!
//! 1. **Candidates**: `get_peers(sha1(key))` (trackers that serve the key)
//!    and `get_peers(service id)` (every Kenosis tracker) run together.
//!    Trackers registered under the key come first, then the others; each
//!    group is ordered by [`wire::kenosis::tracker_distance`], so clients
//!    that see the same trackers agree. The key's list is small and
//!    complete (a DHT node returns at most 10 stored peers per target, so
//!    the service list is a random subset in a large network).
//! 2. **Probe** in that order: an HTTP request with a short timeout; the
//!    first tracker that answers is chosen. Announces cannot be withdrawn,
//!    so dead trackers stay listed and probing is what skips them.
//! 3. **Cache** the candidates and the choice for 30 s. A tracker that
//!    stops answering (an announce fails, or the watch below finds it gone)
//!    is marked dead for 30 s and the next live candidate is chosen from the
//!    cached list, without a new DHT lookup.
//! 4. **Watch** (optional): a chosen tracker gets a bare TCP connect every
//!    second or so; when it is refused, the tracker is marked dead and
//!    [`Lookup::changes`] ticks, so announcers move on at once instead of at
//!    their next announce.
//!
//! Identical concurrent lookups share one run (single-flight), and at most
//! `Limits::kenosis_max_concurrent_lookups` distinct ones run at once.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use wire::kenosis::{rank_trackers, service_id, KenosisUrl, Key};
use wire::Limits;

use super::node::DhtNode;
use crate::session::announce::{AnnounceResolver, Resolved};

/// How long a lookup's result is used (also the DNS bridge's TTL).
pub const CACHE_FOR: Duration = Duration::from_secs(30);
/// A key nobody could find is not looked up again sooner than this.
const NEGATIVE_FOR: Duration = Duration::from_secs(5);
/// The longest all probes of one lookup may take together.
const PROBE_BUDGET: Duration = Duration::from_secs(6);
/// A chosen tracker is watched while its key was resolved this recently
/// (covers the usual 30-minute announce interval).
const WATCH_IDLE: Duration = Duration::from_secs(40 * 60);
/// Most keys remembered (a DNS bridge is asked for any name).
const MAX_ENTRIES: usize = 10_000;

/// How lookups behave.
#[derive(Debug, Clone)]
pub struct LookupConfig {
    pub cache_for: Duration,
    /// Timeout of one probe (connect + first bytes of the answer).
    pub probe_timeout: Duration,
    /// The longest a DHT lookup may run.
    pub dht_wait: Duration,
    /// Source address of probes and watches (`get --bind`).
    pub bind_ip: Option<IpAddr>,
    /// Period of the liveness watch of chosen trackers; `None`: no watch
    /// (failover then happens at the next announce).
    pub watch_every: Option<Duration>,
    pub limits: Limits,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            cache_for: CACHE_FOR,
            probe_timeout: Duration::from_millis(1500),
            dht_wait: Duration::from_secs(8),
            bind_ip: None,
            watch_every: Some(Duration::from_secs(1)),
            limits: Limits::DEFAULT,
        }
    }
}

/// Why no tracker came out of a lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no Kenosis tracker found for key {0}")]
    NoTracker(String),
    #[error("no Kenosis tracker for key {0} answers ({1} listed, all tried)")]
    AllDead(String, usize),
    #[error("too many Kenosis lookups at once")]
    Busy,
}

/// One tracker found for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub addr: SocketAddrV4,
    /// Registered under the key itself (not only under the service id).
    pub serves_key: bool,
}

type Flight = Shared<BoxFuture<'static, Result<SocketAddrV4, LookupError>>>;

/// Kenosis lookups over one DHT node; cheap to clone.
#[derive(Clone)]
pub struct Lookup {
    inner: Arc<Inner>,
}

struct Inner {
    node: DhtNode,
    config: LookupConfig,
    state: Mutex<State>,
    changes: watch::Sender<u64>,
    slots: Semaphore,
    dht_lookups: AtomicU64,
}

#[derive(Default)]
struct State {
    keys: HashMap<Key, Entry>,
    service: Option<(Instant, Vec<SocketAddrV4>)>,
    /// Trackers that did not answer, until when they are skipped.
    dead: HashMap<SocketAddrV4, Instant>,
    flights: HashMap<Key, Flight>,
    watched: HashSet<SocketAddrV4>,
}

struct Entry {
    looked_up: Instant,
    candidates: Vec<Candidate>,
    chosen: Option<SocketAddrV4>,
    used: Instant,
}

impl Lookup {
    pub fn new(node: DhtNode, config: LookupConfig) -> Lookup {
        let slots = Semaphore::new(config.limits.kenosis_max_concurrent_lookups.max(1));
        Lookup {
            inner: Arc::new(Inner {
                node,
                config,
                state: Mutex::default(),
                changes: watch::channel(0).0,
                slots,
                dht_lookups: AtomicU64::new(0),
            }),
        }
    }

    pub fn node(&self) -> &DhtNode {
        &self.inner.node
    }

    /// The tracker for `key`: cached, or found and probed now.
    pub async fn resolve(&self, key: &Key) -> Result<SocketAddrV4, LookupError> {
        let flight = {
            let mut guard = self.inner.lock();
            let st = &mut *guard;
            let now = Instant::now();
            let cache_for = self.inner.config.cache_for;
            if let Some(e) = st.keys.get_mut(key) {
                e.used = now;
                let age = now.saturating_duration_since(e.looked_up);
                match e.chosen {
                    Some(c) if age < cache_for && !is_dead(&st.dead, c, now) => return Ok(c),
                    None if age < NEGATIVE_FOR
                        && e.candidates.iter().all(|c| is_dead(&st.dead, c.addr, now)) =>
                    {
                        return Err(none_found(key, e.candidates.len()));
                    }
                    _ => {}
                }
            }
            st.flights
                .entry(key.clone())
                .or_insert_with(|| {
                    let inner = Arc::clone(&self.inner);
                    let key = key.clone();
                    async move {
                        let result = inner.find(&key).await;
                        inner.lock().flights.remove(&key);
                        result
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        flight.await
    }

    /// The ranked candidates of the last lookup of `key` and which of them
    /// are currently marked dead (for `bitfountain kenosis --lookup`).
    pub fn candidates(&self, key: &Key) -> Vec<(Candidate, bool)> {
        let st = self.inner.lock();
        let now = Instant::now();
        st.keys
            .get(key)
            .map(|e| {
                e.candidates
                    .iter()
                    .map(|c| (*c, is_dead(&st.dead, c.addr, now)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Marks the tracker chosen for `key` at `ip` dead (an announce to it
    /// failed); true when resolving again leads elsewhere (also when the
    /// watch got there first).
    pub fn chosen_failed(&self, key: &Key, ip: Ipv4Addr) -> bool {
        let (chosen, already_dead) = {
            let st = self.inner.lock();
            let now = Instant::now();
            let entry = st.keys.get(key);
            let chosen = entry.and_then(|e| e.chosen).filter(|c| *c.ip() == ip);
            let dead = entry.is_some_and(|e| {
                e.candidates
                    .iter()
                    .any(|c| *c.addr.ip() == ip && is_dead(&st.dead, c.addr, now))
            });
            (chosen, dead)
        };
        match chosen {
            Some(addr) => {
                self.inner.mark_dead(addr, false);
                true
            }
            None => already_dead,
        }
    }

    /// DHT lookups run so far (cache hits and shared flights not counted).
    pub fn dht_lookups(&self) -> u64 {
        self.inner.dht_lookups.load(Ordering::Relaxed)
    }

    /// Ticks whenever a chosen tracker was found gone by the watch.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One full lookup: candidates (cached or from the DHT), then probes.
    async fn find(self: &Arc<Self>, key: &Key) -> Result<SocketAddrV4, LookupError> {
        let Ok(_slot) = self.slots.try_acquire() else {
            return Err(LookupError::Busy);
        };
        let now = Instant::now();
        let cached = self
            .lock()
            .keys
            .get(key)
            .filter(|e| now.saturating_duration_since(e.looked_up) < self.config.cache_for)
            .map(|e| (e.looked_up, e.candidates.clone()));
        if let Some((looked_up, candidates)) = cached {
            if let Some(chosen) = self.first_live(&candidates).await {
                self.remember(key, looked_up, candidates, Some(chosen));
                return Ok(chosen);
            }
        }
        let started = Instant::now();
        self.dht_lookups.fetch_add(1, Ordering::Relaxed);
        let candidates = self.dht_candidates(key).await;
        tracing::debug!(
            %key,
            found = candidates.len(),
            took = ?started.elapsed(),
            "Kenosis lookup"
        );
        let chosen = self.first_live(&candidates).await;
        let count = candidates.len();
        self.remember(key, started, candidates, chosen);
        chosen.ok_or_else(|| none_found(key, count))
    }

    /// Trackers for `key`, ranked (see the module notes).
    async fn dht_candidates(&self, key: &Key) -> Vec<Candidate> {
        let target = key.target();
        let max = self.config.limits.kenosis_max_candidates;
        let raw_max = max.saturating_mul(4);
        let (mut by_key, service) = tokio::join!(
            self.node.get_peers(target, raw_max, self.config.dht_wait),
            self.service_trackers(raw_max)
        );
        rank_trackers(&target, &mut by_key);
        let mut others: Vec<SocketAddrV4> = service
            .into_iter()
            .filter(|a| !by_key.contains(a))
            .collect();
        rank_trackers(&target, &mut others);
        let mut all: Vec<Candidate> = by_key
            .into_iter()
            .map(|addr| Candidate {
                addr,
                serves_key: true,
            })
            .chain(others.into_iter().map(|addr| Candidate {
                addr,
                serves_key: false,
            }))
            .collect();
        all.truncate(max);
        all
    }

    /// Every Kenosis tracker the DHT lists under the service id (cached).
    async fn service_trackers(&self, max: usize) -> Vec<SocketAddrV4> {
        let now = Instant::now();
        if let Some((at, list)) = &self.lock().service {
            if now.saturating_duration_since(*at) < self.config.cache_for {
                return list.clone();
            }
        }
        let list = self
            .node
            .get_peers(service_id(), max, self.config.dht_wait)
            .await;
        if !list.is_empty() {
            self.lock().service = Some((Instant::now(), list.clone()));
        }
        list
    }

    /// Probes candidates in rank order; the first that answers.
    async fn first_live(self: &Arc<Self>, candidates: &[Candidate]) -> Option<SocketAddrV4> {
        let deadline = Instant::now() + PROBE_BUDGET;
        for c in candidates {
            if is_dead(&self.lock().dead, c.addr, Instant::now()) {
                continue;
            }
            if Instant::now() >= deadline {
                break;
            }
            if probe(c.addr, self.config.bind_ip, self.config.probe_timeout).await {
                return Some(c.addr);
            }
            tracing::info!(tracker = %c.addr, "Kenosis tracker does not answer; skipping it");
            self.mark_dead(c.addr, false);
        }
        None
    }

    fn remember(
        self: &Arc<Self>,
        key: &Key,
        looked_up: Instant,
        candidates: Vec<Candidate>,
        chosen: Option<SocketAddrV4>,
    ) {
        let now = Instant::now();
        let start_watch = {
            let mut st = self.lock();
            if st.keys.len() >= MAX_ENTRIES && !st.keys.contains_key(key) {
                evict(&mut st.keys, now, self.config.cache_for);
            }
            let before = st.keys.get(key).and_then(|e| e.chosen);
            if before != chosen {
                match chosen {
                    Some(c) => tracing::info!(%key, tracker = %c, "Kenosis tracker chosen"),
                    None => tracing::info!(%key, "no live Kenosis tracker"),
                }
            }
            st.keys.insert(
                key.clone(),
                Entry {
                    looked_up,
                    candidates,
                    chosen,
                    used: now,
                },
            );
            match (chosen, self.config.watch_every) {
                (Some(c), Some(every)) if st.watched.insert(c) => Some((c, every)),
                _ => None,
            }
        };
        if let Some((addr, every)) = start_watch {
            tokio::spawn(watch_tracker(Arc::downgrade(self), addr, every));
        }
    }

    /// Skips `addr` for a while; if it was chosen for some key, that choice
    /// is dropped and (when `notify`) announcers are told to move on.
    fn mark_dead(&self, addr: SocketAddrV4, notify: bool) {
        let now = Instant::now();
        let mut was_chosen = false;
        {
            let mut st = self.lock();
            if st.dead.len() > 4 * MAX_ENTRIES {
                st.dead.retain(|_, until| *until > now);
            }
            st.dead.insert(addr, now + self.config.cache_for);
            for e in st.keys.values_mut() {
                if e.chosen == Some(addr) {
                    e.chosen = None;
                    was_chosen = true;
                }
            }
        }
        if was_chosen && notify {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether some key still uses `addr` (chosen and resolved lately).
    fn still_used(&self, addr: SocketAddrV4) -> bool {
        let now = Instant::now();
        let mut st = self.lock();
        let used = st
            .keys
            .values()
            .any(|e| e.chosen == Some(addr) && now.saturating_duration_since(e.used) < WATCH_IDLE);
        if !used {
            st.watched.remove(&addr);
        }
        used
    }
}

fn is_dead(dead: &HashMap<SocketAddrV4, Instant>, addr: SocketAddrV4, now: Instant) -> bool {
    dead.get(&addr).is_some_and(|until| *until > now)
}

fn none_found(key: &Key, listed: usize) -> LookupError {
    if listed == 0 {
        LookupError::NoTracker(key.to_string())
    } else {
        LookupError::AllDead(key.to_string(), listed)
    }
}

/// Frees room: drops entries unused for a while, else the least recently
/// used tenth.
fn evict(keys: &mut HashMap<Key, Entry>, now: Instant, idle: Duration) {
    keys.retain(|_, e| now.saturating_duration_since(e.used) < idle);
    if keys.len() >= MAX_ENTRIES {
        let mut used: Vec<Instant> = keys.values().map(|e| e.used).collect();
        used.sort_unstable();
        if let Some(&cut) = used.get(used.len() / 10) {
            keys.retain(|_, e| e.used > cut);
        }
    }
}

/// Connects from `bind` (if given) to `addr`.
async fn connect(
    addr: SocketAddrV4,
    bind: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(ip @ IpAddr::V4(_)) = bind.filter(|ip| !ip.is_unspecified()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(SocketAddr::V4(addr)).await
}

/// Whether an HTTP server answers at `addr` within `timeout` (any status:
/// `/stats` is ours, other trackers may say 404, and both are alive).
pub async fn probe(addr: SocketAddrV4, bind: Option<IpAddr>, timeout: Duration) -> bool {
    let attempt = async {
        let mut stream = connect(addr, bind).await?;
        let request = format!(
            "GET /stats HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: bitfountain-kenosis\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 7];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(&head == b"HTTP/1.")
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}

/// Connects to a chosen tracker every `every` while some key uses it. A
/// refused or timed-out connect followed by a failed probe marks it dead.
/// The connection is closed at once: no request, no slot held.
async fn watch_tracker(inner: Weak<Inner>, addr: SocketAddrV4, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if !inner.still_used(addr) {
            return;
        }
        let (bind, timeout) = (inner.config.bind_ip, inner.config.probe_timeout);
        let alive = matches!(
            tokio::time::timeout(timeout, connect(addr, bind)).await,
            Ok(Ok(_))
        );
        if alive || probe(addr, bind, timeout).await {
            continue;
        }
        tracing::warn!(tracker = %addr, "Kenosis tracker went away; moving on");
        inner.mark_dead(addr, true);
        inner.lock().watched.remove(&addr);
        return;
    }
}

/// The announce-side face of [`Lookup`]: Kenosis URLs go to the tracker the
/// DHT chooses, on the URL's port, with the URL's `Host`; other URLs pass
/// through untouched.
pub struct KenosisResolver {
    lookup: Lookup,
}

impl KenosisResolver {
    pub fn new(lookup: Lookup) -> KenosisResolver {
        KenosisResolver { lookup }
    }
}

impl AnnounceResolver for KenosisResolver {
    fn resolve(&self, url: &str) -> BoxFuture<'static, anyhow::Result<Resolved>> {
        let Ok(k) = KenosisUrl::parse(url) else {
            let plain = Resolved::plain(url);
            return async move { Ok(plain) }.boxed();
        };
        let lookup = self.lookup.clone();
        async move {
            let tracker = lookup
                .resolve(&k.host.key)
                .await
                .with_context(|| format!("cannot find a tracker for {}", k.host.name()))?;
            Ok(Resolved {
                url: k.at(*tracker.ip()),
                host: Some(k.host.host_header()),
            })
        }
        .boxed()
    }

    fn failed(&self, url: &str, resolved: &Resolved) -> bool {
        let Ok(k) = KenosisUrl::parse(url) else {
            return false;
        };
        let ip = resolved
            .url
            .strip_prefix("http://")
            .and_then(|rest| rest.split(['/', '?']).next())
            .and_then(|authority| authority.parse::<SocketAddrV4>().ok())
            .map(|a| *a.ip());
        ip.is_some_and(|ip| self.lookup.chosen_failed(&k.host.key, ip))
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.lookup.changes())
    }
}
