//! `bench --calibrate`: checks the emulator against what it was set to, with
//! real packets through two namespaces: UDP echo probes for the RTT, an
//! overloading UDP flow for the rate cap, and counted UDP streams for random
//! and bursty loss. Settings are changed between phases while the lab runs,
//! which exercises run-time changes too.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::netlab::{ns::in_netns, Lab, LinkSettings, LossModel};

/// One check: what was set, what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub unit: &'static str,
    pub set: f64,
    pub measured: f64,
    pub error_pct: f64,
    pub ok: bool,
    /// The emulator's p99 lateness during the measurement.
    pub emulator_p99_us: u64,
    /// Measured a second time because the emulator stalled the first time.
    pub remeasured: bool,
}

impl Check {
    fn new(what: String, unit: &'static str, set: f64, measured: f64) -> Check {
        let error_pct = 100.0 * (measured - set) / set;
        Check {
            what,
            unit,
            set,
            measured,
            error_pct,
            ok: error_pct.abs() <= 5.0,
            emulator_p99_us: 0,
            remeasured: false,
        }
    }
}

const PORT: u16 = 9;
const MBIT: u64 = 1_000_000;
const MS: u64 = 1_000_000;

/// Runs every check; returns them (the caller prints and judges).
pub fn run() -> Result<Vec<Check>> {
    let (up, down) = LinkSettings::access(100 * MBIT, 20 * MS, LossModel::None);
    let specs = vec![("a".to_string(), up, down), ("b".to_string(), up, down)];
    let lab = Lab::new(&specs, 1)?;
    let a = lab.node("a")?.clone();
    let b = lab.node("b")?.clone();
    let fwd = lab.forwarder()?;
    let set = |rate_mbit: u64, rtt_ms: u64, loss: LossModel| {
        let l = LinkSettings::access(rate_mbit * MBIT, rtt_ms * MS, loss);
        fwd.set_links(vec![l, l]);
    };
    let src = in_netns(&a.netns, || {
        UdpSocket::bind((a.addr, 0)).context("cannot bind in node a")
    })?;
    let dst = in_netns(&b.netns, || {
        UdpSocket::bind((b.addr, PORT)).context("cannot bind in node b")
    })?;
    let dst_addr = SocketAddr::from((b.addr, PORT));
    force_rcvbuf(&dst, 8 << 20);
    let mut checks = Vec::new();
    // Measures once; when a result is off and the emulator itself stalled
    // (the machine is shared), measures once more and says so.
    let mut check = |what: String, unit, set_to: f64, f: &dyn Fn() -> Result<f64>| -> Result<()> {
        let mut remeasured = false;
        loop {
            fwd.reset(7)?;
            let measured = f()?;
            let snap = fwd.snapshot();
            let (up_a, down_b) = match (snap.links.first(), snap.links.get(1)) {
                (Some(x), Some(y)) => (x.up, y.down),
                _ => Default::default(),
            };
            tracing::info!(
                "{what}: emulator saw {} packets, dropped {} by loss and {} by queue, \
                 delivered {}; lateness p99 {} us, max {} us",
                up_a.packets_in,
                down_b.dropped_loss_packets,
                up_a.dropped_queue_packets + down_b.dropped_queue_packets,
                down_b.packets_out,
                snap.lateness.p99_us,
                snap.lateness.max_us
            );
            let mut c = Check::new(what.clone(), unit, set_to, measured);
            c.emulator_p99_us = snap.lateness.p99_us;
            c.remeasured = remeasured;
            if c.ok || remeasured || snap.lateness.p99_us <= 2000 {
                checks.push(c);
                return Ok(());
            }
            remeasured = true;
        }
    };
    for rtt in [20u64, 80] {
        set(100, rtt, LossModel::None);
        let what = format!("RTT at {rtt} ms");
        check(what, "ms", rtt as f64, &|| rtt_ms(&src, &dst, dst_addr))?;
    }
    for rate in [100u64, 20] {
        set(rate, 20, LossModel::None);
        let what = format!("rate at {rate} Mbit/s");
        let offer = rate as f64 * 1.3;
        check(what, "Mbit/s", rate as f64, &|| {
            rate_mbit(&src, &dst, dst_addr, offer)
        })?;
    }
    for (what, loss, packets) in [
        ("random loss 5%", LossModel::Random { p: 0.05 }, 100_000),
        (
            "burst loss 5% (mean burst 4)",
            LossModel::Burst {
                p: 0.05,
                burst: 4.0,
            },
            300_000,
        ),
    ] {
        set(0, 0, loss);
        check(what.to_string(), "%", 5.0, &|| {
            loss_pct(&src, &dst, dst_addr, packets)
        })?;
    }
    Ok(checks)
}

/// Median RTT of 100 echo probes, in ms. The echo runs in a thread in b.
fn rtt_ms(src: &UdpSocket, dst: &UdpSocket, dst_addr: SocketAddr) -> Result<f64> {
    src.set_read_timeout(Some(Duration::from_millis(500)))?;
    dst.set_read_timeout(Some(Duration::from_millis(50)))?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut samples = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| {
            let mut buf = [0u8; 2048];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = dst.recv_from(&mut buf) {
                    let _ = dst.send_to(buf.get(..n).unwrap_or_default(), from);
                }
            }
        });
        let result = (|| {
            let mut buf = [0u8; 2048];
            drain(src);
            for i in 0u32..100 {
                let sent = Instant::now();
                src.send_to(&i.to_be_bytes(), dst_addr)?;
                // Wait for this probe's echo; a late one from before is skipped.
                while let Ok((n, _)) = src.recv_from(&mut buf) {
                    if buf.get(..n) == Some(&i.to_be_bytes()[..]) {
                        samples.push(sent.elapsed().as_secs_f64() * 1000.0);
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })?;
    anyhow::ensure!(
        samples.len() >= 50,
        "only {} of 100 probes came back",
        samples.len()
    );
    Ok(median(&mut samples))
}

/// Received IP-layer rate of a UDP flow offered at `offer_mbit`, in Mbit/s,
/// over the last 3 of 4 seconds (the first fills the queue).
fn rate_mbit(
    src: &UdpSocket,
    dst: &UdpSocket,
    dst_addr: SocketAddr,
    offer_mbit: f64,
) -> Result<f64> {
    const PAYLOAD: usize = 1472; // 1500-byte IP packets
    const IP_BYTES: f64 = 1500.0;
    dst.set_read_timeout(Some(Duration::from_millis(200)))?;
    drain(dst);
    let per_ms = offer_mbit * 1e6 / 8.0 / IP_BYTES / 1000.0;
    let mut window: Option<(Instant, u64)> = None;
    let mut last = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| pace(src, dst_addr, PAYLOAD, per_ms, Duration::from_secs(4)));
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < Duration::from_secs(6) {
            let Ok(n) = dst.recv(&mut buf) else { break };
            let now = Instant::now();
            if n != PAYLOAD || now < start + Duration::from_secs(1) {
                continue;
            }
            match &mut window {
                None => window = Some((now, 0)),
                Some((_, count)) => *count += 1,
            }
            last = now;
        }
        Ok(())
    })?;
    let (first, count) = window.context("no packets arrived")?;
    let secs = last.duration_since(first).as_secs_f64();
    anyhow::ensure!(secs > 1.0, "the flow lasted only {secs:.2} s");
    Ok(count as f64 * IP_BYTES * 8.0 / secs / 1e6)
}

/// Loss of a counted stream of `packets` small packets, in percent.
fn loss_pct(src: &UdpSocket, dst: &UdpSocket, dst_addr: SocketAddr, packets: u32) -> Result<f64> {
    dst.set_read_timeout(Some(Duration::from_millis(300)))?;
    drain(dst);
    let mut seen = vec![false; packets as usize];
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| {
            // 50 packets a millisecond: well under what the forwarder moves.
            let mut sent = 0u32;
            let start = Instant::now();
            while sent < packets {
                let due = (start.elapsed().as_secs_f64() * 50_000.0) as u32;
                while sent < due.min(packets) {
                    let mut p = [0u8; 100];
                    p[..4].copy_from_slice(&sent.to_be_bytes());
                    let _ = src.send_to(&p, dst_addr);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Ok(n) = dst.recv(&mut buf) else { break };
            if let (100, Some(&[a, b, c, d])) = (n, buf.get(..4)) {
                if let Some(s) = seen.get_mut(u32::from_be_bytes([a, b, c, d]) as usize) {
                    *s = true;
                }
            }
        }
        Ok(())
    })?;
    let got = seen.iter().filter(|&&s| s).count();
    Ok(100.0 * (1.0 - got as f64 / packets as f64))
}

/// Sends `payload`-byte datagrams at `per_ms` a millisecond for `span`.
fn pace(src: &UdpSocket, to: SocketAddr, payload: usize, per_ms: f64, span: Duration) {
    let data = vec![0u8; payload];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < span {
        let due = (start.elapsed().as_secs_f64() * 1000.0 * per_ms) as u64;
        while sent < due {
            let _ = src.send_to(&data, to);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A receive buffer beyond net.core.rmem_max (we are root), so a receiver
/// thread that loses the CPU for a moment does not count as link loss.
fn force_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads one c_int that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!("cannot enlarge the calibration receive buffer");
    }
}

fn drain(sock: &UdpSocket) {
    let _ = sock.set_nonblocking(true);
    let mut buf = [0u8; 2048];
    for _ in 0..100_000 {
        if sock.recv(&mut buf).is_err() {
            break;
        }
    }
    let _ = sock.set_nonblocking(false);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The calibration table as text.
pub fn table(checks: &[Check]) -> String {
    let mut out = format!(
        "{:<30} {:>14} {:>10} {:>8}  {}\n",
        "check", "set", "measured", "error", "within 5%"
    );
    for c in checks {
        out += &format!(
            "{:<30} {:>14} {:>10} {:>7.2}%  {}\n",
            c.what,
            format!("{:.2} {}", c.set, c.unit),
            format!("{:.2}", c.measured),
            c.error_pct,
            match (c.ok, c.remeasured) {
                (true, false) => "yes",
                (true, true) => "yes (re-measured: emulator stalled)",
                (false, _) => "NO",
            }
        );
    }
    out
}
