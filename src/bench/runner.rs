//! Runs a scenario: one lab for the whole scenario, then for every
//! repetition, every cell and every variant in turn (the variant order
//! rotates per repetition), one run: tracker, seeds, leechers, events, until
//! every leecher present is done or the time limit passes.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::netlab::{Lab, LinkSettings, Node, Snapshot};
use super::peers::{self, Launch, Line, Proc, PEER_PORT};
use super::scenario::{Action, Cell, Client, Peer, Role, Scenario, When};
use super::variants::Variant;

const TRACKER_PORT: u16 = 6969;

/// One peer's outcome in one run.
#[derive(Debug, Clone, Serialize)]
pub struct PeerResult {
    pub name: String,
    pub role: Role,
    pub client: Client,
    /// Seconds from the start of the run (the leechers' start).
    pub completed_s: Option<f64>,
    pub have_bytes: u64,
    pub uploaded: u64,
    pub downloaded: u64,
    pub wasted: u64,
    pub cpu_s: f64,
    /// Left on purpose (an event, or a departing seed): not expected to finish.
    pub left: bool,
    pub starts: u32,
    /// When it first started, seconds from the run's start.
    pub started_s: Option<f64>,
    /// The process ended by itself (a crash, or a client that quits).
    pub exited_early: bool,
}

/// One run: a repetition of one variant in one cell.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub repetition: u32,
    pub cell: usize,
    pub variant: String,
    pub attempt: u32,
    pub duration_s: f64,
    pub seed_left_s: Option<f64>,
    pub peers: Vec<PeerResult>,
    /// IP bytes all nodes sent into the emulator.
    pub wire_bytes: u64,
    /// File bytes the leechers gained.
    pub payload_bytes: u64,
    pub stalled: bool,
    /// CPU seconds the emulator's forwarder used during the run.
    pub emulator_cpu_s: f64,
    pub emulator: Snapshot,
}

impl RunResult {
    /// Leechers expected to finish (present at the end).
    pub fn expected(&self) -> impl Iterator<Item = &PeerResult> {
        self.peers
            .iter()
            .filter(|p| p.role == Role::Leecher && !p.left && p.starts > 0)
    }
}

/// Options from the command line.
pub struct Options {
    pub exe: PathBuf,
    pub work: PathBuf,
    /// Re-run a repetition once when the emulator's p99 lateness exceeds this.
    pub stall_us: u64,
}

/// Everything a scenario's runs share.
pub struct Bench<'a> {
    sc: &'a Scenario,
    opts: &'a Options,
    lab: Lab,
    data: PathBuf,
    file_name: String,
    lt_script: PathBuf,
}

impl<'a> Bench<'a> {
    /// Makes the data file and the lab (tracker first, then the peers).
    pub fn new(sc: &'a Scenario, opts: &'a Options) -> Result<Bench<'a>> {
        std::fs::create_dir_all(&opts.work)?;
        let file_name = format!("bench-{}.bin", sc.file_size);
        let data = opts.work.join("source").join(&file_name);
        write_random_file(&data, sc.file_size, sc.seed)?;
        let lt_script = opts.work.join("lt_peer.py");
        std::fs::write(&lt_script, include_str!("lt_peer.py"))?;
        let cell = sc.cells.first().context("no cells")?;
        let mut specs = vec![(
            "tracker".to_string(),
            LinkSettings::TRANSPARENT,
            LinkSettings::TRANSPARENT,
        )];
        for p in &sc.peers {
            let (up, down) = sc.peer_link(cell, p).settings();
            specs.push((p.name.clone(), up, down));
        }
        let lab = Lab::new(&specs, sc.seed)?;
        Ok(Bench {
            sc,
            opts,
            lab,
            data,
            file_name,
            lt_script,
        })
    }

    /// `bitfountain make` for a variant's torrent (cached per make args).
    pub fn torrent(&self, v: &Variant) -> Result<PathBuf> {
        let tag = if v.make_args.is_empty() {
            "plain".to_string()
        } else {
            v.make_args.join("").replace(['-', '%'], "")
        };
        let out = self.opts.work.join(format!("{tag}.torrent"));
        if out.exists() {
            return Ok(out);
        }
        let tracker = self.lab.node("tracker")?.addr;
        let status = std::process::Command::new(&self.opts.exe)
            .arg("make")
            .arg(&self.data)
            .arg(format!("http://{tracker}:{TRACKER_PORT}/announce"))
            .arg("-o")
            .arg(&out)
            .args(v.make_args)
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run bitfountain make")?;
        if !status.success() {
            bail!("bitfountain make failed for variant {}", v.name);
        }
        Ok(out)
    }

    /// One run; re-run once if the emulator stalled.
    pub fn run(&self, rep: u32, cell_index: usize, v: &Variant) -> Result<RunResult> {
        let mut result = self.run_once(rep, cell_index, v, 1)?;
        if result.stalled {
            tracing::warn!(
                "emulator lateness p99 {} us (over {} us): running this repetition again",
                result.emulator.lateness.p99_us,
                self.opts.stall_us
            );
            result = self.run_once(rep, cell_index, v, 2)?;
        }
        Ok(result)
    }

    fn run_once(
        &self,
        rep: u32,
        cell_index: usize,
        v: &Variant,
        attempt: u32,
    ) -> Result<RunResult> {
        let sc = self.sc;
        let cell = sc.cells.get(cell_index).context("no such cell")?;
        let torrent = self.torrent(v)?;
        let dir = self
            .opts
            .work
            .join(format!("run-{rep}-{cell_index}-{}", v.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let fwd = self.lab.forwarder()?;
        fwd.set_links(self.links_for(cell, None));
        fwd.reset(sc.seed.wrapping_add(u64::from(rep)))?;
        let cpu_at_start = fwd.snapshot().cpu_s;

        let tracker_node = self.lab.node("tracker")?;
        let mut tracker = spawn_tracker(&self.opts.exe, tracker_node, &dir)?;
        wait_for_port(tracker_node, TRACKER_PORT, Duration::from_secs(15))?;

        let (tx, rx) = mpsc::channel();
        let mut run = Run::new(self, &dir, &torrent, v, tx, rx)?;
        let outcome = run.drive(cell);
        // Everything stops whatever happened, and counters are read after.
        // The tracker goes first: peers then fail their "stopped" announce
        // at once instead of waiting on it through a lossy link.
        let _ = tracker.child.kill();
        tracker.reap();
        run.stop_all();
        run.drain();
        let duration_s = run.t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
        outcome?;
        std::thread::sleep(Duration::from_millis(20));
        let emulator = fwd.snapshot();
        let peers = run.results();
        let payload_bytes = peers
            .iter()
            .filter(|p| p.role == Role::Leecher)
            .map(|p| p.have_bytes)
            .sum();
        let result = RunResult {
            repetition: rep,
            cell: cell_index,
            variant: v.name.to_string(),
            attempt,
            duration_s: duration_s.min(sc.time_limit_s),
            seed_left_s: run.seed_left_s,
            peers,
            wire_bytes: emulator.wire_bytes(),
            payload_bytes,
            stalled: emulator.lateness.p99_us > self.opts.stall_us,
            emulator_cpu_s: emulator.cpu_s - cpu_at_start,
            emulator,
        };
        // Leechers' copies are large and verified by their clients already;
        // BITFOUNTAIN_BENCH_KEEP keeps them and the peers' logs for a look.
        if std::env::var_os("BITFOUNTAIN_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(result)
    }

    /// Link settings of every node for `cell`, with run-time overrides.
    fn links_for(
        &self,
        cell: &Cell,
        extra: Option<(&[String], &super::scenario::Overrides)>,
    ) -> Vec<(LinkSettings, LinkSettings)> {
        let mut out = vec![(LinkSettings::TRANSPARENT, LinkSettings::TRANSPARENT)];
        for p in &self.sc.peers {
            let mut spec = self.sc.peer_link(cell, p);
            if let Some((names, o)) = extra {
                if names.contains(&p.name) {
                    spec = spec_with(spec, o);
                }
            }
            out.push(spec.settings());
        }
        out
    }
}

fn spec_with(
    mut s: super::scenario::LinkSpec,
    o: &super::scenario::Overrides,
) -> super::scenario::LinkSpec {
    s.rate_mbit = o.rate_mbit.unwrap_or(s.rate_mbit);
    s.rtt_ms = o.rtt_ms.unwrap_or(s.rtt_ms);
    s.loss_percent = o.loss_percent.unwrap_or(s.loss_percent);
    s
}

/// The state of one peer during a run.
struct PeerRun {
    node: Node,
    proc: Option<Proc>,
    incarnation: u32,
    starts: u32,
    left: bool,
    status: peers::Status,
    uploaded_before: u64,
    cpu_before: f64,
    cpu_now: f64,
    completed_s: Option<f64>,
    started_s: Option<f64>,
    exited_early: bool,
    /// A departing seed of ours, started with `--seed-ratio`: its exit is
    /// the departure, at the byte, not at the next status line.
    leaves_at_ratio: bool,
    left_at_ratio: bool,
}

struct Run<'b, 'a> {
    bench: &'b Bench<'a>,
    dir: PathBuf,
    torrent: PathBuf,
    variant: &'b Variant,
    tx: Sender<Line>,
    rx: Receiver<Line>,
    peers: Vec<PeerRun>,
    t0: Option<Instant>,
    seed_left_s: Option<f64>,
    fired: Vec<bool>,
    seeds_connect: Vec<String>,
}

impl<'b, 'a> Run<'b, 'a> {
    fn new(
        bench: &'b Bench<'a>,
        dir: &Path,
        torrent: &Path,
        variant: &'b Variant,
        tx: Sender<Line>,
        rx: Receiver<Line>,
    ) -> Result<Self> {
        let mut peers = Vec::new();
        for p in &bench.sc.peers {
            peers.push(PeerRun {
                node: bench.lab.node(&p.name)?.clone(),
                proc: None,
                incarnation: 0,
                starts: 0,
                left: false,
                status: peers::Status::default(),
                uploaded_before: 0,
                cpu_before: 0.0,
                cpu_now: 0.0,
                completed_s: None,
                started_s: None,
                exited_early: false,
                leaves_at_ratio: false,
                left_at_ratio: false,
            });
        }
        let seeds_connect = bench
            .sc
            .peers
            .iter()
            .zip(&peers)
            .filter(|(p, _)| p.role == Role::Seed && p.start_s == Some(0.0))
            .map(|(_, r)| format!("{}:{PEER_PORT}", r.node.addr))
            .collect();
        Ok(Run {
            bench,
            dir: dir.to_path_buf(),
            torrent: torrent.to_path_buf(),
            variant,
            tx,
            rx,
            peers,
            t0: None,
            seed_left_s: None,
            fired: vec![false; bench.sc.events.len()],
            seeds_connect,
        })
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let sc = self.bench.sc;
        let spec = sc.peers.get(i).context("no such peer")?;
        let pdir = self.dir.join(&spec.name);
        if spec.role == Role::Seed {
            // Seeds share the source by hard links: no copy, own resume file.
            std::fs::create_dir_all(&pdir)?;
            let link = pdir.join(&self.bench.file_name);
            if !link.exists() {
                std::fs::hard_link(&self.bench.data, &link)
                    .or_else(|_| std::fs::copy(&self.bench.data, &link).map(|_| ()))
                    .context("cannot place the seed's data")?;
            }
        }
        let mut variant_args: Vec<String> = Vec::new();
        if spec.client == Client::Bitfountain {
            variant_args.extend(self.variant.get_args.iter().map(|a| a.to_string()));
            // One departing seed stops itself at its share; several share
            // one multiple between them and are sent away by `drive`.
            let departing = |p: &Peer| p.role == Role::Seed && p.start_s == Some(0.0);
            let lone = sc.peers.iter().filter(|p| departing(p)).count() == 1;
            if let (Some(multiple), true, true) = (sc.seed_departure, lone, departing(spec)) {
                variant_args.extend(["--seed-ratio".to_owned(), multiple.to_string()]);
            }
        }
        let leaves_at_ratio = variant_args.iter().any(|a| a == "--seed-ratio");
        let variant_args: Vec<&str> = variant_args.iter().map(String::as_str).collect();
        let connect: Vec<String> = if spec.role == Role::Seed {
            Vec::new()
        } else {
            self.seeds_connect.clone()
        };
        let launch = Launch {
            exe: &self.bench.opts.exe,
            torrent: &self.torrent,
            dir: &pdir,
            file_name: &self.bench.file_name,
            variant_args: &variant_args,
            connect: &connect,
            lt_script: &self.bench.lt_script,
        };
        let Some(p) = self.peers.get_mut(i) else {
            bail!("no such peer");
        };
        let now = self.t0.map_or(0.0, |t| t.elapsed().as_secs_f64());
        p.started_s.get_or_insert(now);
        p.incarnation += 1;
        p.starts += 1;
        p.left = false;
        p.leaves_at_ratio = leaves_at_ratio;
        p.uploaded_before += p.status.uploaded;
        p.status.uploaded = 0;
        p.cpu_before += p.cpu_now;
        p.cpu_now = 0.0;
        let proc = Proc::spawn(
            &p.node,
            spec.client,
            spec.role,
            &launch,
            (i, p.incarnation),
            self.tx.clone(),
        )?;
        tracing::debug!("started {} (pid {})", spec.name, proc.pid);
        p.proc = Some(proc);
        Ok(())
    }

    fn elapsed(&self) -> f64 {
        self.t0.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Applies status lines; returns how many arrived.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Ok(line) = self.rx.try_recv() {
            n += 1;
            let Some(p) = self.peers.get_mut(line.peer) else {
                continue;
            };
            if line.incarnation != p.incarnation {
                continue;
            }
            // Our seed says so as soon as its check ends; its next status
            // line may be a second away.
            if line.text.contains("\"data complete: seeding\"") {
                p.status.seeding = true;
            }
            if let Some(s) = peers::parse_status(&line) {
                if let (Some(at), None, Some(t0)) = (s.completed_at, p.completed_s, self.t0) {
                    p.completed_s = Some(at.saturating_duration_since(t0).as_secs_f64());
                }
                p.status = s;
            }
        }
        n
    }

    fn poll_processes(&mut self, sample_cpu: bool) {
        let total = self.bench.sc.file_size;
        let elapsed = self.elapsed();
        for p in &mut self.peers {
            let Some(proc) = p.proc.as_mut() else {
                continue;
            };
            if sample_cpu {
                if let Some(c) = super::cpu::process_cpu_seconds(proc.pid) {
                    p.cpu_now = c;
                }
            }
            // aria2 tells of completion only through its hook.
            if let Some(flag) = &proc.done_flag {
                if p.completed_s.is_none() && flag.exists() {
                    p.completed_s = Some(elapsed);
                    p.status.have_bytes = total;
                }
            }
            if p.leaves_at_ratio && proc.exited_cleanly() {
                tracing::debug!("{} left at its seed ratio", p.node.name);
                proc.reap();
                p.proc = None;
                p.left = true;
                p.left_at_ratio = true;
            } else if proc.exited() {
                // Not a departure: a leecher that dies unfinished counts as
                // one that never finished.
                tracing::warn!("{} exited on its own (see its .stderr.log)", p.node.name);
                proc.reap();
                p.proc = None;
                p.exited_early = true;
            }
        }
    }

    /// Seeds ready, then leechers, events and departure until done.
    fn drive(&mut self, cell: &Cell) -> Result<()> {
        let sc = self.bench.sc;
        let seeds: Vec<usize> = sc
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.role == Role::Seed && p.start_s == Some(0.0))
            .map(|(i, _)| i)
            .collect();
        for &i in &seeds {
            self.start(i)?;
        }
        let ready_by = Instant::now() + Duration::from_secs(120);
        loop {
            self.drain();
            self.poll_processes(false);
            let ready = seeds.iter().all(|&i| {
                self.peers.get(i).is_some_and(|p| {
                    p.status.seeding || p.proc.as_ref().is_some_and(|x| x.done_flag.is_some())
                })
            });
            if ready {
                break;
            }
            if seeds
                .iter()
                .any(|&i| self.peers.get(i).is_some_and(|p| p.proc.is_none()))
            {
                bail!("a seed exited while checking its data (see its .stderr.log)");
            }
            if Instant::now() > ready_by || super::interrupted() {
                bail!("the seeds were not ready within 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // aria2 and libtorrent seeds need a moment to listen.
        if seeds.iter().any(|&i| {
            sc.peers
                .get(i)
                .is_some_and(|p| p.client != Client::Bitfountain)
        }) {
            std::thread::sleep(Duration::from_secs(2));
        }
        self.t0 = Some(Instant::now());
        let mut pending: Vec<usize> = (0..sc.peers.len())
            .filter(|i| !seeds.contains(i) && sc.peers.get(*i).is_some_and(|p| p.start_s.is_some()))
            .collect();
        let fwd = self.bench.lab.forwarder()?;
        let mut last_cpu = Instant::now();
        let mut departed_at: Option<f64> = None;
        loop {
            if super::interrupted() {
                bail!("interrupted");
            }
            fwd.check_alive()?;
            let t = self.elapsed();
            let sample = last_cpu.elapsed() >= Duration::from_secs(1);
            if sample {
                last_cpu = Instant::now();
            }
            self.drain();
            self.poll_processes(sample);
            let mut started = Vec::new();
            for &i in &pending {
                if sc
                    .peers
                    .get(i)
                    .and_then(|p| p.start_s)
                    .is_some_and(|s| s <= t)
                {
                    started.push(i);
                }
            }
            for i in started {
                pending.retain(|&x| x != i);
                self.start(i)?;
            }
            if let (Some(multiple), None) = (sc.seed_departure, departed_at) {
                let uploaded: u64 = seeds
                    .iter()
                    .filter_map(|&i| self.peers.get(i))
                    .map(|p| p.uploaded_before + p.status.uploaded)
                    .sum();
                // Our seeds leave by themselves (`--seed-ratio`); the
                // others are sent away once their status lines say so.
                let left_by_itself = seeds
                    .iter()
                    .any(|&i| self.peers.get(i).is_some_and(|p| p.left_at_ratio));
                if left_by_itself || uploaded as f64 >= multiple * sc.file_size as f64 {
                    tracing::info!("seeds uploaded {uploaded} bytes: they leave at {t:.1} s");
                    for &i in &seeds {
                        self.leave(i, false);
                    }
                    departed_at = Some(t);
                    self.seed_left_s = Some(t);
                }
            }
            for (k, ev) in sc.events.iter().enumerate() {
                let due = match ev.when {
                    When::At(s) => s <= t,
                    When::AfterSeedLeft(s) => departed_at.is_some_and(|d| d + s <= t),
                };
                if !due || self.fired.get(k).copied().unwrap_or(true) {
                    continue;
                }
                if let Some(f) = self.fired.get_mut(k) {
                    *f = true;
                }
                tracing::info!("{t:.1} s: {:?} {}", ev.action, ev.peers.join(", "));
                for name in &ev.peers {
                    let Some(i) = sc.peers.iter().position(|p| &p.name == name) else {
                        continue;
                    };
                    match ev.action {
                        Action::Kill => self.leave(i, true),
                        Action::Stop => self.leave(i, false),
                        Action::Start => {
                            pending.retain(|&x| x != i);
                            if self.peers.get(i).is_some_and(|p| p.proc.is_none()) {
                                self.start(i)?;
                            }
                        }
                        Action::SetLink => {}
                    }
                }
                if ev.action == Action::SetLink {
                    fwd.set_links(self.bench.links_for(cell, Some((&ev.peers, &ev.link))));
                }
            }
            // Events after a departure that never happened wait for nothing.
            let events_left = sc.events.iter().enumerate().any(|(k, ev)| {
                let waiting = !self.fired.get(k).copied().unwrap_or(true);
                waiting && (matches!(ev.when, When::At(_)) || departed_at.is_some())
            });
            let leechers_done = sc.peers.iter().zip(&self.peers).all(|(spec, p)| {
                spec.role != Role::Leecher || p.proc.is_none() || p.completed_s.is_some()
            });
            if leechers_done && pending.is_empty() && !events_left {
                return Ok(());
            }
            if t >= sc.time_limit_s {
                tracing::info!("time limit of {} s reached", sc.time_limit_s);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A peer leaves: SIGKILL (churn) or SIGTERM with a short grace.
    fn leave(&mut self, i: usize, kill: bool) {
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        if let Some(mut proc) = p.proc.take() {
            if let Some(c) = super::cpu::process_cpu_seconds(proc.pid) {
                p.cpu_now = c;
            }
            if kill {
                let _ = proc.child.kill();
                proc.reap();
            } else {
                peers::stop_all(&mut [&mut proc], Duration::from_secs(3));
            }
        }
        p.left = true;
    }

    fn stop_all(&mut self) {
        for p in &mut self.peers {
            if let Some(proc) = &p.proc {
                if let Some(c) = super::cpu::process_cpu_seconds(proc.pid) {
                    p.cpu_now = c;
                }
            }
        }
        let mut procs: Vec<Proc> = self
            .peers
            .iter_mut()
            .filter_map(|p| p.proc.take())
            .collect();
        let mut refs: Vec<&mut Proc> = procs.iter_mut().collect();
        peers::stop_all(&mut refs, Duration::from_secs(1));
    }

    fn results(&self) -> Vec<PeerResult> {
        self.bench
            .sc
            .peers
            .iter()
            .zip(&self.peers)
            .map(|(spec, p)| PeerResult {
                name: spec.name.clone(),
                role: spec.role,
                client: spec.client,
                completed_s: p.completed_s,
                have_bytes: p.status.have_bytes,
                uploaded: p.uploaded_before + p.status.uploaded,
                downloaded: p.status.downloaded,
                wasted: p.status.wasted,
                cpu_s: p.cpu_before + p.cpu_now,
                left: p.left,
                starts: p.starts,
                started_s: p.started_s,
                exited_early: p.exited_early,
            })
            .collect()
    }
}

fn spawn_tracker(exe: &Path, node: &Node, dir: &Path) -> Result<Proc> {
    let mut cmd = node.command(exe);
    cmd.args(["track", "--bind", &node.addr.to_string()])
        .args(["--port", &TRACKER_PORT.to_string()])
        .arg("--dfile")
        .arg(dir.join("tracker.dstate"))
        .args(["--interval", "15", "--no-access-log"]);
    Proc::spawn_command(cmd, &dir.join("tracker.log"), None)
}

/// Waits until something listens on `node:port` (connecting from inside
/// the node's namespace).
fn wait_for_port(node: &Node, port: u16, limit: Duration) -> Result<()> {
    let addr = std::net::SocketAddr::from((node.addr, port));
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let ok = super::netlab::ns::in_netns(&node.netns, || {
            Ok(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
        })?;
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {} s", limit.as_secs())
}

/// `len` bytes of deterministic pseudo-random data (incompressible, so no
/// layer can shortcut it).
pub fn write_random_file(path: &Path, len: u64, seed: u64) -> Result<()> {
    use std::io::Write;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == len) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = len;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            chunk.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(block.get(..n).unwrap_or_default())?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}
