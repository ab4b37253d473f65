//! `bitfountain track` as a process: announce and scrape semantics, the
//! index page, `/stats`, the access log, the allow-list, IPv6 peers, and
//! malformed requests that must change nothing.

mod harness;
mod tracker_common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use harness::*;
use tracker_common::*;
use wire::tracker::ScrapeStats;

#[test]
fn announce_scrape_index_stats_and_log() {
    let dir = temp_dir("track-basic");
    // A published torrent gives the index page a name.
    let torrents = dir.path().join("torrents");
    std::fs::create_dir(&torrents).unwrap();
    write_random_file(&dir.path().join("data/Some <File> & Co.bin"), 40_000, 3);
    run_ok(
        bitfountain()
            .args(["make", "-o"])
            .arg(torrents.join("x.torrent"))
            .arg(dir.path().join("data/Some <File> & Co.bin"))
            .arg("http://127.0.0.1:1/announce"),
    );
    let t = TrackerProc::start(
        dir.path(),
        "tracker",
        &[
            "--rate-limit",
            "0",
            "--allowed-dir",
            torrents.to_str().unwrap(),
            "--allowed-dir-names-only",
            "--interval",
            "900",
        ],
    );

    // Three leechers and a seed in swarm 1; one peer in swarm 2.
    let first = t.announce(&query(1, 1, 6001, 500, "&event=started"));
    assert!(first.peers.is_empty(), "the requester is never listed");
    assert_eq!(
        (first.complete, first.incomplete, first.interval),
        (0, 1, 900)
    );
    t.announce(&query(1, 2, 6002, 500, "&event=started"));
    t.announce(&query(1, 3, 6003, 0, "&event=started"));
    t.announce(&query(2, 4, 6004, 9, ""));
    let r = t.announce(&query(1, 4, 6005, 500, ""));
    let ports: HashSet<u16> = r.peers.iter().map(|p| p.addr.port()).collect();
    assert_eq!(ports, HashSet::from([6001, 6002, 6003]));
    assert_eq!((r.complete, r.incomplete), (1, 3));
    assert!(
        r.peers.iter().all(|p| p.peer_id.is_none()),
        "compact by default"
    );

    // Dictionary form with and without peer ids.
    let d = t.announce(&query(1, 4, 6005, 500, "&compact=0"));
    let ids: HashSet<Vec<u8>> = d
        .peers
        .iter()
        .map(|p| p.peer_id.unwrap().0.to_vec())
        .collect();
    assert_eq!(
        ids,
        HashSet::from([
            peer_id(1).to_vec(),
            peer_id(2).to_vec(),
            peer_id(3).to_vec()
        ])
    );
    let d = t.announce(&query(1, 4, 6005, 500, "&compact=0&no_peer_id=1"));
    assert_eq!(d.peers.len(), 3);
    assert!(d.peers.iter().all(|p| p.peer_id.is_none()));
    // numwant is honoured and clamped.
    assert_eq!(
        t.announce(&query(1, 4, 6005, 500, "&numwant=1"))
            .peers
            .len(),
        1
    );
    for n in 100..400 {
        t.announce(&query(3, n, 7000 + n as u16, 1, ""));
    }
    assert_eq!(
        t.announce(&query(3, 100, 7100, 1, "&numwant=100000"))
            .peers
            .len(),
        200
    );
    assert_eq!(t.announce(&query(3, 100, 7100, 1, "")).peers.len(), 50);

    // `completed` counts once; `stopped` removes the peer.
    t.announce(&query(1, 1, 6001, 0, "&event=completed"));
    t.announce(&query(1, 1, 6001, 0, "&event=completed"));
    t.announce(&query(1, 2, 6002, 500, "&event=stopped"));
    let files = t.scrape(&[hash(1), hash(2), hash(99)]);
    assert_eq!(
        files,
        vec![
            (
                hash(1),
                ScrapeStats {
                    complete: 2,
                    downloaded: 1,
                    incomplete: 1
                }
            ),
            (
                hash(2),
                ScrapeStats {
                    complete: 0,
                    downloaded: 0,
                    incomplete: 1
                }
            ),
            (hash(99), ScrapeStats::default()),
        ]
    );
    let full = t.get("/scrape");
    assert!(
        String::from_utf8_lossy(&full.body).contains("failure reason"),
        "{}",
        full.text()
    );

    let stats = t.stats();
    assert_eq!(stats["swarms"], 3);
    assert_eq!(stats["peers"], 3 + 1 + 300);
    assert_eq!(stats["seeders"], 2);
    assert_eq!(stats["completed"], 1);

    let page = t.get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    let hex1 = hash(1).to_hex();
    assert!(html.contains(&format!("<code>{hex1}</code>")), "{html}");
    assert!(html.contains("Some &lt;File&gt; &amp; Co.bin"), "{html}");
    assert!(!html.contains("<File>"));
    assert!(html.contains("<td class=\"n\">2</td><td class=\"n\">1</td><td class=\"n\">1</td>"));
    assert_eq!(t.get("/nowhere").status, 404);

    // Every request is in the access log, in Common Log Format.
    let log = wait_for(Duration::from_secs(5), "access log", || {
        let text = t.stdout_text();
        text.contains("GET /nowhere HTTP/1.1\" 404").then_some(text)
    });
    let line = log.lines().find(|l| l.contains("event=stopped")).unwrap();
    let re_ok = line.starts_with("127.0.0.1 - - [")
        && line.contains(" +0000] \"GET /announce?info_hash=")
        && line.ends_with(&format!(
            "HTTP/1.1\" 200 {}",
            line.rsplit(' ').next().unwrap()
        ));
    assert!(re_ok, "{line}");
    // One line per request: 313 announces, 2 scrapes, /stats, / and /nowhere.
    assert_eq!(log.lines().count(), 318);
    t.terminate();
}

#[test]
fn malformed_requests_get_failures_and_change_nothing() {
    let dir = temp_dir("track-malformed");
    let t = TrackerProc::start(dir.path(), "tracker", &["--rate-limit", "0"]);
    t.announce(&query(1, 1, 6001, 10, ""));
    t.announce(&query(1, 2, 6002, 0, ""));
    let before = (t.scrape(&[hash(1), hash(2)]), t.stats()["peers"].clone());

    let good = query(2, 9, 6009, 5, "");
    let short_hash = good.replacen("info_hash=", "info_hash=%00", 1).replacen(
        &format!("info_hash=%00{}", wire::tracker::percent_encode(&hash(2).0)),
        "info_hash=%00%01%02",
        1,
    );
    let long_hash = good.replacen("info_hash=", "info_hash=%00", 1);
    let cases: Vec<(&str, String)> = vec![
        ("short info_hash", short_hash),
        ("long info_hash", long_hash),
        ("missing port", good.replace("&port=6009", "")),
        ("port 0", good.replace("port=6009", "port=0")),
        ("port too big", good.replace("port=6009", "port=70000")),
        ("non-numeric left", good.replace("left=5", "left=five")),
        (
            "negative uploaded",
            good.replace("uploaded=0", "uploaded=-1"),
        ),
        (
            "missing peer_id",
            good.split("&peer_id").next().unwrap().to_owned() + "&port=1&left=0",
        ),
        ("bad escape", good.replace("left=5", "left=5%zz")),
        ("bad event", good + "&event=exploded"),
        ("many params", query(2, 9, 6009, 5, &"&x=1".repeat(200))),
    ];
    for (what, q) in &cases {
        let reason = t.announce_failure(q);
        assert!(!reason.is_empty(), "{what}");
    }
    // Oversized queries: 414 with a bencoded reason from the tracker, or
    // 431 from the HTTP layer when the whole head is over its limit.
    let ten_thousand_short = format!("{}{}", query(2, 9, 6009, 5, ""), "&a".repeat(10_000));
    let ten_thousand = format!("{}{}", query(2, 9, 6009, 5, ""), "&x=1".repeat(10_000));
    let oversized = format!("{}&pad={}", query(2, 9, 6009, 5, ""), "a".repeat(9000));
    for (what, q, expect) in [
        ("10,000 short params", ten_thousand_short, 414),
        ("oversized query", oversized, 414),
        ("10,000 params", ten_thousand, 431),
    ] {
        let r = t.get(&format!("/announce?{q}"));
        assert_eq!(r.status, expect, "{what}: {}", r.text());
        if expect == 414 {
            assert!(
                String::from_utf8_lossy(&r.body).starts_with("d14:failure reason"),
                "{what}"
            );
        }
    }
    let scrape_bad = t.get("/scrape?info_hash=abc");
    assert!(String::from_utf8_lossy(&scrape_bad.body).contains("failure reason"));
    let r = http_raw(
        t.addr,
        b"POST /announce HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 405);
    let r = http_raw(t.addr, b"GARBAGE\r\n\r\n").unwrap();
    assert_eq!(r.status, 400);

    let after = (t.scrape(&[hash(1), hash(2)]), t.stats()["peers"].clone());
    assert_eq!(before, after, "a refused request changed the state");
    let stats = t.stats();
    assert_eq!(stats["swarms"], 1);
    assert!(stats["failures"].as_u64().unwrap() >= cases.len() as u64 + 3);
    t.terminate();
}

#[test]
fn allow_list_refuses_unlisted_swarms() {
    let dir = temp_dir("track-allow");
    let list = dir.path().join("allow.txt");
    std::fs::write(
        &list,
        format!("# published\n{}\n", hash(1).to_hex().to_uppercase()),
    )
    .unwrap();
    let t = TrackerProc::start(dir.path(), "tracker", &["--allow", list.to_str().unwrap()]);
    t.announce(&query(1, 1, 6001, 0, ""));
    let reason = t.announce_failure(&query(2, 1, 6001, 0, ""));
    assert!(reason.contains("not authorized"), "{reason}");
    assert_eq!(t.stats()["swarms"], 1);
    assert_eq!(t.stats()["allowed"], 1);
    t.terminate();
}

#[test]
fn client_ip_is_ignored_unless_enabled() {
    let dir = temp_dir("track-ip");
    for (flag, expected) in [
        (None, "127.0.0.1"),
        (Some("--allow-client-ip"), "198.18.7.7"),
    ] {
        let mut args = vec!["--rate-limit", "0"];
        args.extend(flag);
        let t = TrackerProc::start(dir.path(), "tracker", &args);
        t.announce(&query(1, 1, 6001, 0, "&ip=198.18.7.7"));
        let r = t.announce(&query(1, 2, 6002, 0, ""));
        assert_eq!(
            r.peers[0].addr,
            format!("{expected}:6001").parse::<SocketAddr>().unwrap()
        );
        t.terminate();
    }
}

#[test]
fn ipv6_peers_go_to_peers6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        panic!("IPv6 loopback is unavailable; this test needs ::1");
    }
    let dir = temp_dir("track-v6");
    let t = TrackerProc::start(
        dir.path(),
        "tracker",
        &["--bind", "::", "--rate-limit", "0"],
    );
    let v4 = SocketAddr::from(([127, 0, 0, 1], t.addr.port()));
    let v6: SocketAddr = format!("[::1]:{}", t.addr.port()).parse().unwrap();
    let announce_from = |addr: SocketAddr, q: &str| {
        let r = http_get(addr, &format!("/announce?{q}"));
        match wire::tracker::TrackerReply::decode(&r.body, &wire::Limits::DEFAULT).unwrap() {
            wire::tracker::TrackerReply::Announce(a) => (a, r.body),
            other => panic!("{other:?}"),
        }
    };
    announce_from(v6, &query(1, 1, 6001, 0, ""));
    let (r, body) = announce_from(v4, &query(1, 2, 6002, 0, ""));
    assert_eq!(r.peers.len(), 1);
    assert_eq!(r.peers[0].addr, "[::1]:6001".parse::<SocketAddr>().unwrap());
    assert!(body.windows(11).any(|w| w == b"6:peers618:"), "{body:?}");
    // The IPv6 peer gets the IPv4 one (seen as 127.0.0.1, not ::ffff:…).
    let (r, _) = announce_from(v6, &query(1, 1, 6001, 0, ""));
    assert_eq!(
        r.peers[0].addr,
        "127.0.0.1:6002".parse::<SocketAddr>().unwrap()
    );
    t.terminate();
}
