//! Sender rate control for symbol datagrams (DESIGN §3.5).
//!
//! Loss-based congestion control (Cubic, and quinn's default) reads random
//! loss as congestion and collapses; quinn's BBR keeps goodput but overshoots
//! the bottleneck. Fountain symbols make loss cheap (any K of them will do),
//! so this controller:
//! - measures the delivery rate from the receiver's acknowledgements and
//!   keeps its recent maximum (the bottleneck bandwidth, as BBR does);
//! - sends at that rate divided by (1 − measured loss), so that what arrives
//!   is the bottleneck's worth even when the link drops packets at random;
//! - takes a rising round trip — a queue filling — as the sign of
//!   congestion, not loss, and drains it;
//! - probes for more bandwidth now and then (gain 1.25 for one round trip,
//!   then 0.75 to drain what the probe queued);
//! - keeps at most about two bandwidth-delay products unacknowledged, as
//!   BBR caps its window: several flows sharing one bottleneck each
//!   overestimate their share from noisy samples, and without a cap their
//!   sum would keep the bottleneck's queue overflowing;
//! - tells a queue on the way out from late acknowledgements by one-way
//!   delays (the receiver stamps arrivals on its own clock): only the
//!   former is congestion; the latter (acknowledgements queued behind the
//!   receiver's own uploads, or a busy receiver) widens the window by the
//!   extra delay, or a window per late acknowledgement would starve the
//!   flow.
//!
//! Sans-IO: the caller reports sends and acknowledgements with the time, and
//! asks when it may send next.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Tuning of the pacer.
#[derive(Debug, Clone, PartialEq)]
pub struct PacerConfig {
    /// Sending rate before anything is measured, bytes/s.
    pub initial_rate: f64,
    /// Never slower than this, bytes/s.
    pub min_rate: f64,
    /// Never faster than this, bytes/s (an upload limit, or a sanity cap).
    pub max_rate: f64,
    /// Highest loss rate compensated for; beyond it the link is unusable
    /// and compensation would only flood it.
    pub max_loss: f64,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            initial_rate: 4e6,
            min_rate: 64e3,
            max_rate: 10e9,
            max_loss: 0.5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Doubling every round trip until the delivery rate stops growing.
    Startup {
        rounds_without_growth: u32,
        best: f64,
        round_start: Instant,
    },
    /// Sending at the bottleneck rate, cycling through probe gains.
    Cruise { cycle: usize, since: Instant },
}

/// What one round of the cycle does (here and in the uplink pacer, with
/// their own gains).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Gain {
    /// Send a quarter above the bottleneck: is there more bandwidth?
    Probe,
    /// Send below the bottleneck, uncompensated: drains what the probe
    /// queued, and any loss seen now is the link's own, not congestion.
    Measure,
    /// Send at the bottleneck, compensating the link's random loss.
    Cruise,
}

/// The cycle, one round trip (at least [`MIN_ROUND`]) per entry.
pub(super) const GAIN_CYCLE: [Gain; 8] = [
    Gain::Probe,
    Gain::Measure,
    Gain::Cruise,
    Gain::Cruise,
    Gain::Cruise,
    Gain::Cruise,
    Gain::Cruise,
    Gain::Cruise,
];
/// Shortest round of the cycle: on very short paths a round must still
/// span several acknowledgements.
const MIN_ROUND: Duration = Duration::from_millis(5);
/// How long the bandwidth maximum is remembered, in round trips.
const BW_WINDOW_RTTS: u32 = 10;
/// Shortest interval a delivery-rate sample is measured over.
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(2);
/// Fewest payload bytes a delivery-rate sample spans: the receiver handles
/// datagrams in bursts (and stamps them as it handles them), so a sample of
/// a few dozen 1 KiB datagrams can read as a rate well above the link's,
/// and the bandwidth maximum keeps the highest. On fast paths this is a
/// fraction of a millisecond and the interval above governs.
const MIN_SAMPLE_BYTES: u64 = 64 * 1024;
/// ... unless the link is so slow that gathering them takes this long.
const MAX_SAMPLE_WAIT: Duration = Duration::from_millis(50);
/// How far behind schedule a sender may catch up in one burst: a task on a
/// busy machine wakes milliseconds late (2 ms lost a fifth of the rate to
/// 3 ms of lateness in `a_sender_woken_late_keeps_its_rate`; 6 ms let the
/// bursts overflow short queues).
const MAX_BURST: Duration = Duration::from_millis(4);
/// ... or by this many datagrams, on slow paths where they take longer.
const BURST_DATAGRAMS: f64 = 4.0;
/// A sender behind schedule while less than this share of its window is
/// in flight was late (woken late, or held by the uplink pacer); with more
/// in flight the window held it.
const LATE_WINDOW_SHARE: f64 = 0.75;
/// How long the minimum round trip is remembered.
const RTT_WINDOW: Duration = Duration::from_secs(10);
/// How late the receiver's acknowledgements may be: it acknowledges on a
/// timer, not per datagram.
const ACK_DELAY: Duration = Duration::from_millis(12);
/// The most queueing delay on the way out taken as normal (a probe's).
const MAX_QUEUE_DELAY: Duration = Duration::from_millis(10);
/// Sending rate while a queue on the way out drains, against the
/// bottleneck.
const QUEUE_DRAIN_GAIN: f64 = 0.9;
/// Unacknowledged bytes allowed, in bandwidth-delay products.
const WINDOW_GAIN: f64 = 1.5;
/// Most extra delay of acknowledgements on their way back that the window
/// stretches to cover.
const MAX_ACK_PATH: Duration = Duration::from_millis(250);
/// How long a one-way-delay reference is used before a newer one replaces
/// it (the receiver's microsecond clock wraps every 71 minutes).
const OWD_REBASE: Duration = Duration::from_secs(60);
/// Never fewer unacknowledged bytes than this (short paths, first round).
const MIN_WINDOW: f64 = 64.0 * 1024.0;
/// Nor fewer than this many of the largest datagrams sent.
const MIN_WINDOW_DATAGRAMS: f64 = 4.0;
/// Without any acknowledgement for this long, what is in flight counts as
/// lost and one more window may go (the acknowledgements may all be lost).
const MIN_STALL: Duration = Duration::from_millis(200);
/// How often a sender held back by the window looks again.
const WINDOW_POLL: Duration = Duration::from_millis(1);

/// Paces one connection's symbol datagrams.
#[derive(Debug)]
pub struct DatagramPacer {
    config: PacerConfig,
    next_seq: u32,
    /// (sequence, send time, bytes sent up to and including it, sent in a
    /// measuring round) of recent datagrams, oldest first.
    sent: VecDeque<(u32, Instant, u64, bool)>,
    sent_bytes: u64,
    /// Bytes sent up to the highest acknowledged datagram: everything
    /// before it has arrived or is lost.
    acked_upto: u64,
    /// When the last acknowledgement (or stall write-off) happened.
    last_ack_at: Instant,
    /// The sender had nothing to send when the pacer allowed it.
    idle: bool,
    /// First datagram sent after the last idle spell: a delivery sample
    /// spanning it measured the sender's own gap, not the path.
    last_idle_seq: Option<u32>,
    /// Reference point of the last delivery-rate sample: (highest sequence,
    /// ack time, send time of that sequence, receiver's clock when it
    /// arrived, bytes sent up to it, bytes received).
    last_ack: Option<(u32, Instant, Instant, u32, u64, u64)>,
    /// Delivery-rate samples (time, bytes/s) within the window.
    bw_samples: VecDeque<(Instant, f64)>,
    min_rtt: Option<(Duration, Instant)>,
    latest_rtt: Option<Duration>,
    /// One-way delay reference: the receiver's clock (µs, wrapping) when a
    /// datagram arrived, and when we sent it. The clocks are unrelated;
    /// only differences between one-way delays mean anything.
    owd_base: Option<(u32, Instant)>,
    /// Smallest one-way delay against the reference (µs), and when seen.
    min_owd: Option<(i64, Instant)>,
    /// How much the latest acknowledged datagram's one-way delay exceeded
    /// the smallest: a queue on the way out.
    forward_queue: Duration,
    /// Smoothed extra delay of acknowledgements on the way back.
    ack_path: Duration,
    loss: f64,
    phase: Phase,
    rate: f64,
    next_send: Instant,
    /// Largest datagram payload sent so far, bytes.
    largest_datagram: usize,
    /// What happened so far, for diagnostics.
    pub stats: PacerStats,
    /// Payload bytes the receiver has reported, as far as we believe it
    /// (never more than we had sent up to the datagram it acknowledged).
    delivered: u64,
}

/// Counts of what a pacer did, for diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Delivery-rate samples taken, and of them app-limited ones (the
    /// sender idle or late) that were below the estimate and left out.
    pub samples: u64,
    pub app_limited_dropped: u64,
    /// Sends made behind schedule with room in the window.
    pub late_sends: u64,
    /// Rate updates capped because a queue was building.
    pub queue_capped: u64,
}

/// What one acknowledgement told about a flow, for the sender's
/// [`super::UplinkPacer`]: bytes that arrived and bytes now accounted for
/// (arrived or lost) since the previous acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AckDelta {
    pub delivered: u64,
    pub accounted: u64,
    /// When the highest acknowledged datagram was sent.
    pub sent_at: Instant,
    /// The flow's smallest recent round trip.
    pub min_rtt: Duration,
    /// How late the flow's acknowledgements come back, smoothed (beyond
    /// its smallest round trip and any queue on the way out).
    pub ack_path: Duration,
}

impl DatagramPacer {
    pub fn new(config: PacerConfig, now: Instant) -> Self {
        let rate = config.initial_rate.clamp(config.min_rate, config.max_rate);
        DatagramPacer {
            config,
            next_seq: 0,
            sent: VecDeque::new(),
            sent_bytes: 0,
            acked_upto: 0,
            last_ack_at: now,
            idle: false,
            last_idle_seq: None,
            last_ack: None,
            bw_samples: VecDeque::new(),
            min_rtt: None,
            latest_rtt: None,
            owd_base: None,
            min_owd: None,
            forward_queue: Duration::ZERO,
            ack_path: Duration::ZERO,
            loss: 0.0,
            phase: Phase::Startup {
                rounds_without_growth: 0,
                best: 0.0,
                round_start: now,
            },
            rate,
            next_send: now,
            largest_datagram: 0,
            delivered: 0,
            stats: PacerStats::default(),
        }
    }

    /// When the next datagram may go out, asked at `now`: on the pacing
    /// schedule, or (while the window is full) a moment later, to look again
    /// after acknowledgements have come in.
    pub fn next_send_time(&self, now: Instant) -> Instant {
        if self.window_open(now) {
            self.next_send
        } else {
            self.next_send.max(now + WINDOW_POLL)
        }
    }

    /// Bytes sent and not yet acknowledged (arrived or known lost).
    pub fn in_flight(&self) -> u64 {
        self.sent_bytes.saturating_sub(self.acked_upto)
    }

    /// Most unacknowledged bytes allowed now.
    pub fn window(&self) -> f64 {
        let bw = self.bottleneck();
        let bw = if bw > 0.0 { bw } else { self.rate };
        let rtt = self.round_trip().max(MIN_ROUND) + ACK_DELAY + self.ack_path_delay();
        // A few datagrams at least, whatever their size: with 64 KiB
        // datagrams (loopback) a 64 KiB window would hold one, and every
        // datagram would wait for the acknowledgement of the one before.
        let floor = MIN_WINDOW.max(MIN_WINDOW_DATAGRAMS * self.largest_datagram as f64);
        (WINDOW_GAIN * bw * rtt.as_secs_f64()).max(floor)
    }

    fn stall_timeout(&self) -> Duration {
        (self.round_trip() * 4 + ACK_DELAY + self.ack_path_delay()).max(MIN_STALL)
    }

    /// The smoothed extra delay of acknowledgements on the way back.
    fn ack_path_delay(&self) -> Duration {
        self.ack_path
    }

    /// Splits the round trip of the datagram acknowledged now into a queue
    /// on the way out (its one-way delay above the smallest), the path's
    /// round trip (the smallest of what remains) and extra delay on the way
    /// back (the rest).
    fn track_delays(&mut self, sent_at: Instant, receive_us: u32, rtt: Duration, now: Instant) {
        let (base_us, base_at) = *self.owd_base.get_or_insert((receive_us, sent_at));
        let on_receiver = i64::from(receive_us.wrapping_sub(base_us) as i32);
        let owd = on_receiver - signed_micros(sent_at, base_at);
        let stale = self
            .min_owd
            .is_none_or(|(_, at)| now.duration_since(at) > RTT_WINDOW);
        if stale || self.min_owd.is_some_and(|(min, _)| owd <= min) {
            self.min_owd = Some((owd, now));
        }
        let min = self.min_owd.map_or(owd, |(min, _)| min);
        self.forward_queue = Duration::from_micros(owd.saturating_sub(min).max(0) as u64);
        if sent_at.saturating_duration_since(base_at) > OWD_REBASE {
            // This datagram becomes the reference, its one-way delay 0.
            self.owd_base = Some((receive_us, sent_at));
            self.min_owd = self.min_owd.map(|(min, at)| (min - owd, at));
        }
        // The smallest round trip leaves out our own queue: when a queue
        // never empties (several senders keep it full) the plain minimum
        // would count it as path, and no queue would ever look too long.
        let unqueued = rtt.saturating_sub(self.forward_queue);
        let stale = self
            .min_rtt
            .is_none_or(|(_, at)| now.duration_since(at) > RTT_WINDOW);
        if stale || self.min_rtt.is_some_and(|(min, _)| unqueued <= min) {
            self.min_rtt = Some((unqueued, now));
        }
        let back = rtt
            .saturating_sub(self.round_trip())
            .saturating_sub(self.forward_queue)
            .min(MAX_ACK_PATH);
        // Smoothed, not the recent maximum: stretched to the latest ever
        // seen, the window would let a queue build on the way out while
        // acknowledgements come back sooner than that.
        self.ack_path = (self.ack_path * 7 + back) / 8;
    }

    fn window_open(&self, now: Instant) -> bool {
        (self.in_flight() as f64) < self.window()
            || now.saturating_duration_since(self.last_ack_at) > self.stall_timeout()
    }

    /// Records a datagram of `bytes` sent at `now`; returns its sequence
    /// number (to put in the frame).
    pub fn on_send(&mut self, bytes: usize, now: Instant) -> u32 {
        if (self.in_flight() as f64) >= self.window()
            && now.saturating_duration_since(self.last_ack_at) > self.stall_timeout()
        {
            // No acknowledgement for a long time: write off what is in
            // flight and start the timeout again (one window per timeout).
            self.acked_upto = self.sent_bytes;
            self.last_ack_at = now;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        // Behind schedule with room in the window: the sender was late, not
        // held back by the path.
        let window_had_room = (self.in_flight() as f64) < LATE_WINDOW_SHARE * self.window();
        if std::mem::take(&mut self.idle) {
            self.last_idle_seq = Some(seq);
        }
        self.sent_bytes += bytes as u64;
        self.largest_datagram = self.largest_datagram.max(bytes);
        let measuring = matches!(self.phase, Phase::Cruise { cycle, .. } if GAIN_CYCLE.get(cycle) == Some(&Gain::Measure));
        self.sent.push_back((seq, now, self.sent_bytes, measuring));
        // Remember a few round trips' worth of sends, bounded.
        while self.sent.len() > 1 << 16 {
            self.sent.pop_front();
        }
        // A sender woken late (timers tick in milliseconds, and a busy
        // machine runs the task later still) may catch up on the schedule,
        // but never by more than a small burst.
        let burst = MAX_BURST.max(Duration::from_secs_f64(
            BURST_DATAGRAMS * bytes as f64 / self.rate,
        ));
        let earliest = now.checked_sub(burst).unwrap_or(now);
        if self.next_send < earliest && window_had_room {
            self.stats.late_sends += 1;
            // Time forfeited: deliveries over it show how late we were, not
            // what the path carries. Taken as the path's rate they would
            // lower it, the next round would be later still, and the rate
            // would spiral down (seen: 50 Mbit/s flows at 2 on a loaded
            // machine).
            self.last_idle_seq = Some(seq);
        }
        let start = self.next_send.max(earliest);
        self.next_send = start + Duration::from_secs_f64(bytes as f64 / self.rate);
        seq
    }

    /// The sender was allowed to send but had nothing queued (receiver-driven
    /// requests ran dry): delivery samples across this gap are app-limited
    /// and may raise the bandwidth estimate, never lower it (as in BBR).
    pub fn on_idle(&mut self) {
        self.idle = true;
    }

    /// Handles an acknowledgement: the highest sequence number the receiver
    /// has seen, how many payload bytes it received by datagram in total
    /// (the sender counts the same payload bytes in [`Self::on_send`]), and
    /// when the highest arrived on the receiver's clock (microseconds,
    /// wrapping). Returns what the acknowledgement added, unless it was old
    /// news.
    pub fn on_ack(
        &mut self,
        highest_seq: u32,
        received: u64,
        receive_us: u32,
        now: Instant,
    ) -> Option<AckDelta> {
        if received == 0 {
            // Nothing arrived yet: `highest_seq` means nothing.
            return None;
        }
        let &(_, sent_at, sent_upto, measuring) =
            self.sent.iter().find(|(s, _, _, _)| *s == highest_seq)?;
        let rtt = now.saturating_duration_since(sent_at);
        self.latest_rtt = Some(rtt);
        let accounted = sent_upto.saturating_sub(self.acked_upto);
        self.acked_upto = self.acked_upto.max(sent_upto);
        // A receiver cannot have more than we sent: a lying one claims at
        // most a loss-free path.
        let believed = received.min(sent_upto).max(self.delivered);
        let delivered = believed.saturating_sub(self.delivered);
        self.delivered = believed;
        self.last_ack_at = now;
        self.track_delays(sent_at, receive_us, rtt, now);
        // Forget sends the receiver has already seen past.
        while self
            .sent
            .front()
            .is_some_and(|(s, _, _, _)| seq_before(*s, highest_seq))
        {
            self.sent.pop_front();
        }
        let mut take_sample = true;
        if let Some((prev_seq, at, prev_sent_at, prev_receive_us, prev_upto, prev_received)) =
            self.last_ack
        {
            let app_limited = self
                .last_idle_seq
                .is_some_and(|s| seq_before(prev_seq, s) && !seq_before(highest_seq, s));
            // Acknowledgements bunch up on the way back, and a sender's burst
            // can be short too: only the receiver's clock says how fast the
            // bytes really arrived. The longest of the three intervals keeps
            // any compression from looking like a huge delivery rate.
            let on_receiver =
                Duration::from_micros(u64::from(receive_us.wrapping_sub(prev_receive_us)));
            let interval = now
                .saturating_duration_since(at)
                .max(sent_at.saturating_duration_since(prev_sent_at))
                .max(on_receiver);
            let got = received.saturating_sub(prev_received);
            let sent = sent_upto.saturating_sub(prev_upto);
            if interval < MIN_SAMPLE_INTERVAL
                || (got < MIN_SAMPLE_BYTES && interval < MAX_SAMPLE_WAIT)
            {
                // Too short to measure: keep the reference point.
                take_sample = false;
            } else if got > 0 && sent > 0 {
                let sample = got as f64 / interval.as_secs_f64();
                self.stats.samples += 1;
                if !app_limited || sample >= self.bottleneck() {
                    self.bw_samples.push_back((now, sample));
                } else {
                    self.stats.app_limited_dropped += 1;
                }
                // Only what was sent below the bottleneck tells random loss
                // from our own congestion.
                if measuring {
                    let sample_loss = (1.0 - got as f64 / sent as f64).clamp(0.0, 1.0);
                    // Weighted by bytes so tiny intervals do not swing it.
                    let w = (sent as f64 / 262_144.0).min(0.5);
                    self.loss += w * (sample_loss - self.loss);
                }
            }
        }
        if take_sample {
            self.last_ack = Some((highest_seq, now, sent_at, receive_us, sent_upto, received));
        }
        let window = self
            .round_trip()
            .saturating_mul(BW_WINDOW_RTTS)
            .max(Duration::from_millis(500));
        while self
            .bw_samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > window)
        {
            self.bw_samples.pop_front();
        }
        self.update_rate(now);
        Some(AckDelta {
            delivered,
            accounted,
            sent_at,
            min_rtt: self.round_trip(),
            ack_path: self.ack_path,
        })
    }

    fn round_trip(&self) -> Duration {
        self.min_rtt.map_or(Duration::from_millis(100), |(r, _)| {
            r.max(Duration::from_millis(1))
        })
    }

    /// Bottleneck bandwidth: the largest recent delivery rate.
    pub fn bottleneck(&self) -> f64 {
        self.bw_samples.iter().map(|(_, r)| *r).fold(0.0, f64::max)
    }

    /// A queue is building when the delay on the way out grows well past
    /// its minimum: by half the smallest round trip, but never more than
    /// [`MAX_QUEUE_DELAY`] (a round trip stretched by late acknowledgements
    /// says nothing about the way out), and 2 ms of noise.
    fn queue_building(&self) -> bool {
        match (self.latest_rtt, self.min_rtt) {
            (Some(_), Some((min, _))) => {
                self.forward_queue
                    > min.mul_f64(0.5).min(MAX_QUEUE_DELAY) + Duration::from_millis(2)
            }
            _ => false,
        }
    }

    fn update_rate(&mut self, now: Instant) {
        let bw = self.bottleneck();
        if bw <= 0.0 {
            return;
        }
        let rtt = self.round_trip();
        let loss = self.loss.min(self.config.max_loss);
        let target = match self.phase {
            Phase::Startup {
                rounds_without_growth,
                best,
                round_start,
            } => {
                // Keep doubling while the delivery rate follows; judge growth
                // once per round trip, as a round is what a doubling takes.
                let (mut rounds, mut best, mut round_start) =
                    (rounds_without_growth, best, round_start);
                if now.duration_since(round_start) >= rtt {
                    if bw > best * 1.25 {
                        rounds = 0;
                        best = bw;
                    } else {
                        rounds += 1;
                    }
                    round_start = now;
                }
                if rounds >= 3 || self.queue_building() {
                    self.phase = Phase::Cruise {
                        cycle: 2,
                        since: now,
                    };
                    bw
                } else {
                    self.phase = Phase::Startup {
                        rounds_without_growth: rounds,
                        best,
                        round_start,
                    };
                    (bw * 2.0).max(self.rate)
                }
            }
            Phase::Cruise { cycle, since } => {
                let round = rtt.max(MIN_ROUND);
                let (cycle, since) = if now.duration_since(since) >= round {
                    ((cycle + 1) % GAIN_CYCLE.len(), now)
                } else {
                    (cycle, since)
                };
                self.phase = Phase::Cruise { cycle, since };
                let compensated = bw / (1.0 - loss);
                let target = match GAIN_CYCLE.get(cycle).copied().unwrap_or(Gain::Cruise) {
                    Gain::Probe => compensated * 1.25,
                    Gain::Measure => bw * 0.9,
                    Gain::Cruise => compensated,
                };
                if self.queue_building() {
                    // A queue is filling: below the bottleneck until it
                    // drains (the window no longer bounds it when it
                    // stretches over late acknowledgements).
                    self.stats.queue_capped += 1;
                    target.min(bw * QUEUE_DRAIN_GAIN)
                } else {
                    target
                }
            }
        };
        self.rate = target.clamp(self.config.min_rate, self.config.max_rate);
    }

    /// Current sending rate, bytes/s.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Smoothed fraction of datagrams lost.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Smallest recent round trip, if measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(|(r, _)| r)
    }

    /// Latest round trip, if measured.
    pub fn latest_rtt(&self) -> Option<Duration> {
        self.latest_rtt
    }

    /// The latest queueing delay on the way out, and the smoothed extra
    /// delay of acknowledgements on the way back.
    pub fn path_delays(&self) -> (Duration, Duration) {
        (self.forward_queue, self.ack_path_delay())
    }
}

/// `a − b` in microseconds, negative when `a` is earlier.
fn signed_micros(a: Instant, b: Instant) -> i64 {
    if a >= b {
        i64::try_from(a.duration_since(b).as_micros()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(b.duration_since(a).as_micros()).unwrap_or(i64::MAX)
    }
}

/// `a` comes before `b` in wrapping sequence space.
fn seq_before(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) as i32 > 0
}

#[cfg(test)]
#[path = "pacer_tests.rs"]
mod tests;
