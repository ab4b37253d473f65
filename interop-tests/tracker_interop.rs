//! Legacy clients meet through `bitfountain track`: libtorrent, aria2 and
//! Transmission each seed to another one and download from a third, with
//! only our tracker to find each other.
//!
//! Transmission drops peers on 127.0.0.0/8 and keeps one peer per IP, so
//! every test runs in its own network namespace where the tracker, the seed
//! and the leecher each have an address of their own in 198.18.0.0/15 (on
//! the namespace's loopback device; no route leaves it). DHT, LSD, PEX,
//! UPnP/NAT-PMP and uTP are off everywhere. Namespaces and processes are
//! removed by drop guards, so a failing test leaves nothing behind. Needs
//! root (for `ip netns`).

mod harness;
mod tracker_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::*;
use tracker_common::*;

const TRACKER_IP: &str = "198.18.0.1";
const SEED_IP: &str = "198.18.0.2";
const LEECH_IP: &str = "198.18.0.3";
const ANNOUNCE: &str = "http://198.18.0.1:6969/announce";
/// Longest any one transfer may take (Transmission is slow on loopback).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(180);
const PAYLOAD: usize = 6 << 20;

/// A network namespace with the three addresses on its loopback; deleted
/// on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("bft-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run_ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        for ip in [TRACKER_IP, SEED_IP, LEECH_IP] {
            run_ok(Command::new("ip").args([
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{ip}/32"),
                "dev",
                "lo",
            ]));
        }
        ns
    }

    /// `program` run inside the namespace.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// A GET to the tracker from inside the namespace (with Debian's
    /// python3, which the libtorrent tests need anyway).
    fn get(&self, target: &str) -> Vec<u8> {
        const GET: &str = "import sys, urllib.request\n\
            sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=5).read())";
        let url = format!("http://{TRACKER_IP}:6969{target}");
        let out = self
            .cmd("/usr/bin/python3")
            .args(["-c", GET, &url])
            .output()
            .unwrap();
        out.stdout
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::from_slice(&self.get("/stats")).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The shared setup: namespace, payload, torrent, tracker.
struct Scene {
    // Field order is drop order: processes go before the namespace.
    tracker: TrackerProc,
    ns: Netns,
    dir: tempfile::TempDir,
    torrent: PathBuf,
    seed_dir: PathBuf,
    leech_dir: PathBuf,
}

impl Scene {
    fn new(tag: &str) -> Scene {
        for tool in ["ip", "aria2c", "transmission-daemon", "transmission-remote"] {
            require(tool);
        }
        let ns = Netns::new(tag);
        let dir = temp_dir(&format!("trk-{tag}"));
        let seed_dir = dir.path().join("seed");
        let leech_dir = dir.path().join("leech");
        std::fs::create_dir_all(&leech_dir).unwrap();
        let payload = seed_dir.join("payload.bin");
        write_random_file(&payload, PAYLOAD, 0xB17F);
        let torrent = dir.path().join("payload.torrent");
        run_ok(
            bitfountain()
                .args(["make", "--piece-size", "256K", "-o"])
                .arg(&torrent)
                .arg(&payload)
                .arg(ANNOUNCE),
        );
        let tracker = TrackerProc::start_with(
            dir.path(),
            "tracker",
            ns.cmd(env!("CARGO_BIN_EXE_bitfountain")),
            &[
                "--bind",
                TRACKER_IP,
                "--port",
                "6969",
                "--interval",
                "10",
                "--min-interval",
                "2",
            ],
        );
        Scene {
            tracker,
            ns,
            dir,
            torrent,
            seed_dir,
            leech_dir,
        }
    }

    /// Waits until the tracker lists a seed from the seed's address.
    fn wait_for_seed(&self, seeder: &mut Reaped) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.ns.stats()["seeders"].as_u64().unwrap_or(0) >= 1
                && self
                    .tracker
                    .stdout_text()
                    .contains(&format!("{SEED_IP} - - "))
            {
                return;
            }
            if let Ok(Some(status)) = seeder.child.try_wait() {
                panic!("{} exited before seeding: {status}", seeder.name);
            }
            assert!(
                Instant::now() < deadline,
                "the seed never announced:\n{}",
                self.tracker.stdout_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Checks the download and that both parties used our tracker.
    fn check(&self, leech_file: &Path) {
        let want = std::fs::read(self.seed_dir.join("payload.bin")).unwrap();
        let got = std::fs::read(leech_file).unwrap();
        assert!(got == want, "the downloaded file differs from the seed's");
        let log = wait_for(Duration::from_secs(5), "the leecher's announces", || {
            let log = self.tracker.stdout_text();
            log.contains(&format!("{LEECH_IP} - - ")).then_some(log)
        });
        for ip in [SEED_IP, LEECH_IP] {
            let line = log
                .lines()
                .find(|l| l.starts_with(&format!("{ip} - - ")) && l.contains("GET /announce?"))
                .unwrap_or_else(|| panic!("no announce from {ip}:\n{log}"));
            assert!(line.contains("\" 200 "), "{line}");
        }
        assert!(!log.contains("failure"), "{log}");
    }
}

/// Runs until the deadline, watching a child and a completion test.
fn wait_done(child: &mut Reaped, what: &str, mut done: impl FnMut(&mut Reaped) -> bool) {
    let deadline = Instant::now() + TRANSFER_DEADLINE;
    while !done(child) {
        assert!(
            Instant::now() < deadline,
            "{what} did not finish within {TRANSFER_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const LIBTORRENT: &str = r#"
import json, sys, time, libtorrent as lt
mode, torrent, save, ip, port = sys.argv[1:6]
s = lt.session({
    'listen_interfaces': '%s:%s' % (ip, port), 'outgoing_interfaces': ip,
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'alert_mask': lt.alert.category_t.error_notification | lt.alert.category_t.tracker_notification,
})
p = lt.add_torrent_params()
p.ti = lt.torrent_info(torrent)
p.save_path = save
p.flags = lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
if mode == 'seed':
    p.flags |= lt.torrent_flags.seed_mode
h = s.add_torrent(p)
end = time.time() + 300
while time.time() < end:
    for a in s.pop_alerts():
        print(a.message(), file=sys.stderr, flush=True)
    st = h.status()
    if mode == 'leech' and st.is_seeding:
        h.force_reannounce()
        time.sleep(1)
        print(json.dumps({'done': True, 'downloaded': st.total_payload_download}), flush=True)
        sys.exit(0)
    time.sleep(0.2)
sys.exit(3)
"#;

fn libtorrent(scene: &Scene, mode: &str, save: &Path, ip: &str) -> Reaped {
    let mut cmd = scene.ns.cmd("/usr/bin/python3");
    cmd.args(["-c", LIBTORRENT, mode])
        .arg(&scene.torrent)
        .arg(save)
        .args([ip, "6881"])
        .stdout(std::fs::File::create(scene.dir.path().join(format!("lt-{mode}.out"))).unwrap())
        .stderr(std::fs::File::create(scene.dir.path().join(format!("lt-{mode}.err"))).unwrap());
    Reaped::spawn(&format!("libtorrent {mode}"), &mut cmd)
}

fn aria2(scene: &Scene, mode: &str, dir: &Path, ip: &str) -> Reaped {
    let mut cmd = scene.ns.cmd("aria2c");
    cmd.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--async-dns=false",
        "--listen-port=6882",
        "--file-allocation=none",
        "--console-log-level=warn",
        "--summary-interval=0",
        &format!("--interface={ip}"),
    ])
    .arg(format!("--dir={}", dir.display()));
    if mode == "seed" {
        cmd.args(["--bt-seed-unverified=true", "--seed-ratio=0.0"]);
    } else {
        cmd.args(["--seed-time=0"]);
    }
    cmd.arg(&scene.torrent)
        .stdout(std::fs::File::create(scene.dir.path().join(format!("aria2-{mode}.out"))).unwrap())
        .stderr(std::fs::File::create(scene.dir.path().join(format!("aria2-{mode}.err"))).unwrap());
    Reaped::spawn(&format!("aria2 {mode}"), &mut cmd)
}

/// A Transmission daemon with its own config folder; returns it and the
/// file its done-script touches.
fn transmission(scene: &Scene, mode: &str, download_dir: &Path, ip: &str) -> (Reaped, PathBuf) {
    let conf = scene.dir.path().join(format!("transmission-{mode}"));
    std::fs::create_dir_all(&conf).unwrap();
    let done = conf.join("done");
    let script = conf.join("done.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch '{}'\n", done.display())).unwrap();
    run_ok(Command::new("chmod").arg("+x").arg(&script));
    let rpc_port = if mode == "seed" { 9091 } else { 9092 };
    let settings = serde_json::json!({
        "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false,
        "port-forwarding-enabled": false, "utp-enabled": false,
        "peer-port": 51413, "peer-port-random-on-start": false,
        "bind-address-ipv4": ip,
        "rpc-enabled": true, "rpc-port": rpc_port, "rpc-bind-address": "127.0.0.1",
        "rpc-authentication-required": false, "rpc-whitelist-enabled": false,
        "download-dir": download_dir, "incomplete-dir-enabled": false,
        "script-torrent-done-enabled": true, "script-torrent-done-filename": script,
        "ratio-limit-enabled": false, "idle-seeding-limit-enabled": false,
        "speed-limit-up-enabled": false, "speed-limit-down-enabled": false,
        "message-level": 2, "start-added-torrents": true,
    });
    std::fs::write(conf.join("settings.json"), settings.to_string()).unwrap();
    let mut cmd = scene.ns.cmd("transmission-daemon");
    cmd.args(["-f", "-g"])
        .arg(&conf)
        .stdout(std::fs::File::create(conf.join("daemon.out")).unwrap())
        .stderr(std::fs::File::create(conf.join("daemon.err")).unwrap());
    let daemon = Reaped::spawn(&format!("transmission {mode}"), &mut cmd);
    let rpc = format!("127.0.0.1:{rpc_port}");
    // The RPC port opens a moment after start.
    wait_for(Duration::from_secs(20), "transmission's RPC", || {
        let out = scene
            .ns
            .cmd("transmission-remote")
            .args([&rpc, "-l"])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    run_ok(
        scene
            .ns
            .cmd("transmission-remote")
            .args([&rpc, "-a"])
            .arg(&scene.torrent)
            .arg("-w")
            .arg(download_dir),
    );
    (daemon, done)
}

#[test]
fn libtorrent_seeds_aria2_downloads() {
    let scene = Scene::new("lt-aria2");
    let mut seed = libtorrent(&scene, "seed", &scene.seed_dir, SEED_IP);
    scene.wait_for_seed(&mut seed);
    let mut leech = aria2(&scene, "leech", &scene.leech_dir, LEECH_IP);
    wait_done(&mut leech, "aria2", |c| match c.child.try_wait() {
        Ok(Some(status)) => {
            assert!(status.success(), "aria2 failed: {status}");
            true
        }
        _ => false,
    });
    scene.check(&scene.leech_dir.join("payload.bin"));
    // aria2 leaves with `event=stopped&left=0` and no `completed` (that is
    // aria2's way); the tracker must have dropped it and kept the seed.
    let stats = wait_for(Duration::from_secs(10), "aria2's stopped event", || {
        let s = scene.ns.stats();
        (s["peers"].as_u64() == Some(1)).then_some(s)
    });
    assert_eq!(
        (stats["swarms"].as_u64(), stats["seeders"].as_u64()),
        (Some(1), Some(1))
    );
    let log = scene.tracker.stdout_text();
    let last = log.lines().rev().find(|l| l.starts_with(LEECH_IP)).unwrap();
    assert!(
        last.contains("event=stopped") && last.contains("left=0&"),
        "{last}"
    );
}

#[test]
fn aria2_seeds_transmission_downloads() {
    let scene = Scene::new("aria2-tr");
    let mut seed = aria2(&scene, "seed", &scene.seed_dir, SEED_IP);
    scene.wait_for_seed(&mut seed);
    let (mut leech, done) = transmission(&scene, "leech", &scene.leech_dir, LEECH_IP);
    wait_done(&mut leech, "transmission", |c| {
        if let Ok(Some(status)) = c.child.try_wait() {
            panic!("transmission-daemon exited: {status}");
        }
        done.exists()
    });
    scene.check(&scene.leech_dir.join("payload.bin"));
    wait_for(
        Duration::from_secs(30),
        "transmission's completed event",
        || (scene.ns.stats()["completed"].as_u64() >= Some(1)).then_some(()),
    );
}

#[test]
fn transmission_seeds_libtorrent_downloads() {
    let scene = Scene::new("tr-lt");
    let (mut seed, _) = transmission(&scene, "seed", &scene.seed_dir, SEED_IP);
    scene.wait_for_seed(&mut seed);
    let mut leech = libtorrent(&scene, "leech", &scene.leech_dir, LEECH_IP);
    wait_done(&mut leech, "libtorrent", |c| match c.child.try_wait() {
        Ok(Some(status)) => {
            assert!(status.success(), "libtorrent failed: {status}");
            true
        }
        _ => false,
    });
    scene.check(&scene.leech_dir.join("payload.bin"));
    wait_for(
        Duration::from_secs(10),
        "libtorrent's completed event",
        || (scene.ns.stats()["completed"].as_u64() >= Some(1)).then_some(()),
    );
}
