//! The forwarder: one thread moving IP packets between the namespaces' TUN
//! devices through the emulated links.
//!
//! Topology: every node hangs off a virtual switch by an access link with an
//! uplink (node → switch) and a downlink (switch → node), each a [`Pipe`].
//! A packet from A to B crosses A's uplink, then B's downlink. Events sit in
//! one heap ordered by virtual time, so packets from several uplinks meet a
//! downlink's queue in the order they would on a wire.
//!
//! The thread sleeps in `ppoll` until the next packet is due or a TUN device
//! is readable, with the timer slack cut to 1 ns so sub-millisecond delays
//! are honoured; how late each event is handled is recorded.

use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use super::link::{LinkCounters, LinkSettings, Pipe, Verdict};

/// One node as the forwarder sees it.
pub struct ForwardNode {
    pub name: String,
    pub addr: Ipv4Addr,
    pub tun: File,
    pub up: LinkSettings,
    pub down: LinkSettings,
}

/// Counters of one node's access link.
#[derive(Debug, Clone, Serialize)]
pub struct NodeLinks {
    pub name: String,
    pub addr: Ipv4Addr,
    pub up: LinkCounters,
    pub down: LinkCounters,
}

/// Width of a lateness histogram bucket, and how many there are (the last
/// one collects everything beyond).
const BUCKET_US: u64 = 50;
const BUCKETS: usize = 400;

/// How late events were handled compared with their virtual time.
#[derive(Debug, Clone, Serialize)]
pub struct Lateness {
    pub events: u64,
    pub mean_us: f64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Events handled more than 1 ms late.
    pub over_1ms: u64,
    #[serde(skip)]
    sum_us: u64,
    #[serde(skip)]
    buckets: Vec<u64>,
}

impl Default for Lateness {
    fn default() -> Self {
        Lateness {
            events: 0,
            mean_us: 0.0,
            p99_us: 0,
            p999_us: 0,
            max_us: 0,
            over_1ms: 0,
            sum_us: 0,
            buckets: vec![0; BUCKETS],
        }
    }
}

impl Lateness {
    fn record(&mut self, late_ns: u64) {
        let us = late_ns / 1000;
        self.events += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
        self.over_1ms += (us > 1000) as u64;
        let i = ((us / BUCKET_US) as usize).min(BUCKETS - 1);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
    }

    /// Fills the derived fields (percentiles are bucket upper bounds).
    fn finish(&mut self) {
        self.mean_us = self.sum_us as f64 / self.events.max(1) as f64;
        self.p99_us = self.quantile(0.99);
        self.p999_us = self.quantile(0.999);
    }

    fn quantile(&self, q: f64) -> u64 {
        let target = (self.events as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target && seen > 0 {
                return ((i as u64 + 1) * BUCKET_US).min(self.max_us);
            }
        }
        self.max_us
    }
}

/// Everything the forwarder reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub links: Vec<NodeLinks>,
    pub lateness: Lateness,
    /// Packets to addresses no node has (or not IPv4), dropped.
    pub unroutable_packets: u64,
    pub tun_write_errors: u64,
    /// CPU seconds the forwarder thread has used since it started.
    pub cpu_s: f64,
}

impl Snapshot {
    /// Bytes the nodes sent into the lab (all uplinks' input).
    pub fn wire_bytes(&self) -> u64 {
        self.links.iter().map(|l| l.up.bytes_in).sum()
    }
}

#[derive(Default)]
struct Control {
    stop: bool,
    settings: Vec<(LinkSettings, LinkSettings)>,
    settings_gen: u64,
    reset_seed: u64,
    reset_gen: u64,
    reset_done: u64,
    snapshot: Snapshot,
    tid: i32,
}

/// A running forwarder; dropping it stops the thread (closing the TUN
/// devices with it).
pub struct Forwarder {
    shared: Arc<Mutex<Control>>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Control>) -> MutexGuard<'_, Control> {
    // A panicking forwarder leaves plain counters behind; they stay readable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Forwarder {
    pub fn start(nodes: Vec<ForwardNode>, seed: u64) -> Result<Forwarder> {
        let shared = Arc::new(Mutex::new(Control {
            settings: nodes.iter().map(|n| (n.up, n.down)).collect(),
            ..Control::default()
        }));
        let state = State::new(nodes, seed);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("bench-forwarder".into())
            .spawn(move || state.run(&thread_shared))?;
        Ok(Forwarder {
            shared,
            thread: Some(thread),
        })
    }

    /// Changes every node's links at once (in node order); takes effect for
    /// the next packet.
    pub fn set_links(&self, settings: Vec<(LinkSettings, LinkSettings)>) {
        let mut c = lock(&self.shared);
        c.settings = settings;
        c.settings_gen += 1;
    }

    pub fn links(&self) -> Vec<(LinkSettings, LinkSettings)> {
        lock(&self.shared).settings.clone()
    }

    /// Zeroes counters and lateness and restarts every loss pattern from
    /// `seed`; waits until the forwarder has done it.
    pub fn reset(&self, seed: u64) -> Result<()> {
        let want = {
            let mut c = lock(&self.shared);
            c.reset_seed = seed;
            c.reset_gen += 1;
            c.reset_gen
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if lock(&self.shared).reset_done >= want {
                return Ok(());
            }
            self.check_alive()?;
            std::thread::sleep(Duration::from_millis(2));
        }
        bail!("the link emulator did not answer within 2 s")
    }

    /// The latest counters (at most a few milliseconds old).
    pub fn snapshot(&self) -> Snapshot {
        let mut s = lock(&self.shared).snapshot.clone();
        s.lateness.finish();
        s
    }

    /// Fails if the forwarder thread has died.
    pub fn check_alive(&self) -> Result<()> {
        match &self.thread {
            Some(t) if !t.is_finished() => Ok(()),
            _ => Err(anyhow!("the link emulator thread stopped")),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Leaving node `src`'s uplink.
    Up,
    /// Leaving node `dst`'s downlink into its TUN device.
    Down,
}

struct Event {
    at: u64,
    seq: u64,
    stage: Stage,
    src: usize,
    dst: usize,
    packet: Vec<u8>,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct State {
    names: Vec<(String, Ipv4Addr)>,
    tuns: Vec<File>,
    ups: Vec<Pipe>,
    downs: Vec<Pipe>,
    by_addr: HashMap<Ipv4Addr, usize>,
    heap: BinaryHeap<Event>,
    seq: u64,
    epoch: Instant,
    lateness: Lateness,
    unroutable: u64,
    write_errors: u64,
    settings_gen: u64,
    reset_gen: u64,
    cpu_s: f64,
    cpu_read: Option<Instant>,
}

fn pipe_seed(seed: u64, node: usize, up: bool) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((node as u64) << 1 | up as u64)
}

impl State {
    fn new(nodes: Vec<ForwardNode>, seed: u64) -> State {
        let mut s = State {
            names: Vec::new(),
            tuns: Vec::new(),
            ups: Vec::new(),
            downs: Vec::new(),
            by_addr: HashMap::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            epoch: Instant::now(),
            lateness: Lateness::default(),
            unroutable: 0,
            write_errors: 0,
            settings_gen: 0,
            reset_gen: 0,
            cpu_s: 0.0,
            cpu_read: None,
        };
        for (i, n) in nodes.into_iter().enumerate() {
            s.by_addr.insert(n.addr, i);
            s.names.push((n.name, n.addr));
            s.tuns.push(n.tun);
            s.ups.push(Pipe::new(n.up, pipe_seed(seed, i, true)));
            s.downs.push(Pipe::new(n.down, pipe_seed(seed, i, false)));
        }
        s
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn run(mut self, shared: &Mutex<Control>) {
        // SAFETY: prctl(PR_SET_TIMERSLACK) and gettid only touch this thread.
        let tid = unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
            libc::gettid()
        };
        lock(shared).tid = tid;
        raise_priority(tid);
        let mut buf = vec![0u8; 65536];
        let mut fds: Vec<libc::pollfd> = self
            .tuns
            .iter()
            .map(|t| libc::pollfd {
                fd: t.as_raw_fd(),
                events: libc::POLLIN,
                revents: libc::POLLIN,
            })
            .collect();
        let mut last_sync = Instant::now();
        loop {
            for i in 0..fds.len() {
                if fds.get(i).is_some_and(|f| f.revents != 0) {
                    self.read_tun(i, &mut buf);
                }
            }
            self.deliver_due();
            if last_sync.elapsed() >= Duration::from_millis(1) {
                last_sync = Instant::now();
                if self.sync(shared, tid) {
                    return;
                }
            }
            // Sleep until the next event, but wake at least every 5 ms to
            // pick up new settings and publish counters.
            let wait_ns = self
                .heap
                .peek()
                .map_or(5_000_000, |e| e.at.saturating_sub(self.now()))
                .min(5_000_000);
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: wait_ns as libc::c_long,
            };
            for f in fds.iter_mut() {
                f.revents = 0;
            }
            // SAFETY: fds is a valid array of pollfd for its length; ts lives
            // across the call; a null sigmask keeps the current one.
            let rc = unsafe {
                libc::ppoll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    &ts,
                    std::ptr::null(),
                )
            };
            if rc < 0 {
                // EINTR: simply go round again with everything readable.
                for f in fds.iter_mut() {
                    f.revents = libc::POLLIN;
                }
            }
        }
    }

    /// Exchanges settings, resets and counters with the controller; true
    /// when told to stop.
    fn sync(&mut self, shared: &Mutex<Control>, tid: i32) -> bool {
        let mut c = lock(shared);
        if c.stop {
            return true;
        }
        if c.settings_gen != self.settings_gen {
            self.settings_gen = c.settings_gen;
            for (i, (up, down)) in c.settings.iter().enumerate() {
                if let (Some(u), Some(d)) = (self.ups.get_mut(i), self.downs.get_mut(i)) {
                    u.settings = *up;
                    d.settings = *down;
                }
            }
        }
        if c.reset_gen != self.reset_gen {
            self.reset_gen = c.reset_gen;
            for (i, (u, d)) in self.ups.iter_mut().zip(self.downs.iter_mut()).enumerate() {
                u.reset(pipe_seed(c.reset_seed, i, true));
                d.reset(pipe_seed(c.reset_seed, i, false));
            }
            self.lateness = Lateness::default();
            self.unroutable = 0;
            self.write_errors = 0;
            c.reset_done = c.reset_gen;
        }
        let snap = &mut c.snapshot;
        snap.links = self
            .names
            .iter()
            .zip(self.ups.iter().zip(self.downs.iter()))
            .map(|((name, addr), (u, d))| NodeLinks {
                name: name.clone(),
                addr: *addr,
                up: u.counters,
                down: d.counters,
            })
            .collect();
        snap.lateness.clone_from(&self.lateness);
        snap.unroutable_packets = self.unroutable;
        snap.tun_write_errors = self.write_errors;
        // /proc costs a few microseconds: ten times a second is plenty.
        if self
            .cpu_read
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.cpu_read = Some(Instant::now());
            self.cpu_s = thread_cpu_s(tid);
        }
        snap.cpu_s = self.cpu_s;
        false
    }

    /// Reads what node `src`'s TUN has (a bounded batch, for fairness).
    fn read_tun(&mut self, src: usize, buf: &mut [u8]) {
        for _ in 0..256 {
            let Some(mut tun) = self.tuns.get(src) else {
                return;
            };
            let n = match tun.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!("TUN read on node {src}: {e}");
                    return;
                }
            };
            let Some(packet) = buf.get(..n) else { return };
            let now = self.now();
            self.route(src, now, packet);
        }
    }

    fn route(&mut self, src: usize, now: u64, packet: &[u8]) {
        // IPv4 only; destination address at bytes 16..20.
        let dst = match packet.get(16..20) {
            Some(&[a, b, c, d]) if packet.first().is_some_and(|v| v >> 4 == 4) => {
                self.by_addr.get(&Ipv4Addr::new(a, b, c, d)).copied()
            }
            _ => None,
        };
        let Some(dst) = dst.filter(|&d| d != src) else {
            self.unroutable += 1;
            return;
        };
        let Some(up) = self.ups.get_mut(src) else {
            return;
        };
        if let Verdict::Deliver(at) = up.offer(now, packet.len()) {
            self.push(at, Stage::Up, src, dst, packet.to_vec());
        }
    }

    fn push(&mut self, at: u64, stage: Stage, src: usize, dst: usize, packet: Vec<u8>) {
        self.seq += 1;
        self.heap.push(Event {
            at,
            seq: self.seq,
            stage,
            src,
            dst,
            packet,
        });
    }

    fn deliver_due(&mut self) {
        // Bounded: each pass handles what is due now; new events due at once
        // (zero-delay downlinks) are handled in the same pass.
        let now = self.now();
        while self.heap.peek().is_some_and(|e| e.at <= now) {
            let Some(e) = self.heap.pop() else { break };
            self.lateness.record(now - e.at);
            match e.stage {
                Stage::Up => {
                    if let Some(up) = self.ups.get_mut(e.src) {
                        up.note_out(e.packet.len());
                    }
                    let Some(down) = self.downs.get_mut(e.dst) else {
                        continue;
                    };
                    // Enters the downlink at the virtual time it left the
                    // uplink, however late we are.
                    if let Verdict::Deliver(at) = down.offer(e.at, e.packet.len()) {
                        self.push(at, Stage::Down, e.src, e.dst, e.packet);
                    }
                }
                Stage::Down => {
                    if let Some(down) = self.downs.get_mut(e.dst) {
                        down.note_out(e.packet.len());
                    }
                    let ok = self
                        .tuns
                        .get(e.dst)
                        .is_some_and(|mut t| t.write(&e.packet).is_ok());
                    self.write_errors += (!ok) as u64;
                }
            }
        }
    }
}

/// Real-time priority for the forwarder: on a shared machine it would
/// otherwise queue behind the peers it serves and every compiler around,
/// and its lateness becomes the link's jitter. It sleeps between packets,
/// and the kernel's RT throttling bounds it anyway. Falls back to nice -15.
fn raise_priority(tid: i32) {
    let param = libc::sched_param { sched_priority: 20 };
    // SAFETY: sched_setscheduler(0, …) and setpriority act on this thread
    // only and read one sched_param that lives across the call.
    let rt = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
    if !rt {
        let nice = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -15) } == 0;
        tracing::warn!(
            "the forwarder runs without real-time priority{}: expect more lateness",
            if nice { " (nice -15)" } else { "" }
        );
    }
}

/// CPU seconds (user + system) of one thread of this process.
fn thread_cpu_s(tid: i32) -> f64 {
    super::super::cpu::cpu_seconds(&format!("/proc/self/task/{tid}/stat")).unwrap_or(0.0)
}
