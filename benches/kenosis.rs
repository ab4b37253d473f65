//! Kenosis benchmark (not a test): on a 200-node DHT test network on
//! loopback, with three `bitfountain track` processes on 127.0.0.2-4,
//!
//! 1. lookup latency (p50/p99): cold lookups of keys no tracker serves yet
//!    (the service-id fallback decides) and of keys the trackers registered;
//! 2. failover: a seed and a rate-limited leecher (`bitfountain get`) meet
//!    at the chosen tracker, which is killed (-9); time to the first
//!    announce the next tracker answers, over several repetitions;
//! 3. cost of a tracker's DHT node: RSS and CPU of `track --kenosis 1`
//!    against `--kenosis 0`, idle for a while in the same network.
//!
//! Run: `cargo bench --bench kenosis` (REPS=5 LOOKUPS=200 IDLE_SECS=30 by
//! default). Prints a Markdown table.

#[path = "../interop-tests/harness/mod.rs"]
mod harness;
#[path = "../interop-tests/kenosis_common/mod.rs"]
mod kenosis_common;
#[path = "../interop-tests/tracker_common/mod.rs"]
mod tracker_common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bitfountain::kenosis::{DhtNode, Lookup, LookupConfig, NodeConfig};
use harness::{bitfountain, temp_dir, write_random_file, Reaped};
use kenosis_common::*;
use mainline::Testnet;
use tracker_common::TrackerProc;
use wire::kenosis::Key;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
];

fn trackers(dir: &std::path::Path, tag: &str, port: u16, boot: &[String]) -> Vec<TrackerProc> {
    IPS.iter()
        .map(|ip| {
            let name = format!("{tag}-{ip}");
            kenosis_tracker(
                dir,
                &name,
                bitfountain(),
                &ip.to_string(),
                port,
                boot,
                &["--no-access-log"],
            )
        })
        .collect()
}

/// Makes a tracker serve `key` by announcing to it with the Kenosis Host.
fn announce_key(addr: SocketAddrV4, key: &str, n: u32) {
    let mut s = TcpStream::connect(addr).unwrap();
    let hash = format!("{n:040x}");
    let bytes: String = hash
        .as_bytes()
        .chunks(2)
        .map(|c| format!("%{}", std::str::from_utf8(c).unwrap()))
        .collect();
    let req = format!(
        "GET /announce?info_hash={bytes}&peer_id=-BF0100-benchbenchbe&port=6881&left=0 HTTP/1.1\r\n\
         Host: {key}.bt.kenosisp2p.org:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut sink);
}

fn lookups(rt: &tokio::runtime::Runtime, boot: &[String], count: u64) -> (Vec<f64>, Vec<f64>) {
    let dir = temp_dir("kenosis-bench-lookup");
    let port = common_free_port(&IPS);
    let ts = trackers(dir.path(), "lk", port, boot);
    let addrs: Vec<SocketAddrV4> = IPS.iter().map(|ip| SocketAddrV4::new(*ip, port)).collect();
    // 20 keys registered, spread over the trackers.
    let registered: Vec<String> = (0..20).map(|i| format!("registered-{i}")).collect();
    for (i, k) in registered.iter().enumerate() {
        announce_key(addrs[i % 3], k, i as u32);
    }
    for (i, t) in ts.iter().enumerate() {
        for k in registered.iter().skip(i).step_by(3) {
            wait_log(t, &format!("under key {k}"), Duration::from_secs(60));
        }
    }
    rt.block_on(async {
        let node = DhtNode::start(NodeConfig {
            bind: Ipv4Addr::LOCALHOST,
            bootstrap: Some(boot.to_vec()),
            server_mode: true,
            ..NodeConfig::default()
        })
        .await
        .unwrap();
        let lookup = Lookup::new(
            node,
            LookupConfig {
                watch_every: None,
                ..LookupConfig::default()
            },
        );
        // Warm the routing table and the service list once.
        let _ = lookup.resolve(&Key::parse("warm-up").unwrap()).await;
        let mut cold = Vec::new();
        for i in 0..count {
            let key = Key::parse(&format!("bench-{i}")).unwrap();
            let t = Instant::now();
            lookup.resolve(&key).await.unwrap();
            cold.push(ms(t.elapsed()));
        }
        let mut served = Vec::new();
        for (i, k) in registered.iter().enumerate() {
            let key = Key::parse(k).unwrap();
            let t = Instant::now();
            let got = lookup.resolve(&key).await.unwrap();
            served.push(ms(t.elapsed()));
            assert_eq!(got, addrs[i % 3], "registered key {k} went elsewhere");
        }
        cold.sort_by(f64::total_cmp);
        served.sort_by(f64::total_cmp);
        (cold, served)
    })
}

fn failover(boot: &[String], rep: u64) -> f64 {
    let dir = temp_dir("kenosis-bench-failover");
    let port = common_free_port(&IPS);
    let mut ts: Vec<Option<TrackerProc>> = trackers(dir.path(), "fo", port, boot)
        .into_iter()
        .map(Some)
        .collect();
    let addrs: Vec<SocketAddrV4> = IPS.iter().map(|ip| SocketAddrV4::new(*ip, port)).collect();
    let data = dir.path().join("data.bin");
    write_random_file(&data, 16 << 20, 1000 + rep);
    let torrent = dir.path().join("data.torrent");
    make_kenosis_torrent(&data, &torrent, port);
    let (key, _) = torrent_key(&torrent);
    let order = expected_order(&key, &addrs);
    let pos = |a: SocketAddrV4| addrs.iter().position(|x| *x == a).unwrap();
    let get = |saveas: &std::path::Path, extra: &[&str]| {
        let mut cmd = bitfountain();
        cmd.arg("get")
            .arg(&torrent)
            .arg("--saveas")
            .arg(saveas)
            .args([
                "--bind",
                "127.0.0.1",
                "--minport",
                "20000",
                "--maxport",
                "29999",
            ])
            .args(bootstrap_args(boot))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Reaped::spawn("get", &mut cmd)
    };
    let _seed = get(&data, &[]);
    let _leecher = get(
        &dir.path().join("got.bin"),
        &["--max_download_rate", "1000000"],
    );
    let chosen = pos(order[0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ts[chosen].as_ref().unwrap().stats()["peers"].as_u64() != Some(2) {
        assert!(
            Instant::now() < deadline,
            "peers never met at the chosen tracker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut victim = ts[chosen].take().unwrap();
    victim.proc.child.kill().unwrap();
    let killed = Instant::now();
    let _ = victim.proc.child.wait();
    let next = ts[pos(order[1])].as_ref().unwrap();
    let deadline = killed + Duration::from_secs(120);
    while announces(next) == 0 {
        assert!(Instant::now() < deadline, "no announce at the next tracker");
        std::thread::sleep(Duration::from_millis(5));
    }
    ms(killed.elapsed())
}

/// (RSS KiB, CPU seconds) of a process.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (11 and 12 after the name).
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    (rss, ticks as f64 / 100.0)
}

fn node_cost(boot: &[String], idle: Duration) -> [(u64, f64); 2] {
    let dir = temp_dir("kenosis-bench-cost");
    let port = common_free_port(&IPS[..2]);
    let on = kenosis_tracker(
        dir.path(),
        "on",
        bitfountain(),
        "127.0.0.2",
        port,
        boot,
        &["--no-access-log"],
    );
    let off = TrackerProc::start_with(
        dir.path(),
        "off",
        bitfountain(),
        &[
            "--bind",
            "127.0.0.3",
            "--port",
            &port.to_string(),
            "--kenosis",
            "0",
            "--no-access-log",
        ],
    );
    let pids = [on.proc.child.id(), off.proc.child.id()];
    let start = pids.map(usage);
    std::thread::sleep(idle);
    let end = pids.map(usage);
    [0, 1].map(|i| {
        (
            end[i].0,
            (end[i].1 - start[i].1) / idle.as_secs_f64() * 100.0,
        )
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let reps = env_num("REPS", 5);
    let count = env_num("LOOKUPS", 200);
    let idle = Duration::from_secs(env_num("IDLE_SECS", 30));
    let testnet = Testnet::builder(200).build().unwrap();
    let boot: Vec<String> = testnet.bootstrap.iter().take(4).cloned().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (cold, served) = lookups(&rt, &boot, count);
    let mut fo: Vec<f64> = (0..reps).map(|r| failover(&boot, r)).collect();
    fo.sort_by(f64::total_cmp);
    let [on, off] = node_cost(&boot, idle);

    println!("\n| measure (200-node DHT on loopback) | p50 | p99 / max | n |");
    println!("|---|---|---|---|");
    println!(
        "| lookup, key no tracker serves (service fallback) | {:.1} ms | {:.1} ms | {} |",
        percentile(&cold, 0.5),
        percentile(&cold, 0.99),
        cold.len()
    );
    println!(
        "| lookup, key a tracker registered | {:.1} ms | {:.1} ms | {} |",
        percentile(&served, 0.5),
        percentile(&served, 0.99),
        served.len()
    );
    println!(
        "| failover: kill -9 → first announce at the next tracker | {:.0} ms | {:.0} ms (max) | {} |",
        percentile(&fo, 0.5),
        fo.last().copied().unwrap_or(f64::NAN),
        fo.len()
    );
    println!("\n| tracker, idle {} s | RSS | CPU |", idle.as_secs());
    println!("|---|---|---|");
    println!(
        "| `track --kenosis 1` | {:.1} MiB | {:.2} % |",
        on.0 as f64 / 1024.0,
        on.1
    );
    println!(
        "| `track --kenosis 0` | {:.1} MiB | {:.2} % |",
        off.0 as f64 / 1024.0,
        off.1
    );
    println!(
        "| DHT node's share | {:+.1} MiB | {:+.2} % of a core |",
        (on.0 as f64 - off.0 as f64) / 1024.0,
        on.1 - off.1
    );
    println!("\nfailover samples (ms): {fo:.0?}");
    drop(testnet);
}
