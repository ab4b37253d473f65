//! Helpers for the tracker tests: start `bitfountain track` as a real
//! process, talk raw HTTP/1.1 to it (so malformed requests reach the server
//! byte for byte), and build announce queries.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wire::tracker::{percent_encode, AnnounceResponse, ScrapeResponse, ScrapeStats, TrackerReply};
use wire::{InfoHash, Limits};

use crate::harness::{bitfountain, Reaped};

/// A running `bitfountain track`, with its stdout (the access log) and
/// stderr in files. Killed when dropped.
pub struct TrackerProc {
    pub proc: Reaped,
    pub addr: SocketAddr,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl TrackerProc {
    /// Starts the tracker with `args` (on 127.0.0.1, port 0 unless the args
    /// say otherwise) and waits until it reports its address.
    pub fn start(dir: &Path, tag: &str, args: &[&str]) -> TrackerProc {
        Self::start_with(dir, tag, bitfountain(), args)
    }

    /// Same, but through a prepared command (e.g. `ip netns exec NS ...`).
    pub fn start_with(dir: &Path, tag: &str, mut cmd: Command, args: &[&str]) -> TrackerProc {
        let stdout = dir.join(format!("{tag}.stdout"));
        let stderr = dir.join(format!("{tag}.stderr"));
        let mut full: Vec<&str> = vec!["track"];
        if !args.contains(&"--bind") {
            full.extend(["--bind", "127.0.0.1"]);
        }
        if !args.contains(&"--port") {
            full.extend(["--port", "0"]);
        }
        // Tests never join the public DHT: Kenosis only with explicit
        // bootstrap nodes.
        if !args.iter().any(|a| a.starts_with("--kenosis")) {
            full.extend(["--kenosis", "0"]);
        }
        full.extend(args);
        cmd.args(&full)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut proc = Reaped::spawn(tag, &mut cmd);
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let text = std::fs::read_to_string(&stderr).unwrap_or_default();
            if let Some(addr) = listening_addr(&text) {
                break addr;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!("tracker exited early ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "tracker did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        TrackerProc {
            proc,
            addr,
            stdout,
            stderr,
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(mut self) -> String {
        let pid = self.proc.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        let status = self
            .proc
            .wait_timeout(Duration::from_secs(20))
            .expect("tracker did not exit within 20 s of SIGTERM");
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(status.success(), "tracker exited with {status}:\n{err}");
        err
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn get(&self, target: &str) -> HttpReply {
        http_get(self.addr, target)
    }

    pub fn announce(&self, query: &str) -> AnnounceResponse {
        let r = self.get(&format!("/announce?{query}"));
        assert_eq!(r.status, 200, "{}", r.text());
        match TrackerReply::decode(&r.body, &Limits::DEFAULT).unwrap() {
            TrackerReply::Announce(a) => a,
            TrackerReply::Failure(f) => panic!("announce refused: {f} ({query})"),
        }
    }

    /// The failure reason the tracker gave (panics on success).
    pub fn announce_failure(&self, query: &str) -> String {
        let r = self.get(&format!("/announce?{query}"));
        assert_eq!(r.status, 200, "{}", r.text());
        match TrackerReply::decode(&r.body, &Limits::DEFAULT).unwrap() {
            TrackerReply::Failure(f) => f,
            TrackerReply::Announce(a) => panic!("announce accepted: {a:?}"),
        }
    }

    /// Scrapes `hashes`, 50 per request (the query parser allows 64
    /// parameters).
    pub fn scrape(&self, hashes: &[InfoHash]) -> Vec<(InfoHash, ScrapeStats)> {
        let mut files = Vec::new();
        for chunk in hashes.chunks(50) {
            let q: Vec<String> = chunk
                .iter()
                .map(|h| format!("info_hash={}", percent_encode(&h.0)))
                .collect();
            let r = self.get(&format!("/scrape?{}", q.join("&")));
            assert_eq!(r.status, 200);
            let got = ScrapeResponse::decode(&r.body, &Limits::DEFAULT)
                .unwrap_or_else(|e| panic!("bad scrape: {e}: {}", r.text()));
            files.extend(got.files);
        }
        files.sort_by_key(|f| f.0);
        files
    }

    pub fn stats(&self) -> serde_json::Value {
        let r = self.get("/stats");
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }
}

/// `tracking on http://ADDR/announce` from the tracker's log.
fn listening_addr(log: &str) -> Option<SocketAddr> {
    let rest = log.split("tracking on http://").nth(1)?;
    rest.split("/announce").next()?.parse().ok()
}

pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn text(&self) -> String {
        format!("{}\n\n{}", self.head, String::from_utf8_lossy(&self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Sends `raw` (a complete request) and reads the reply until the server
/// closes or the body is complete. Bounded by a 10 s timeout.
pub fn http_raw(addr: SocketAddr, raw: &[u8]) -> Option<HttpReply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    // The server may answer and close before reading everything we send.
    let _ = s.write_all(raw);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_reply(&buf)
}

pub fn parse_reply(buf: &[u8]) -> Option<HttpReply> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(HttpReply {
        status,
        head,
        body: buf[end + 4..].to_vec(),
    })
}

/// A GET with `Connection: close`.
pub fn http_get(addr: SocketAddr, target: &str) -> HttpReply {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    http_raw(addr, raw.as_bytes()).unwrap_or_else(|| panic!("no HTTP reply for {target}"))
}

/// A 20-byte info-hash with binary bytes in it (NUL, `%`, `&`, `=`, `+`...).
pub fn hash(n: u32) -> InfoHash {
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(&n.to_be_bytes());
    h[4..12].copy_from_slice(b"\x00%&=+ \xff#");
    h[12..16].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
    InfoHash(h)
}

pub fn peer_id(n: u32) -> [u8; 20] {
    let mut id = *b"-BF0001-000000000000";
    let digits = format!("{n:012}");
    id[8..].copy_from_slice(digits.as_bytes());
    id
}

/// An announce query string for peer `peer` in swarm `swarm`.
pub fn query(swarm: u32, peer: u32, port: u16, left: u64, extra: &str) -> String {
    format!(
        "info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}{extra}",
        percent_encode(&hash(swarm).0),
        percent_encode(&peer_id(peer)),
    )
}

/// Runs `f` until it returns `Some`, up to `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stdio helper for commands whose output we do not need.
pub fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdout(Stdio::null()).stderr(Stdio::null())
}
