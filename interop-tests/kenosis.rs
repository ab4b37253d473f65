//! Kenosis end to end on loopback: a 50-node DHT test network in this
//! process, three `bitfountain track` processes on 127.0.0.2-4 (all on the
//! URL's port), the DNS bridge, and `bitfountain get` seed and leecher.
//!
//! - every party finds the same tracker (the seed, the leecher, the bridge
//!   and `bitfountain kenosis --lookup`; the other trackers see nothing);
//! - the chosen tracker is killed during a rate-limited download, which
//!   completes through the next tracker; the time from the kill to the first
//!   announce the next tracker answers is printed;
//! - `dig` gets the chosen tracker, and the next one after the kill;
//!   NXDOMAIN, REFUSED and AAAA answers are checked;
//! - garbage to the bridge (UDP and TCP) and from a DHT node crash nothing.

mod harness;
mod kenosis_common;
mod tracker_common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::{bitfountain, clients::wait_identical, require, temp_dir, write_random_file, Reaped};
use kenosis_common::*;
use mainline::Testnet;

const ZONE: &str = "bt.kenosisp2p.org";

#[test]
fn swarm_meets_at_one_tracker_fails_over_and_dns_follows() {
    require("dig");
    let dir = temp_dir("kenosis");
    let testnet = Testnet::builder(50).build().unwrap();
    let boot: Vec<String> = testnet.bootstrap.iter().take(3).cloned().collect();
    let ips = [2u8, 3, 4].map(|n| Ipv4Addr::new(127, 0, 0, n));
    let port = common_free_port(&ips);
    let mut trackers: Vec<Option<_>> = ips
        .iter()
        .map(|ip| {
            let tag = format!("tracker-{ip}");
            let t = kenosis_tracker(
                dir.path(),
                &tag,
                bitfountain(),
                &ip.to_string(),
                port,
                &boot,
                &[],
            );
            Some(t)
        })
        .collect();
    let addrs: Vec<SocketAddrV4> = ips.iter().map(|ip| SocketAddrV4::new(*ip, port)).collect();

    // 8 MiB at 1 MB/s: time to kill a tracker in the middle.
    let data = dir.path().join("data.bin");
    write_random_file(&data, 8 << 20, 77);
    let torrent = dir.path().join("data.torrent");
    make_kenosis_torrent(&data, &torrent, port);
    let (key, url) = torrent_key(&torrent);
    let order = expected_order(&key, &addrs);
    let name = url.host.name();
    let index = |a: SocketAddrV4| addrs.iter().position(|x| *x == a).unwrap();
    println!("key {key}: expected order {order:?}");

    // The bridge, before anyone announced: the service list decides.
    let dns_port = common_free_port(&[Ipv4Addr::LOCALHOST]);
    let mut dns_cmd = bitfountain();
    dns_cmd
        .args(["dns", "--zone", ZONE, "--bind", "127.0.0.1", "--port"])
        .arg(dns_port.to_string())
        .args(bootstrap_args(&boot))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("dns.stderr")).unwrap());
    let _dns = Reaped::spawn("bitfountain dns", &mut dns_cmd);
    let first = wait_dig(dns_port, &name, &order[0].ip().to_string());
    assert_eq!(first.answers.len(), 1, "{}", first.text);
    let ttl_30 = first.text.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() == 5 && f[1..4] == ["30", "IN", "A"]
    });
    assert!(ttl_30, "TTL 30 s:\n{}", first.text);
    let tcp = dig(dns_port, &name, "A", true);
    assert_eq!(tcp.answers, vec![order[0].ip().to_string()], "{}", tcp.text);
    let aaaa = dig(dns_port, &name, "AAAA", false);
    assert_eq!(
        (aaaa.status.as_str(), aaaa.answers.len()),
        ("NOERROR", 0),
        "{}",
        aaaa.text
    );
    for bad in [
        format!("a.b.{ZONE}"),
        format!("under_score.{ZONE}"),
        format!("bad!key.{ZONE}"),
    ] {
        assert_eq!(dig(dns_port, &bad, "A", false).status, "NXDOMAIN", "{bad}");
    }
    for outside in ["example.org", "kenosisp2p.org", "bt.kenosisp2p.org.example"] {
        assert_eq!(
            dig(dns_port, outside, "A", false).status,
            "REFUSED",
            "{outside}"
        );
    }

    // Seed and rate-limited leecher, both Kenosis clients.
    let saved = dir.path().join("got.bin");
    let get = |tag: &str, saveas: &std::path::Path, port: u16, extra: &[&str]| {
        let mut cmd = bitfountain();
        cmd.arg("get")
            .arg(&torrent)
            .arg("--saveas")
            .arg(saveas)
            .args(["--bind", "127.0.0.1", "--minport", &port.to_string()])
            .args(["--maxport", &port.to_string(), "--status-interval", "1"])
            .args(bootstrap_args(&boot))
            .args(extra)
            .env("RUST_LOG", "bitfountain=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("{tag}.stderr"))).unwrap());
        Reaped::spawn(tag, &mut cmd)
    };
    let peer_ports = free_ports(2);
    let _seed = get("seed", &data, peer_ports[0], &[]);
    let mut leecher = get(
        "leecher",
        &saved,
        peer_ports[1],
        &["--max_download_rate", "1000000", "--exit-on-complete"],
    );

    // Both announce to the first tracker in the order, and nowhere else.
    let chosen = index(order[0]);
    let t0 = trackers[chosen].as_ref().unwrap();
    wait_until(
        Duration::from_secs(30),
        "two peers at the chosen tracker",
        || t0.stats()["peers"].as_u64() == Some(2),
    );
    wait_log(t0, &format!("under key {key}"), Duration::from_secs(20));
    for (i, t) in trackers.iter().enumerate() {
        if i != chosen {
            assert_eq!(
                announces(t.as_ref().unwrap()),
                0,
                "{} was announced to",
                addrs[i]
            );
        }
    }
    // A separate lookup now finds the key registered at the same tracker.
    let out = bitfountain()
        .args([
            "kenosis",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--lookup",
            &url.to_string(),
        ])
        .args(bootstrap_args(&boot))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("chosen: {}", order[0])), "{text}");
    assert!(
        text.contains(&format!("{}  serves the key", order[0])),
        "{text}"
    );

    // Kill the chosen tracker mid-download.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        leecher.child.try_wait().unwrap().is_none(),
        "finished too early to test failover"
    );
    let mut dead = trackers[chosen].take().unwrap();
    dead.proc.child.kill().unwrap();
    let killed = Instant::now();
    let _ = dead.proc.child.wait();
    let next = index(order[1]);
    let t1 = trackers[next].as_ref().unwrap();
    wait_until(
        Duration::from_secs(60),
        "an announce at the next tracker",
        || announces(t1) > 0,
    );
    let failover = killed.elapsed();
    println!(
        "failover: {:.0} ms from kill -9 of {} to the first announce answered by {}",
        failover.as_secs_f64() * 1000.0,
        order[0],
        order[1]
    );
    wait_until(
        Duration::from_secs(20),
        "both peers at the next tracker",
        || t1.stats()["peers"].as_u64() == Some(2),
    );
    let last = index(order[2]);
    assert_eq!(
        announces(trackers[last].as_ref().unwrap()),
        0,
        "the third tracker was used"
    );
    // The bridge follows (its watch notices the dead tracker at once).
    wait_dig(dns_port, &name, &order[1].ip().to_string());

    let status = leecher
        .wait_timeout(Duration::from_secs(120))
        .expect("leecher did not finish");
    assert!(status.success(), "leecher failed: {status}");
    assert!(wait_identical(&saved, &data, Duration::from_secs(5)));
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    drop(testnet);
}

/// Asks until the bridge answers `want` (bounded), returning that answer.
fn wait_dig(port: u16, name: &str, want: &str) -> Dig {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = dig(port, name, "A", false);
        if d.answers.iter().any(|a| a == want) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "bridge never answered {want}:\n{}",
            d.text
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_until(timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A fake DHT node answering every query with junk: bad bencode, wrong
/// types, truncated node lists, huge lengths, and echoes.
fn evil_dht_node() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            let Ok((len, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let req = &buf[..len];
            // The transaction id, so some junk looks like the answer.
            let tid = req
                .windows(3)
                .position(|w| w == b"1:t")
                .and_then(|p| {
                    let rest = req.get(p + 3..)?;
                    let colon = rest.iter().position(|b| *b == b':')?;
                    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
                    rest.get(colon + 1..colon + 1 + len)
                })
                .unwrap_or(b"aa")
                .to_vec();
            let t = format!("{}:{}", tid.len(), String::from_utf8_lossy(&tid));
            let junk: Vec<Vec<u8>> = vec![
                format!("d1:rd2:id20:{}5:nodes7:garbagee1:t{t}1:y1:re", "x".repeat(20)).into_bytes(),
                format!("d1:rd2:id3:abc6:valuesli5ei6eee1:t{t}1:y1:re").into_bytes(),
                format!("d1:rd2:id20:{}6:valuesl6:\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}3:abce5:token99999999:xe1:t{t}1:y1:re", "y".repeat(20)).into_bytes(),
                format!("d1:eli201e23:A Generic Error Ocurrede1:t{t}1:y1:ee").into_bytes(),
                format!("d1:rle1:t{t}1:y1:re").into_bytes(),
                format!("d1:t{t}1:y1:r").into_bytes(),
                req.to_vec(),
                (0..len).map(|i| (i as u64 * 31 + n) as u8).collect(),
                vec![b'd'; 1500],
                b"i-0e".to_vec(),
            ];
            for j in junk {
                let _ = sock.send_to(&j, from);
            }
            n += 1;
        }
    });
    addr
}

/// Hostile bytes at the bridge and from the DHT: nothing crashes, and the
/// bridge still answers afterwards (NXDOMAIN for an unknown key: this test
/// network has no tracker at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_and_dht_survive_garbage() {
    use bitfountain::dns::DnsBridge;
    use bitfountain::kenosis::{DhtNode, Lookup, LookupConfig, NodeConfig};

    let testnet = Testnet::builder(10).build().unwrap();
    let evil = evil_dht_node();
    let mut boot = vec![evil.to_string()];
    boot.extend(testnet.bootstrap.iter().take(2).cloned());
    let node = DhtNode::start(NodeConfig {
        bind: Ipv4Addr::LOCALHOST,
        bootstrap: Some(boot),
        server_mode: true,
        ..NodeConfig::default()
    })
    .await
    .unwrap();
    let node_addr = node.local_addr();
    let lookup = Lookup::new(node, LookupConfig::default());
    let counter = lookup.clone();
    let bridge = DnsBridge::start(ZONE, lookup, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bridge.local_addr();

    tokio::task::spawn_blocking(move || {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let valid = dns_query(7, &format!("abc.{ZONE}"), 1);
        let mut state = 0x1234_5678_u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut junk: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            valid[..5].to_vec(),
            valid[..13].to_vec(),
            // 65535 questions announced, one present.
            [&valid[..4], &[0xff, 0xff], &valid[6..]].concat(),
            // A compression pointer to itself.
            [&valid[..12], &[0xc0, 12, 0, 1, 0, 1][..]].concat(),
            // A response, not a query; an unknown opcode.
            [&valid[..2], &[0x81, 0x80], &valid[4..]].concat(),
            [&valid[..2], &[0x78, 0x00], &valid[4..]].concat(),
            // A label longer than 63.
            [&valid[..12], &[64][..], &[b'a'; 64], &[0, 0, 1, 0, 1]].concat(),
        ];
        for _ in 0..300 {
            let mut m = valid.clone();
            for _ in 0..1 + rnd() % 4 {
                let i = (rnd() as usize) % m.len();
                m[i] = rnd() as u8;
            }
            junk.push(m);
            let len = (rnd() % 600) as usize;
            junk.push((0..len).map(|_| rnd() as u8).collect());
        }
        // From a socket of its own: the answers to the junk come in a burst
        // (300 of them share one lookup) and would fill the asking socket's
        // receive buffer, so the kernel dropped the answer to the question
        // below now and then.
        let junk_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for j in &junk {
            junk_udp.send_to(j, addr).unwrap();
            junk_udp.send_to(j, SocketAddr::V4(node_addr)).unwrap();
        }
        // TCP: a huge length prefix, junk, a prefix with nothing after it.
        for raw in [
            &[0xff, 0xff, 1, 2, 3][..],
            &[0, 40, 9, 9, 9][..],
            &[0, 0][..],
            &[7][..],
        ] {
            let mut s = TcpStream::connect(addr).unwrap();
            let _ = s.write_all(raw);
            drop(s);
        }
        // Still answering, over UDP and TCP.
        let mut buf = [0u8; 1500];
        // Asked as a resolver asks over UDP: again after 5 s without an
        // answer (the junk burst may still fill the bridge's receive
        // buffer, and the kernel then drops the question), four times.
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ask = |udp: &UdpSocket, buf: &mut [u8], id: u16, name: &str, qtype: u16| {
            for _ in 0..4 {
                udp.send_to(&dns_query(id, name, qtype), addr).unwrap();
                while let Ok((n, _)) = udp.recv_from(buf) {
                    if let Some((got, rcode, an)) = dns_reply(&buf[..n]) {
                        if got == id {
                            return (rcode, an);
                        }
                    }
                }
            }
            panic!("the bridge stopped answering: no answer to {name} in 4 tries");
        };
        assert_eq!(
            ask(&udp, &mut buf, 901, &format!("abc.{ZONE}"), 1),
            (NXDOMAIN, 0)
        );
        assert_eq!(ask(&udp, &mut buf, 902, "example.org", 1), (REFUSED, 0));
        assert_eq!(
            ask(&udp, &mut buf, 903, &format!("abc.{ZONE}"), 28),
            (NOERROR, 0)
        );
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let q = dns_query(904, &format!("x-y.{ZONE}"), 1);
        s.write_all(&u16::try_from(q.len()).unwrap().to_be_bytes())
            .unwrap();
        s.write_all(&q).unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(dns_reply(&reply), Some((904, NXDOMAIN, 0)));
    })
    .await
    .unwrap();

    // Identical concurrent questions share one lookup.
    let before = counter.dht_lookups();
    let answers = tokio::task::spawn_blocking(move || {
        let socks: Vec<UdpSocket> = (0..16)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, s) in socks.iter().enumerate() {
            let id = 1000 + u16::try_from(i).unwrap();
            s.send_to(&dns_query(id, &format!("same.{ZONE}"), 1), addr)
                .unwrap();
        }
        socks
            .iter()
            .map(|s| {
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                let mut buf = [0u8; 512];
                let (n, _) = s.recv_from(&mut buf).unwrap();
                dns_reply(&buf[..n]).unwrap().1
            })
            .collect::<Vec<u8>>()
    })
    .await
    .unwrap();
    assert_eq!(answers, vec![NXDOMAIN; 16]);
    assert_eq!(
        counter.dht_lookups() - before,
        1,
        "16 questions, one lookup"
    );
    let stats = bridge.stats();
    assert!(stats.nxdomain.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    bridge.shutdown().await;
    drop(testnet);
}
