//! A torrent's controller task: rates, choking, new connections, resume
//! flushes, retrying after disk errors, and a debug line when a download
//! stalls.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::choker::{choose_unchoked, Candidate};
use super::picker::PeerKey;
use super::torrent::{PeerCmd, TorrentShared};

/// How often the choker re-evaluates (BEP 3 suggests 10 s).
const RECHOKE_EVERY: Duration = Duration::from_secs(10);
/// How often the optimistic unchoke moves on.
const OPTIMISTIC_EVERY: Duration = Duration::from_secs(30);
/// Most verified-but-unrecorded time before resume data is flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// The controller: rates, choking, new connections, resume flushes.
pub async fn run_controller(
    torrent: Arc<TorrentShared>,
    connect: impl Fn(SocketAddr) + Send + 'static,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rechoke = Instant::now() - RECHOKE_EVERY;
    let mut last_optimistic = Instant::now() - OPTIMISTIC_EVERY;
    let mut last_flush = Instant::now();
    let mut flushing: Option<tokio::task::JoinHandle<(u32, std::io::Result<()>)>> = None;
    let mut last_disk_retry = Instant::now();
    // Pieces held and when that last changed, for the stall log.
    let mut progress = (0u32, Instant::now());
    loop {
        let rechoke_now = tokio::select! {
            _ = torrent.shutdown.cancelled() => break,
            _ = tick.tick() => false,
            _ = torrent.rechoke.notified() => true,
        };
        let now = Instant::now();
        if !rechoke_now {
            log_stall(&torrent, &mut progress, now);
            sample_rates(&torrent, now);
            connect_more(&torrent, &connect, now);
            let _ = torrent.status_tx.send(torrent.status());
        }
        if rechoke_now || now.duration_since(last_rechoke) >= RECHOKE_EVERY {
            let rotate = now.duration_since(last_optimistic) >= OPTIMISTIC_EVERY;
            if rotate {
                last_optimistic = now;
            }
            rechoke(&torrent, rotate);
            last_rechoke = now;
        }
        if flushing.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(handle) = flushing.take() {
                match handle.await {
                    Ok((count, Ok(()))) => torrent.lock().recorded = count,
                    Ok((_, Err(e))) => tracing::warn!("cannot record resume data: {e}"),
                    Err(e) => tracing::warn!("resume flush task failed: {e}"),
                }
            }
        }
        if flushing.is_none() && now.duration_since(last_flush) >= FLUSH_EVERY {
            flushing = start_flush(&torrent);
            last_flush = now;
        }
        // After a write error, try again now and then: space may be back.
        if now.duration_since(last_disk_retry) >= Duration::from_secs(5) {
            last_disk_retry = now;
            let resumed = {
                let mut st = torrent.lock();
                st.disk_error.take().is_some()
            };
            if resumed {
                let txs: Vec<_> = torrent
                    .lock()
                    .peers
                    .values()
                    .map(|p| p.tx.clone())
                    .collect();
                for tx in txs {
                    let _ = tx.send(PeerCmd::Refill);
                }
            }
        }
    }
    // Final flush so a clean stop never re-downloads anything.
    if let Some(handle) = flushing {
        let _ = handle.await;
    }
    if let Some(handle) = start_flush(&torrent) {
        if let Ok((count, Ok(()))) = handle.await {
            torrent.lock().recorded = count;
        }
    }
}

/// Syncs the files and records the pieces verified so far, when there is
/// anything new to record.
fn start_flush(
    torrent: &Arc<TorrentShared>,
) -> Option<tokio::task::JoinHandle<(u32, std::io::Result<()>)>> {
    let st = torrent.lock();
    let have = st.picker.done().clone();
    if have.count() == st.recorded {
        return None;
    }
    drop(st);
    let storage = torrent.storage.clone();
    Some(tokio::task::spawn_blocking(move || {
        (have.count(), storage.sync_and_record(&have))
    }))
}

/// How long a download may hold the same number of pieces before the stall
/// log speaks.
const STALL_AFTER: Duration = Duration::from_secs(2);

/// While downloading with nothing completing for [`STALL_AFTER`], says
/// (at debug level) what is in progress and who could send it: the first
/// thing to look at when a download stalls. `progress` is the count of
/// pieces held and when it last changed.
fn log_stall(torrent: &TorrentShared, progress: &mut (u32, Instant), now: Instant) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let st = torrent.lock();
    let held = st.picker.held_count();
    if held != progress.0 {
        *progress = (held, now);
    }
    let stuck = now.duration_since(progress.1) >= STALL_AFTER;
    // Not the rate meters: they decay for many seconds after data stops,
    // and read zero before their first sample.
    let stalled = !st.picker.done().is_complete() && stuck;
    let down: f64 = st.peers.values().map(|p| p.down_meter.rate()).sum();
    torrent.stalled.store(stalled, Ordering::Relaxed);
    if !stalled || st.peers.is_empty() {
        return;
    }
    let coded_in_flight: Vec<(SocketAddr, u32)> = match st.coded.as_ref() {
        Some(c) => st
            .peers
            .iter()
            .map(|(k, p)| (p.addr, c.in_flight(*k)))
            .collect(),
        None => Vec::new(),
    };
    let in_progress: Vec<String> = st
        .picker
        .in_progress_availability()
        .into_iter()
        .map(|(piece, holders)| {
            let coded = st.coded.as_ref().map(|c| c.describe(piece));
            format!("{piece} (holders {holders}; {})", coded.unwrap_or_default())
        })
        .collect();
    // Peers holding an original we lack: zero means the swarm has nothing
    // more for us, more than zero a stall on our side.
    let done = st.picker.done();
    let useful_peers = st
        .peers
        .values()
        .filter(|p| p.pieces.iter_set().any(|i| !done.has(i)))
        .count();
    tracing::debug!(
        held,
        down_rate = down as u64,
        rebuilding = st.outer.rebuilding,
        room_for_more = st.picker.room_for_more(),
        useful_peers,
        ?in_progress,
        ?coded_in_flight,
        verifying = torrent.verifying.load(Ordering::Relaxed),
        "no piece completed lately"
    );
}

fn sample_rates(torrent: &TorrentShared, now: Instant) {
    let mut st = torrent.lock();
    for p in st.peers.values_mut() {
        p.down_meter.sample(p.counters.down_total(), now);
        p.up_meter
            .sample(p.counters.up.load(Ordering::Relaxed), now);
    }
}

fn connect_more(torrent: &TorrentShared, connect: &impl Fn(SocketAddr), now: Instant) {
    let mut st = torrent.lock();
    let connected: HashSet<SocketAddr> = st.peers.values().map(|p| p.addr).collect();
    let room = torrent
        .config
        .max_peers
        .saturating_sub(st.peers.len() + st.connecting.len());
    let half_open = 8usize.saturating_sub(st.connecting.len());
    let candidates: Vec<SocketAddr> = st
        .known
        .iter()
        .filter(|(addr, known)| {
            !connected.contains(addr)
                && !st.connecting.contains(addr)
                && !st.own_addrs.contains(addr)
                && !st.banned.contains(&addr.ip())
                && known.next_attempt.is_none_or(|t| now >= t)
        })
        .map(|(addr, _)| *addr)
        .take(room.min(half_open))
        .collect();
    for addr in candidates {
        st.connecting.insert(addr);
        connect(addr);
    }
}

fn rechoke(torrent: &TorrentShared, rotate_optimistic: bool) {
    let mut st = torrent.lock();
    let seeding = st.picker.done().is_complete();
    let interested: Vec<Candidate> = st
        .peers
        .iter()
        .filter(|(_, p)| p.interested)
        .map(|(&peer, p)| Candidate {
            peer,
            download_rate: p.down_meter.rate(),
            upload_rate: p.up_meter.rate(),
        })
        .collect();
    if rotate_optimistic
        || st
            .optimistic
            .is_none_or(|o| !interested.iter().any(|c| c.peer == o))
    {
        let choked: Vec<PeerKey> = st
            .peers
            .iter()
            .filter(|(_, p)| p.interested && p.choked)
            .map(|(&k, _)| k)
            .collect();
        st.optimistic = if choked.is_empty() {
            st.optimistic
        } else {
            Some(choked[rand::random_range(0..choked.len())])
        };
    }
    let unchoke: HashSet<PeerKey> = choose_unchoked(
        interested,
        torrent.config.upload_slots,
        seeding,
        st.optimistic,
    )
    .into_iter()
    .collect();
    for (key, peer) in st.peers.iter_mut() {
        let want_choked = !unchoke.contains(key);
        if want_choked != peer.choked {
            peer.choked = want_choked;
            let _ = peer.tx.send(if want_choked {
                PeerCmd::Choke
            } else {
                PeerCmd::Unchoke
            });
        }
    }
}
