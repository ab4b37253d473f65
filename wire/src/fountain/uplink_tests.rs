//! Tests of the uplink pacer: one sender's flows through its own uplink,
//! simulated with and without it.

use super::*;
use crate::fountain::sim::{simulate, Setup};

fn report(label: &str, o: &crate::fountain::sim::Outcome) {
    eprintln!(
        "{label}: {:.1} Mbit/s, {:.3} sent per delivered, per flow {:?}",
        o.goodput * 8e-6,
        o.overhead,
        o.per_flow
            .iter()
            .map(|g| (g * 8e-6 * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
}

fn seed_of(flows: usize, uplink_mbit: f64, rtt_ms: u64, loss: f64, shared: bool) -> Setup {
    Setup {
        flows,
        uplink_mbit,
        downlink_mbit: Some(uplink_mbit),
        rtt_ms,
        loss,
        stagger: Duration::from_millis(100),
        secs: 10.0,
        shared,
        lateness: Duration::ZERO,
        ack_jitter: Duration::ZERO,
    }
}

#[test]
fn flows_of_one_sender_share_its_uplink_without_flooding_it() {
    for (flows, mbit, rtt, loss) in [(10, 50.0, 20, 0.01), (4, 100.0, 80, 0.05)] {
        let alone = simulate(&seed_of(flows, mbit, rtt, loss, false));
        let shared = simulate(&seed_of(flows, mbit, rtt, loss, true));
        let label = format!("{flows} flows, {mbit} Mbit/s, rtt {rtt} ms, loss {loss}");
        report(&format!("{label}, each paced alone"), &alone);
        report(&format!("{label}, uplink shared"), &shared);
        let delivered_share = 1.0 - loss; // loss on the receivers' links
        let link = mbit * 1e6 / 8.0;
        assert!(
            shared.goodput > 0.85 * delivered_share * link,
            "{label}: {:.1} Mbit/s",
            shared.goodput * 8e-6
        );
        // Paced alone, the flows' probes and loss compensation overflowed
        // the uplink's queue (1.39 and 1.57 sent per delivered).
        assert!(
            shared.overhead < 1.1 / delivered_share,
            "{label}: {:.3} sent per delivered",
            shared.overhead
        );
        assert!(shared.overhead < alone.overhead);
        // Late flows get their share instead of the crumbs.
        let fair = shared.goodput / flows as f64;
        let least = shared.per_flow.iter().copied().fold(f64::MAX, f64::min);
        assert!(
            least > 0.6 * fair,
            "{label}: a flow got {:.1} Mbit/s",
            least * 8e-6
        );
    }
}

#[test]
fn a_lone_flow_is_not_held_back() {
    let alone = simulate(&seed_of(1, 100.0, 20, 0.0, false));
    let shared = simulate(&seed_of(1, 100.0, 20, 0.0, true));
    report("one flow, paced alone", &alone);
    report("one flow, uplink shared", &shared);
    assert!((shared.goodput - alone.goodput).abs() < 0.01 * alone.goodput);
    let t0 = Instant::now();
    let mut uplink = UplinkPacer::new(PacerConfig::default(), t0);
    for i in 0..1000u64 {
        let wait = uplink.on_send(7, 65_536, t0 + Duration::from_micros(i));
        assert_eq!(wait, Duration::ZERO, "a single flow waits for nobody");
    }
}

#[test]
fn flows_limited_downstream_keep_their_rate() {
    // The receivers' 20 Mbit/s links are the bottleneck, not the uplink.
    let setup = |shared| Setup {
        downlink_mbit: Some(20.0),
        ..seed_of(4, 1000.0, 20, 0.01, shared)
    };
    let alone = simulate(&setup(false));
    let shared = simulate(&setup(true));
    report("4 flows behind 20 Mbit/s links, paced alone", &alone);
    report("4 flows behind 20 Mbit/s links, uplink shared", &shared);
    assert!(
        shared.goodput > 0.95 * alone.goodput,
        "{:.1} vs {:.1} Mbit/s",
        shared.goodput * 8e-6,
        alone.goodput * 8e-6
    );
}

#[test]
fn sharing_flows_wait_their_turn() {
    let t0 = Instant::now();
    let config = PacerConfig {
        initial_rate: 1e6,
        ..PacerConfig::default()
    };
    let mut uplink = UplinkPacer::new(config, t0);
    // At 1 MB/s a 10 KB datagram takes 10 ms of the uplink. The first
    // flow's send, made alone, owes nothing; once a second flow sends, each
    // send queues behind the ones before it.
    assert_eq!(uplink.on_send(1, 10_000, t0), Duration::ZERO);
    assert_eq!(uplink.on_send(2, 10_000, t0), Duration::from_millis(10));
    assert_eq!(uplink.active_flows(t0), 2);
    assert_eq!(uplink.on_send(1, 10_000, t0), Duration::from_millis(20));
    // A flow silent for two rounds no longer counts.
    let later = t0 + Duration::from_millis(150);
    assert_eq!(uplink.active_flows(later), 0);
    assert_eq!(uplink.on_send(2, 10_000, later), Duration::ZERO);
}

#[test]
fn idle_rounds_do_not_lower_the_estimate() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut uplink = UplinkPacer::new(PacerConfig::default(), t0);
    let ack = |delivered: u64, at: Instant| AckDelta {
        delivered,
        accounted: delivered,
        sent_at: at - Duration::from_millis(20),
        min_rtt: Duration::from_millis(20),
        ack_path: Duration::ZERO,
    };
    // Busy rounds: two flows keep ahead of the schedule, 1 MB per 50 ms.
    let mut now = 0;
    for _ in 0..4 {
        for step in 0..50 {
            uplink.on_send(1 + step % 2, 1000, ms(now));
            uplink.on_send(1 + step % 2, 1000, ms(now));
            now += 1;
        }
        uplink.on_ack(ack(1_000_000, ms(now)), ms(now));
    }
    let busy = uplink.bottleneck();
    assert!(busy > 15e6, "{busy}");
    // Then the flows have little to send, one datagram every 10 ms, for
    // longer than the estimate's window.
    for _ in 0..20 {
        for _ in 0..5 {
            uplink.on_send(1, 1000, ms(now));
            now += 10;
        }
        uplink.on_ack(ack(5_000, ms(now)), ms(now));
    }
    let after = uplink.bottleneck();
    assert!(after > 0.9 * busy, "app-limited rounds lowered it: {after}");
}
