//! `bitfountain get` (alias `download`): download a torrent, then keep
//! seeding it, like the seeds' `btdownloadheadless`. Pointing `--saveas` at
//! complete data checks it and seeds it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use wire::{Limits, Metainfo};

use crate::kenosis::{self, KenosisArgs, KenosisResolver};
use crate::session::{Session, SessionConfig};
use crate::show::load_torrent;
use crate::ui::{human_bytes, Progress, StatusMode, StatusPrinter};

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The .torrent file or a magnet link (`magnet:?xt=urn:btih:…`; quote
    /// it in the shell), or give --url or --responsefile.
    pub torrent: Option<PathBuf>,

    /// Fetch the .torrent from this http:// URL.
    #[arg(long, conflicts_with_all = ["torrent", "responsefile"])]
    pub url: Option<String>,

    /// The .torrent file (the seeds' name for it).
    #[arg(long, conflicts_with = "torrent")]
    pub responsefile: Option<PathBuf>,

    /// Where to save: the file for a single-file torrent, the folder for a
    /// multi-file one. Default: the torrent's name in the current folder.
    /// Complete data already there is checked and seeded.
    #[arg(long)]
    pub saveas: Option<PathBuf>,

    /// The IP address or DNS name to report to the tracker.
    #[arg(long)]
    pub ip: Option<String>,

    /// Local address to listen on and connect from.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Lowest port to listen on.
    #[arg(long, default_value_t = 6881)]
    pub minport: u16,

    /// Highest port to listen on (the first free one is used).
    #[arg(long, default_value_t = 6889)]
    pub maxport: u16,

    /// Upload limit in bytes per second (0: none).
    #[arg(
        long = "max_upload_rate",
        visible_alias = "max-upload-rate",
        default_value_t = 0
    )]
    pub max_upload_rate: u64,

    /// Download limit in bytes per second (0: none).
    #[arg(
        long = "max_download_rate",
        visible_alias = "max-download-rate",
        default_value_t = 0
    )]
    pub max_download_rate: u64,

    /// Exit once the download is complete instead of seeding.
    #[arg(long)]
    pub exit_on_complete: bool,

    /// Stop seeding and exit once, with the data complete, the upload
    /// reaches RATIO times the torrent's size (e.g. 1.5). 0: seed until
    /// stopped, the default.
    #[arg(long = "seed-ratio", visible_alias = "seed_ratio", value_name = "RATIO",
          value_parser = parse_seed_ratio)]
    pub seed_ratio: Option<f64>,

    /// Connect to this peer too (repeatable), besides the tracker's.
    #[arg(long = "peer", value_name = "ADDR:PORT")]
    pub peers: Vec<SocketAddr>,

    /// Most connected peers.
    #[arg(long, default_value_t = 80)]
    pub max_peers: usize,

    /// TCP congestion control for peer connections (cubic, bbr, …; see
    /// /proc/sys/net/ipv4/tcp_available_congestion_control). Default: the
    /// system's.
    #[arg(long, value_name = "NAME")]
    pub tcp_congestion: Option<String>,

    /// Fountain-coded transfer with peers that support it: auto (coded with
    /// coded peers, plain with legacy ones), off (plain only), only (coded
    /// peers only).
    #[arg(long, value_enum, default_value = "auto")]
    pub coded: crate::session::CodedMode,

    /// Transport of coded transfer: auto (QUIC datagrams when both sides
    /// listen on UDP, else TCP), quic, or tcp.
    #[arg(long, value_enum, default_value = "auto")]
    pub coded_transport: crate::session::CodedTransport,

    /// Seconds to wait for a magnet link's metadata from peers.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub metadata_timeout: u64,

    /// Seconds between status lines when not on a terminal.
    #[arg(long, default_value_t = 5)]
    pub status_interval: u64,

    /// Print status as JSON lines.
    #[arg(long)]
    pub json: bool,

    /// Full-screen interface: progress, piece map, peers, rates, ratio;
    /// `l` shows the log, `q` quits.
    #[arg(short = 'g', long = "ui", conflicts_with = "json")]
    pub ui: bool,

    #[command(flatten)]
    pub kenosis: KenosisArgs,

    /// Seconds between liveness checks of the Kenosis tracker in use (a
    /// bare TCP connect, no request): a dead tracker is left within about
    /// this long instead of at the next announce. 0: off.
    #[arg(long = "kenosis_watch", visible_alias = "kenosis-watch", default_value = "1",
          value_name = "SECONDS", value_parser = kenosis::parse_watch)]
    pub kenosis_watch: f64,
}

/// `--seed-ratio`: a finite number ≥ 0.
fn parse_seed_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a ratio: give a number ≥ 0 such as 1.5 (0: seed until stopped)"
        )),
    }
}

/// Runs `get` on its own runtime until done (or Ctrl-C / SIGTERM).
pub fn run(args: &GetArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.ui {
        // The interface will own the terminal: keep log lines for its log
        // view from the start instead of writing them under it.
        crate::logging::capture_start();
    }
    let result = runtime.block_on(run_async(args));
    crate::logging::capture_stop();
    result
}

/// Where the torrent comes from: its metainfo, or a magnet link whose
/// metadata peers will give.
enum Source {
    Meta(Metainfo),
    Magnet(wire::Magnet),
}

async fn load(args: &GetArgs) -> Result<Source> {
    if let Some(magnet) = args.torrent.as_deref().and_then(crate::show::as_magnet) {
        return Ok(Source::Magnet(magnet?));
    }
    load_meta(args).await.map(Source::Meta)
}

async fn load_meta(args: &GetArgs) -> Result<Metainfo> {
    if let Some(url) = &args.url {
        return fetch_torrent(url).await;
    }
    match args.torrent.as_ref().or(args.responsefile.as_ref()) {
        Some(path) => load_torrent(path),
        None => bail!("no torrent given: pass a .torrent file, --responsefile FILE or --url URL"),
    }
}

/// Downloads a .torrent over HTTP, refusing anything too large to be one.
pub async fn fetch_torrent(url: &str) -> Result<Metainfo> {
    let limit = Limits::DEFAULT.metainfo_max_size;
    let mut response = crate::session::announce::http_client(None)
        .get(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .with_context(|| format!("cannot fetch {url}"))?;
    if !response.status().is_success() {
        bail!("cannot fetch {url}: HTTP {}", response.status());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("cannot fetch {url}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            bail!("{url} is larger than any torrent we accept ({limit} bytes)");
        }
    }
    Metainfo::from_bytes(&body, &Limits::DEFAULT)
        .with_context(|| format!("{url} is not a valid torrent"))
}

/// The torrent's name in the current folder, where the download goes when
/// no `--saveas` is given. The name is a checked single component; what
/// already lies there is the download folder's business, so a symlink in its
/// place is refused: the torrent, not the user, chose to write there, and
/// following it could lead anywhere (a symlink the user makes is honoured
/// through `--saveas`).
fn default_saveas(name: &str) -> Result<PathBuf> {
    let path = PathBuf::from(name);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(
            "refusing to follow the symlink {} (named by the torrent); give --saveas to choose where to save",
            path.display()
        );
    }
    Ok(path)
}

/// A running session with its one torrent, checked and started, as `get`
/// and `mount` both need it.
pub(crate) struct Started {
    pub session: Session,
    pub handle: crate::session::TorrentHandle,
    pub saveas: PathBuf,
    pub printer: StatusPrinter,
}

/// Loads the torrent (file, URL or magnet link), starts the session,
/// checks existing data and starts downloading or seeding.
pub(crate) async fn start(args: &GetArgs) -> Result<Started> {
    let source = load(args).await?;
    let config = SessionConfig {
        bind_ip: args.bind,
        port_range: (args.minport, args.maxport),
        announce_ip: args.ip.clone(),
        max_upload_rate: args.max_upload_rate,
        max_download_rate: args.max_download_rate,
        max_peers: args.max_peers,
        tcp_congestion: args.tcp_congestion.clone(),
        coded: args.coded,
        coded_transport: args.coded_transport,
        seed_ratio: args.seed_ratio,
        ..SessionConfig::default()
    };
    let mut session = Session::start(config).await?;
    let mut peers = args.peers.clone();
    let meta = match source {
        Source::Meta(meta) => meta,
        Source::Magnet(magnet) => {
            tracing::info!(
                "magnet link {}: fetching the metadata from peers (listening on {})",
                magnet.info_hash,
                session.listen_addr()
            );
            let fetch = crate::session::magnet::fetch_metadata(
                &session,
                &magnet,
                &args.peers,
                Duration::from_secs(args.metadata_timeout),
                |note| tracing::info!("{note}"),
            );
            let resolved = tokio::select! {
                r = fetch => r?,
                _ = tokio::signal::ctrl_c() => bail!("interrupted while fetching the metadata"),
            };
            peers.extend(resolved.peers);
            resolved.meta
        }
    };
    let saveas = match &args.saveas {
        Some(path) => path.clone(),
        None => default_saveas(&meta.info.name)?,
    };
    let kenosis_urls = meta
        .tracker_tiers()
        .iter()
        .flatten()
        .any(|url| wire::kenosis::KenosisUrl::parse(url).is_ok());
    if kenosis_urls && args.kenosis.kenosis {
        let lookup = kenosis::start_lookup(
            &args.kenosis,
            args.bind,
            kenosis::watch_period(args.kenosis_watch),
        )
        .await?;
        tracing::info!(
            "Kenosis announce URL: finding its tracker through the DHT (node on udp/{})",
            lookup.node().local_addr()
        );
        session.set_url_resolver(Arc::new(KenosisResolver::new(lookup)));
    }
    let mode = StatusMode::choose(args.json);
    let printer = StatusPrinter::new(mode, Duration::from_secs(args.status_interval.max(1)));
    printer.note(&format!(
        "{} ({}), saving to {}, listening on {}",
        meta.info.name,
        human_bytes(meta.info.total_length()),
        saveas.display(),
        session.listen_addr()
    ));

    let total = meta.info.total_length();
    let mut check = Progress::bytes(
        "checking",
        total,
        (mode == StatusMode::Lines).then_some(Duration::from_secs(5)),
    );
    let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(0u64);
    let checker = tokio::spawn(async move {
        while progress_rx.changed().await.is_ok() {
            let done = *progress_rx.borrow();
            check.set(done);
        }
        check.finish();
    });
    let handle = session
        .add_torrent(meta, saveas.clone(), move |done| {
            let _ = progress_tx.send(done);
        })
        .await?;
    let _ = checker.await;
    handle.add_peers(peers.iter().copied());
    Ok(Started {
        session,
        handle,
        saveas,
        printer,
    })
}

async fn run_async(args: &GetArgs) -> Result<()> {
    let Started {
        session,
        handle,
        saveas,
        mut printer,
    } = start(args).await?;

    if args.ui {
        let exit = crate::ui::tui::run(
            &handle,
            &saveas.display().to_string(),
            &session.listen_addr().to_string(),
            args.exit_on_complete,
        )
        .await?;
        session.shutdown().await;
        let s = handle.status();
        println!(
            "{}: {} of {} ({} pieces of {}), sent {}{}",
            s.name,
            human_bytes(s.have_bytes),
            human_bytes(s.total_bytes),
            s.pieces_have,
            s.pieces_total,
            human_bytes(s.uploaded),
            match exit {
                crate::ui::tui::Exit::Complete => "; download complete",
                crate::ui::tui::Exit::SeedRatio => "; seed ratio reached",
                crate::ui::tui::Exit::Quit => "",
            }
        );
        return Ok(());
    }
    let mut status = handle.watch();
    let mut announced_complete = handle.status().is_complete();
    if announced_complete {
        printer.note("data complete: seeding");
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shared = handle.shared.clone();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = shared.upload.wait() => {
                let s = handle.status();
                printer.update(&s, true);
                printer.note(&format!(
                    "seed ratio reached: uploaded {} ({:.2} × the torrent); stopping",
                    human_bytes(s.uploaded),
                    s.uploaded as f64 / s.total_bytes.max(1) as f64
                ));
                break;
            }
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                let s = status.borrow_and_update().clone();
                let just_completed = s.is_complete() && !announced_complete;
                printer.update(&s, just_completed);
                if just_completed {
                    announced_complete = true;
                    let secs = s.completed_after.map_or(0.0, |d| d.as_secs_f64());
                    printer.note(&format!(
                        "download complete in {secs:.1} s ({} received, {} wasted)",
                        human_bytes(s.downloaded),
                        human_bytes(s.wasted)
                    ));
                    if args.exit_on_complete {
                        break;
                    }
                    printer.note("seeding; Ctrl-C to stop");
                }
            }
        }
    }
    printer.finish();
    session.shutdown().await;
    let s = handle.status();
    printer.update(&s, true);
    Ok(())
}
