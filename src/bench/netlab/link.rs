//! One direction of an emulated access link: loss (random or bursty
//! Gilbert–Elliott), a rate cap with a drop-tail queue, and a one-way delay.
//!
//! Pure logic on a virtual clock (nanoseconds since the lab's epoch): a
//! packet's departure is computed from its arrival timestamp and the link's
//! state, never from when the forwarder happens to get to it, so a busy
//! forwarder delays delivery (measured as lateness) but does not change the
//! link's behaviour.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "model")]
pub enum LossModel {
    #[default]
    None,
    /// Each packet independently with probability `p`.
    Random { p: f64 },
    /// Gilbert–Elliott with a lossless good state and an all-loss bad state:
    /// mean loss `p`, mean burst length `burst` packets.
    Burst { p: f64, burst: f64 },
}

impl LossModel {
    /// The long-run fraction of packets lost.
    pub fn mean(&self) -> f64 {
        match *self {
            LossModel::None => 0.0,
            LossModel::Random { p } | LossModel::Burst { p, .. } => p,
        }
    }
}

/// Settings of one link direction; changeable while packets flow.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinkSettings {
    /// Bits per second of IP packets; 0 means unlimited (no queue either).
    pub rate_bps: u64,
    /// One-way delay added after serialisation, in nanoseconds.
    pub delay_ns: u64,
    pub loss: LossModel,
    /// Drop-tail limit on the bytes waiting for the rate cap.
    pub queue_bytes: u64,
}

impl LinkSettings {
    /// A link that forwards everything at once.
    pub const TRANSPARENT: LinkSettings = LinkSettings {
        rate_bps: 0,
        delay_ns: 0,
        loss: LossModel::None,
        queue_bytes: 0,
    };

    /// Both directions of an access link for a path RTT of `rtt_ns` between
    /// two nodes with such links: each direction carries a quarter of the
    /// RTT (a path crosses two links each way). Loss `p` sits on the
    /// downlink only, so every path direction loses `p` once.
    pub fn access(rate_bps: u64, rtt_ns: u64, loss: LossModel) -> (LinkSettings, LinkSettings) {
        let queue_bytes = if rate_bps == 0 {
            0
        } else {
            Self::bdp_queue(rate_bps, rtt_ns)
        };
        let up = LinkSettings {
            rate_bps,
            delay_ns: rtt_ns / 4,
            loss: LossModel::None,
            queue_bytes,
        };
        (up, LinkSettings { loss, ..up })
    }

    /// About one bandwidth-delay product of queue for `rtt_ns`, but never
    /// under 100 full-size packets: a 1-BDP queue at RTT 0 would be a few
    /// bytes and starve any TCP of its burst.
    pub fn bdp_queue(rate_bps: u64, rtt_ns: u64) -> u64 {
        let bdp = (rate_bps as u128 * rtt_ns as u128 / 8 / 1_000_000_000) as u64;
        bdp.max(100 * 1500)
    }
}

/// Per-direction counters, as the JSON shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkCounters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub dropped_loss_packets: u64,
    pub dropped_loss_bytes: u64,
    pub dropped_queue_packets: u64,
    pub dropped_queue_bytes: u64,
}

impl LinkCounters {
    pub fn add(&mut self, o: &LinkCounters) {
        self.packets_in += o.packets_in;
        self.bytes_in += o.bytes_in;
        self.packets_out += o.packets_out;
        self.bytes_out += o.bytes_out;
        self.dropped_loss_packets += o.dropped_loss_packets;
        self.dropped_loss_bytes += o.dropped_loss_bytes;
        self.dropped_queue_packets += o.dropped_queue_packets;
        self.dropped_queue_bytes += o.dropped_queue_bytes;
    }
}

/// What happens to an offered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leaves the link at this virtual time.
    Deliver(u64),
    DroppedByLoss,
    DroppedByQueue,
}

/// One link direction with its state.
pub struct Pipe {
    pub settings: LinkSettings,
    pub counters: LinkCounters,
    /// When the rate cap is next free (virtual ns).
    free_at: u64,
    /// Latest exit time handed out: a lowered delay must not reorder.
    last_exit: u64,
    bad: bool,
    rng: StdRng,
}

impl Pipe {
    pub fn new(settings: LinkSettings, seed: u64) -> Pipe {
        Pipe {
            settings,
            counters: LinkCounters::default(),
            free_at: 0,
            last_exit: 0,
            bad: false,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Restarts the loss pattern (each repetition gets its own, the same for
    /// every variant in it) and zeroes the counters.
    pub fn reset(&mut self, seed: u64) {
        self.counters = LinkCounters::default();
        self.bad = false;
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// Offers a packet of `len` bytes arriving at virtual time `now`.
    ///
    /// The queue comes first and loss after serialisation: a packet lost on
    /// the wire has used the bottleneck, so goodput is at best (1 − p) × rate,
    /// as on a real lossy link.
    pub fn offer(&mut self, now: u64, len: usize) -> Verdict {
        let len64 = len as u64;
        self.counters.packets_in += 1;
        self.counters.bytes_in += len64;
        let s = self.settings;
        let departs = if s.rate_bps == 0 {
            now
        } else {
            let backlog_ns = self.free_at.saturating_sub(now);
            let backlog_bytes = (backlog_ns as u128 * s.rate_bps as u128 / 8_000_000_000) as u64;
            if backlog_ns > 0 && backlog_bytes + len64 > s.queue_bytes {
                self.counters.dropped_queue_packets += 1;
                self.counters.dropped_queue_bytes += len64;
                return Verdict::DroppedByQueue;
            }
            let tx_ns = (len64 as u128 * 8 * 1_000_000_000 / s.rate_bps as u128) as u64;
            self.free_at = self.free_at.max(now) + tx_ns;
            self.free_at
        };
        if self.lose() {
            self.counters.dropped_loss_packets += 1;
            self.counters.dropped_loss_bytes += len64;
            return Verdict::DroppedByLoss;
        }
        let exit = (departs + s.delay_ns).max(self.last_exit);
        self.last_exit = exit;
        Verdict::Deliver(exit)
    }

    /// Counts a packet leaving the link.
    pub fn note_out(&mut self, len: usize) {
        self.counters.packets_out += 1;
        self.counters.bytes_out += len as u64;
    }

    fn lose(&mut self) -> bool {
        match self.settings.loss {
            LossModel::None => false,
            LossModel::Random { p } => p > 0.0 && self.rng.random::<f64>() < p,
            LossModel::Burst { p, burst } => {
                if p <= 0.0 {
                    return false;
                }
                // Stationary P(bad) = g / (g + b) = p with b = 1/burst.
                let b = 1.0 / burst.max(1.0);
                let g = (p * b / (1.0 - p).max(1e-9)).min(1.0);
                let u = self.rng.random::<f64>();
                self.bad = if self.bad { u >= b } else { u < g };
                self.bad
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn link(rate_bps: u64, delay_ms: u64, loss: LossModel) -> Pipe {
        Pipe::new(
            LinkSettings {
                rate_bps,
                delay_ns: delay_ms * MS,
                loss,
                queue_bytes: LinkSettings::bdp_queue(rate_bps, 2 * delay_ms * MS),
            },
            7,
        )
    }

    #[test]
    fn delay_and_serialisation() {
        // 1500 bytes at 12 Mbit/s take exactly 1 ms.
        let mut p = link(12_000_000, 10, LossModel::None);
        assert_eq!(p.offer(0, 1500), Verdict::Deliver(11 * MS));
        // Back to back: queued behind the first.
        assert_eq!(p.offer(0, 1500), Verdict::Deliver(12 * MS));
        // Long after: the queue has drained.
        assert_eq!(p.offer(100 * MS, 1500), Verdict::Deliver(111 * MS));
    }

    #[test]
    fn rate_cap_holds_over_a_burst_and_queue_drops_the_rest() {
        let mut p = link(100_000_000, 0, LossModel::None);
        let mut last = 0;
        let mut delivered = 0u64;
        for _ in 0..10_000 {
            match p.offer(0, 1500) {
                Verdict::Deliver(t) => {
                    last = t;
                    delivered += 1500;
                }
                Verdict::DroppedByQueue => {}
                Verdict::DroppedByLoss => unreachable!(),
            }
        }
        // The queue (100 packets at RTT 0) bounds what is accepted at once.
        assert_eq!(delivered, 100 * 1500);
        assert_eq!(p.counters.dropped_queue_packets, 9_900);
        let rate = delivered as f64 * 8.0 / (last as f64 / 1e9);
        assert!((rate - 100e6).abs() < 1e3, "{rate}");
    }

    #[test]
    fn random_loss_rate() {
        let mut p = link(0, 0, LossModel::Random { p: 0.05 });
        let lost = (0..200_000)
            .filter(|_| p.offer(0, 100) == Verdict::DroppedByLoss)
            .count();
        let rate = lost as f64 / 200_000.0;
        assert!((rate - 0.05).abs() < 0.002, "{rate}");
    }

    #[test]
    fn burst_loss_mean_and_burst_length() {
        let mut p = link(0, 0, LossModel::Burst { p: 0.1, burst: 4.0 });
        let mut lost = 0;
        let mut bursts = 0;
        let mut prev = false;
        for _ in 0..400_000 {
            let l = p.offer(0, 100) == Verdict::DroppedByLoss;
            lost += l as u32;
            bursts += (l && !prev) as u32;
            prev = l;
        }
        let mean = lost as f64 / 400_000.0;
        let burst = lost as f64 / bursts as f64;
        assert!((mean - 0.1).abs() < 0.01, "{mean}");
        assert!((burst - 4.0).abs() < 0.3, "{burst}");
    }

    #[test]
    fn lowering_the_delay_does_not_reorder() {
        let mut p = link(0, 50, LossModel::None);
        let first = p.offer(0, 100);
        p.settings.delay_ns = 0;
        let second = p.offer(MS, 100);
        assert_eq!(first, Verdict::Deliver(50 * MS));
        assert_eq!(second, Verdict::Deliver(50 * MS));
    }
}
