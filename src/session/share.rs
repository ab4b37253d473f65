//! `--seed-ratio`: stop uploading once a complete torrent has given out
//! enough, as aria2's option of the same name and Transmission's ratio limit
//! do. The check sits where upload bytes are counted, so a peer task stops
//! before sending past the limit instead of a second later.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Bytes a torrent uploads, and the limit after which, once complete, it
/// uploads no more.
#[derive(Debug, Default)]
pub struct UploadBudget {
    uploaded: AtomicU64,
    /// `None`: seed until stopped.
    cap: Option<u64>,
    reached: CancellationToken,
}

impl UploadBudget {
    /// A budget of `ratio` × `total` bytes; `None` or a ratio ≤ 0 means no
    /// limit (0 is aria2's spelling of "seed regardless").
    pub fn new(ratio: Option<f64>, total: u64) -> Self {
        let cap = ratio
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| (r * total as f64).ceil() as u64);
        UploadBudget {
            uploaded: AtomicU64::new(0),
            cap,
            reached: CancellationToken::new(),
        }
    }

    /// Counts `bytes` handed to a peer; `complete` is asked (it may take a
    /// lock) only once the count is past the limit.
    pub fn record(&self, bytes: u64, complete: impl FnOnce() -> bool) {
        let total = self.uploaded.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.check(total, complete);
    }

    /// Looks again without uploading (the download just completed).
    pub fn recheck(&self, complete: impl FnOnce() -> bool) {
        self.check(self.uploaded(), complete);
    }

    fn check(&self, total: u64, complete: impl FnOnce() -> bool) {
        if self.cap.is_some_and(|cap| total >= cap) && !self.reached() && complete() {
            tracing::info!(uploaded = total, "seed ratio reached: uploading stops");
            self.reached.cancel();
        }
    }

    /// Payload bytes uploaded so far, over every peer.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Whether the torrent is complete and has uploaded its share: peer
    /// tasks send nothing more.
    pub fn reached(&self) -> bool {
        self.reached.is_cancelled()
    }

    /// Resolves once [`reached`](Self::reached) (never without a limit).
    pub fn wait(&self) -> WaitForCancellationFuture<'_> {
        self.reached.cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_torrent_stops_at_its_share_and_not_before() {
        let budget = UploadBudget::new(Some(1.1), 1000);
        budget.record(1000, || true);
        assert!(!budget.reached());
        budget.record(99, || true);
        assert!(!budget.reached(), "1099 of 1100 bytes");
        budget.record(1, || true);
        assert!(budget.reached());
        assert_eq!(budget.uploaded(), 1100);
    }

    #[test]
    fn an_incomplete_torrent_keeps_uploading_until_it_completes() {
        let budget = UploadBudget::new(Some(0.5), 1000);
        budget.record(800, || false);
        assert!(!budget.reached(), "still downloading");
        budget.recheck(|| true);
        assert!(budget.reached(), "complete with 800 of 500 bytes given");
    }

    #[test]
    fn no_ratio_or_zero_never_stops() {
        for ratio in [None, Some(0.0), Some(-1.0), Some(f64::NAN)] {
            let budget = UploadBudget::new(ratio, 10);
            budget.record(1 << 40, || true);
            assert!(!budget.reached(), "{ratio:?}");
        }
    }
}
