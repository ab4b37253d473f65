//! `bitfountain track`: an HTTP tracker (BEP 3, compact BEP 23, IPv6 BEP 7,
//! scrape BEP 48) with persistent state, an index page, `/stats` and a
//! Common Log Format access log on stdout.
//!
//! In-process use (tests, `bitfountain demo`):
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use bitfountain::tracker::{Tracker, TrackerConfig};
//! let tracker = Tracker::bind(TrackerConfig::local()).await?;
//! let url = tracker.announce_url(); // http://127.0.0.1:PORT/announce
//! # let _ = url;
//! tracker.shutdown().await?; // drains connections, saves the dfile if any
//! # Ok(()) }
//! ```
//!
//! Layout: `store` + `swarm` (the peers), `server` (HTTP), `state` (the
//! dfile), `limit` (per-address limits), `allow` (allow-list), `log`
//! (access log), `page` (index page and stats).

mod allow;
mod args;
mod limit;
mod log;
mod page;
mod server;
mod state;
mod store;
mod swarm;

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wire::tracker::Event;
use wire::{InfoHash, Limits};

pub use args::{run, TrackArgs};
pub use page::TrackerStats;

use allow::Allow;
use limit::{ConnLimiter, RateLimiter};
use log::AccessLog;
use state::Loaded;
use store::{Clock, ReplyParams, SwarmStore};

/// What an announce handler reports to an [`AnnounceHook`]: enough for
/// Kenosis to learn a swarm's key from the `Host` the client used.
#[derive(Debug, Clone, Copy)]
pub struct AnnounceSeen<'a> {
    /// The request's `Host` header, if any (untrusted client input).
    pub host: Option<&'a str>,
    pub info_hash: InfoHash,
    /// The address the peer was recorded under.
    pub peer: SocketAddr,
    pub event: Event,
}

/// Called after every successful announce, on the request path: keep it
/// cheap (record or `try_send` into a channel, never block).
#[derive(Clone)]
pub struct AnnounceHook(pub Arc<dyn Fn(&AnnounceSeen<'_>) + Send + Sync>);

impl std::fmt::Debug for AnnounceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnnounceHook(..)")
    }
}

/// DHT nodes kept in the dfile so a Kenosis tracker rejoins fast: the
/// tracker fills it from the dfile at start and writes it back on every
/// save; Kenosis updates it as it learns nodes.
#[derive(Debug, Default)]
pub struct DhtNodeBook(Mutex<Vec<SocketAddrV4>>);

impl DhtNodeBook {
    pub fn get(&self) -> Vec<SocketAddrV4> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, nodes: Vec<SocketAddrV4>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
    }
}

/// Everything the tracker needs. [`Default`] matches `bitfountain track`
/// without options; [`TrackerConfig::local`] suits in-process use.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Where the swarms are kept across restarts (`--dfile`).
    pub dfile: Option<PathBuf>,
    /// Seconds between a client's announces.
    pub interval: u32,
    /// Seconds a client should wait at least between announces.
    pub min_interval: u32,
    /// Seconds a peer stays listed after its last announce.
    pub peer_timeout: u32,
    /// How often the dfile is written (it is also written on shutdown).
    pub save_interval: Duration,
    /// File of hex info-hashes; only those are tracked.
    pub allow_list: Option<PathBuf>,
    /// Folder of .torrent files: names for the index page, and an
    /// allow-list unless `allowed_dir_names_only`.
    pub allowed_dir: Option<PathBuf>,
    pub allowed_dir_names_only: bool,
    /// How often the allow-list file and folder are re-read.
    pub rescan_interval: Duration,
    /// Honour a client's `ip=` parameter (off: the TCP address is used).
    pub allow_client_ip: bool,
    /// Write the Common Log Format access log to stdout.
    pub access_log: bool,
    /// Every bound (numwant, query size, connections, rates...).
    pub limits: Limits,
    /// Told about each successful announce (Kenosis hooks in here).
    pub on_announce: Option<AnnounceHook>,
    /// Known DHT nodes, restored from and saved to the dfile (Kenosis).
    pub dht_nodes: Option<Arc<DhtNodeBook>>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 6969)),
            dfile: None,
            interval: 1800,
            min_interval: 60,
            peer_timeout: 3600,
            save_interval: Duration::from_secs(300),
            allow_list: None,
            allowed_dir: None,
            allowed_dir_names_only: false,
            rescan_interval: Duration::from_secs(60),
            allow_client_ip: false,
            access_log: true,
            limits: Limits::DEFAULT,
            on_announce: None,
            dht_nodes: None,
        }
    }
}

impl TrackerConfig {
    /// 127.0.0.1 on a free port, no dfile, no access log, short intervals
    /// (30 s), for a demo or tests on one machine.
    pub fn local() -> Self {
        TrackerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            interval: 30,
            min_interval: 5,
            peer_timeout: 60,
            access_log: false,
            ..TrackerConfig::default()
        }
    }
}

/// Counters not kept by the store.
#[derive(Default)]
struct Counters {
    scrapes: AtomicU64,
    failures: AtomicU64,
    rate_limited: AtomicU64,
    conns_refused: AtomicU64,
}

/// State shared by every connection.
pub(crate) struct Shared {
    store: SwarmStore,
    clock: Clock,
    allow: Allow,
    rate: RateLimiter,
    conns: Arc<ConnLimiter>,
    log: Option<AccessLog>,
    limits: Limits,
    allow_client_ip: bool,
    hook: Option<AnnounceHook>,
    counters: Counters,
    index_cache: Mutex<Option<(Instant, Bytes)>>,
    dfile: Option<PathBuf>,
    dht_nodes: Option<Arc<DhtNodeBook>>,
    /// Serialises dfile writes (the periodic save and the final one share
    /// a temporary file name).
    save_lock: Mutex<()>,
}

impl Shared {
    fn stats(&self) -> TrackerStats {
        let t = self.store.totals();
        let c = &self.counters;
        TrackerStats {
            uptime_secs: u64::from(self.clock.now().saturating_sub(1)),
            swarms: t.swarms,
            peers: t.peers,
            seeders: t.seeders,
            leechers: t.leechers,
            completed: t.completed,
            announces: t.announces,
            scrapes: c.scrapes.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            connections_open: self.conns.open() as u64,
            connections_refused: c.conns_refused.load(Ordering::Relaxed),
            allowed: self
                .allow
                .enforced()
                .then(|| self.allow.snapshot().hashes.len() as u64),
            access_log_dropped: self.log.as_ref().map_or(0, AccessLog::dropped_lines),
        }
    }

    /// Writes the dfile (blocking; run it on a blocking thread).
    fn save(&self) -> Result<()> {
        let Some(path) = &self.dfile else {
            return Ok(());
        };
        let _guard = self.save_lock.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let nodes = self.dht_nodes.as_ref().map(|b| b.get()).unwrap_or_default();
        let bytes = state::save(path, &self.store, &self.clock, &nodes)
            .with_context(|| format!("cannot write the dfile {}", path.display()))?;
        tracing::debug!(
            "saved {} ({bytes} bytes) in {:?}",
            path.display(),
            started.elapsed()
        );
        Ok(())
    }

    fn sweep(&self) {
        let allow = self.allow.snapshot();
        let (peers, swarms) = self.store.sweep(self.clock.now(), &|h| {
            allow.names.contains_key(h) || allow.hashes.contains(h)
        });
        self.rate.sweep();
        if peers + swarms > 0 {
            tracing::debug!("expired {peers} peers and {swarms} empty swarms");
        }
    }
}

/// A running tracker. Dropping it stops the tracker in the background;
/// [`Tracker::shutdown`] stops it and waits for the final dfile save.
pub struct Tracker {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<()>>>,
}

impl Tracker {
    /// Loads the dfile, binds the listener and starts serving in the current
    /// tokio runtime (which must be multi-threaded or have the time and I/O
    /// drivers enabled).
    pub async fn bind(config: TrackerConfig) -> Result<Tracker> {
        let limits = config.limits.clone();
        let interval = config.interval.max(1);
        let params = ReplyParams {
            interval,
            min_interval: config.min_interval.min(interval),
            peer_timeout: config.peer_timeout.max(1),
        };
        let (list, dir, names_only) = (
            config.allow_list.clone(),
            config.allowed_dir.clone(),
            config.allowed_dir_names_only,
        );
        let max_allowed = limits.tracker_max_allowed;
        let allow =
            tokio::task::spawn_blocking(move || Allow::load(list, dir, !names_only, max_allowed))
                .await??;
        let log = if config.access_log {
            Some(
                AccessLog::new(Box::new(std::io::stdout()))
                    .context("cannot start the access log")?,
            )
        } else {
            None
        };
        let shared = Arc::new(Shared {
            store: SwarmStore::new(params, limits.tracker_max_swarms, limits.tracker_max_peers),
            clock: Clock::new(),
            allow,
            rate: RateLimiter::new(limits.tracker_rate_per_ip, limits.tracker_rate_burst),
            conns: ConnLimiter::new(
                limits.tracker_max_connections,
                limits.tracker_max_connections_per_ip,
            ),
            log,
            limits,
            allow_client_ip: config.allow_client_ip,
            hook: config.on_announce.clone(),
            counters: Counters::default(),
            index_cache: Mutex::new(None),
            dfile: config.dfile.clone(),
            dht_nodes: config.dht_nodes.clone(),
            save_lock: Mutex::new(()),
        });
        if let Some(path) = config.dfile.clone() {
            let s = Arc::clone(&shared);
            tokio::task::spawn_blocking(move || restore(&s, &path)).await??;
        }
        let listener = listen(config.bind)?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_tracker(
            listener,
            Arc::clone(&shared),
            cancel.clone(),
            config,
        ));
        Ok(Tracker {
            addr,
            shared,
            cancel,
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR:PORT/announce` (an unspecified bind address is shown as
    /// loopback, which is what a local client can reach).
    pub fn announce_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}/announce")
    }

    pub fn stats(&self) -> TrackerStats {
        self.shared.stats()
    }

    /// Stops accepting, lets open requests finish, writes the dfile and the
    /// last access-log lines.
    pub async fn shutdown(mut self) -> Result<()> {
        self.cancel.cancel();
        match self.task.take() {
            Some(task) => task.await.context("tracker task failed")?,
            None => Ok(()),
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn restore(shared: &Shared, path: &std::path::Path) -> Result<()> {
    let (loaded, nodes) = state::load(path, &shared.store, &shared.clock, &shared.limits)
        .with_context(|| format!("cannot read the dfile {}", path.display()))?;
    if let Some(book) = &shared.dht_nodes {
        if !nodes.is_empty() {
            tracing::info!("{} known DHT nodes in the dfile", nodes.len());
            book.set(nodes);
        }
    }
    match loaded {
        Loaded::Missing => tracing::info!("no dfile at {} yet; creating it", path.display()),
        Loaded::Restored { swarms, peers } => tracing::info!(
            "restored {swarms} swarms and {peers} live peers from {}",
            path.display()
        ),
        Loaded::SetAside { reason, aside } => tracing::warn!(
            "the dfile {} is unusable ({reason}); moved it to {} and starting empty",
            path.display(),
            aside.display()
        ),
    }
    // Writing at once proves the location is writable before clients rely
    // on persistence, and replaces a set-aside file with a good one.
    shared.save()
}

/// A listening socket with a deep backlog (connection bursts from clients
/// that close after every announce), dual-stack when bound to `::`.
fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(socket.into())?)
}

/// The server plus its housekeeping; on cancellation, drains and saves.
async fn run_tracker(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    config: TrackerConfig,
) -> Result<()> {
    let server = tokio::spawn(server::serve(listener, Arc::clone(&shared), cancel.clone()));
    let sweep_every = Duration::from_secs(u64::from((config.peer_timeout / 8).clamp(1, 60)));
    let mut sweep = tokio::time::interval(sweep_every);
    let mut flush = tokio::time::interval(Duration::from_millis(200));
    let mut save = tokio::time::interval(config.save_interval.max(Duration::from_secs(1)));
    let mut rescan = tokio::time::interval(config.rescan_interval.max(Duration::from_secs(1)));
    for timer in [&mut sweep, &mut flush, &mut save, &mut rescan] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.reset();
    }
    let rescans = config.allow_list.is_some() || config.allowed_dir.is_some();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sweep.tick() => {
                let s = Arc::clone(&shared);
                let _ = tokio::task::spawn_blocking(move || s.sweep()).await;
            }
            _ = flush.tick() => {
                if let Some(log) = &shared.log {
                    log.flush();
                }
            }
            _ = save.tick(), if shared.dfile.is_some() => {
                let s = Arc::clone(&shared);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.save()).await {
                    tracing::warn!("{e:#}; will retry");
                }
            }
            _ = rescan.tick(), if rescans => {
                let s = Arc::clone(&shared);
                let _ = tokio::task::spawn_blocking(move || s.allow.rescan()).await;
            }
        }
    }
    let _ = server.await;
    let s = Arc::clone(&shared);
    let saved = tokio::task::spawn_blocking(move || {
        let saved = s.save();
        if let Some(log) = &s.log {
            log.close();
        }
        saved
    })
    .await
    .context("final save panicked")?;
    if saved.is_ok() {
        if let Some(path) = &shared.dfile {
            tracing::info!("saved the swarms to {}", path.display());
        }
    }
    saved
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wire::tracker::{percent_encode, TrackerReply};

    async fn get(addr: SocketAddr, target: &str, host: &str) -> Vec<u8> {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        buf.split_off(end + 4)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_process_tracker_with_hook_and_dfile() {
        let dir = tempfile::tempdir().unwrap();
        let dfile = dir.path().join("dstate");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let config = TrackerConfig {
            dfile: Some(dfile.clone()),
            on_announce: Some(AnnounceHook(Arc::new(move |a: &AnnounceSeen<'_>| {
                let mut v = sink.lock().unwrap();
                v.push((a.host.map(str::to_owned), a.info_hash, a.peer));
            }))),
            ..TrackerConfig::local()
        };
        let tracker = Tracker::bind(config.clone()).await.unwrap();
        let addr = tracker.local_addr();
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        assert_eq!(tracker.announce_url(), format!("http://{addr}/announce"));
        let hash = InfoHash([0x25; 20]);
        let query = format!(
            "info_hash={}&peer_id=-BF0001-abcdefghijkl&port=6881&left=0&event=started",
            percent_encode(&hash.0)
        );
        let host = "0123abcd.bt.kenosisp2p.org:6969";
        let body = get(addr, &format!("/announce?{query}"), host).await;
        let reply = TrackerReply::decode(&body, &Limits::DEFAULT).unwrap();
        assert!(
            matches!(reply, TrackerReply::Announce(ref r) if r.complete == 1 && r.interval == 30)
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![(
                Some(host.to_owned()),
                hash,
                "127.0.0.1:6881".parse().unwrap()
            )]
        );
        let stats = tracker.stats();
        assert_eq!((stats.swarms, stats.peers, stats.seeders), (1, 1, 1));
        tracker.shutdown().await.unwrap();
        assert!(dfile.exists());

        // The same dfile brings the swarm back in a new tracker.
        let again = Tracker::bind(config).await.unwrap();
        assert_eq!(again.stats().peers, 1);
        let json = get(again.local_addr(), "/stats", "x").await;
        let stats: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(stats["seeders"], 1);
        drop(again);
    }
}
