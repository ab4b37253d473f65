//! Evil peers against our node while it downloads from an honest seed: an
//! absurd length prefix, a short bitfield, set spare bits, HAVE out of
//! range, requests for pieces it lacks, 100,000 queued requests, blocks
//! never asked for, corrupt blocks, poisoned coded symbols, coded symbols
//! never asked for or with an ESI past 2^24, a peer that
//! says nothing and one that trickles a byte a second. Our node completes
//! with the right bytes, keeps printing status every second, bans every
//! offender and no honest peer, drops the silent ones within the handshake
//! timeout, and after a bounded soak of 150 more hostile connections and
//! 400 silent ones its memory has grown by less than the stated bound, its
//! descriptors stayed bounded, and it still serves a fresh leecher the
//! whole file.

mod harness;

use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::evil::{Evil, EvilPeer};
use harness::node::*;
use harness::*;
use wire::{Limits, Metainfo};

/// Not a multiple of 8 pieces of 64 KiB, so a bitfield has spare bits.
const SIZE: usize = (64 << 20) - 100_000;
/// The honest seed's upload limit: the download takes about 8 s, so the
/// evil peers act while it runs.
const SEED_RATE: u64 = 8 << 20;
/// Growth of our node's resident memory allowed over the soak.
const RSS_GROWTH_MIB: u64 = 32;
/// Peak resident memory allowed over the whole test.
const RSS_PEAK_MIB: u64 = 128;
/// The handshake timeout (20 s) plus slack.
const SILENT_CLOSE: Duration = Duration::from_secs(26);

#[test]
fn evil_peers_are_banned_and_the_download_completes_from_honest_ones() {
    let t0 = Instant::now();
    let s = setup_sized("evil", SIZE, &["--piece-size", "64K"]);
    let meta = Metainfo::from_bytes(&std::fs::read(&s.torrent).unwrap(), &Limits::DEFAULT).unwrap();
    let (hash, geometry) = (meta.info.info_hash, meta.info.geometry);
    assert_ne!(geometry.piece_count() % 8, 0);
    let coded = ["--coded".to_owned(), "auto".to_owned()];

    let seed_port = free_port("127.0.0.2");
    let mut seed_args = coded.to_vec();
    seed_args.extend(["--max_upload_rate".into(), SEED_RATE.to_string()]);
    let _seed = Reaped::spawn(
        "honest seed",
        get_cmd(&s.torrent, &s.data, "127.0.0.2", seed_port, &seed_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Evil peers our node connects to.
    let listening: Vec<EvilPeer> = [
        ("127.0.0.3", Evil::CorruptEveryBlock),
        ("127.0.0.4", Evil::ShortBitfield),
        ("127.0.0.5", Evil::SpareBits),
        ("127.0.0.6", Evil::HaveOutOfRange),
        ("127.0.0.7", Evil::OversizedLength),
        ("127.0.0.8", Evil::Unrequested),
        ("127.0.0.9", Evil::Silent),
    ]
    .into_iter()
    .map(|(ip, evil)| EvilPeer::start(ip, hash, geometry, s.data.clone(), evil))
    .collect();

    let saveas = s.dir.path().join("out.bin");
    let log = s.dir.path().join("node.log");
    let port = free_port("127.0.0.1");
    let node_addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut args = coded.to_vec();
    args.extend(["--peer".into(), format!("127.0.0.2:{seed_port}")]);
    for e in &listening {
        args.extend(["--peer".into(), e.addr.to_string()]);
    }
    let mut node = Reaped::spawn(
        "our node",
        get_cmd(&s.torrent, &saveas, "127.0.0.1", port, &args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let pid = node.child.id();
    let rx = status_lines(&mut node.child);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("first status line");
    // Evil peers that connect to our node.
    let connecting: Vec<EvilPeer> = [
        ("127.0.0.20", Evil::RequestsForMissing),
        ("127.0.0.21", Evil::RequestFlood),
        ("127.0.0.22", Evil::PoisonedSymbols),
        ("127.0.0.25", Evil::UnrequestedSymbols),
        ("127.0.0.26", Evil::EsiOutOfRange),
        ("127.0.0.23", Evil::Silent),
        ("127.0.0.24", Evil::Trickle),
    ]
    .into_iter()
    .map(|(ip, evil)| EvilPeer::connect(ip, node_addr, hash, geometry, s.data.clone(), evil))
    .collect();
    let connected_at = Instant::now();

    // The download completes; status lines keep coming every second.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_line = Instant::now();
    let mut worst_gap = Duration::ZERO;
    let done = loop {
        let v = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no status for 10 s:\n{}", tail(&log)));
        worst_gap = worst_gap.max(last_line.elapsed());
        last_line = Instant::now();
        if v["pieces_have"] == v["pieces_total"] {
            break v;
        }
        if Instant::now() > deadline {
            panic!(
                "not complete in 90 s: {v}\n{}",
                ban_lines(&std::fs::read_to_string(&log).unwrap())
            );
        }
    };
    eprintln!(
        "[{:?}] complete; longest gap between status lines {worst_gap:?}; wasted {}",
        t0.elapsed(),
        done["wasted"]
    );
    assert!(
        worst_gap < Duration::from_secs(3),
        "status stalled for {worst_gap:?}"
    );
    assert!(
        std::fs::read(&saveas).unwrap() == std::fs::read(&s.data).unwrap(),
        "the file differs"
    );

    // The silent and trickling peers are dropped within the handshake timeout.
    for e in connecting.iter().chain(&listening) {
        if matches!(e.evil, Evil::Silent | Evil::Trickle) {
            let until = connected_at + SILENT_CLOSE;
            while e.closed_after().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            let closed = e.closed_after();
            assert!(
                closed.is_some(),
                "{:?} at {} still connected",
                e.evil,
                e.addr
            );
            eprintln!("{:?} at {}: dropped after {closed:?}", e.evil, e.addr);
        }
    }
    // Every other offender is banned; the honest seed is not.
    let text = std::fs::read_to_string(&log).unwrap();
    // Ban lines end with the address: "banned: <why> ip=127.0.0.3".
    let ban_reason = |text: &str, ip: &str| {
        text.lines()
            .find(|l| l.contains("banned:") && l.trim_end().ends_with(&format!("ip={ip}")))
            .map(str::to_owned)
    };
    let banned = |text: &str, ip: &str| ban_reason(text, ip).is_some();
    for e in connecting.iter().chain(&listening) {
        if matches!(e.evil, Evil::Silent | Evil::Trickle) {
            continue;
        }
        let ip = e.addr.ip().to_string();
        assert!(
            banned(&text, &ip),
            "{:?} at {ip} was not banned:\n{}",
            e.evil,
            ban_lines(&text)
        );
        let why = ban_reason(&text, &ip).unwrap_or_default();
        assert!(
            expected_reason(e.evil).iter().any(|r| why.contains(r)),
            "{:?} at {ip}: banned for the wrong reason: {why}",
            e.evil
        );
        eprintln!(
            "{:?} at {ip}: banned (sent {}, requests {})",
            e.evil,
            e.sent(),
            e.record.requests.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    assert!(
        !banned(&text, "127.0.0.2"),
        "the honest seed was banned:\n{}",
        ban_lines(&text)
    );
    let flood = connecting
        .iter()
        .find(|e| e.evil == Evil::RequestFlood)
        .unwrap();
    assert!(
        flood
            .record
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            > 2000
    );
    let poison = connecting
        .iter()
        .find(|e| e.evil == Evil::PoisonedSymbols)
        .unwrap();
    assert!(
        poison.sent() > 0,
        "the poisoner was never asked for symbols"
    );

    // A bounded soak: 150 hostile connections (at most 6 at once, at most
    // 15 s) from 50 more addresses, while our node seeds.
    drop(connecting);
    drop(listening);
    let (rss_before, _) = rss_kib(pid);
    let soak_start = Instant::now();
    let kinds = [
        Evil::OversizedLength,
        Evil::RequestFlood,
        Evil::ShortBitfield,
        Evil::Unrequested,
        Evil::HaveOutOfRange,
        Evil::RequestsForMissing,
    ];
    let mut soaked = 0;
    while soaked < 150 && soak_start.elapsed() < Duration::from_secs(15) {
        let batch: Vec<EvilPeer> = (0..6)
            .map(|i| {
                let n = soaked + i;
                let ip = format!("127.0.9.{}", n % 50 + 1);
                EvilPeer::connect(
                    &ip,
                    node_addr,
                    hash,
                    geometry,
                    s.data.clone(),
                    kinds[n % kinds.len()],
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(batch);
        soaked += 6;
    }
    // A horde of 400 silent connections from 100 addresses: waiting
    // handshakes are capped, so our node's descriptors stay bounded.
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let fds_before = fds();
    let horde: Vec<std::net::TcpStream> = (0..400)
        .filter_map(|i| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            let src: std::net::SocketAddr = format!("127.0.8.{}:0", i % 100 + 1).parse().ok()?;
            socket.bind(&src.into()).ok()?;
            socket
                .connect_timeout(&node_addr.into(), Duration::from_secs(2))
                .ok()?;
            Some(socket.into())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let fds_horde = fds();
    eprintln!(
        "{} silent connections: our node's descriptors {fds_before} -> {fds_horde}",
        horde.len()
    );
    assert!(horde.len() >= 300, "only {} connections made", horde.len());
    assert!(
        fds_horde < fds_before + 200,
        "descriptors grew from {fds_before} to {fds_horde} with {} silent connections",
        horde.len()
    );
    drop(horde);
    std::thread::sleep(Duration::from_secs(1));
    let (rss_after, peak) = rss_kib(pid);
    eprintln!(
        "soak: {soaked} connections in {:?}; RSS {} MiB before, {} MiB after, peak {} MiB (bounds: +{RSS_GROWTH_MIB} MiB, {RSS_PEAK_MIB} MiB)",
        soak_start.elapsed(),
        rss_before / 1024,
        rss_after / 1024,
        peak / 1024
    );
    assert!(
        rss_after <= rss_before + RSS_GROWTH_MIB * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(peak <= RSS_PEAK_MIB * 1024, "peak RSS {peak} KiB");

    // Still responsive: a fresh honest leecher gets the whole file from it.
    let fresh = s.dir.path().join("fresh.bin");
    let mut leech = Reaped::spawn(
        "fresh leecher",
        get_cmd(
            &s.torrent,
            &fresh,
            "127.0.0.30",
            free_port("127.0.0.30"),
            &[
                "--peer".into(),
                node_addr.to_string(),
                "--exit-on-complete".into(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null()),
    );
    let status = leech.wait_timeout(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "fresh leecher: {status:?}"
    );
    assert!(std::fs::read(&fresh).unwrap() == std::fs::read(&s.data).unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    for honest in ["127.0.0.2", "127.0.0.30"] {
        assert!(
            !banned(&text, honest),
            "{honest} banned:\n{}",
            ban_lines(&text)
        );
    }
    assert!(rx.try_iter().last().is_some(), "status lines stopped");
    eprintln!("[{:?}] done", t0.elapsed());
}

/// What the ban line of each misbehaviour may say.
fn expected_reason(evil: Evil) -> &'static [&'static str] {
    match evil {
        Evil::CorruptEveryBlock => &["failed its hash", "corrupt block"],
        Evil::OversizedLength => &["exceeds the"],
        Evil::ShortBitfield => &["bad bitfield: bitfield is"],
        Evil::SpareBits => &["spare bits"],
        Evil::HaveOutOfRange => &["have for piece"],
        Evil::RequestsForMissing => &["pieces we do not have"],
        Evil::RequestFlood => &["request flood"],
        Evil::Unrequested => &["blocks we never asked for"],
        Evil::PoisonedSymbols | Evil::SubtlePoison => {
            &["poisoned symbols", "decode to a wrong piece"]
        }
        Evil::UnrequestedSymbols => &["symbols never requested", "requested"],
        Evil::EsiOutOfRange => &["is out of range"],
        Evil::Silent | Evil::Trickle => &[""],
    }
}

fn ban_lines(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("banned") || l.contains("strike"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
