//! Coded transfer (`bf_raptorq`) between real processes: over QUIC and over
//! TCP, in a swarm with legacy clients, from several senders one of them
//! slow, with a sender killed mid-piece, with UDP blocked, and with a
//! poisoner among honest senders; a seed spreading its upload over the
//! pieces it sent least. Every party runs in a network namespace
//! the test creates, with its own 198.18.x address.

mod harness;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::clients::{self, Transmission};
use harness::evil::{Evil, EvilPeer};
use harness::netns::Netns;
use harness::node::{statuses_in, u};
use harness::*;

const TRACKER_IP: &str = "198.18.0.1";
/// Nothing listens here: peers are given with --peer.
const NO_TRACKER: &str = "http://198.18.0.1:9/announce";
const TIMEOUT: Duration = Duration::from_secs(180);

/// One at a time: two cores, real processes.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A dataset under `dir/name` and its torrent.
struct Data {
    _root: tempfile::TempDir,
    source: PathBuf,
    torrent: PathBuf,
    total: u64,
}

fn dataset(tag: &str, files: &[(&str, usize)], announce: &str) -> Data {
    let root = temp_dir(tag);
    let source = if files.len() == 1 {
        root.path().join("src").join(files[0].0)
    } else {
        root.path().join("src").join("set")
    };
    for (i, (name, len)) in files.iter().enumerate() {
        let path = if files.len() == 1 {
            source.clone()
        } else {
            source.join(name)
        };
        write_random_file(&path, *len, 100 + i as u64);
    }
    let torrent = root.path().join("data.torrent");
    run_ok(
        bitfountain()
            .arg("make")
            .arg(&source)
            .arg(announce)
            .args(["--piece-size", "256K", "-o"])
            .arg(&torrent),
    );
    Data {
        _root: root,
        source,
        torrent,
        total: files.iter().map(|(_, l)| *l as u64).sum(),
    }
}

fn last_status(log: &Path) -> serde_json::Value {
    statuses_in(log)
        .pop()
        .unwrap_or_else(|| panic!("no status in {}:\n{}", log.display(), tail(log)))
}

/// The last lines of a log and its stderr, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default()
        + &std::fs::read_to_string(path.with_extension("stderr")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Bytes a process has read so far (files and sockets: `rchar`).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rchar in /proc/{pid}/io"))
}

fn stderr_of(log: &Path) -> String {
    std::fs::read_to_string(log.with_extension("stderr")).unwrap_or_default()
}

fn wait_ok(proc: &mut Reaped, what: &str, log: &Path) {
    let status = proc.wait_timeout(TIMEOUT);
    assert!(
        matches!(status, Some(s) if s.success()),
        "{what} did not finish ({status:?}):\n{}",
        tail(log)
    );
}

/// A seed of ours at `ip` (port 6881) serving `data`.
fn seed(ns: &Netns, data: &Data, ip: &str, extra: &[&str], log: &Path) -> Reaped {
    let s = clients::ours(ns, &data.torrent, &data.source, ip, extra, log);
    clients::wait_for_port(ns, ip, 6881);
    s
}

fn leech_args<'a>(peers: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--exit-on-complete"];
    for p in peers {
        v.extend(["--peer", p.as_str()]);
    }
    v.extend_from_slice(extra);
    v
}

fn one_to_one(transport: &str) {
    let _s = serial();
    let data = dataset(
        "coded-multi",
        &[
            ("a/first.bin", 40 << 20),
            ("a/b/second.bin", (20 << 20) + 12_345),
            ("third.bin", (4 << 20) - 12_345),
        ],
        NO_TRACKER,
    );
    let ns = Netns::new("coded1", &["198.18.0.2", "198.18.0.3"]);
    let work = temp_dir("coded-one");
    let seed_log = work.path().join("seed.log");
    let seed = seed(&ns, &data, "198.18.0.2", &[], &seed_log);
    // From the seed's first status on, its check of the data is done and
    // what it reads is what it serves.
    let deadline = Instant::now() + TIMEOUT;
    while statuses_in(&seed_log).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no seed status:\n{}",
            tail(&seed_log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let read_before = bytes_read(seed.child.id());
    let log = work.path().join("leech.log");
    let saveas = work.path().join("got");
    let peers = ["198.18.0.2:6881".to_owned()];
    let mut leech = clients::ours(
        &ns,
        &data.torrent,
        &saveas,
        "198.18.0.3",
        &leech_args(&peers, &["--coded", "only", "--coded-transport", transport]),
        &log,
    );
    wait_ok(&mut leech, "coded leecher", &log);
    // Each piece read once (its read-ahead and its sender share the read,
    // and the read-ahead stays within the piece cache); socket reads of
    // requests and acknowledgements count too, a little.
    let served = bytes_read(seed.child.id()) - read_before;
    eprintln!(
        "{transport}: the seed read {:.3}× the data to serve it",
        served as f64 / data.total as f64
    );
    assert!(
        served <= data.total + data.total / 20,
        "the seed read {served} bytes to serve {} ({:.2}×)",
        data.total,
        served as f64 / data.total as f64
    );
    assert!(clients::same_tree(&saveas, &data.source), "copy differs");
    let end = last_status(&log);
    assert_eq!(u(&end, "received_plain"), 0, "{end}");
    assert!(u(&end, "received_coded") >= data.total, "{end}");
    let quic = stderr_of(&log).contains("quic=true");
    assert_eq!(quic, transport == "quic", "transport used:\n{}", tail(&log));
}

/// Acceptance 1: a 64 MiB multi-file torrent, coded over QUIC datagrams.
#[test]
fn multi_file_torrent_downloads_coded_over_quic() {
    one_to_one("quic");
}

/// Acceptance 1: the same, coded over the TCP connection.
#[test]
fn multi_file_torrent_downloads_coded_over_tcp() {
    one_to_one("tcp");
}

/// Acceptance 2: our seed, two coded leechers of ours, and Transmission,
/// aria2 and libtorrent leechers in one swarm through our tracker; every
/// copy is right, the coded leechers got symbols, and no legacy peer was
/// ever sent an extended message beyond the handshake.
#[test]
fn mixed_swarm_with_legacy_clients() {
    let _s = serial();
    let announce = format!("http://{TRACKER_IP}:6969/announce");
    let data = dataset("coded-mixed", &[("mixed.bin", 32 << 20)], &announce);
    let ips = [
        "198.18.0.2",
        "198.18.0.3",
        "198.18.0.4",
        "198.18.0.5",
        "198.18.0.6",
        "198.18.0.7",
    ];
    let mut all = vec![TRACKER_IP];
    all.extend(ips);
    let ns = Netns::new("mixed", &all);
    let work = temp_dir("coded-mixed-run");
    let _tracker = clients::our_tracker(&ns, TRACKER_IP, &work.path().join("dstate"));
    let seed_log = work.path().join("seed.log");
    // Upload limits make the transfer last several status intervals, so
    // every legacy client shows up in the status lines checked below.
    let rate = ["--max_upload_rate", "4000000"];
    let _seed = seed(&ns, &data, ips[0], &rate, &seed_log);
    let name = data.source.file_name().unwrap().to_owned();
    let mut coded = Vec::new();
    for (i, ip) in ips[1..3].iter().enumerate() {
        let log = work.path().join(format!("coded{i}.log"));
        let saveas = work.path().join(format!("coded{i}")).join(&name);
        let mut args = vec!["--exit-on-complete"];
        args.extend(rate);
        let proc = clients::ours(&ns, &data.torrent, &saveas, ip, &args, &log);
        coded.push((proc, log, saveas));
    }
    let (lt_dir, aria_dir, tr_dir) = (
        work.path().join("lt"),
        work.path().join("aria"),
        work.path().join("tr"),
    );
    for d in [&lt_dir, &aria_dir, &tr_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut lt = clients::libtorrent(&ns, false, &data.torrent, &lt_dir, ips[3], &[]);
    let mut aria = clients::aria2(&ns, false, &data.torrent, &aria_dir, ips[4]);
    let transmission = Transmission::start(&ns, ips[5], &work.path().join("tr-config"), &tr_dir);
    transmission.add(&data.torrent, &tr_dir);
    for (proc, log, _) in &mut coded {
        wait_ok(proc, "coded leecher", log);
    }
    for (what, proc) in [("libtorrent", &mut lt), ("aria2", &mut aria)] {
        wait_ok(proc, what, &seed_log);
    }
    assert!(
        transmission.wait_done(TIMEOUT),
        "transmission did not finish: {}",
        transmission.info()
    );
    for (_, log, saveas) in &coded {
        assert!(
            clients::same_tree(saveas, &data.source),
            "{} differs",
            saveas.display()
        );
        let end = last_status(log);
        assert!(
            u(&end, "received_coded") > 0,
            "coded leecher got no symbols: {end}"
        );
    }
    for got in [lt_dir.join(&name), aria_dir.join(&name), tr_dir.join(&name)] {
        assert!(
            clients::same_tree(&got, &data.source),
            "{} differs",
            got.display()
        );
    }
    // Every status line of every one of ours: legacy peers (no bf_raptorq)
    // were sent no extended message at all beyond the handshake.
    let mut legacy_seen = std::collections::BTreeSet::new();
    let logs = std::iter::once(seed_log.clone()).chain(coded.iter().map(|(_, l, _)| l.clone()));
    for log in logs {
        for status in statuses_in(&log) {
            for peer in status["peers"].as_array().into_iter().flatten() {
                if peer["coded"] == false {
                    legacy_seen.insert(peer["addr"].as_str().unwrap_or("").to_owned());
                    assert_eq!(
                        peer["extended_sent"], 0,
                        "legacy peer sent an extension message: {peer}"
                    );
                }
            }
        }
    }
    for ip in &ips[3..6] {
        assert!(
            legacy_seen.iter().any(|a| a.starts_with(&format!("{ip}:"))),
            "legacy client at {ip} never seen as a legacy peer: {legacy_seen:?}"
        );
    }
}

/// Acceptance 3: one leecher pulling from three of our seeds, one of them
/// ten times slower: pieces come mostly from the fast ones, and the symbols
/// received add up to at most 1.02 times the file. Over QUIC the symbols
/// come as datagrams (several senders share pieces); over TCP as messages.
#[test]
fn three_senders_one_slow_over_quic() {
    three_senders_one_slow("quic");
}

#[test]
fn three_senders_one_slow_over_tcp() {
    three_senders_one_slow("tcp");
}

fn three_senders_one_slow(transport: &str) {
    let _s = serial();
    let data = dataset("coded-three", &[("three.bin", 32 << 20)], NO_TRACKER);
    let ips = ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"];
    let ns = Netns::new("three", &ips);
    let work = temp_dir(&format!("coded-three-{transport}"));
    let mut seeds = Vec::new();
    for (i, ip) in ips[..3].iter().enumerate() {
        let rate = if i == 2 { "400000" } else { "4000000" };
        let log = work.path().join(format!("seed{i}.log"));
        seeds.push(seed(&ns, &data, ip, &["--max_upload_rate", rate], &log));
    }
    let log = work.path().join("leech.log");
    let saveas = work.path().join("got.bin");
    let peers: Vec<String> = ips[..3].iter().map(|ip| format!("{ip}:6881")).collect();
    let mut leech = clients::ours(
        &ns,
        &data.torrent,
        &saveas,
        ips[3],
        &leech_args(&peers, &["--coded", "only", "--coded-transport", transport]),
        &log,
    );
    wait_ok(&mut leech, "leecher", &log);
    assert!(clients::same_tree(&saveas, &data.source));
    let end = last_status(&log);
    let received = u(&end, "downloaded");
    eprintln!(
        "{transport}: received {received} bytes of symbols for {} ({:.4}x), wasted {}",
        data.total,
        received as f64 / data.total as f64,
        u(&end, "wasted")
    );
    assert!(received as f64 <= 1.02 * data.total as f64, "{end}");
    // Per sender, from the status lines while they were connected.
    let mut by_sender = std::collections::BTreeMap::<String, u64>::new();
    for status in statuses_in(&log) {
        for peer in status["peers"].as_array().into_iter().flatten() {
            let addr = peer["addr"].as_str().unwrap_or("").to_owned();
            let got = peer["downloaded_coded"].as_u64().unwrap_or(0);
            let e = by_sender.entry(addr).or_default();
            *e = (*e).max(got);
        }
    }
    let slow = by_sender.get("198.18.0.4:6881").copied().unwrap_or(0);
    let fast: Vec<u64> = ["198.18.0.2:6881", "198.18.0.3:6881"]
        .iter()
        .map(|a| by_sender.get(*a).copied().unwrap_or(0))
        .collect();
    eprintln!("per sender: {by_sender:?}");
    assert!(
        fast.iter().all(|&f| f > 2 * slow),
        "fast senders must carry the load: {by_sender:?}"
    );
}

/// Acceptance 4: a sender killed while pieces are half received; the
/// download completes from the other, and what the dead one delivered was
/// used: everything received adds up to the file, nothing wasted to speak of.
#[test]
fn sender_killed_mid_piece() {
    let _s = serial();
    let data = dataset("coded-kill", &[("kill.bin", 24 << 20)], NO_TRACKER);
    let ips = ["198.18.0.2", "198.18.0.3", "198.18.0.4"];
    let ns = Netns::new("kill", &ips);
    let work = temp_dir("coded-kill-run");
    let rate = ["--max_upload_rate", "3000000"];
    let _stays = seed(&ns, &data, ips[0], &rate, &work.path().join("seed0.log"));
    let mut leaves = seed(&ns, &data, ips[1], &rate, &work.path().join("seed1.log"));
    let log = work.path().join("leech.log");
    let saveas = work.path().join("got.bin");
    let peers: Vec<String> = ips[..2].iter().map(|ip| format!("{ip}:6881")).collect();
    let mut leech = clients::ours(
        &ns,
        &data.torrent,
        &saveas,
        ips[2],
        &leech_args(&peers, &["--coded", "only", "--coded-transport", "tcp"]),
        &log,
    );
    // Kill the second seed once the leecher has a third of the file.
    let deadline = Instant::now() + TIMEOUT;
    let from_killed = loop {
        assert!(Instant::now() < deadline, "no progress:\n{}", tail(&log));
        std::thread::sleep(Duration::from_millis(100));
        let Some(s) = statuses_in(&log).pop() else {
            continue;
        };
        if u(&s, "have_bytes") * 3 >= data.total {
            let got = s["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["addr"] == "198.18.0.3:6881")
                .and_then(|p| p["downloaded_coded"].as_u64())
                .unwrap_or(0);
            let _ = leaves.child.kill();
            let _ = leaves.child.wait();
            break got;
        }
    };
    assert!(from_killed > 0, "the killed seed had sent nothing yet");
    wait_ok(&mut leech, "leecher", &log);
    assert!(clients::same_tree(&saveas, &data.source));
    let end = last_status(&log);
    let (received, wasted) = (u(&end, "downloaded"), u(&end, "wasted"));
    eprintln!("killed seed had sent {from_killed}; received {received}, wasted {wasted}");
    assert!(
        wasted as f64 <= 0.01 * data.total as f64,
        "symbols thrown away after the sender left: {end}"
    );
    assert!(received as f64 <= 1.02 * data.total as f64, "{end}");
}

/// Acceptance 5: with UDP dropped in the namespace, coded peers fall back to
/// coded messages over TCP and complete.
#[test]
fn udp_blocked_falls_back_to_tcp() {
    let _s = serial();
    require("nft");
    let data = dataset("coded-noudp", &[("noudp.bin", 16 << 20)], NO_TRACKER);
    let ns = Netns::new("noudp", &["198.18.0.2", "198.18.0.3"]);
    assert!(
        ns.sh("nft add table inet bf && nft add chain inet bf in '{ type filter hook input priority 0; policy accept; }' && nft add rule inet bf in meta l4proto udp drop"),
        "cannot install the nft rule"
    );
    let work = temp_dir("coded-noudp-run");
    let _seed = seed(&ns, &data, "198.18.0.2", &[], &work.path().join("seed.log"));
    let log = work.path().join("leech.log");
    let saveas = work.path().join("got.bin");
    let peers = ["198.18.0.2:6881".to_owned()];
    let mut leech = clients::ours(
        &ns,
        &data.torrent,
        &saveas,
        "198.18.0.3",
        &leech_args(&peers, &["--coded", "only"]),
        &log,
    );
    wait_ok(&mut leech, "leecher", &log);
    assert!(clients::same_tree(&saveas, &data.source));
    let end = last_status(&log);
    assert!(u(&end, "received_coded") >= data.total, "{end}");
    let err = stderr_of(&log);
    assert!(
        err.contains("quic=false") && !err.contains("quic=true"),
        "{}",
        tail(&log)
    );
}

/// Acceptance 6: a poisoner among two honest coded seeds: the file is
/// right, the poisoner is banned, no honest seed is.
#[test]
fn poisoner_is_banned_and_honest_senders_are_not() {
    let _s = serial();
    let data = dataset("coded-poison", &[("poison.bin", 16 << 20)], NO_TRACKER);
    let ips = ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"];
    let ns = Netns::new("poison", &ips);
    let work = temp_dir("coded-poison-run");
    let rate = ["--max_upload_rate", "4000000"];
    let _a = seed(&ns, &data, ips[0], &rate, &work.path().join("seed0.log"));
    let _b = seed(&ns, &data, ips[1], &rate, &work.path().join("seed1.log"));
    // The evil peer runs in this process; it needs an address in the
    // namespace: enter it on a thread of its own.
    let meta = wire::Metainfo::from_bytes(
        &std::fs::read(&data.torrent).unwrap(),
        &wire::Limits::DEFAULT,
    )
    .unwrap();
    let source = data.source.clone();
    let ns_name = ns.name.clone();
    let (info_hash, geometry) = (meta.info.info_hash, meta.info.geometry);
    let evil = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns_name}")).unwrap();
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        EvilPeer::start(
            "198.18.0.4",
            info_hash,
            geometry,
            source,
            Evil::SubtlePoison,
        )
    })
    .join()
    .unwrap();
    let log = work.path().join("leech.log");
    let saveas = work.path().join("got.bin");
    let peers = vec![
        "198.18.0.2:6881".to_owned(),
        "198.18.0.3:6881".to_owned(),
        evil.addr.to_string(),
    ];
    let mut leech = clients::ours(
        &ns,
        &data.torrent,
        &saveas,
        ips[3],
        &leech_args(&peers, &["--coded", "only", "--coded-transport", "tcp"]),
        &log,
    );
    wait_ok(&mut leech, "leecher", &log);
    assert!(clients::same_tree(&saveas, &data.source), "wrong bytes");
    assert!(
        evil.record.sent.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the poisoner was never asked for symbols"
    );
    let text = stderr_of(&log);
    let bans: Vec<&str> = text.lines().filter(|l| l.contains("banned")).collect();
    assert!(
        bans.iter().any(|l| l.contains("198.18.0.4")),
        "poisoner not banned:\n{}",
        tail(&log)
    );
    for honest in &ips[..2] {
        assert!(
            !bans.iter().any(|l| l.contains(honest)),
            "honest {honest} banned:\n{bans:?}"
        );
    }
}

/// A seed suggests what each coded leecher takes from it, each piece once
/// before any twice (`coded::suggest`): with the seed's uplink the narrow
/// path, three leechers take about one copy from it and the rest from each
/// other. Leechers choosing for themselves took the same pieces at once.
#[test]
fn a_seed_uploads_each_piece_once_before_any_twice() {
    let _s = serial();
    let data = dataset("coded-spread", &[("spread.bin", 32 << 20)], NO_TRACKER);
    let ips = ["198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"];
    let ns = Netns::new("spread", &ips);
    let work = temp_dir("coded-spread-run");
    let seed_log = work.path().join("seed.log");
    let _seed = seed(
        &ns,
        &data,
        ips[0],
        &["--max_upload_rate", "4000000"],
        &seed_log,
    );
    let mut leechers = Vec::new();
    for (i, ip) in ips[1..].iter().enumerate() {
        // Each knows the seed and the leechers started before it; they
        // stay once complete, as in a swarm.
        let peers: Vec<String> = ips[..=i].iter().map(|ip| format!("{ip}:6881")).collect();
        let mut args: Vec<&str> = Vec::new();
        for p in &peers {
            args.extend(["--peer", p.as_str()]);
        }
        args.extend(["--coded", "only", "--coded-transport", "tcp"]);
        let log = work.path().join(format!("leech{i}.log"));
        let saveas = work.path().join(format!("got{i}.bin"));
        let proc = clients::ours(&ns, &data.torrent, &saveas, ip, &args, &log);
        leechers.push((proc, log, saveas));
    }
    let deadline = Instant::now() + TIMEOUT;
    for (_, log, saveas) in &leechers {
        while statuses_in(log)
            .last()
            .is_none_or(|v| u(v, "have_bytes") != data.total)
        {
            assert!(Instant::now() < deadline, "not complete:\n{}", tail(log));
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(clients::same_tree(saveas, &data.source), "copy differs");
    }
    // The seed's status line lags its counters by up to two intervals.
    std::thread::sleep(Duration::from_millis(2500));
    let uploaded = u(&last_status(&seed_log), "uploaded");
    let copies = uploaded as f64 / data.total as f64;
    eprintln!("the seed uploaded {copies:.3} copies to three leechers");
    // Measured: 1.09 copies; 1.28 when leechers chose for themselves. The
    // tail still goes out twice: once every piece was suggested, a leecher
    // that took its share is suggested pieces another has not got to.
    assert!(copies <= 1.18, "the seed uploaded {copies:.3} copies");
}
