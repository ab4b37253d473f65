//! A legacy client with no Kenosis support (aria2) downloads a Kenosis
//! torrent: inside a network namespace whose resolv.conf points at the DNS
//! bridge on port 53, `<key>.bt.kenosisp2p.org` resolves to the tracker the
//! DHT chooses. Everything runs in the namespace (198.18.0.0/15, no route
//! out): a root Kenosis node, our tracker, the bridge, our seed, aria2.

mod harness;
mod kenosis_common;
mod tracker_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::clients::{aria2, wait_identical};
use harness::netns::Netns;
use harness::{require, temp_dir, write_random_file, Reaped};
use kenosis_common::*;

const ROOT: &str = "198.18.0.1";
const SEED: &str = "198.18.0.2";
const ARIA: &str = "198.18.0.3";
const TRACKER: &str = "198.18.0.4";
const BRIDGE: &str = "198.18.0.53";

/// `/etc/netns/NAME/resolv.conf` (what `ip netns exec` mounts over
/// /etc/resolv.conf), removed with its folder on drop.
struct NetnsResolv(PathBuf);

impl NetnsResolv {
    fn new(ns: &Netns, nameserver: &str) -> NetnsResolv {
        let dir = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:2 attempts:2\n"),
        )
        .unwrap();
        NetnsResolv(dir)
    }
}

impl Drop for NetnsResolv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // Leave /etc/netns itself only if something else uses it.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

fn ours(ns: &Netns) -> Command {
    ns.command(env!("CARGO_BIN_EXE_bitfountain"))
}

#[test]
fn aria2_finds_the_tracker_through_the_dns_bridge() {
    require("aria2c");
    require("dig");
    let dir = temp_dir("kenosis-legacy");
    let ns = Netns::new("kenosis", &[ROOT, SEED, ARIA, TRACKER, BRIDGE]);
    let _resolv = NetnsResolv::new(&ns, BRIDGE);
    let boot = vec![format!("{ROOT}:5005")];

    let mut root = ours(&ns);
    root.args(["kenosis", "--bind", ROOT, "--port", "5005"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _root = Reaped::spawn("kenosis root", &mut root);
    std::thread::sleep(Duration::from_millis(300));

    let dfile = dir.path().join("dstate");
    let dfile_arg = dfile.to_string_lossy().into_owned();
    let tracker = kenosis_tracker(
        dir.path(),
        "tracker",
        ours(&ns),
        TRACKER,
        6969,
        &boot,
        &["--dfile", &dfile_arg],
    );

    let mut dns = ours(&ns);
    dns.args([
        "dns",
        "--zone",
        "bt.kenosisp2p.org",
        "--bind",
        BRIDGE,
        "--port",
        "53",
    ])
    .args(bootstrap_args(&boot))
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("dns.stderr")).unwrap());
    let _dns = Reaped::spawn("bitfountain dns", &mut dns);

    let data = dir.path().join("seed").join("legacy.bin");
    write_random_file(&data, 3 << 20, 41);
    let torrent = dir.path().join("legacy.torrent");
    make_kenosis_torrent(&data, &torrent, 6969);
    let (key, url) = torrent_key(&torrent);

    // The namespace's resolver (the bridge) gives the tracker's address.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = dig_with(ns.command("dig"), BRIDGE, 53, &url.host.name(), "A", false);
        if d.answers == [TRACKER] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bridge answer:\n{}",
            d.text
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let mut seed = ours(&ns);
    seed.arg("get")
        .arg(&torrent)
        .arg("--saveas")
        .arg(&data)
        .args(["--bind", SEED, "--minport", "6881", "--maxport", "6881"])
        .args(bootstrap_args(&boot))
        .env("RUST_LOG", "bitfountain=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("seed.stderr")).unwrap());
    let _seed = Reaped::spawn("bitfountain seed", &mut seed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // (The tracker is only reachable inside the namespace: read its
    // access log rather than asking it from here.)
    while !tracker
        .stdout_text()
        .lines()
        .any(|l| l.starts_with(SEED) && l.contains("/announce"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the seed never reached the tracker"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // aria2 knows nothing of Kenosis: it resolves the announce host with
    // the system resolver (--async-dns=false), i.e. the bridge.
    let got = dir.path().join("aria2");
    std::fs::create_dir_all(&got).unwrap();
    let mut leecher = aria2(&ns, false, &torrent, &got, ARIA);
    let status = leecher
        .wait_timeout(Duration::from_secs(120))
        .expect("aria2 did not finish within 120 s");
    assert!(status.success(), "aria2 failed: {status}");
    assert!(wait_identical(
        &got.join("legacy.bin"),
        &data,
        Duration::from_secs(5)
    ));
    let log = tracker.stdout_text();
    assert!(
        log.lines()
            .any(|l| l.starts_with(ARIA) && l.contains("/announce")),
        "aria2 never announced to the tracker:\n{log}"
    );
    wait_log(
        &tracker,
        &format!("under key {key}"),
        Duration::from_secs(20),
    );

    // The known DHT nodes reach the dfile for a fast rejoin.
    tracker.terminate();
    let saved = std::fs::read(&dfile).unwrap();
    assert!(
        saved.windows(16).any(|w| w == b"13:kenosis_nodes"),
        "no DHT nodes in the dfile"
    );
}
