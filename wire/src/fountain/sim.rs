//! Link simulations for the pacers' tests: a rate cap with a drop-tail
//! queue, a one-way delay and random loss, as the bench's emulator applies
//! them, and several flows from one sender through its uplink.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{DatagramPacer, PacerConfig, UplinkPacer};

/// One direction of a link.
pub struct Link {
    pub rate: f64,
    pub queue_limit: f64,
    pub delay: Duration,
    pub loss: f64,
    pub busy_until: Instant,
    pub rng: u64,
}

impl Link {
    pub fn new(rate_mbit: f64, queue_limit: f64, delay: Duration, loss: f64, now: Instant) -> Self {
        Link {
            rate: rate_mbit * 1e6 / 8.0,
            queue_limit,
            delay,
            loss,
            busy_until: now,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Arrival time of a datagram sent at `at`, or `None` if dropped.
    pub fn send(&mut self, bytes: usize, at: Instant) -> Option<Instant> {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if (self.rng % 1_000_000) as f64 / 1e6 < self.loss {
            return None;
        }
        let start = self.busy_until.max(at);
        if start.duration_since(at).as_secs_f64() * self.rate > self.queue_limit {
            return None; // queue full
        }
        self.busy_until = start + Duration::from_secs_f64(bytes as f64 / self.rate);
        Some(self.busy_until + self.delay)
    }
}

/// One sender, `flows` receivers: every datagram crosses the sender's
/// uplink, then (if set) its receiver's own downlink.
pub struct Setup {
    pub flows: usize,
    pub uplink_mbit: f64,
    pub downlink_mbit: Option<f64>,
    pub rtt_ms: u64,
    /// Random loss on each link crossed.
    pub loss: f64,
    /// Flow i starts sending at i × stagger.
    pub stagger: Duration,
    pub secs: f64,
    /// Whether the flows share an [`UplinkPacer`].
    pub shared: bool,
    /// Senders wake on a millisecond timer and up to this much later (a
    /// busy machine), not exactly when their pacer allows.
    pub lateness: Duration,
    /// Each acknowledgement comes back up to this much later than the
    /// path's delay (a queue on the way back, a busy receiver), in order.
    pub ack_jitter: Duration,
}

pub struct Outcome {
    /// Delivered bytes/s, all flows together.
    pub goodput: f64,
    /// Bytes sent per byte delivered.
    pub overhead: f64,
    /// Delivered bytes/s of each flow over its own sending time.
    pub per_flow: Vec<f64>,
}

/// A queue of about one bandwidth-delay product, as the emulator's.
fn queue_for(rate_mbit: f64, rtt_ms: u64) -> f64 {
    (rate_mbit * 1e6 / 8.0 * rtt_ms as f64 / 1000.0).max(150_000.0)
}

pub fn simulate(setup: &Setup) -> Outcome {
    let start = Instant::now();
    let half = Duration::from_millis(setup.rtt_ms / 2);
    let n = setup.flows;
    let mut uplink = Link::new(
        setup.uplink_mbit,
        queue_for(setup.uplink_mbit, setup.rtt_ms),
        Duration::ZERO,
        if setup.downlink_mbit.is_some() {
            0.0
        } else {
            setup.loss
        },
        start,
    );
    let mut downlinks: Vec<Option<Link>> = (0..n)
        .map(|f| {
            setup.downlink_mbit.map(|mbit| {
                let mut l = Link::new(mbit, queue_for(mbit, setup.rtt_ms), half, setup.loss, start);
                l.rng ^= (f as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
                l
            })
        })
        .collect();
    let size = 1036;
    let mut pacers: Vec<DatagramPacer> = (0..n)
        .map(|_| DatagramPacer::new(PacerConfig::default(), start))
        .collect();
    let mut uplink_pacer = UplinkPacer::new(PacerConfig::default(), start);
    let mut resume_at = vec![start; n];
    let mut wake_at = vec![start; n];
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let begins: Vec<Instant> = (0..n).map(|f| start + setup.stagger * f as u32).collect();
    let mut arrivals: VecDeque<(Instant, usize, u32)> = VecDeque::new();
    let mut received = vec![0u64; n];
    let mut highest = vec![0u32; n];
    let mut highest_us = vec![0u32; n];
    let mut acks: VecDeque<(Instant, usize, u32, u64, u32)> = VecDeque::new();
    let mut last_ack_arrival = vec![start; n];
    let mut ack_rng = 0x9E37_79B9_7F4A_7C15u64;
    let (mut sent, mut next_ack, mut now) = (0u64, start, start);
    let end = start + Duration::from_secs_f64(setup.secs);
    while now < end {
        for f in 0..n {
            if now < begins[f] || now < wake_at[f] {
                continue;
            }
            while pacers[f].next_send_time(now) <= now && resume_at[f] <= now {
                let seq = pacers[f].on_send(size, now);
                if setup.shared {
                    resume_at[f] = now + uplink_pacer.on_send(f as u64, size, now);
                }
                sent += 1;
                let through_uplink = uplink.send(size, now);
                let arrival = match (&mut downlinks[f], through_uplink) {
                    (Some(down), Some(at)) => down.send(size, at),
                    (None, Some(at)) => Some(at + half),
                    (_, None) => None,
                };
                if let Some(at) = arrival {
                    arrivals.push_back((at, f, seq));
                }
            }
            if !setup.lateness.is_zero() {
                // Next wake-up: the next whole millisecond after the pacer's
                // time, plus the scheduler's delay.
                let due = pacers[f].next_send_time(now).max(resume_at[f]);
                let ms = (due - start).as_micros().div_ceil(1000) as u64;
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let late = rng % (setup.lateness.as_micros() as u64 + 1);
                wake_at[f] = start + Duration::from_micros(ms * 1000 + late);
            }
        }
        // Downlinks reorder arrivals across flows: deliver all that are due.
        arrivals.make_contiguous().sort_by_key(|(at, _, _)| *at);
        while arrivals.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, f, seq)) = arrivals.pop_front() {
                received[f] += size as u64;
                highest[f] = highest[f].max(seq);
                highest_us[f] = (now - start).as_micros() as u32;
            }
        }
        if now >= next_ack {
            for f in 0..n {
                if received[f] > 0 {
                    ack_rng ^= ack_rng << 13;
                    ack_rng ^= ack_rng >> 7;
                    ack_rng ^= ack_rng << 17;
                    let extra = ack_rng % (setup.ack_jitter.as_micros() as u64 + 1);
                    let at = (now + half + Duration::from_micros(extra)).max(last_ack_arrival[f]);
                    last_ack_arrival[f] = at;
                    acks.push_back((at, f, highest[f], received[f], highest_us[f]));
                }
            }
            next_ack = now + Duration::from_millis(10);
        }
        // Acknowledgements of different flows may overtake each other.
        let (due, later): (Vec<_>, Vec<_>) = acks.drain(..).partition(|a| a.0 <= now);
        acks.extend(later);
        for (_, f, h, r, us) in due {
            if let Some(delta) = pacers[f].on_ack(h, r, us, now) {
                uplink_pacer.on_ack(delta, now);
            }
        }
        now += Duration::from_micros(200);
    }
    let total: u64 = received.iter().sum();
    Outcome {
        goodput: total as f64 / setup.secs,
        overhead: sent as f64 * size as f64 / total.max(1) as f64,
        per_flow: (0..n)
            .map(|f| received[f] as f64 / (end - begins[f]).as_secs_f64().max(1e-3))
            .collect(),
    }
}
