//! One sender's datagram flows, paced together (DESIGN §3.5).
//!
//! Each flow's [`DatagramPacer`](super::DatagramPacer) measures its own
//! path. When a seed serves ten leechers, the ten paths share the seed's
//! uplink, and ten controllers that each probe for more and each compensate
//! for loss — loss their neighbours caused, among it — keep that uplink's
//! queue overflowing (measured in the bench: 11.5% of a departing seed's
//! datagrams dropped at its own queue, and with them the pieces that seed
//! was the last to hold). This controller treats the flows as the one
//! stream they are at the uplink: it measures what all of them deliver
//! together, round by round, keeps the recent maximum (the uplink's share
//! of the network, as BBR keeps a bottleneck bandwidth), and paces their
//! sum to it, compensated only for the loss seen while the sum is held
//! below it — the queue is empty then, so what is lost is the links' own.
//! A datagram goes out when both its flow's pacer and this one allow it.
//!
//! With a single active flow its own pacer says everything and this one
//! only measures.
//!
//! Sans-IO: the caller reports each send, and is told how long the next one
//! must wait, and each acknowledgement's [`AckDelta`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::pacer::{Gain, GAIN_CYCLE};
use super::{AckDelta, PacerConfig};

/// Shortest round: every flow acknowledges several times within it (a
/// receiver acknowledges on a timer of about 12 ms), so the sum over a
/// round is not at the mercy of when each flow's acknowledgements fall.
const SHORTEST_ROUND: Duration = Duration::from_millis(50);
/// Longest round, whatever the flows' round trips.
const LONGEST_ROUND: Duration = Duration::from_millis(400);
/// A round lasts at least this many times the acknowledgements' extra
/// delay on the way back.
const ACK_PATH_ROUNDS: u32 = 4;
/// How long the delivery maximum is remembered, in rounds.
const BW_WINDOW_ROUNDS: u32 = 10;
/// How long a flow's smallest round trip counts towards the round length.
const RTT_MEMORY: Duration = Duration::from_secs(10);
/// How far behind schedule the flows may catch up in one burst.
const MAX_BURST: Duration = Duration::from_millis(2);
/// Flows remembered (one entry per connection that sent a datagram);
/// beyond this the longest silent is forgotten.
const MAX_FLOWS: usize = 4096;
/// Startup ends after this many rounds in which delivery grew by less
/// than [`STARTUP_GROWTH`].
const STARTUP_FLAT_ROUNDS: u32 = 3;
const STARTUP_GROWTH: f64 = 1.25;
/// Fewest bytes a measuring round must account for before its loss counts.
const MIN_LOSS_SAMPLE: u64 = 64 * 1024;
/// Accounted bytes at which a loss sample gets the most weight.
const FULL_LOSS_SAMPLE: f64 = 1024.0 * 1024.0;

/// Gains of the cycle's rounds ([`Gain`], [`GAIN_CYCLE`] as the flows'
/// pacer has them, one round each).
const PROBE_GAIN: f64 = 1.25;
const MEASURE_GAIN: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Doubling each round while delivery follows.
    Startup {
        flat_rounds: u32,
        best: f64,
    },
    Cruise {
        cycle: usize,
    },
}

/// Paces the sum of one sender's datagram flows.
#[derive(Debug)]
pub struct UplinkPacer {
    config: PacerConfig,
    rate: f64,
    next_send: Instant,
    /// (flow, when it last sent), least recently sending first.
    flows: VecDeque<(u64, Instant)>,
    round_start: Instant,
    round_delivered: u64,
    /// Capacity went unused in this round: its delivery sample may raise
    /// the maximum, never stand for it.
    round_app_limited: bool,
    bw_samples: VecDeque<(Instant, f64)>,
    /// The largest of the flows' smallest round trips, and when reported.
    flow_rtt: Option<(Duration, Instant)>,
    /// The latest the flows' acknowledgements come back (smoothed, the
    /// largest of the flows'), and when reported.
    ack_path: Option<(Duration, Instant)>,
    phase: Phase,
    /// Send times of the current or last measuring round (end `None`
    /// while it lasts), and what acknowledgements of datagrams sent then
    /// reported.
    measure: Option<(Instant, Option<Instant>)>,
    measure_delivered: u64,
    measure_accounted: u64,
    loss: f64,
}

impl UplinkPacer {
    pub fn new(config: PacerConfig, now: Instant) -> Self {
        let rate = config.initial_rate.clamp(config.min_rate, config.max_rate);
        UplinkPacer {
            config,
            rate,
            next_send: now,
            flows: VecDeque::new(),
            round_start: now,
            round_delivered: 0,
            round_app_limited: false,
            bw_samples: VecDeque::new(),
            flow_rtt: None,
            ack_path: None,
            phase: Phase::Startup {
                flat_rounds: 0,
                best: 0.0,
            },
            measure: None,
            measure_delivered: 0,
            measure_accounted: 0,
            loss: 0.0,
        }
    }

    /// Records a datagram of `bytes` that `flow` sent at `now`; returns how
    /// long that flow must wait before its next one (zero while it is the
    /// only flow sending).
    pub fn on_send(&mut self, flow: u64, bytes: usize, now: Instant) -> Duration {
        self.touch(flow, now);
        let earliest = now.checked_sub(MAX_BURST).unwrap_or(now);
        if self.next_send < earliest {
            self.round_app_limited = true;
        }
        let start = self.next_send.max(earliest);
        self.next_send = start + Duration::from_secs_f64(bytes as f64 / self.rate);
        if self.active_flows(now) < 2 {
            // Nothing to share: no debt either, or a second flow would
            // start out waiting for the first one's sends.
            self.next_send = self.next_send.min(now);
            return Duration::ZERO;
        }
        self.next_send.saturating_duration_since(now)
    }

    /// Handles what one flow's acknowledgement reported.
    pub fn on_ack(&mut self, delta: AckDelta, now: Instant) {
        self.round_delivered = self.round_delivered.saturating_add(delta.delivered);
        if let Some((start, end)) = self.measure {
            if delta.sent_at >= start && end.is_none_or(|end| delta.sent_at < end) {
                self.measure_delivered = self.measure_delivered.saturating_add(delta.delivered);
                self.measure_accounted = self.measure_accounted.saturating_add(delta.accounted);
            }
        }
        remember_largest(&mut self.flow_rtt, delta.min_rtt, now);
        remember_largest(&mut self.ack_path, delta.ack_path, now);
        let elapsed = now.saturating_duration_since(self.round_start);
        if elapsed >= self.round() {
            self.end_round(elapsed, now);
        }
    }

    /// Current rate for the sum of the flows, bytes/s.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The largest recent delivery rate of all flows together, bytes/s.
    pub fn bottleneck(&self) -> f64 {
        self.bw_samples.iter().map(|(_, r)| *r).fold(0.0, f64::max)
    }

    /// Fraction of bytes lost while the sum was held below the maximum.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Flows that sent within the last two rounds.
    pub fn active_flows(&self, now: Instant) -> usize {
        let recent = self.round() * 2;
        self.flows
            .iter()
            .rev()
            .take_while(|(_, at)| now.saturating_duration_since(*at) <= recent)
            .count()
    }

    fn touch(&mut self, flow: u64, now: Instant) {
        // Most sends come from a flow that sent a moment ago: look from
        // the back.
        if let Some(at) = self.flows.iter().rposition(|(f, _)| *f == flow) {
            self.flows.remove(at);
        } else if self.flows.len() >= MAX_FLOWS {
            self.flows.pop_front();
        }
        self.flows.push_back((flow, now));
    }

    /// A round trip, and long against how late acknowledgements come
    /// back: a round's sum counts what was acknowledged in it, and a burst
    /// of late acknowledgements moves deliveries from one round to the
    /// next.
    fn round(&self) -> Duration {
        let rtt = self.flow_rtt.map_or(SHORTEST_ROUND, |(rtt, _)| rtt);
        let late = self.ack_path.map_or(Duration::ZERO, |(late, _)| late);
        rtt.max(late.saturating_mul(ACK_PATH_ROUNDS))
            .clamp(SHORTEST_ROUND, LONGEST_ROUND)
    }

    fn end_round(&mut self, elapsed: Duration, now: Instant) {
        let sample = self.round_delivered as f64 / elapsed.as_secs_f64().max(1e-6);
        if sample > 0.0 && (!self.round_app_limited || sample > self.bottleneck()) {
            self.bw_samples.push_back((now, sample));
        }
        // The newest sample stays however old: rounds with unused capacity
        // say nothing new about the uplink.
        let window = self.round().saturating_mul(BW_WINDOW_ROUNDS);
        while self.bw_samples.len() > 1
            && self
                .bw_samples
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window)
        {
            self.bw_samples.pop_front();
        }
        self.round_start = now;
        self.round_delivered = 0;
        self.round_app_limited = false;
        self.next_phase(now);
        self.update_rate();
    }

    fn next_phase(&mut self, now: Instant) {
        let bw = self.bottleneck();
        self.phase = match self.phase {
            Phase::Startup { flat_rounds, best } => {
                let (flat_rounds, best) = if bw > best * STARTUP_GROWTH {
                    (0, bw)
                } else {
                    (flat_rounds + 1, best)
                };
                if flat_rounds >= STARTUP_FLAT_ROUNDS {
                    Phase::Cruise { cycle: 2 }
                } else {
                    Phase::Startup { flat_rounds, best }
                }
            }
            Phase::Cruise { cycle } => Phase::Cruise {
                cycle: (cycle + 1) % GAIN_CYCLE.len(),
            },
        };
        let measuring = self.gain() == Some(Gain::Measure);
        match self.measure {
            Some((start, None)) if !measuring => self.measure = Some((start, Some(now))),
            _ if measuring => {
                self.fold_loss();
                self.measure = Some((now, None));
            }
            _ => {}
        }
    }

    /// The last measuring round's loss joins the estimate.
    fn fold_loss(&mut self) {
        let (delivered, accounted) = (
            std::mem::take(&mut self.measure_delivered),
            std::mem::take(&mut self.measure_accounted),
        );
        if accounted < MIN_LOSS_SAMPLE {
            return;
        }
        let sample = (1.0 - delivered as f64 / accounted as f64).clamp(0.0, 1.0);
        let weight = (accounted as f64 / FULL_LOSS_SAMPLE).min(0.5);
        self.loss += weight * (sample - self.loss);
    }

    fn gain(&self) -> Option<Gain> {
        match self.phase {
            Phase::Startup { .. } => None,
            Phase::Cruise { cycle } => GAIN_CYCLE.get(cycle).copied(),
        }
    }

    fn update_rate(&mut self) {
        let bw = self.bottleneck();
        if bw <= 0.0 {
            return;
        }
        let compensated = bw / (1.0 - self.loss.min(self.config.max_loss));
        let target = match self.gain() {
            None => (bw * 2.0).max(self.rate),
            Some(Gain::Probe) => compensated * PROBE_GAIN,
            Some(Gain::Measure) => bw * MEASURE_GAIN,
            Some(Gain::Cruise) => compensated,
        };
        self.rate = target.clamp(self.config.min_rate, self.config.max_rate);
    }
}

/// Keeps the largest of the flows' reports of a delay, or the latest one
/// once the largest is older than [`RTT_MEMORY`].
fn remember_largest(slot: &mut Option<(Duration, Instant)>, value: Duration, now: Instant) {
    let stale = slot.is_none_or(|(_, at)| now.saturating_duration_since(at) > RTT_MEMORY);
    if stale || slot.is_some_and(|(largest, _)| value >= largest) {
        *slot = Some((value, now));
    }
}

#[cfg(test)]
#[path = "uplink_tests.rs"]
mod tests;
