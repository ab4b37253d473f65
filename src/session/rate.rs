//! Rate limiting (a token bucket that lets callers go into debt and tells
//! them how long to wait) and rate metering.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket in bytes per second; 0 means unlimited.
pub struct RateLimiter {
    rate: u64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimiter {
            rate: bytes_per_sec,
            state: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.rate > 0
    }

    /// Takes `bytes` from the bucket and returns how long the caller should
    /// wait before moving more data: zero while the bucket has tokens. The
    /// bucket holds at most a quarter second of tokens, so an idle period
    /// does not allow a long burst afterwards.
    pub fn reserve(&self, bytes: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(rate / 4.0);
        b.last = now;
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }
}

/// A rate estimate from a byte counter sampled about once a second
/// (exponentially weighted, so it reacts within a few seconds).
#[derive(Debug, Default, Clone, Copy)]
pub struct RateMeter {
    last_total: u64,
    last_at: Option<Instant>,
    rate: f64,
}

impl RateMeter {
    /// Feeds the counter's current total; returns the rate in bytes/s.
    pub fn sample(&mut self, total: u64, now: Instant) -> f64 {
        if let Some(at) = self.last_at {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let instant = total.saturating_sub(self.last_total) as f64 / secs;
                // Weight by elapsed time so irregular ticks average properly.
                let alpha = (secs / 3.0).min(1.0);
                self.rate += alpha * (instant - self.rate);
            }
        }
        self.last_total = total;
        self.last_at = Some(now);
        self.rate
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits_and_limited_goes_into_debt() {
        assert_eq!(RateLimiter::new(0).reserve(u64::MAX), Duration::ZERO);
        let l = RateLimiter::new(100_000);
        // An empty bucket: 50 kB takes about half a second to pay back.
        let wait = l.reserve(50_000);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        let more = l.reserve(50_000);
        assert!(more > Duration::from_millis(900), "{more:?}");
    }

    #[test]
    fn meter_converges_on_a_steady_rate() {
        let mut m = RateMeter::default();
        let start = Instant::now();
        let mut r = 0.0;
        for s in 0..20u64 {
            r = m.sample(s * 1000, start + Duration::from_secs(s));
        }
        assert!((r - 1000.0).abs() < 10.0, "{r}");
    }
}
