//! The outer code at run time (DESIGN §3.6): repair pieces verified and
//! announced to coded peers, missing originals rebuilt as soon as any N of
//! the original and repair pieces are held, and a complete copy's repair
//! pieces generated so that it can serve them.
//!
//! Rebuilding and generating read the pieces they need into memory and run
//! on the blocking pool, never on the reactor.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use wire::Bitfield;

use super::torrent::{PeerCmd, TorrentShared};
use crate::storage::Storage;

/// Memory one pass of repair-piece generation may hold (the stripes being
/// encoded, for every piece); bigger torrents take several passes.
const GENERATE_PASS_BYTES: usize = 256 << 20;
/// Largest torrent rebuilt from the outer code: a rebuild holds every
/// piece it uses in memory.
pub const MAX_REBUILD_BYTES: u64 = 4 << 30;

/// Where the outer code of a torrent stands.
#[derive(Debug, Default)]
pub struct OuterProgress {
    /// A rebuild is running.
    pub rebuilding: bool,
    /// Pieces held when the last rebuild failed for want of pieces: the
    /// next try waits for more.
    pub failed_at: u32,
    /// Original pieces rebuilt from the outer code.
    pub rebuilt: u32,
    /// Repair pieces are being generated from the complete file.
    pub generating: bool,
}

impl TorrentShared {
    /// A repair piece passed its BLAKE3 check and is durable: coded peers
    /// hear of it, and perhaps the missing originals can now be rebuilt.
    pub(crate) fn repair_verified(self: &Arc<Self>, piece: u32, index: u32) {
        let txs: Vec<_> = {
            let mut st = self.lock();
            st.picker.piece_verified(piece);
            st.peers.values().map(|p| p.tx.clone()).collect()
        };
        tracing::trace!(index, "repair piece verified");
        for tx in txs {
            let _ = tx.send(PeerCmd::HaveRepair(index));
        }
        self.maybe_rebuild();
    }

    /// Starts rebuilding the missing originals off the reactor when any N
    /// pieces are held (and no rebuild runs, and more are held than when
    /// one last fell short).
    pub(crate) fn maybe_rebuild(self: &Arc<Self>) {
        let (have, have_repair, held) = {
            let mut st = self.lock();
            let held = st.picker.held_count();
            // (Torrents over MAX_REBUILD_BYTES hold no repair pieces: see
            // `TorrentShared::new`.)
            if !st.picker.can_rebuild() || st.outer.rebuilding || held <= st.outer.failed_at {
                return;
            }
            st.outer.rebuilding = true;
            (
                st.picker.done().clone(),
                st.picker.repair_done().clone(),
                held,
            )
        };
        let this = self.clone();
        tokio::spawn(async move {
            let storage = this.storage.clone();
            let info = this.info.clone();
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                rebuild(&storage, &info.pieces, &have, &have_repair)
            })
            .await
            .map_err(|e| anyhow!("rebuild task failed: {e}"))
            .and_then(|r| r);
            let rebuilt = match result {
                Ok(pieces) => pieces,
                Err(e) => {
                    {
                        let mut st = this.lock();
                        st.outer.rebuilding = false;
                        st.outer.failed_at = held;
                        st.picker.rebuild_fell_short();
                    }
                    tracing::info!("outer code: cannot rebuild yet ({e:#}); fetching more pieces");
                    this.refill_all();
                    return;
                }
            };
            tracing::info!(
                pieces = rebuilt.len(),
                from = held,
                ms = started.elapsed().as_millis() as u64,
                "rebuilt missing pieces from the outer code"
            );
            // Still marked as rebuilding while the pieces are counted: each
            // verified piece asks for a rebuild, and one started now would
            // redo this one from the pieces it just produced.
            let mut applied = 0;
            for (piece, data) in rebuilt {
                applied += u32::from(this.rebuilt_piece(piece, data));
            }
            {
                let mut st = this.lock();
                st.outer.rebuilt += applied;
                st.outer.rebuilding = false;
            }
            this.refill_all();
        });
    }

    /// A rebuilt (verified and written) original: whoever was still sending
    /// it can stop, and it counts as verified. False if it arrived by
    /// download meanwhile.
    fn rebuilt_piece(self: &Arc<Self>, piece: u32, data: Vec<u8>) -> bool {
        let senders = {
            let mut st = self.lock();
            if st.picker.done().has(piece) {
                return false;
            }
            st.failed_coded.remove(&piece);
            match st.coded.as_mut() {
                Some(c) if c.is_coded(piece) => c.finish(piece),
                _ => Vec::new(),
            }
        };
        self.tell(&senders, PeerCmd::CodedDone(piece));
        self.piece_verified(piece, data);
        true
    }

    /// Generates the repair pieces we lack from the complete file, off the
    /// reactor, then announces them. Does nothing without an outer code or
    /// when they are all held already.
    pub fn generate_repair_pieces(self: &Arc<Self>) {
        let missing = {
            let mut st = self.lock();
            let repair = st.picker.repair_done();
            if repair.is_empty()
                || repair.is_complete()
                || !st.picker.done().is_complete()
                || st.outer.generating
            {
                return;
            }
            let missing: Vec<u32> = (0..repair.len()).filter(|&r| !repair.has(r)).collect();
            st.outer.generating = true;
            missing
        };
        let this = self.clone();
        tokio::spawn(async move {
            let storage = this.storage.clone();
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || generate(&storage))
                .await
                .map_err(|e| anyhow!("repair generation task failed: {e}"))
                .and_then(|r| r);
            this.lock().outer.generating = false;
            let good = match result {
                Ok(good) => good,
                Err(e) => {
                    tracing::warn!("cannot generate the outer code's repair pieces: {e:#}");
                    return;
                }
            };
            let n = this.info.piece_count();
            let mut count = 0;
            for index in missing {
                if good.has(index) {
                    this.repair_verified(n + index, index);
                    count += 1;
                } else {
                    tracing::warn!(
                        index,
                        "generated repair piece does not match the torrent's hash; not served"
                    );
                }
            }
            tracing::info!(
                pieces = count,
                ms = started.elapsed().as_millis() as u64,
                "generated the outer code's repair pieces"
            );
        });
    }
}

/// Reads every held piece and rebuilds the missing originals, each checked
/// against its SHA-1 and written. Blocking and CPU-heavy.
fn rebuild(
    storage: &Storage,
    piece_hashes: &[[u8; 20]],
    have: &Bitfield,
    have_repair: &Bitfield,
) -> Result<Vec<(u32, Vec<u8>)>> {
    let code = storage.outer().context("no outer code")?;
    let store = storage.repair().context("no repair pieces")?;
    let originals = (0..have.len())
        .map(|i| have.has(i).then(|| storage.read_piece(i)).transpose())
        .collect::<std::io::Result<Vec<_>>>()?;
    let repairs = (0..have_repair.len())
        .map(|r| have_repair.has(r).then(|| store.read(r)).transpose())
        .collect::<std::io::Result<Vec<_>>>()?;
    let originals: Vec<Option<&[u8]>> = originals.iter().map(|p| p.as_deref()).collect();
    let repairs: Vec<Option<&[u8]>> = repairs.iter().map(|p| p.as_deref()).collect();
    let rebuilt = code.rebuild(&originals, &repairs, piece_hashes, store.hashes())?;
    if !rebuilt.refused.is_empty() {
        // Verified when they were written: the disk changed under us.
        tracing::warn!(refused = ?rebuilt.refused, "pieces on disk no longer match their hashes");
    }
    for (index, data) in &rebuilt.pieces {
        storage.write_piece(*index, data)?;
    }
    Ok(rebuilt.pieces)
}

/// Builds every repair piece from the complete file, in passes of stripes
/// that bound memory, writes them, syncs, and returns those that match the
/// torrent's hashes. Blocking and CPU-heavy.
fn generate(storage: &Storage) -> Result<Bitfield> {
    let code = storage.outer().context("no outer code")?;
    let store = storage.repair().context("no repair pieces")?;
    let n = code.piece_count();
    let t = store.piece_len() / code.stripes().max(1);
    let per_stripe = (n as usize).saturating_mul(t as usize).max(1);
    let width = (GENERATE_PASS_BYTES / per_stripe).clamp(1, code.stripes() as usize) as u32;
    let mut first = 0;
    while first < code.stripes() {
        let end = (first + width).min(code.stripes());
        let mut builder = code.builder(first..end)?;
        for index in 0..n {
            builder.add_piece(index, &storage.read_piece(index)?)?;
        }
        for (r, part) in (0u32..).zip(builder.finish()?) {
            store.write_part(r, first * t, &part)?;
        }
        first = end;
    }
    store.sync()?;
    Ok(store.check()?)
}
