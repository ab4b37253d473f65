//! `bitfountain demo`: a whole swarm in one process on loopback — our
//! tracker, a seed, coded and plain leechers — with live progress, a per-peer
//! table at the end, and every copy verified against the original.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::{rngs::SmallRng, RngCore, SeedableRng};
use sha1::{Digest, Sha1};

use crate::make::{make_torrent, parse_piece_size, MakeArgs};
use crate::session::{CodedMode, Session, SessionConfig, TorrentHandle};
use crate::show::load_torrent;
use crate::tracker::{Tracker, TrackerConfig};
use crate::ui::{human_bytes, human_rate};

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Size of the generated file, e.g. 64M or 1G.
    #[arg(long, default_value = "128M", value_parser = parse_size)]
    pub size: u64,

    /// Number of leechers.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub leechers: u32,

    /// Upload limit of the seed in bytes per second (0: none). Limits make
    /// the swarm visible: leechers trade pieces instead of all drinking
    /// from the seed.
    #[arg(long, default_value = "16M", value_parser = parse_size)]
    pub seed_rate: u64,

    /// Upload limit of each leecher in bytes per second (0: none).
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    pub leecher_rate: u64,

    /// Work in this folder (kept afterwards) instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// `64M`, `1G`, `1048576`.
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 10),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 20),
        Some(b'g' | b'G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 64M)"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("{text} is too large"))
}

pub fn run(args: &DemoArgs) -> Result<()> {
    if args.size == 0 {
        bail!("--size must be more than 0");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

struct Member {
    name: String,
    kind: &'static str,
    session: Session,
    handle: TorrentHandle,
    saveas: PathBuf,
    started: Instant,
    done_after: Option<Duration>,
}

async fn run_async(args: &DemoArgs) -> Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("bitfountain-demo-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    println!("bitfountain demo: a swarm on loopback in {}", dir.display());

    let source = dir.join("demo.bin");
    let size = args.size;
    let src = source.clone();
    tokio::task::spawn_blocking(move || write_random(&src, size)).await??;
    let source_hash = hash_file(&source)?;

    let tracker = Tracker::bind(TrackerConfig::local())
        .await
        .context("cannot start the tracker")?;
    println!("tracker:  {}", tracker.announce_url());
    let torrent = dir.join("demo.bin.torrent");
    let made = make_torrent(&make_args(&source, &torrent, tracker.announce_url()), false)?;
    println!(
        "torrent:  {} ({}, {} pieces of {}, info-hash {})",
        torrent.display(),
        human_bytes(made.total_length),
        made.piece_count,
        human_bytes(u64::from(made.piece_length)),
        made.info_hash
    );
    let meta = load_torrent(&torrent)?;

    let mut members = Vec::new();
    let seed = start_member("seed", "seed", &meta, source.clone(), args.seed_rate).await?;
    members.push(seed);
    for i in 1..=args.leechers {
        // Odd leechers are coded, even ones plain: one swarm where coded
        // peers exchange symbols with each other and blocks with the rest.
        let (name, kind) = if i % 2 == 1 {
            (format!("coded-{i}"), "coded")
        } else {
            (format!("plain-{i}"), "plain")
        };
        let saveas = dir.join(&name).join("demo.bin");
        members.push(start_member(&name, kind, &meta, saveas, args.leecher_rate).await?);
    }
    let bars = Bars::new(&members, size);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let mut all_done = true;
        for (i, m) in members.iter_mut().enumerate() {
            let s = m.handle.status();
            if s.is_complete() && m.done_after.is_none() {
                m.done_after = Some(m.started.elapsed());
            }
            all_done &= s.is_complete();
            bars.show(i, m, &s);
        }
        if all_done {
            break;
        }
        if Instant::now() > deadline {
            bars.finish();
            bail!("the swarm did not finish within {} s", args.timeout);
        }
    }
    bars.finish();
    report(&members, size, &source_hash)?;
    for m in &members {
        m.session.shutdown().await;
    }
    let _ = tracker.shutdown().await;
    Ok(())
}

fn make_args(source: &Path, output: &Path, url: String) -> MakeArgs {
    MakeArgs {
        path: source.to_path_buf(),
        url,
        trackers: Vec::new(),
        piece_size: parse_piece_size("256K").ok(),
        comment: Some("bitfountain demo".into()),
        private: false,
        repair: 0,
        output: Some(output.to_path_buf()),
        kenosis_zone: "bt.kenosisp2p.org".into(),
        kenosis_port: 6969,
        json: false,
    }
}

async fn start_member(
    name: &str,
    kind: &'static str,
    meta: &wire::Metainfo,
    saveas: PathBuf,
    upload_rate: u64,
) -> Result<Member> {
    let config = SessionConfig {
        bind_ip: [127, 0, 0, 1].into(),
        port_range: (0, 0),
        max_upload_rate: upload_rate,
        // The seed serves both kinds; a plain leecher behaves as a legacy
        // client would (no bf_raptorq in its handshake).
        coded: if kind == "plain" {
            CodedMode::Off
        } else {
            CodedMode::Auto
        },
        ..SessionConfig::default()
    };
    let session = Session::start(config).await?;
    let handle = session
        .add_torrent(meta.clone(), saveas.clone(), |_| {})
        .await?;
    Ok(Member {
        name: name.to_owned(),
        kind,
        session,
        handle,
        saveas,
        started: Instant::now(),
        done_after: None,
    })
}

/// Progress bars on a terminal, a line every few seconds otherwise.
struct Bars {
    multi: Option<(MultiProgress, Vec<ProgressBar>)>,
    last_line: std::sync::Mutex<Instant>,
}

impl Bars {
    fn new(members: &[Member], size: u64) -> Bars {
        let multi = std::io::stdout().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template(
                "{prefix:>10} [{bar:32.cyan/blue}] {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bars = members
                .iter()
                .map(|m| {
                    let bar = multi.add(ProgressBar::new(size));
                    bar.set_style(style.clone());
                    bar.set_prefix(m.name.clone());
                    bar
                })
                .collect();
            (multi, bars)
        });
        Bars {
            multi,
            last_line: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn show(&self, i: usize, m: &Member, s: &crate::session::status::TorrentStatus) {
        let msg = format!(
            "down {:>11} up {:>11} peers {}",
            human_rate(s.down_rate),
            human_rate(s.up_rate),
            s.peers.len()
        );
        if let Some((_, bars)) = &self.multi {
            if let Some(bar) = bars.get(i) {
                bar.set_position(s.have_bytes);
                bar.set_message(msg);
            }
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        if i == 0 && last.elapsed() >= Duration::from_secs(3) {
            *last = Instant::now();
            println!("-- {:.0} s", m.started.elapsed().as_secs_f64());
        }
        if last.elapsed() < Duration::from_millis(10) {
            println!(
                "{:>10} {:5.1}% {msg}",
                m.name,
                100.0 * s.have_bytes as f64 / s.total_bytes.max(1) as f64
            );
        }
    }

    fn finish(&self) {
        if let Some((multi, bars)) = &self.multi {
            for bar in bars {
                bar.finish();
            }
            let _ = multi.clear();
        }
    }
}

fn report(members: &[Member], size: u64, source_hash: &[u8; 20]) -> Result<()> {
    println!();
    println!(
        "{:<10} {:<6} {:>9} {:>12} {:>12} {:>12} {:>12}  copy",
        "peer", "kind", "time s", "avg rate", "got plain", "got coded", "uploaded"
    );
    let mut bad = Vec::new();
    for m in members {
        let s = m.handle.status();
        let secs = m.done_after.map_or(0.0, |d| d.as_secs_f64());
        let (plain, coded) = s.plain_and_coded();
        let verified = hash_file(&m.saveas)
            .map(|h| &h == source_hash)
            .unwrap_or(false);
        if !verified {
            bad.push(m.name.clone());
        }
        let rate = if m.kind == "seed" || secs == 0.0 {
            "-".to_owned()
        } else {
            human_rate(size as f64 / secs)
        };
        println!(
            "{:<10} {:<6} {:>9} {:>12} {:>12} {:>12} {:>12}  {}",
            m.name,
            m.kind,
            if m.kind == "seed" {
                "-".to_owned()
            } else {
                format!("{secs:.1}")
            },
            rate,
            human_bytes(plain),
            human_bytes(coded),
            human_bytes(s.uploaded),
            if verified { "verified" } else { "DIFFERS" }
        );
    }
    if !bad.is_empty() {
        bail!("copies differ from the original: {}", bad.join(", "));
    }
    println!(
        "\nevery copy is identical to the original ({} each)",
        human_bytes(size)
    );
    Ok(())
}

fn write_random(path: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    let mut rng = SmallRng::from_os_rng();
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

fn hash_file(path: &Path) -> Result<[u8; 20]> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
