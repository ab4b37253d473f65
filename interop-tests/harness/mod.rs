//! Shared helpers for tests that drive real legacy clients and our binary:
//! temp dirs, required programs, processes reaped on drop, JSON from
//! python3-libtorrent.
#![allow(dead_code)]

pub mod clients;
pub mod evil;
pub mod netns;
pub mod node;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Our binary, built by cargo for this test run.
pub fn bitfountain() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitfountain"));
    cmd.env("RUST_BACKTRACE", "0");
    cmd
}

/// Fails the test (never skips it) when a legacy program is missing: CI
/// must exercise every partner.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed; run the README's test command, which installs the legacy clients"
    );
}

/// Runs a command to completion, failing the test with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The stdout of a successful command as text.
pub fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

/// Runs a Python snippet with Debian's python3 (the only one that sees
/// python3-libtorrent) and parses the JSON it prints.
pub fn libtorrent_json(script: &str, args: &[&str]) -> serde_json::Value {
    let python = "/usr/bin/python3";
    assert!(
        Path::new(python).exists(),
        "/usr/bin/python3 is missing; the README's test command installs python3-libtorrent"
    );
    let out = run_ok(Command::new(python).arg("-c").arg(script).args(args));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "libtorrent script printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Writes `len` bytes of deterministic pseudo-random data.
pub fn write_random_file(path: &Path, len: usize, seed: u64) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        // xorshift64*: fast, and no two seeds give the same stream.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).unwrap();
}

/// A child process killed and reaped when dropped, so a failing test
/// leaves nothing running.
pub struct Reaped {
    pub child: Child,
    pub name: String,
}

impl Reaped {
    pub fn spawn(name: &str, cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Reaped {
            child,
            name: name.to_owned(),
        }
    }

    /// Waits for exit up to `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh temporary folder for one test.
/// Set `BF_TEST_KEEP=1` to keep it (and the peers' logs in it)
/// after the test, to look into a failure.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("bf-{name}-"))
        .tempdir()
        .unwrap();
    if std::env::var_os("BF_TEST_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    dir
}

/// Path helper: `dir/name` as a `PathBuf`.
pub fn at(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Installs Debian `package` with apt when `program` is not on PATH (the
/// tests run as root, as in CI). A failure to install fails the test: the
/// program is required, never skipped.
pub fn install_if_missing(program: &str, package: &str) {
    let on_path = |p: &str| {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(p).is_file()))
            .unwrap_or(false)
    };
    if on_path(program) {
        return;
    }
    // One test at a time reaches here in practice; apt's own lock keeps
    // two concurrent installs from corrupting anything.
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()) && on_path(program),
        "cannot install {package} (for `{program}`): {status:?}"
    );
}

/// Where tests keep artifacts worth looking at after a run (screenshots,
/// screen captures): `target/tmp/artifacts`, kept after the test.
pub fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
