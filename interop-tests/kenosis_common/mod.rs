//! Helpers for the Kenosis tests: trackers that join a test DHT, `dig`,
//! keys and rankings, raw DNS messages.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wire::kenosis::{rank_trackers, KenosisUrl, Key};
use wire::{Limits, Metainfo};

use crate::harness::bitfountain;
use crate::tracker_common::TrackerProc;

/// A TCP port free on every one of `ips` (trackers on 127.0.0.2-4 all
/// listen on the URL's port).
pub fn common_free_port(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..200 {
        let Some(first) = ips.first() else { break };
        let probe = TcpListener::bind((*first, 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// `--kenosis_bootstrap A --kenosis_bootstrap B ...`
pub fn bootstrap_args(nodes: &[String]) -> Vec<String> {
    nodes
        .iter()
        .flat_map(|n| ["--kenosis_bootstrap".to_owned(), n.clone()])
        .collect()
}

/// `bitfountain track` with Kenosis on, joined to `boot`; returns once it
/// has registered itself under the service id.
pub fn kenosis_tracker(
    dir: &Path,
    tag: &str,
    cmd: Command,
    ip: &str,
    port: u16,
    boot: &[String],
    extra: &[&str],
) -> TrackerProc {
    let port = port.to_string();
    let mut args: Vec<String> = vec![
        "--bind".into(),
        ip.into(),
        "--port".into(),
        port,
        "--interval".into(),
        "60".into(),
        "--min-interval".into(),
        "15".into(),
    ];
    args.extend(bootstrap_args(boot));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let tracker = TrackerProc::start_with(dir, tag, cmd, &refs);
    wait_log(
        &tracker,
        "under the Kenosis service",
        Duration::from_secs(20),
    );
    tracker
}

/// Waits until the tracker's log holds `needle`.
pub fn wait_log(tracker: &TrackerProc, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = tracker.stderr_text();
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never logged {needle:?}:\n{text}",
            tracker.proc.name
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Announces the tracker has answered so far.
pub fn announces(tracker: &TrackerProc) -> u64 {
    tracker.stats()["announces"].as_u64().unwrap_or(0)
}

/// The Kenosis key of a torrent's announce URL.
pub fn torrent_key(torrent: &Path) -> (Key, KenosisUrl) {
    let bytes = std::fs::read(torrent).unwrap();
    let meta = Metainfo::from_bytes(&bytes, &Limits::DEFAULT).unwrap();
    let url = meta.tracker_tiers()[0][0].clone();
    let k = KenosisUrl::parse(&url).unwrap();
    (k.host.key.clone(), k)
}

/// The order every Kenosis client tries these trackers in for `key`
/// (none registered under the key yet, so one group).
pub fn expected_order(key: &Key, trackers: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
    let mut v = trackers.to_vec();
    rank_trackers(&key.target(), &mut v);
    v
}

/// `make FILE kenosisp2p --kenosis-port PORT -o OUT`.
pub fn make_kenosis_torrent(data: &Path, out: &Path, port: u16) {
    let ok = bitfountain()
        .arg("make")
        .arg(data)
        .arg("kenosisp2p")
        .args([
            "--kenosis-port",
            &port.to_string(),
            "--piece-size",
            "64K",
            "-o",
        ])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// What `dig` said: the status and the answer records' data.
#[derive(Debug)]
pub struct Dig {
    pub status: String,
    pub answers: Vec<String>,
    pub text: String,
}

/// `dig @server -p port name type` (`+tcp` when asked), run by `cmd`
/// (plain or inside a namespace).
pub fn dig_with(
    mut cmd: Command,
    server: &str,
    port: u16,
    name: &str,
    qtype: &str,
    tcp: bool,
) -> Dig {
    cmd.args([
        &format!("@{server}"),
        "-p",
        &port.to_string(),
        name,
        qtype,
        "+time=5",
        "+tries=1",
    ]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd.output().expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_owned();
    let answers = text
        .split(";; ANSWER SECTION:")
        .nth(1)
        .map(|sec| {
            sec.lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Dig {
        status,
        answers,
        text,
    }
}

pub fn dig(port: u16, name: &str, qtype: &str, tcp: bool) -> Dig {
    dig_with(Command::new("dig"), "127.0.0.1", port, name, qtype, tcp)
}

/// A DNS query message (RD set) for `name` and `qtype` (1 = A, 28 = AAAA).
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        m.push(u8::try_from(label.len()).unwrap());
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// (id, rcode, answer count) of a DNS response.
pub fn dns_reply(m: &[u8]) -> Option<(u16, u8, u16)> {
    let id = u16::from_be_bytes([*m.first()?, *m.get(1)?]);
    let rcode = m.get(3)? & 0x0f;
    let an = u16::from_be_bytes([*m.get(6)?, *m.get(7)?]);
    Some((id, rcode, an))
}

pub const NOERROR: u8 = 0;
pub const FORMERR: u8 = 1;
pub const NXDOMAIN: u8 = 3;
pub const REFUSED: u8 = 5;
