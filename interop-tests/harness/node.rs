//! Our own `bitfountain get` processes on loopback: a generated file and its
//! torrent, the command line with JSON status lines, and those lines read
//! back. Shared by the engine and hostile-input tests.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{bitfountain, run_ok, temp_dir, write_random_file};

/// A free TCP port on `ip` (bound and released; good enough on loopback).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temp folder with `data.bin` (pseudo-random, `size` bytes) and its
/// torrent `data.torrent`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub torrent: PathBuf,
}

/// Makes the data and torrent; `extra` goes to `make` (e.g. a piece size).
pub fn setup_sized(tag: &str, size: usize, extra: &[&str]) -> Setup {
    let dir = temp_dir(tag);
    let data = dir.path().join("data.bin");
    write_random_file(&data, size, 7);
    let torrent = dir.path().join("data.torrent");
    // No tracker answers there: peers are given with --peer.
    run_ok(
        bitfountain()
            .arg("make")
            .arg(&data)
            .arg("http://127.0.0.1:9/announce")
            .arg("-o")
            .arg(&torrent)
            .args(extra),
    );
    Setup { dir, data, torrent }
}

/// `bitfountain get` of `torrent` on `ip:port`, with JSON status lines every
/// second, plain transfer only unless `extra` names a `--coded` mode. Logs
/// at info level, or as `BF_TEST_LOG` says (e.g. `bitfountain=debug`).
pub fn get_cmd(torrent: &Path, saveas: &Path, ip: &str, port: u16, extra: &[String]) -> Command {
    let mut cmd = bitfountain();
    cmd.arg("get")
        .arg(torrent)
        .arg("--saveas")
        .arg(saveas)
        .args([
            "--bind",
            ip,
            "--minport",
            &port.to_string(),
            "--maxport",
            &port.to_string(),
        ])
        .args(["--json", "--status-interval", "1"]);
    if !extra.iter().any(|a| a == "--coded") {
        cmd.args(["--coded", "off"]);
    }
    cmd.args(extra).env(
        "RUST_LOG",
        std::env::var("BF_TEST_LOG").unwrap_or("bitfountain=info".into()),
    );
    cmd
}

/// Status lines of a running `get`, forwarded from a reader thread.
pub fn status_lines(child: &mut std::process::Child) -> mpsc::Receiver<serde_json::Value> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v.get("pieces_total").is_some() && tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The newest status line received so far.
pub fn last_status(rx: &mpsc::Receiver<serde_json::Value>) -> serde_json::Value {
    rx.try_iter().last().expect("no status line")
}

/// Waits for a status line satisfying `pred`, failing after `secs`.
pub fn wait_status(
    rx: &mpsc::Receiver<serde_json::Value>,
    secs: u64,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(500)) {
            if pred(&v) {
                return v;
            }
            last = v;
        }
    }
    panic!("{what}: not within {secs} s; last status {last}");
}

/// Resident and peak resident memory of a process, in KiB (VmRSS, VmHWM).
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Every JSON status line a `get` wrote to the file `log` (its stdout).
pub fn statuses_in(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        // Status lines only, not notes.
        .filter(|v| v.get("have_bytes").is_some())
        .collect()
}

/// A counter of a status line.
pub fn u(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}
