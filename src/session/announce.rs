//! The tracker client: announces with started, completed and stopped, tiers
//! tried in order (BEP 12), retries with backoff, and — as the seeds' client
//! did — asks for more peers sooner while it has few.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures_util::future::BoxFuture;
use rand::seq::SliceRandom;
use tokio::sync::watch;
use wire::tracker::{AnnounceRequest, AnnounceResponse, Event, TrackerReply};
use wire::Limits;

use super::torrent::TorrentShared;

/// Never announce more often than this, whatever a tracker says.
const FLOOR_INTERVAL: Duration = Duration::from_secs(15);
/// With fewer connected peers than this while downloading, ask again early.
const FEW_PEERS: usize = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts at one announce URL when its resolver says another try may
/// reach another tracker (Kenosis failover).
const MAX_TRIES_PER_URL: u32 = 4;

/// Where one announce goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The URL requested.
    pub url: String,
    /// A `Host` header to send instead of the one `url` implies: a Kenosis
    /// tracker reached by address still learns the key from the name.
    pub host: Option<String>,
}

impl Resolved {
    /// The URL as it is, with its own `Host`.
    pub fn plain(url: &str) -> Resolved {
        Resolved {
            url: url.to_owned(),
            host: None,
        }
    }
}

/// Turns announce URLs into the requests actually sent (Kenosis URLs are
/// resolved through the DHT). With no resolver, URLs are used as they are.
pub trait AnnounceResolver: Send + Sync {
    /// Where to send an announce for `url`.
    fn resolve(&self, url: &str) -> BoxFuture<'static, Result<Resolved>>;

    /// The request to `resolved` (for `url`) got no answer. Returns true
    /// when resolving again may lead to another tracker, so the announcer
    /// tries again at once instead of backing off.
    fn failed(&self, _url: &str, _resolved: &Resolved) -> bool {
        false
    }

    /// Changes whenever earlier answers may be stale (a chosen tracker went
    /// away); announcers then announce again at once.
    fn changes(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// A shared [`AnnounceResolver`].
pub type UrlResolver = Arc<dyn AnnounceResolver>;

/// A tracker's failure reason: it answered, so trying another tracker in
/// its place would split the swarm.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tracker refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// Announces for one torrent until shutdown, then says `stopped`.
pub async fn run_announcer(
    torrent: Arc<TorrentShared>,
    http: reqwest::Client,
    resolver: Option<UrlResolver>,
) {
    let mut tiers: Vec<Vec<String>> = torrent.trackers.clone();
    for tier in &mut tiers {
        tier.shuffle(&mut rand::rng());
    }
    if tiers.is_empty() {
        tracing::info!("no trackers; waiting for incoming peers");
        return;
    }
    let key: u32 = rand::random();
    let mut event = Event::Started;
    let mut complete_announced = torrent.is_complete();
    let mut failures = 0u32;
    let mut changes = resolver.as_ref().and_then(|r| r.changes());
    loop {
        let request = announce_request(&torrent, event, key);
        let (wait, min_wait) = match announce_tiers(&mut tiers, &request, &http, &resolver).await {
            Ok(resp) => {
                failures = 0;
                event = Event::None;
                let peers = resp.peers.len();
                {
                    let mut st = torrent.lock();
                    for p in &resp.peers {
                        st.known.entry(p.addr).or_default();
                    }
                }
                tracing::debug!(peers, interval = resp.interval, "announced");
                let interval = Duration::from_secs(u64::from(resp.interval)).max(FLOOR_INTERVAL);
                let min = resp
                    .min_interval
                    .map_or(Duration::from_secs(30), |m| {
                        Duration::from_secs(u64::from(m))
                    })
                    .max(FLOOR_INTERVAL);
                (interval, min)
            }
            Err(e) => {
                failures += 1;
                let backoff =
                    Duration::from_secs(15u64 << failures.min(5)).min(Duration::from_secs(600));
                tracing::warn!("announce failed (retrying in {backoff:?}): {e:#}");
                (backoff, backoff)
            }
        };
        let slept = tokio::time::Instant::now();
        loop {
            let few_peers = !torrent.is_complete() && torrent.lock().peers.len() < FEW_PEERS;
            let due = if few_peers { wait.min(min_wait) } else { wait };
            tokio::select! {
                _ = torrent.shutdown.cancelled() => {
                    let stop = announce_request(&torrent, Event::Stopped, key);
                    let _ = tokio::time::timeout(Duration::from_secs(3),
                        announce_tiers(&mut tiers, &stop, &http, &resolver)).await;
                    return;
                }
                _ = torrent.completed.notified(), if !complete_announced => {
                    complete_announced = true;
                    event = Event::Completed;
                    break;
                }
                _ = tokio::time::sleep_until(slept + due) => break,
                changed = wait_change(&mut changes) => {
                    if changed {
                        tracing::info!("a tracker went away; announcing again now");
                        break;
                    }
                    changes = None;
                }
                // Re-evaluate "few peers" now and then.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
        if torrent.is_complete() && !complete_announced {
            complete_announced = true;
            event = Event::Completed;
        }
    }
}

fn announce_request(torrent: &TorrentShared, event: Event, key: u32) -> AnnounceRequest {
    let status = torrent.status();
    AnnounceRequest {
        info_hash: torrent.info.info_hash,
        peer_id: torrent.config.peer_id,
        port: torrent.listen_port,
        uploaded: torrent.upload.uploaded(),
        downloaded: torrent.downloaded.load(Ordering::Relaxed),
        left: status.total_bytes - status.have_bytes,
        event,
        compact: true,
        no_peer_id: true,
        numwant: Some(if event == Event::Stopped { 0 } else { 50 }),
        ip: torrent.config.announce_ip.clone(),
        key: Some(format!("{key:08x}").into_bytes()),
        tracker_id: None,
    }
}

/// Tries every tracker tier in order; within a tier, a tracker that answers
/// moves to the front (BEP 12).
async fn announce_tiers(
    tiers: &mut [Vec<String>],
    request: &AnnounceRequest,
    http: &reqwest::Client,
    resolver: &Option<UrlResolver>,
) -> Result<AnnounceResponse> {
    let mut last_error = anyhow!("no usable tracker");
    for tier in tiers.iter_mut() {
        for i in 0..tier.len() {
            let url = tier[i].clone();
            match announce_url(&url, request, http, resolver).await {
                Ok(resp) => {
                    let good = tier.remove(i);
                    tier.insert(0, good);
                    return Ok(resp);
                }
                Err(e) => last_error = e.context(url),
            }
        }
    }
    Err(last_error)
}

/// One announce to `url` (no resolver), for the peers it returns: used for
/// magnet links before the torrent exists.
pub(crate) async fn peers_from(
    http: &reqwest::Client,
    url: &str,
    request: &AnnounceRequest,
) -> Result<Vec<std::net::SocketAddr>> {
    let resp = announce_url(url, request, http, &None).await?;
    Ok(resp.peers.iter().map(|p| p.addr).collect())
}

/// Resolves once and waits for a change; false when no more can come.
async fn wait_change(changes: &mut Option<watch::Receiver<u64>>) -> bool {
    match changes {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Announces to one URL; when its resolver says so (a Kenosis tracker that
/// did not answer), resolves again and tries the next tracker at once.
async fn announce_url(
    url: &str,
    request: &AnnounceRequest,
    http: &reqwest::Client,
    resolver: &Option<UrlResolver>,
) -> Result<AnnounceResponse> {
    if !url.to_ascii_lowercase().starts_with("http://") {
        bail!("only http:// trackers are supported");
    }
    let mut tries = 0;
    loop {
        let resolved = match resolver {
            Some(r) => r.resolve(url).await?,
            None => Resolved::plain(url),
        };
        let error = match announce_one(&resolved, request, http).await {
            Ok(resp) => return Ok(resp),
            Err(e) => e,
        };
        tries += 1;
        let refused = error.downcast_ref::<Refused>().is_some();
        let again = !refused
            && tries < MAX_TRIES_PER_URL
            && resolver.as_ref().is_some_and(|r| r.failed(url, &resolved));
        if !again {
            return Err(error);
        }
        tracing::info!(
            "no answer from {} ({error:#}); trying the next tracker",
            resolved.url
        );
    }
}

async fn announce_one(
    resolved: &Resolved,
    request: &AnnounceRequest,
    http: &reqwest::Client,
) -> Result<AnnounceResponse> {
    let url = &resolved.url;
    let sep = if url.contains('?') { '&' } else { '?' };
    let full = format!("{url}{sep}{}", request.to_query());
    let mut builder = http.get(&full).timeout(REQUEST_TIMEOUT);
    if let Some(host) = &resolved.host {
        builder = builder.header(reqwest::header::HOST, host);
    }
    // Errors name the tracker, not the whole query string.
    let response = builder.send().await.map_err(reqwest::Error::without_url)?;
    if !response.status().is_success() {
        bail!("HTTP {}", response.status());
    }
    let body = response
        .bytes()
        .await
        .map_err(reqwest::Error::without_url)?;
    match TrackerReply::decode(&body, &Limits::DEFAULT)? {
        TrackerReply::Announce(resp) => Ok(resp),
        TrackerReply::Failure(reason) => Err(Refused(reason).into()),
    }
}

/// An HTTP client for trackers and `--url` downloads. With `bind`, requests
/// leave from that address, so a tracker sees the address peers should use.
pub fn http_client(bind: Option<std::net::IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("bitfountain/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .local_address(bind.filter(|ip| !ip.is_unspecified()))
        .build()
        .unwrap_or_default()
}
