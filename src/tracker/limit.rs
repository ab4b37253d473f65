//! Per-address limits: a token bucket for requests and a counter for open
//! connections, so that one address (an IPv4 address or an IPv6 /64, since
//! one IPv6 host owns a whole /64) cannot starve the others.
//!
//! Both live in small sharded maps with a bounded number of entries; an
//! attacker spraying source addresses fills the "overflow" entry, which is
//! shared and therefore limited as a whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SHARDS: usize = 64;
/// Entries per shard before new addresses share the overflow entry.
const SHARD_ENTRIES: usize = 16_384;
/// Key standing for "any address beyond the table's capacity".
const OVERFLOW: u128 = u128::MAX;

/// The key an address is limited under.
pub(crate) fn ip_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

fn shard_of(key: u128) -> usize {
    let folded = (key as u64) ^ ((key >> 64) as u64);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Thousandths of a request.
    milli: u64,
    /// Milliseconds since the limiter started, at the last refill.
    at: u64,
}

/// A token bucket per address: `per_sec` sustained, `burst` at once.
pub(crate) struct RateLimiter {
    shards: Box<[Mutex<HashMap<u128, Bucket>>]>,
    per_sec: u64,
    burst_milli: u64,
    start: Instant,
}

impl RateLimiter {
    /// `per_sec == 0` switches the limit off.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_sec: u64::from(per_sec),
            burst_milli: u64::from(burst.max(1)) * 1000,
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Takes one request's token; `false` if the address is over its rate.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let now = self.now_ms();
        let mut key = ip_key(ip);
        let mut map = lock(&self.shards[shard_of(key)]);
        if !map.contains_key(&key) && map.len() >= SHARD_ENTRIES {
            drop(map);
            key = OVERFLOW;
            map = lock(&self.shards[shard_of(key)]);
        }
        let full = Bucket {
            milli: self.burst_milli,
            at: now,
        };
        let b = map.entry(key).or_insert(full);
        let refill = now.saturating_sub(b.at).saturating_mul(self.per_sec);
        b.milli = b.milli.saturating_add(refill).min(self.burst_milli);
        b.at = now;
        if b.milli >= 1000 {
            b.milli -= 1000;
            true
        } else {
            false
        }
    }

    /// Forgets addresses whose bucket has refilled (they look like new ones).
    pub fn sweep(&self) {
        if self.per_sec == 0 {
            return;
        }
        let now = self.now_ms();
        for shard in self.shards.iter() {
            lock(shard).retain(|_, b| {
                let refill = now.saturating_sub(b.at).saturating_mul(self.per_sec);
                b.milli.saturating_add(refill) < self.burst_milli
            });
        }
    }
}

/// Open connections, in total and per address.
pub(crate) struct ConnLimiter {
    shards: Box<[Mutex<HashMap<u128, u32>>]>,
    open: AtomicUsize,
    max_total: usize,
    max_per_ip: u32,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnRefused {
    Total,
    PerIp,
}

/// Holds one connection slot until dropped.
pub(crate) struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    key: u128,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnLimiter {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            open: AtomicUsize::new(0),
            max_total,
            max_per_ip: u32::try_from(max_per_ip).unwrap_or(u32::MAX),
        })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, ConnRefused> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(ConnRefused::Total);
        }
        let mut key = ip_key(ip);
        let mut map = lock(&self.shards[shard_of(key)]);
        if !map.contains_key(&key) && map.len() >= SHARD_ENTRIES {
            drop(map);
            key = OVERFLOW;
            map = lock(&self.shards[shard_of(key)]);
        }
        let n = map.entry(key).or_insert(0);
        if *n >= self.max_per_ip && key != OVERFLOW {
            drop(map);
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(ConnRefused::PerIp);
        }
        *n += 1;
        Ok(ConnSlot {
            limiter: Arc::clone(self),
            key,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.limiter.shards[shard_of(self.key)]);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        drop(map);
        self.limiter.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let rl = RateLimiter::new(10, 5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!((0..20).filter(|_| rl.allow(a)).count(), 5);
        // Another address is unaffected.
        assert!(rl.allow(b));
        std::thread::sleep(std::time::Duration::from_millis(350));
        // About 3 more after 350 ms at 10/s.
        let more = (0..20).filter(|_| rl.allow(a)).count();
        assert!((2..=4).contains(&more), "{more}");
        assert!(RateLimiter::new(0, 0).allow(a));
    }

    #[test]
    fn ipv6_limited_per_64() {
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let z: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!(ip_key(x), ip_key(y));
        assert_ne!(ip_key(x), ip_key(z));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ip_key(mapped), ip_key("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn connection_slots_per_ip_and_total() {
        let cl = ConnLimiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = cl.acquire(a).unwrap();
        let _s2 = cl.acquire(a).unwrap();
        assert_eq!(cl.acquire(a).err(), Some(ConnRefused::PerIp));
        let _s3 = cl.acquire(b).unwrap();
        assert_eq!(cl.acquire(b).err(), Some(ConnRefused::Total));
        drop(s1);
        assert_eq!(cl.open(), 2);
        assert!(cl.acquire(a).is_ok());
    }
}
