//! `bitfountain bench` end to end (needs root, as CI has): the smoke
//! scenario with its reports and plots, the emulator's calibration, Ctrl-C
//! cleaning up, and the refusals (no root, bad TOML, variants this build
//! lacks). The full grid is not run here: it takes half an hour.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The bench tests share two cores: one lab at a time keeps the timings
/// (and the calibration's 5%) meaningful.
static ONE_LAB: Mutex<()> = Mutex::new(());

fn bitfountain() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitfountain"));
    cmd.env("RUST_BACKTRACE", "0").stdin(Stdio::null());
    cmd
}

/// Runs to completion, killing the bench if it outlives `limit`.
fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bitfountain starts");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "still running after {limit:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Namespaces a bench with this pid left behind.
fn leftover_namespaces(pid: u32) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("bf-bench-{pid}-")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn smoke_scenario_runs_and_reports() {
    let _lab = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let mut cmd = bitfountain();
    cmd.args(["bench", "smoke", "--out"]).arg(out_dir.path());
    let out = run_with_limit(&mut cmd, Duration::from_secs(240));
    assert!(out.status.success(), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("plain-cubic") && stdout.contains("plain-bbr"),
        "{stdout}"
    );

    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_dir.path().join("results.json")).expect("results.json"),
    )
    .expect("valid JSON");
    let runs = json["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4, "2 repetitions x 2 variants");
    for run in runs {
        // Every leecher finished, the restarted one included.
        for peer in run["peers"].as_array().expect("peers") {
            if peer["role"] == "leecher" {
                assert!(peer["completed_s"].as_f64().is_some(), "{peer}");
            }
        }
        let restarted = run["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "leecher-2"))
            .expect("leecher-2");
        assert_eq!(restarted["starts"], 2);
        // The emulator saw the traffic and lost some of it (1% loss).
        let wire = run["wire_bytes"].as_u64().expect("wire bytes");
        let payload = run["payload_bytes"].as_u64().expect("payload");
        assert!(wire > payload, "wire {wire} payload {payload}");
        let lost: u64 = run["emulator"]["links"]
            .as_array()
            .expect("links")
            .iter()
            .map(|l| l["down"]["dropped_loss_packets"].as_u64().unwrap_or(0))
            .sum();
        assert!(lost > 0, "{run}");
    }
    let summary = json["summary"].as_array().expect("summary");
    assert_eq!(summary.len(), 2);
    for s in summary {
        assert_eq!(s["finished"], s["expected"]);
        assert!(s["goodput_mbit"]["median"].as_f64().unwrap_or(0.0) > 0.5);
    }
    for file in ["cdf.png", "cdf.svg", "table.md"] {
        let len = std::fs::metadata(out_dir.path().join(file)).map_or(0, |m| m.len());
        assert!(len > 100, "{file} missing or empty");
    }
    // Nothing of a finished bench stays: every bf-bench namespace left on
    // the machine belongs to a bench still running.
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(rest) = line.strip_prefix("bf-bench-") {
            let owner = rest.split('-').next().unwrap_or_default();
            assert!(
                Path::new(&format!("/proc/{owner}")).exists(),
                "stale {line}"
            );
        }
    }
}

/// Acceptance 3 of the bench issue at CI size: the only seed leaves after
/// uploading 1.1 copies and two leechers leave with it; with the outer code
/// every remaining leecher completes, over QUIC and over TCP. (Before the
/// seed held back pieces from peers that had not passed theirs on, and
/// before every HAVE reached every peer, most such runs ended with the
/// remaining leechers stuck.)
#[test]
fn with_the_outer_code_the_swarm_survives_the_seed_leaving() {
    let _lab = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = tempfile::tempdir().expect("temp dir");
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/scenarios/departure-smoke.toml");
    let mut cmd = bitfountain();
    cmd.arg("bench")
        .arg(&scenario)
        .arg("--out")
        .arg(out_dir.path());
    let out = run_with_limit(&mut cmd, Duration::from_secs(400));
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out_dir.path().join("results.json")).expect("results.json"),
    )
    .expect("valid JSON");
    let file_size = 8u64 << 20;
    let runs = json["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "1 repetition x 2 variants");
    for run in runs {
        let peers = run["peers"].as_array().expect("peers");
        let leechers: Vec<&serde_json::Value> =
            peers.iter().filter(|p| p["role"] == "leecher").collect();
        assert_eq!(leechers.len(), 6);
        for peer in &leechers {
            if peer["left"] == true {
                continue;
            }
            // Done, and with about one copy fetched: any N of the
            // original and repair pieces, then the rest rebuilt.
            assert!(
                peer["completed_s"].as_f64().is_some(),
                "{}: {peer}",
                run["variant"]
            );
            let downloaded = peer["downloaded"].as_u64().unwrap_or(u64::MAX);
            assert!(
                downloaded < file_size * 11 / 10,
                "{}: {peer}",
                run["variant"]
            );
        }
        // If it left, it took two leechers with it; if not, the swarm
        // finished on less than 1.1 copies from the seed.
        let left = leechers.iter().filter(|p| p["left"] == true).count();
        let seed_left = run["seed_left_s"].as_f64().is_some();
        assert_eq!(left, if seed_left { 2 } else { 0 }, "{run}");
    }
}

#[test]
fn calibration_is_within_five_percent() {
    let _lab = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let out = run_with_limit(
        bitfountain().args(["bench", "--calibrate"]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for what in [
        "RTT at 20 ms",
        "RTT at 80 ms",
        "rate at 100 Mbit/s",
        "random loss 5%",
        "burst loss",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no {what} line:\n{stdout}"));
        assert!(line.contains(" yes"), "{line}");
    }
}

#[test]
fn ctrl_c_removes_every_namespace_and_process() {
    let _lab = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = tempfile::tempdir().expect("temp dir");
    let mut child = bitfountain()
        .args(["bench", "smoke", "--out"])
        .arg(out_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("bench starts");
    let pid = child.id();
    // Wait until the lab exists and peers run.
    let deadline = Instant::now() + Duration::from_secs(60);
    while leftover_namespaces(pid).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(leftover_namespaces(pid).len(), 4, "the lab never came up");
    std::thread::sleep(Duration::from_secs(2));
    let peers_before = namespace_pids(pid);
    assert!(!peers_before.is_empty(), "no peer processes were running");
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(Instant::now() < deadline, "bench did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    assert!(
        leftover_namespaces(pid).is_empty(),
        "namespaces left behind"
    );
    for p in peers_before {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "peer process {p} survived"
        );
    }
}

/// Pids inside the bench's namespaces.
fn namespace_pids(pid: u32) -> Vec<String> {
    leftover_namespaces(pid)
        .iter()
        .flat_map(|ns| {
            let name = ns.split_whitespace().next().unwrap_or_default().to_owned();
            let out = Command::new("ip")
                .args(["netns", "pids", &name])
                .output()
                .expect("ip runs");
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn without_root_it_says_so_and_exits_2() {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_bitfountain"))
        .args(["bench", "smoke"])
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs root"));
}

#[test]
fn bad_scenarios_and_missing_variants_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "file_size = \"1MiB\"\nloss = 5\n[[peers]]\nname = \"s\"\nrole = \"seed\"\n",
    )
    .expect("write");
    let out = bitfountain()
        .args(["bench"])
        .arg(&bad)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(err.contains("loss") && !err.contains("panicked"), "{err}");

    let out = bitfountain()
        .args(["bench", "nonesuch"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("smoke"));

    // Coded variants are never imitated: without the flags, they are named
    // as not yet available and the bench refuses to run nothing.
    let help = bitfountain()
        .args(["get", "--help"])
        .output()
        .expect("runs");
    if !String::from_utf8_lossy(&help.stdout).contains("--coded") {
        let out = bitfountain()
            .args(["bench", "smoke", "--variants", "coded-quic"])
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(err.contains("coded-quic: not yet available"), "{err}");
    }
}
