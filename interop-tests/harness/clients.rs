//! Drivers for the real programs the interop tests run: opentracker,
//! python3-libtorrent, aria2, Transmission, and our own binary, each inside
//! a test's network namespace with its own address.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::{require, Reaped};

/// A tracker port used by every namespace test (namespaces do not share ports).
pub const TRACKER_PORT: u16 = 6969;

/// Debian's opentracker: whitelist-only, so the test lists its info-hashes.
pub fn opentracker(ns: &Netns, ip: &str, dir: &Path, info_hashes: &[String]) -> Reaped {
    require("opentracker");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("whitelist.txt"), info_hashes.join("\n") + "\n").unwrap();
    let port = TRACKER_PORT.to_string();
    // As root it chroots into -d, so the whitelist path is inside it.
    let mut cmd = ns.command("opentracker");
    cmd.args([
        "-i",
        ip,
        "-p",
        &port,
        "-P",
        &port,
        "-u",
        "nobody",
        "-w",
        "/whitelist.txt",
        "-d",
    ])
    .arg(dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let tracker = Reaped::spawn("opentracker", &mut cmd);
    wait_for_port(ns, ip, TRACKER_PORT);
    tracker
}

/// Our tracker, `bitfountain track`, in the namespace.
pub fn our_tracker(ns: &Netns, ip: &str, dfile: &Path) -> Reaped {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_bitfountain"));
    cmd.args([
        "track",
        "--kenosis",
        "0",
        "--bind",
        ip,
        "--port",
        &TRACKER_PORT.to_string(),
        "--dfile",
    ])
    .arg(dfile)
    .stdout(Stdio::null());
    let tracker = Reaped::spawn("bitfountain track", &mut cmd);
    wait_for_port(ns, ip, TRACKER_PORT);
    tracker
}

/// Waits until something listens on `ip:port` inside the namespace.
pub fn wait_for_port(ns: &Netns, ip: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let ok = ns
            .command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on {ip}:{port} in {}", ns.name);
}

/// A python3-libtorrent peer (see lt_client.py). Seeds from or downloads
/// into `save_dir`.
pub fn libtorrent(
    ns: &Netns,
    seed: bool,
    torrent: &Path,
    save_dir: &Path,
    ip: &str,
    peers: &[String],
) -> Reaped {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop-tests/harness/lt_client.py");
    assert!(
        Path::new("/usr/bin/python3").exists(),
        "python3-libtorrent needs /usr/bin/python3"
    );
    let mut cmd = ns.command("/usr/bin/python3");
    cmd.arg(script)
        .arg(if seed { "seed" } else { "leech" })
        .arg(torrent)
        .arg(save_dir)
        .arg(format!("{ip}:6881"))
        .args(peers)
        .stdout(Stdio::null());
    Reaped::spawn(
        if seed {
            "libtorrent seed"
        } else {
            "libtorrent leecher"
        },
        &mut cmd,
    )
}

/// aria2c seeding `dir` (until killed) or downloading into it (exits 0
/// when complete).
pub fn aria2(ns: &Netns, seed: bool, torrent: &Path, dir: &Path, ip: &str) -> Reaped {
    require("aria2c");
    let mut cmd = ns.command("aria2c");
    cmd.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--listen-port=6881",
        "--file-allocation=none",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--async-dns=false",
        "--check-certificate=false",
        &format!("--interface={ip}"),
        &format!("--dir={}", dir.display()),
    ]);
    if seed {
        cmd.args(["--bt-seed-unverified=true", "--seed-ratio=0.0"]);
    } else {
        cmd.args(["--seed-time=0"]);
    }
    cmd.arg(torrent).stdout(Stdio::null());
    Reaped::spawn(if seed { "aria2 seed" } else { "aria2 leecher" }, &mut cmd)
}

/// A Transmission daemon with a private config folder, driven over RPC.
pub struct Transmission {
    pub daemon: Reaped,
    rpc: String,
    ns_name: String,
}

impl Transmission {
    pub fn start(ns: &Netns, ip: &str, config_dir: &Path, download_dir: &Path) -> Transmission {
        require("transmission-daemon");
        require("transmission-remote");
        std::fs::create_dir_all(config_dir).unwrap();
        std::fs::create_dir_all(download_dir).unwrap();
        let settings = serde_json::json!({
            "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
            "port-forwarding-enabled": false, "peer-port": 6881, "peer-port-random-on-start": false,
            "bind-address-ipv4": ip, "bind-address-ipv6": "::1",
            "rpc-enabled": true, "rpc-port": 9091, "rpc-bind-address": ip,
            "rpc-authentication-required": false, "rpc-whitelist-enabled": false,
            "rpc-host-whitelist-enabled": false,
            "download-dir": download_dir, "incomplete-dir-enabled": false,
            "start-added-torrents": true, "encryption": 0, "ratio-limit-enabled": false,
            "speed-limit-up-enabled": false, "speed-limit-down-enabled": false,
            "peer-limit-global": 200, "peer-limit-per-torrent": 60, "message-level": 1,
            "cache-size-mb": 16,
        });
        std::fs::write(
            config_dir.join("settings.json"),
            serde_json::to_vec_pretty(&settings).unwrap(),
        )
        .unwrap();
        let mut cmd = ns.command("transmission-daemon");
        cmd.arg("-f")
            .arg("-g")
            .arg(config_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let daemon = Reaped::spawn("transmission-daemon", &mut cmd);
        wait_for_port(ns, ip, 9091);
        Transmission {
            daemon,
            rpc: format!("{ip}:9091"),
            ns_name: ns.name.clone(),
        }
    }

    fn remote(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_name,
                "transmission-remote",
                &self.rpc,
            ])
            .args(args)
            .output()
            .expect("transmission-remote runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Adds a torrent whose data lives (or will live) in `dir`.
    pub fn add(&self, torrent: &Path, dir: &Path) {
        let out = self.remote(&["-a", torrent.to_str().unwrap(), "-w", dir.to_str().unwrap()]);
        assert!(
            out.contains("success"),
            "transmission-remote -a failed: {out}"
        );
    }

    /// Percent done of the first torrent, from `transmission-remote -i`.
    pub fn percent_done(&self) -> f64 {
        let info = self.remote(&["-t", "1", "-i"]);
        info.lines()
            .find_map(|l| l.trim().strip_prefix("Percent Done:"))
            .and_then(|v| v.trim().trim_end_matches('%').parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the first torrent is 100% done (verified).
    pub fn wait_done(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.percent_done() >= 100.0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        false
    }

    pub fn info(&self) -> String {
        self.remote(&["-t", "1", "-i"])
    }
}

/// `bitfountain get` in the namespace, bound to `ip`, status as JSON lines
/// into `log`.
pub fn ours(
    ns: &Netns,
    torrent: &Path,
    saveas: &Path,
    ip: &str,
    extra: &[&str],
    log: &Path,
) -> Reaped {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_bitfountain"));
    cmd.arg("get")
        .arg(torrent)
        .arg("--saveas")
        .arg(saveas)
        .args([
            "--bind",
            ip,
            "--minport",
            "6881",
            "--maxport",
            "6889",
            "--json",
            "--status-interval",
            "1",
        ])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("BF_TEST_LOG").unwrap_or_else(|_| "bitfountain=debug".into()),
        )
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("stderr")).unwrap());
    Reaped::spawn("bitfountain get", &mut cmd)
}

/// Waits for `file` (or every file under a folder) to equal `expected`.
pub fn wait_identical(got: &Path, expected: &Path, timeout: Duration) -> bool {
    wait_until_same(got, expected, timeout, false)
}

/// Like [`wait_identical`], but a zero-length file of `expected` may be
/// missing from `got`: Transmission 3.00 never creates empty files.
pub fn wait_identical_but_empty_files(got: &Path, expected: &Path, timeout: Duration) -> bool {
    wait_until_same(got, expected, timeout, true)
}

fn wait_until_same(
    got: &Path,
    expected: &Path,
    timeout: Duration,
    empty_may_be_missing: bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if compare_tree(got, expected, empty_may_be_missing) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

/// Byte-for-byte equality of two files or two folders (every file of `b`
/// exists in `a` with the same bytes).
pub fn same_tree(a: &Path, b: &Path) -> bool {
    compare_tree(a, b, false)
}

fn compare_tree(a: &Path, b: &Path, empty_may_be_missing: bool) -> bool {
    if !b.is_dir() {
        return same_file(a, b);
    }
    walk(b).iter().all(|entry| {
        let mine = a.join(entry.strip_prefix(b).unwrap());
        let skip = empty_may_be_missing
            && !mine.exists()
            && std::fs::metadata(entry)
                .map(|m| m.len() == 0)
                .unwrap_or(false);
        skip || same_file(&mine, entry)
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
