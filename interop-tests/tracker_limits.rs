//! The tracker faces the internet: slow or idle connections are closed,
//! oversized heads are refused, one address can hold only so many
//! connections and send only so many requests, and a flood from one
//! address does not starve another.

mod harness;
mod tracker_common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use tracker_common::*;

/// A connection from a chosen local address (127.0.0.0/8 is all ours).
fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src: IpAddr = src.parse().unwrap();
    socket.bind(&SocketAddr::new(src, 0).into()).unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = socket.into();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Seconds until the server closes `s` (reading whatever it sends).
fn seconds_until_closed(mut s: TcpStream) -> f64 {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed().as_secs_f64(),
            Ok(_) => {}
        }
    }
}

/// One keep-alive request on `s`; returns the status.
fn keepalive_get(s: &mut TcpStream, target: &str) -> u16 {
    // One write: a request split over segments would meet Nagle and
    // delayed ACKs.
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed mid-reply");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(reply) = parse_reply(&buf) {
            let len: usize = reply.header("content-length").unwrap().parse().unwrap();
            if reply.body.len() >= len {
                return reply.status;
            }
        }
    }
}

#[test]
fn slow_and_idle_connections_are_closed() {
    let dir = temp_dir("track-slow");
    let t = TrackerProc::start(dir.path(), "tracker", &["--header-timeout", "1"]);
    // Slowloris: half a request head, then nothing.
    let mut slow = connect_from("127.0.0.1", t.addr);
    slow.write_all(b"GET /announce?info_hash=").unwrap();
    let slow_wait = seconds_until_closed(slow);
    // Idle keep-alive after one request.
    let mut idle = connect_from("127.0.0.1", t.addr);
    assert_eq!(keepalive_get(&mut idle, "/stats"), 200);
    let idle_wait = seconds_until_closed(idle);
    for w in [slow_wait, idle_wait] {
        assert!((0.5..5.0).contains(&w), "closed after {w} s");
    }
    t.terminate();
}

#[test]
fn oversized_heads_are_refused() {
    let dir = temp_dir("track-heads");
    let t = TrackerProc::start(dir.path(), "tracker", &[]);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = http_raw(
        t.addr,
        format!("GET /stats HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 431);
    let big = "c".repeat(40_000);
    let r = http_raw(
        t.addr,
        format!("GET /stats HTTP/1.1\r\nHost: t\r\nCookie: {big}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 431);
    assert_eq!(t.get("/stats").status, 200);
    t.terminate();
}

#[test]
fn connections_per_address_are_capped() {
    let dir = temp_dir("track-conns");
    let t = TrackerProc::start(
        dir.path(),
        "tracker",
        &["--max-connections-per-ip", "4", "--header-timeout", "10"],
    );
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect_from("127.0.0.1", t.addr)).collect();
    for s in &mut held {
        assert_eq!(keepalive_get(s, "/stats"), 200);
    }
    // The fifth from the same address is closed without an answer...
    let mut fifth = connect_from("127.0.0.1", t.addr);
    let _ = fifth.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut buf = Vec::new();
    let _ = fifth.read_to_end(&mut buf);
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // ...while another address is served.
    let mut other = connect_from("127.0.0.2", t.addr);
    assert_eq!(keepalive_get(&mut other, "/stats"), 200);
    drop(held);
    let mut again = wait_for(Duration::from_secs(5), "a free slot", || {
        let mut s = connect_from("127.0.0.1", t.addr);
        let _ = s.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        (!buf.is_empty()).then_some(buf)
    });
    assert!(parse_reply(&again).unwrap().status == 200);
    again.clear();
    assert!(t.stats()["connections_refused"].as_u64().unwrap() >= 1);
    t.terminate();
}

#[test]
fn rate_limit_answers_429_per_address() {
    let dir = temp_dir("track-rate");
    let t = TrackerProc::start(
        dir.path(),
        "tracker",
        &["--rate-limit", "1", "--rate-burst", "10"],
    );
    let started = Instant::now();
    let mut s = connect_from("127.0.0.1", t.addr);
    let statuses: Vec<u16> = (0..30)
        .map(|i| keepalive_get(&mut s, &format!("/announce?{}", query(1, i, 6000, 1, ""))))
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    // The burst, plus one a second since the start.
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!((10..=10 + refilled).contains(&ok), "{statuses:?}");
    assert_eq!(statuses[..10], [200; 10]);
    assert_eq!(statuses[10], 429);
    let mut other = connect_from("127.0.0.2", t.addr);
    assert_eq!(
        keepalive_get(
            &mut other,
            &format!("/announce?{}", query(1, 99, 6000, 1, ""))
        ),
        200
    );
    let r = http_raw(
        t.addr,
        b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 429, "127.0.0.1 is still over its rate");
    assert!(String::from_utf8_lossy(&r.body).starts_with("d14:failure reason"));
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    std::thread::sleep(Duration::from_millis(1500));
    let stats = t.stats();
    assert!(stats["rate_limited"].as_u64().unwrap() >= 18, "{stats}");
    // Refused announces were not recorded.
    assert_eq!(stats["peers"].as_u64().unwrap(), ok as u64 + 1);
    t.terminate();
}

#[test]
fn a_flood_from_one_address_does_not_starve_another() {
    let dir = temp_dir("track-flood");
    let t = TrackerProc::start(
        dir.path(),
        "tracker",
        &["--rate-limit", "200", "--rate-burst", "200"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..8)
        .map(|n| {
            let (stop, sent, addr) = (Arc::clone(&stop), Arc::clone(&sent), t.addr);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut s = connect_from("127.0.0.1", addr);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let q = query(n, i, 6000, 1, "");
                    keepalive_get(&mut s, &format!("/announce?{q}"));
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    wait_for(Duration::from_secs(10), "the flood to start", || {
        (sent.load(Ordering::Relaxed) > 2000).then_some(())
    });
    let mut worst = Duration::ZERO;
    for i in 0..30 {
        let mut s = connect_from("127.0.0.2", t.addr);
        let started = Instant::now();
        let status = keepalive_get(&mut s, &format!("/announce?{}", query(100, i, 7000, 1, "")));
        worst = worst.max(started.elapsed());
        assert_eq!(status, 200);
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    assert!(
        worst < Duration::from_millis(500),
        "slowest answer to the other address: {worst:?}"
    );
    // Let 127.0.0.1's bucket refill before asking for the figures.
    std::thread::sleep(Duration::from_millis(1500));
    let stats = t.stats();
    assert!(
        stats["rate_limited"].as_u64().unwrap() > 0,
        "the flood was never limited: {stats}"
    );
    t.terminate();
}
