//! Tests of the datagram pacer: unit checks and link simulations.

use super::*;
use crate::fountain::sim::{self, Link, Outcome, Setup};

/// Runs the pacer over the link for `secs`; returns (goodput bytes/s,
/// datagrams sent per datagram delivered).
fn simulate(rate_mbit: f64, rtt_ms: u64, loss: f64, secs: f64) -> (f64, f64) {
    simulate_with(rate_mbit, rtt_ms, loss, secs, Duration::ZERO)
}

/// `bunch`: acknowledgements are held back and delivered together at
/// this period (ack compression).
fn simulate_with(rate_mbit: f64, rtt_ms: u64, loss: f64, secs: f64, bunch: Duration) -> (f64, f64) {
    let start = Instant::now();
    let delay = Duration::from_millis(rtt_ms / 2);
    let bdp = (rate_mbit * 1e6 / 8.0 * (rtt_ms as f64 / 1000.0)).max(30_000.0);
    let mut link = Link::new(rate_mbit, bdp, delay, loss, start);
    let mut pacer = DatagramPacer::new(PacerConfig::default(), start);
    let size = 1036;
    let mut arrivals: VecDeque<(Instant, u32)> = VecDeque::new();
    let (mut received, mut highest, mut sent) = (0u64, 0u32, 0u64);
    let mut next_ack = start;
    let mut now = start;
    let end = start + Duration::from_secs_f64(secs);
    let mut pending_acks: VecDeque<(Instant, u32, u64, u32)> = VecDeque::new();
    let mut highest_us = 0u32;
    while now < end {
        // Send whatever the pacer allows up to now.
        while pacer.next_send_time(now) <= now {
            let seq = pacer.on_send(size, now);
            sent += 1;
            if let Some(at) = link.send(size, now) {
                arrivals.push_back((at, seq));
            }
        }
        // Deliver arrivals; the receiver acks every 5 ms.
        while arrivals.front().is_some_and(|(at, _)| *at <= now) {
            let (_, seq) = arrivals.pop_front().unwrap();
            received += size as u64;
            highest = highest.max(seq);
            highest_us = (now - start).as_micros() as u32;
        }
        if now >= next_ack && received > 0 {
            pending_acks.push_back((now + delay, highest, received, highest_us));
            next_ack = now + Duration::from_millis(5);
        }
        let release = bunch.is_zero() || (now - start).as_micros() % bunch.as_micros().max(1) < 200;
        while release && pending_acks.front().is_some_and(|(at, _, _, _)| *at <= now) {
            let (_, h, r, us) = pending_acks.pop_front().unwrap();
            pacer.on_ack(h, r, us, now);
        }
        now += Duration::from_micros(200);
    }
    let goodput = received as f64 / secs;
    (goodput, sent as f64 * size as f64 / received.max(1) as f64)
}

#[test]
fn flows_sharing_a_bottleneck_do_not_flood_it() {
    for (flows, rtt, loss) in [(2, 20, 0.01), (4, 20, 0.0), (4, 80, 0.05)] {
        let Outcome {
            goodput, overhead, ..
        } = sim::simulate(&Setup {
            flows,
            uplink_mbit: 20.0,
            downlink_mbit: None,
            rtt_ms: rtt,
            loss,
            stagger: Duration::ZERO,
            secs: 8.0,
            shared: false,
            lateness: Duration::ZERO,
            ack_jitter: Duration::ZERO,
        });
        eprintln!(
            "{flows} flows rtt {rtt} loss {loss}: {:.1} Mbit/s, {overhead:.3} sent per delivered",
            goodput * 8e-6
        );
        let link = 20e6 / 8.0;
        assert!(
            goodput > 0.8 * (1.0 - loss) * link,
            "{flows} flows: goodput {:.1} Mbit/s",
            goodput * 8e-6
        );
        assert!(
            overhead < 1.15 / (1.0 - loss),
            "{flows} flows rtt {rtt} loss {loss}: sent {overhead:.3} per delivered"
        );
    }
}

#[test]
fn fills_a_clean_link_without_flooding_it() {
    let (goodput, overhead) = simulate(100.0, 20, 0.0, 6.0);
    eprintln!(
        "clean: {:.1} Mbit/s, {overhead:.3} sent per delivered",
        goodput * 8e-6
    );
    let link = 100e6 / 8.0;
    assert!(
        goodput > 0.85 * link,
        "goodput {:.1} Mbit/s",
        goodput * 8e-6
    );
    assert!(overhead < 1.05, "sent {overhead:.3} per delivered");
}

#[test]
fn random_loss_costs_only_the_loss() {
    for (rtt, loss) in [(20, 0.05), (80, 0.05), (80, 0.10)] {
        let (goodput, overhead) = simulate(100.0, rtt, loss, 8.0);
        eprintln!(
            "rtt {rtt} loss {loss}: {:.1} Mbit/s, {overhead:.3} sent per delivered",
            goodput * 8e-6
        );
        let link = 100e6 / 8.0;
        assert!(
            goodput > 0.8 * (1.0 - loss) * link,
            "rtt {rtt} loss {loss}: goodput {:.1} Mbit/s",
            goodput * 8e-6
        );
        assert!(
            overhead < 1.1 / (1.0 - loss),
            "rtt {rtt} loss {loss}: sent {overhead:.3} per delivered"
        );
    }
}

#[test]
fn bunched_acknowledgements_do_not_inflate_the_rate() {
    let (goodput, overhead) = simulate_with(100.0, 2, 0.0, 4.0, Duration::from_millis(20));
    eprintln!(
        "bunched acks: {:.1} Mbit/s, {overhead:.3} sent per delivered",
        goodput * 8e-6
    );
    assert!(
        goodput > 0.8 * 100e6 / 8.0,
        "goodput {:.1} Mbit/s",
        goodput * 8e-6
    );
    // Acks held back for ten round trips blur the probe and measure
    // rounds; read as bandwidth, the bursts used to cost 1.7.
    assert!(
        overhead < 1.2,
        "sent {overhead:.3} per delivered: the burst of acks read as bandwidth"
    );
}

#[test]
fn a_rate_sample_spans_at_least_64_kib_or_50_ms() {
    let t0 = Instant::now();
    let at = |us: u64| t0 + Duration::from_micros(us);
    let mut p = DatagramPacer::new(PacerConfig::default(), t0);
    // 1 KiB datagrams, one a millisecond, acknowledged every four for
    // the first 40: samples of 4 KiB (4 ms apart) are too small to take.
    let mut received = 0;
    for seq in 0..200u32 {
        let sent = p.on_send(1024, at(u64::from(seq) * 1000));
        assert_eq!(sent, seq);
        received += 1024;
        if seq % 4 == 3 && seq < 40 {
            let us = u64::from(seq) * 1000;
            p.on_ack(seq, received, us as u32, at(us));
        }
    }
    assert_eq!(p.bottleneck(), 0.0, "samples of 4 KiB are noise");
    // Once 64 KiB (or 50 ms) lie between the reference and an ack, the
    // rate is measured over all of it.
    p.on_ack(199, received, 199_000, at(199_000));
    let bw = p.bottleneck();
    assert!(bw > 0.0 && bw < 2e6, "{bw}");
}

#[test]
fn sequence_order_wraps() {
    assert!(seq_before(1, 2));
    assert!(seq_before(u32::MAX, 0));
    assert!(!seq_before(2, 1));
    assert!(!seq_before(5, 5));
}

/// A seed's flows (1 and 4) over 50 Mbit/s, 20 ms, 1% links, their uplink
/// shared: each run must deliver `share` of the links' capacity at no more
/// than 1.1 bytes sent per byte delivered.
fn assert_seed_flows_keep_their_rate(
    label: &str,
    lateness: Duration,
    ack_jitter: Duration,
    share: f64,
) {
    for flows in [1, 4] {
        let Outcome {
            goodput, overhead, ..
        } = sim::simulate(&Setup {
            flows,
            uplink_mbit: 50.0,
            downlink_mbit: Some(50.0),
            rtt_ms: 20,
            loss: 0.01,
            stagger: Duration::from_millis(100),
            secs: 10.0,
            shared: true,
            lateness,
            ack_jitter,
        });
        eprintln!(
            "{flows} flows, {label}: {:.1} Mbit/s, {overhead:.3} sent per delivered",
            goodput * 8e-6
        );
        assert!(
            goodput > share * 0.99 * 50e6 / 8.0,
            "{flows} flows: {:.1} Mbit/s",
            goodput * 8e-6
        );
        assert!(overhead < 1.1, "{flows} flows: {overhead:.3}");
    }
}

#[test]
fn a_sender_woken_late_keeps_its_rate() {
    // Senders woken on a millisecond timer and up to 3 ms late (a busy
    // machine): each late spell used to read as a slower path, and the
    // rate spiralled down to a few Mbit/s.
    assert_seed_flows_keep_their_rate("woken late", Duration::from_millis(3), Duration::ZERO, 0.9);
}

#[test]
fn late_acknowledgements_do_not_starve_a_flow() {
    // The seed of the bench's seed-departure scenario: its acknowledgements
    // come back up to 150 ms after the 20 ms path's round trip (they queue
    // behind the receivers' own uploads and wait for busy receivers). The
    // window, sized on the minimum round trip, then held each flow to a
    // window per late acknowledgement, and the deliveries that allowed
    // lowered the estimate until the flows crawled.
    assert_seed_flows_keep_their_rate(
        "late acknowledgements",
        Duration::ZERO,
        Duration::from_millis(150),
        0.8,
    );
}

#[test]
fn one_way_delays_tell_a_queue_from_late_acknowledgements() {
    // One datagram a millisecond, 10 ms each way, the receiver's clock
    // far from ours. From 0.3 s acknowledgements come back 50 ms late;
    // from 0.6 s datagrams also wait 20 ms in a queue on the way out.
    let t0 = Instant::now();
    let ms = |n: u64| Duration::from_millis(n);
    let mut p = DatagramPacer::new(PacerConfig::default(), t0);
    let mut acks: VecDeque<(Instant, u32, u64, u32)> = VecDeque::new();
    let mut received = 0u64;
    let mut seen = Vec::new();
    for i in 0..900u64 {
        let now = t0 + ms(i);
        while acks.front().is_some_and(|(at, ..)| *at <= now) {
            let (at, seq, got, us) = acks.pop_front().unwrap();
            p.on_ack(seq, got, us, at);
        }
        if i == 299 || i == 599 || i == 899 {
            seen.push(p.path_delays());
        }
        let seq = p.on_send(1000, now);
        let queue = if i >= 600 { 20 } else { 0 };
        let late = if i >= 300 { 50 } else { 0 };
        received += 1000;
        let receive_us = 3_000_000_000u32.wrapping_add(((i + 10 + queue) * 1000) as u32);
        acks.push_back((now + ms(20 + queue + late), seq, received, receive_us));
    }
    let near = |d: Duration, want: u64| d.abs_diff(ms(want)) <= ms(3);
    let [(q0, a0), (q1, a1), (q2, a2)] = seen[..] else {
        panic!("{seen:?}")
    };
    assert!(near(q0, 0) && near(a0, 0), "prompt: {seen:?}");
    // Late acknowledgements are not a queue; the window covers them.
    assert!(near(q1, 0) && near(a1, 50), "late: {seen:?}");
    // A queue on the way out is one, whatever the acknowledgements do.
    assert!(near(q2, 20) && near(a2, 50), "queued: {seen:?}");
}
