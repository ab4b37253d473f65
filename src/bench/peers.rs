//! Peer processes: our `bitfountain get`, python3-libtorrent and aria2c,
//! each started inside its node's namespace with its status read from
//! stdout on a thread of its own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::netlab::Node;
use super::scenario::{Client, Role};

/// Every peer listens on this port (each has its own namespace).
pub const PEER_PORT: u16 = 6881;

/// A status line from a peer process.
pub struct Line {
    pub peer: usize,
    pub incarnation: u32,
    pub at: Instant,
    pub text: String,
}

/// What one status line says (every client's is mapped onto this).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Status {
    pub have_bytes: u64,
    pub uploaded: u64,
    pub downloaded: u64,
    pub wasted: u64,
    pub seeding: bool,
    /// When the download completed, if it has.
    pub completed_at: Option<Instant>,
}

/// Reads our JSON status line (and libtorrent's, which uses the same keys).
pub fn parse_status(line: &Line) -> Option<Status> {
    let v: serde_json::Value = serde_json::from_str(&line.text).ok()?;
    let have_bytes = v.get("have_bytes")?.as_u64()?;
    let num = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let elapsed = v.get("elapsed").and_then(|x| x.as_f64());
    let completed = v.get("completed_after").and_then(|x| x.as_f64());
    // The line says how long before it was printed the download completed.
    let completed_at = match (elapsed, completed) {
        (Some(e), Some(c)) if e >= c && e - c < 86_400.0 => line
            .at
            .checked_sub(Duration::from_secs_f64(e - c))
            .or(Some(line.at)),
        (_, Some(_)) => Some(line.at),
        _ => None,
    };
    Some(Status {
        have_bytes,
        uploaded: num("uploaded"),
        downloaded: num("downloaded"),
        wasted: num("wasted"),
        seeding: v.get("phase").and_then(|p| p.as_str()) == Some("seeding"),
        completed_at,
    })
}

/// How to start peers of a run.
pub struct Launch<'a> {
    pub exe: &'a Path,
    pub torrent: &'a Path,
    /// Where the peer keeps its data: `dir/<file name>`.
    pub dir: &'a Path,
    pub file_name: &'a str,
    pub variant_args: &'a [&'a str],
    /// Addresses to connect to at once (the seeds), besides the tracker's.
    pub connect: &'a [String],
    pub lt_script: &'a Path,
}

/// A running peer process.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub started: Instant,
    reader: Option<JoinHandle<()>>,
    /// For aria2: the file its completion hook creates.
    pub done_flag: Option<PathBuf>,
}

impl Proc {
    /// Starts a peer in `node`; its stdout lines go to `tx`.
    pub fn spawn(
        node: &Node,
        client: Client,
        role: Role,
        launch: &Launch<'_>,
        ids: (usize, u32),
        tx: Sender<Line>,
    ) -> Result<Proc> {
        std::fs::create_dir_all(launch.dir)?;
        let seed = role == Role::Seed;
        let listen = format!("{}:{PEER_PORT}", node.addr);
        let mut done_flag = None;
        let cmd = match client {
            Client::Bitfountain => {
                let mut c = node.command(launch.exe);
                c.arg("get")
                    .arg(launch.torrent)
                    .arg("--saveas")
                    .arg(launch.dir.join(launch.file_name))
                    .args(["--bind", &node.addr.to_string()])
                    .args(["--minport", "6881", "--maxport", "6881"])
                    .args(["--json", "--status-interval", "1"])
                    .args(launch.variant_args);
                for p in launch.connect {
                    c.args(["--peer", p]);
                }
                c
            }
            Client::Libtorrent => {
                let mut c = node.command("/usr/bin/python3");
                c.arg(launch.lt_script)
                    .arg(if seed { "seed" } else { "leech" })
                    .arg(launch.torrent)
                    .arg(launch.dir)
                    .arg(&listen)
                    .args(launch.connect);
                c
            }
            Client::Aria2 => {
                let flag = launch.dir.join(".complete");
                let hook = launch.dir.join(".on-complete.sh");
                std::fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", flag.display()))?;
                set_executable(&hook)?;
                let mut c = node.command("aria2c");
                c.args([
                    "--enable-dht=false",
                    "--enable-dht6=false",
                    "--bt-enable-lpd=false",
                    "--enable-peer-exchange=false",
                    "--listen-port=6881",
                    "--file-allocation=none",
                    "--console-log-level=warn",
                    "--summary-interval=0",
                    "--async-dns=false",
                    "--bt-seed-unverified=true",
                    // Keeps seeding after completion, like every other peer.
                    "--seed-ratio=0.0",
                    &format!("--interface={}", node.addr),
                    &format!("--dir={}", launch.dir.display()),
                    &format!("--on-bt-download-complete={}", hook.display()),
                ])
                .arg(launch.torrent);
                if seed {
                    std::fs::write(&flag, "")?;
                }
                done_flag = Some(flag);
                c
            }
        };
        let log = launch.dir.join(".stderr.log");
        let mut proc = Proc::spawn_command(cmd, &log, Some((ids, tx)))
            .with_context(|| format!("cannot start {client:?} in {}", node.netns))?;
        proc.done_flag = done_flag;
        Ok(proc)
    }

    /// Starts `cmd` with stderr to `log`, and stdout lines to the channel
    /// (tagged with `ids`) or, without one, to the log too.
    pub fn spawn_command(
        mut cmd: Command,
        log: &Path,
        lines: Option<((usize, u32), Sender<Line>)>,
    ) -> Result<Proc> {
        let err = std::fs::File::create(log).context("cannot create a peer log")?;
        let out = if lines.is_some() {
            Stdio::piped()
        } else {
            Stdio::from(err.try_clone()?)
        };
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).env(
            "RUST_LOG",
            // Peers' logs stay in the run folder (kept with BITFOUNTAIN_BENCH_KEEP).
            std::env::var("BITFOUNTAIN_BENCH_PEER_LOG")
                .unwrap_or_else(|_| "warn,bitfountain=info".into()),
        );
        let mut child = cmd.spawn().context("cannot start a process")?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let reader = match (lines, stdout) {
            (Some(((peer, incarnation), tx)), Some(out)) => Some(
                std::thread::Builder::new()
                    .name(format!("bench-peer-{peer}"))
                    .spawn(move || {
                        for text in BufReader::new(out).lines().map_while(|l| l.ok()) {
                            let line = Line {
                                peer,
                                incarnation,
                                at: Instant::now(),
                                text,
                            };
                            if tx.send(line).is_err() {
                                return;
                            }
                        }
                    })?,
            ),
            _ => None,
        };
        Ok(Proc {
            child,
            pid,
            started: Instant::now(),
            reader,
            done_flag: None,
        })
    }

    /// True once the process has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Whether the process has ended with exit status 0 (a peer that
    /// stops by its own rule, not one that crashed).
    pub fn exited_cleanly(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(status)) if status.success())
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory effects; the pid is our unreaped child.
        unsafe { libc::kill(self.pid as libc::pid_t, sig) };
    }

    /// Reaps the process and waits for its last lines to be read.
    pub fn reap(&mut self) {
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
        }
        self.reap();
    }
}

/// Stops processes politely (SIGTERM), then firmly after `grace`.
pub fn stop_all(procs: &mut [&mut Proc], grace: Duration) {
    for p in procs.iter() {
        p.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && procs.iter_mut().any(|p| !p.exited()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in procs.iter_mut() {
        if !p.exited() {
            let _ = p.child.kill();
        }
        p.reap();
    }
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Fails clearly when a legacy client a scenario needs is missing.
pub fn check_client(client: Client) -> Result<()> {
    match client {
        Client::Bitfountain => Ok(()),
        Client::Aria2 => {
            let ok = Command::new("aria2c")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            anyhow::ensure!(
                ok,
                "this scenario needs aria2c (Debian: apt-get install aria2)"
            );
            Ok(())
        }
        Client::Libtorrent => {
            let ok = Command::new("/usr/bin/python3")
                .args(["-c", "import libtorrent"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            anyhow::ensure!(
                ok,
                "this scenario needs python3-libtorrent for /usr/bin/python3 \
                 (Debian: apt-get install python3-libtorrent)"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_time_is_taken_back_to_when_it_happened() {
        let at = Instant::now();
        let line = Line {
            peer: 0,
            incarnation: 0,
            at,
            text: r#"{"have_bytes":10,"total_bytes":10,"uploaded":3,"elapsed":5.5,"completed_after":5.0,"phase":"seeding"}"#.into(),
        };
        let s = parse_status(&line).unwrap_or_default();
        assert_eq!(s.have_bytes, 10);
        assert_eq!(s.uploaded, 3);
        assert!(s.seeding);
        let back = s.completed_at.map(|c| at.duration_since(c).as_secs_f64());
        assert!(back.is_some_and(|b| (b - 0.5).abs() < 1e-6));
        let note = Line {
            text: r#"{"event":"note","message":"hi"}"#.into(),
            ..line
        };
        assert!(parse_status(&note).is_none());
    }
}
