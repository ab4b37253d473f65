//! A bounded tracker soak (about 55 s): 10,000 distinct peers in 1,000
//! swarms on loopback, from four 127.0.1.x addresses over keep-alive
//! connections, alongside a stream of malformed and oversized requests.
//! Every valid request gets a valid answer with the right swarm counts; the
//! tracker is SIGKILLed mid-soak and restarted on the same port, and its
//! swarms come back from the dfile; malformed requests get bencoded
//! failures or 4xx statuses, never a crash.

mod harness;
mod tracker_common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use tracker_common::*;
use wire::tracker::TrackerReply;
use wire::Limits;

const SWARMS: u32 = 1000;
const PEERS: u32 = 10_000;
const THREADS: u32 = 4;
/// Each load phase stops at this many announces per thread or this long,
/// whichever comes first; each thread paces itself to `RATE` announces a
/// second (5,000/s in all: a soak, not a benchmark, on shared cores).
const PHASE_MAX: u32 = 200_000;
const PHASE_SECS: u64 = 20;
const RATE: u32 = 1250;

/// A keep-alive HTTP/1.1 client from a chosen local address.
struct Client {
    src: IpAddr,
    to: SocketAddr,
    conn: Option<TcpStream>,
}

impl Client {
    fn new(src: &str, to: SocketAddr) -> Client {
        Client {
            src: src.parse().unwrap(),
            to,
            conn: None,
        }
    }

    fn connect(&self) -> TcpStream {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(self.src, 0).into()).unwrap();
        socket
            .connect_timeout(&self.to.into(), Duration::from_secs(5))
            .unwrap();
        let s: TcpStream = socket.into();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// One GET; reconnects once if the server closed the idle connection.
    fn get(&mut self, target: &str) -> HttpReply {
        for _ in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(self.connect());
            }
            if let Some(reply) = self.conn.as_mut().and_then(|s| request(s, target)) {
                return reply;
            }
            self.conn = None;
        }
        panic!("no reply from {} for {target}", self.to);
    }
}

fn request(s: &mut TcpStream, target: &str) -> Option<HttpReply> {
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(reply) = parse_reply(&buf) {
            let len: usize = reply.header("content-length")?.parse().ok()?;
            if reply.body.len() >= len {
                return Some(reply);
            }
        }
    }
}

/// Peer `n` is the `n / SWARMS`-th of the ten peers of swarm `n % SWARMS`.
fn rank(n: u32) -> u32 {
    n / SWARMS
}

/// Whether peer `n` is a seed (three of each swarm's ten are).
fn is_seed(n: u32) -> bool {
    rank(n) < 3
}

/// The load thread (and so the source address) of peer `n`: a swarm's
/// peers come from every address.
fn thread_of(n: u32) -> u32 {
    rank(n) % THREADS
}

/// Announces `peers` (peer `n` in swarm `n % SWARMS`, always from the same
/// address). With `check_counts`, every swarm must already hold its 10
/// peers. Returns the number of announces; panics on any error.
fn announce_all(
    client: &mut Client,
    peers: impl Iterator<Item = u32>,
    event: &str,
    check_counts: bool,
) -> u64 {
    let mut count = 0;
    for n in peers {
        let swarm = n % SWARMS;
        let left = if is_seed(n) { 0 } else { 1000 };
        let q = query(swarm, n, 10_000 + (n % 50_000) as u16, left, event);
        // Some ask for absurdly many peers: valid, clamped.
        let numwant = if n % 7 == 0 { 4_000_000_000u32 } else { 20 };
        let r = client.get(&format!("/announce?{q}&numwant={numwant}"));
        assert_eq!(r.status, 200, "peer {n}: {}", r.text());
        let a = match TrackerReply::decode(&r.body, &Limits::DEFAULT) {
            Ok(TrackerReply::Announce(a)) => a,
            other => panic!("peer {n}: a valid announce got {other:?}"),
        };
        assert!(a.peers.len() <= numwant.min(200) as usize);
        if check_counts {
            assert_eq!(
                (a.complete, a.incomplete),
                (3, 7),
                "swarm {swarm} as seen by peer {n}"
            );
        }
        count += 1;
    }
    count
}

/// Runs `THREADS` load threads; thread `t` owns the peers with `thread_of(n) == t`
/// and sends from 127.0.1.(t+1). First every peer starts; then, until the
/// phase ends, peers re-announce in a scrambled order with counts checked.
fn load_phase(to: SocketAddr, start: bool, stop: Arc<AtomicBool>) -> (u64, Duration) {
    let t0 = Instant::now();
    let total = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, total) = (stop.clone(), total.clone());
            std::thread::spawn(move || {
                let mut client = Client::new(&format!("127.0.1.{}", t + 1), to);
                let mine: Vec<u32> = (0..PEERS).filter(|&n| thread_of(n) == t).collect();
                if start {
                    let n =
                        announce_all(&mut client, mine.iter().copied(), "&event=started", false);
                    total.fetch_add(n, Ordering::Relaxed);
                }
                // Wait for every thread's start, so counts are final.
                while start && total.load(Ordering::Relaxed) < u64::from(PEERS) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let deadline = t0 + Duration::from_secs(PHASE_SECS);
                let paced_from = Instant::now();
                let mut k = 0u32;
                while k < PHASE_MAX && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    // A scrambled walk over this thread's peers.
                    let batch = (0..100).map(|i| {
                        let idx = (k + i).wrapping_mul(2_654_435_761) as usize % mine.len();
                        mine[idx]
                    });
                    let n = announce_all(&mut client, batch, "", true);
                    total.fetch_add(n, Ordering::Relaxed);
                    k += 100;
                    let due = paced_from + Duration::from_secs_f64(f64::from(k) / f64::from(RATE));
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a load thread failed");
    }
    (total.load(Ordering::Relaxed), t0.elapsed())
}

/// Malformed and oversized requests, each answered with a bencoded failure
/// (HTTP 200) or a 4xx status. Returns how many were sent.
fn hostile_requests(addr: SocketAddr) -> usize {
    // A swarm outside the soak's: a request wrongly accepted must not
    // disturb the counts the load checks.
    let ok = |q: &str| query(SWARMS + 5, 999_999, 7000, 0, q);
    let failures: Vec<String> = vec![
        String::new(),
        "info_hash=short&peer_id=x&port=1".into(),
        ok("").replace("port=7000", "port=99999"),
        ok("").replace("port=7000", "port=-1"),
        ok("").replace("&left=0", ""),
        ok("").replace("peer_id=", "peer_id=%zz"),
        ok("&event=exploded"),
        ok("&numwant=-5"),
        format!("{}&info_hash=%00", ok("")),
        "&&&&====".into(),
        "%".into(),
        "info_hash=".repeat(60),
    ];
    let mut sent = 0;
    for q in &failures {
        let r = http_get(addr, &format!("/announce?{q}"));
        let refused = match r.status {
            200 => matches!(
                TrackerReply::decode(&r.body, &Limits::DEFAULT),
                Ok(TrackerReply::Failure(_))
            ),
            400..=499 => true,
            _ => false,
        };
        assert!(refused, "{q:?} got {}", r.text());
        sent += 1;
    }
    // Oversized: query, head, header count, body, garbage.
    let long_query = format!(
        "GET /announce?{} HTTP/1.1\r\nHost: t\r\n\r\n",
        "a".repeat(20_000)
    );
    let big_header = format!(
        "GET /announce HTTP/1.1\r\nX: {}\r\n\r\n",
        "b".repeat(64 << 10)
    );
    let many_headers = format!(
        "GET /announce HTTP/1.1\r\n{}\r\n",
        (0..300)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect::<String>()
    );
    let huge_scrape = format!(
        "GET /scrape?{} HTTP/1.1\r\nHost: t\r\n\r\n",
        vec!["info_hash=%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00"; 100]
            .join("&")
    );
    let raws: Vec<Vec<u8>> = vec![
        long_query.into_bytes(),
        big_header.into_bytes(),
        many_headers.into_bytes(),
        huge_scrape.into_bytes(),
        b"POST /announce HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\nxx".to_vec(),
        b"GET /announce HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n"
            .to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n".to_vec(),
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /announce?info_hash=\0 HTTP/9.9\r\n\r\n".to_vec(),
    ];
    for raw in &raws {
        if let Some(r) = http_raw(addr, raw) {
            let refused = match r.status {
                200 => {
                    matches!(
                        TrackerReply::decode(&r.body, &Limits::DEFAULT),
                        Ok(TrackerReply::Failure(_))
                    ) || r.body.starts_with(b"d")
                }
                400..=499 => true,
                _ => false,
            };
            assert!(
                refused,
                "{:?} got {}",
                String::from_utf8_lossy(&raw[..raw.len().min(60)]),
                r.text()
            );
        }
        // (No reply at all is fine for bytes that are not HTTP.)
        sent += 1;
    }
    sent
}

/// The scrape of every swarm: (complete, incomplete) per swarm.
fn all_counts(t: &TrackerProc) -> Vec<(u32, u32)> {
    let hashes: Vec<_> = (0..SWARMS).map(hash).collect();
    let files = t.scrape(&hashes);
    assert_eq!(files.len(), SWARMS as usize);
    let mut by_hash: Vec<_> = files.into_iter().collect();
    by_hash.sort_by_key(|(h, _)| *h);
    let mut expected: Vec<_> = hashes.clone();
    expected.sort();
    assert!(by_hash.iter().map(|(h, _)| *h).eq(expected.iter().copied()));
    by_hash
        .iter()
        .map(|(_, s)| (s.complete, s.incomplete))
        .collect()
}

#[test]
fn ten_thousand_peers_a_kill_a_restart_and_hostile_requests() {
    let dir = temp_dir("tracker-soak");
    let dfile = dir.path().join("dstate");
    let dfile_arg = dfile.to_str().unwrap().to_owned();
    // The per-address rate limit is off (`--rate-limit 0`): four addresses
    // send thousands of announces a second, far beyond what one client may.
    let mut args: Vec<String> = ["--dfile", &dfile_arg, "--save-interval", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--rate-limit".into(), "0".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let tracker = TrackerProc::start(dir.path(), "first", &argv);
    let addr = tracker.addr;
    let stop = Arc::new(AtomicBool::new(false));

    // Hostile requests alongside the load.
    let hostile = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) && rounds < 20 {
                hostile_requests(addr);
                rounds += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            rounds
        })
    };
    let (n1, d1) = load_phase(addr, true, Arc::new(AtomicBool::new(false)));
    eprintln!(
        "[{:?}] phase 1: {n1} announces in {d1:?} ({:.0}/s)",
        t0.elapsed(),
        n1 as f64 / d1.as_secs_f64()
    );
    let stats = tracker.stats();
    assert_eq!(stats["swarms"], SWARMS, "{stats}");
    assert_eq!(stats["peers"], PEERS, "{stats}");
    let before = all_counts(&tracker);
    assert!(before.iter().all(|&c| c == (3, 7)), "{before:?}");

    // Wait for a save to cover everything, then SIGKILL mid-soak.
    let saved_at = std::fs::metadata(&dfile)
        .map(|m| m.modified().unwrap())
        .ok();
    wait_for(Duration::from_secs(10), "a dfile save", || {
        let m = std::fs::metadata(&dfile).ok()?.modified().ok()?;
        (Some(m) != saved_at).then_some(())
    });
    let mut proc = tracker.proc;
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
    let t_kill = Instant::now();
    let port = addr.port().to_string();
    let mut again_args = argv.clone();
    again_args.extend(["--port", &port]);
    let tracker = TrackerProc::start(dir.path(), "restarted", &again_args);
    assert_eq!(tracker.addr, addr);
    let stats = tracker.stats();
    eprintln!(
        "[{:?}] restarted {:?} after the kill: {stats}",
        t0.elapsed(),
        t_kill.elapsed()
    );
    assert_eq!(stats["swarms"], SWARMS, "swarms not restored: {stats}");
    assert_eq!(stats["peers"], PEERS, "peers not restored: {stats}");
    assert_eq!(all_counts(&tracker), before, "swarm counts changed");

    // Phase 2 on the restarted tracker: every swarm still has its peers.
    let (n2, d2) = load_phase(addr, false, Arc::new(AtomicBool::new(false)));
    stop.store(true, Ordering::Relaxed);
    let rounds = hostile.join().expect("hostile requests thread");
    eprintln!(
        "[{:?}] phase 2: {n2} announces in {d2:?}; {rounds} rounds of hostile requests",
        t0.elapsed()
    );
    assert!(rounds >= 1);
    // Still alive and answering after all of it.
    // Failures changed nothing: no swarm or peer from the hostile requests.
    let stats = tracker.stats();
    assert_eq!(stats["peers"], PEERS, "{stats}");
    assert_eq!(stats["swarms"], SWARMS, "{stats}");
    let err = tracker.terminate();
    assert!(!err.contains("panicked"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(90), "{:?}", t0.elapsed());
}
