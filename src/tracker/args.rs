//! The `track` command line. Long options keep the seeds' `bttrack.py`
//! spellings as aliases (`--dfile`, `--allowed_dir`, `--reannounce_interval`,
//! `--save_dfile_interval`, `--response_size`, ...) so their users feel at
//! home.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use wire::Limits;

use super::{DhtNodeBook, Tracker, TrackerConfig};
use crate::kenosis::{dht_bind_for, DhtNode, KenosisArgs, KeyBook, NodeConfig, Registry};

#[derive(Debug, Clone, Args)]
pub struct TrackArgs {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 6969)]
    pub port: u16,

    /// Address to listen on (`::` listens on IPv6 and IPv4).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// File that keeps the swarms across restarts (written every
    /// --save-interval seconds and on SIGINT/SIGTERM).
    #[arg(long, value_name = "FILE")]
    pub dfile: Option<PathBuf>,

    /// Seconds clients should wait between announces.
    #[arg(
        long,
        default_value_t = 1800,
        value_name = "SECONDS",
        visible_alias = "reannounce_interval"
    )]
    pub interval: u32,

    /// Seconds clients must wait at least between announces.
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECONDS",
        alias = "min_interval"
    )]
    pub min_interval: u32,

    /// Seconds a peer stays listed without announcing [default: 2 × interval].
    #[arg(long, value_name = "SECONDS", alias = "timeout_downloaders_interval")]
    pub peer_timeout: Option<u32>,

    /// Seconds between dfile saves.
    #[arg(
        long,
        default_value_t = 300,
        value_name = "SECONDS",
        visible_alias = "save_dfile_interval"
    )]
    pub save_interval: u64,

    /// Only track the info-hashes in this file (40 hex digits a line, like
    /// opentracker's whitelist).
    #[arg(long, value_name = "FILE", visible_alias = "allow-list")]
    pub allow: Option<PathBuf>,

    /// Folder of .torrent files: the index page shows their names, and only
    /// they are tracked (unless --allowed-dir-names-only).
    #[arg(long, value_name = "DIR", visible_alias = "allowed_dir")]
    pub allowed_dir: Option<PathBuf>,

    /// Use --allowed-dir for names only, tracking any info-hash.
    #[arg(long)]
    pub allowed_dir_names_only: bool,

    /// Seconds between re-reads of --allow and --allowed-dir.
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECONDS",
        visible_alias = "parse_allowed_interval"
    )]
    pub parse_allowed_interval: u64,

    /// Trust the `ip=` parameter of announces (off: the connection's
    /// address is what other peers get).
    #[arg(long)]
    pub allow_client_ip: bool,

    /// Peers given when a client does not send numwant.
    #[arg(long, default_value_t = Limits::DEFAULT.tracker_default_numwant, value_name = "N", visible_alias = "response_size")]
    pub numwant: u32,

    /// Most peers given in one answer, whatever numwant asks.
    #[arg(long, default_value_t = Limits::DEFAULT.tracker_max_numwant, value_name = "N", visible_alias = "max_give")]
    pub max_numwant: u32,

    /// Requests per second allowed from one address (IPv6: one /64); 0
    /// switches the limit off.
    #[arg(long, default_value_t = Limits::DEFAULT.tracker_rate_per_ip, value_name = "N")]
    pub rate_limit: u32,

    /// Requests one address may send in a burst above --rate-limit.
    #[arg(long, default_value_t = Limits::DEFAULT.tracker_rate_burst, value_name = "N")]
    pub rate_burst: u32,

    /// Most open connections.
    #[arg(long, default_value_t = Limits::DEFAULT.tracker_max_connections, value_name = "N")]
    pub max_connections: usize,

    /// Most open connections from one address (IPv6: one /64).
    #[arg(long, default_value_t = Limits::DEFAULT.tracker_max_connections_per_ip, value_name = "N")]
    pub max_connections_per_ip: usize,

    /// Seconds a client gets to send a request head; also the longest an
    /// idle keep-alive connection stays open.
    #[arg(long, default_value_t = Limits::DEFAULT.tracker_header_timeout_secs, value_name = "SECONDS", alias = "socket_timeout")]
    pub header_timeout: u32,

    /// Do not write the access log to stdout.
    #[arg(long)]
    pub no_access_log: bool,

    #[command(flatten)]
    pub kenosis: KenosisArgs,

    /// UDP port of the tracker's Kenosis DHT node (0: any free port).
    #[arg(long, default_value_t = 0, value_name = "PORT", alias = "dht_port")]
    pub dht_port: u16,
}

impl TrackArgs {
    pub fn to_config(&self) -> TrackerConfig {
        let limits = Limits {
            tracker_default_numwant: self.numwant.min(self.max_numwant),
            tracker_max_numwant: self.max_numwant,
            tracker_rate_per_ip: self.rate_limit,
            tracker_rate_burst: self.rate_burst.max(1),
            tracker_max_connections: self.max_connections.max(1),
            tracker_max_connections_per_ip: self.max_connections_per_ip.max(1),
            tracker_header_timeout_secs: self.header_timeout.max(1),
            ..Limits::DEFAULT
        };
        let interval = self.interval.max(1);
        TrackerConfig {
            bind: SocketAddr::new(self.bind, self.port),
            dfile: self.dfile.clone(),
            interval,
            min_interval: self.min_interval.min(interval),
            peer_timeout: self.peer_timeout.unwrap_or(interval.saturating_mul(2)),
            save_interval: Duration::from_secs(self.save_interval.max(1)),
            allow_list: self.allow.clone(),
            allowed_dir: self.allowed_dir.clone(),
            allowed_dir_names_only: self.allowed_dir_names_only,
            rescan_interval: Duration::from_secs(self.parse_allowed_interval.max(1)),
            allow_client_ip: self.allow_client_ip,
            access_log: !self.no_access_log,
            limits,
            on_announce: None,
            dht_nodes: None,
        }
    }
}

/// Runs the tracker until SIGINT or SIGTERM, then saves and exits. With
/// Kenosis on, the tracker also runs a DHT node that registers it.
pub fn run(args: &TrackArgs) -> Result<()> {
    let mut config = args.to_config();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tracker")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Install the handlers before announcing readiness, so a signal
        // sent right after start is never lost.
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let kenosis = args.kenosis.kenosis.then(|| {
            let keys = KeyBook::new(&config.limits);
            let nodes = Arc::new(DhtNodeBook::default());
            config.on_announce = Some(keys.hook());
            config.dht_nodes = Some(Arc::clone(&nodes));
            (keys, nodes)
        });
        let limits = config.limits.clone();
        let tracker = Tracker::bind(config).await?;
        let registry = match kenosis {
            Some((keys, nodes)) => {
                let node = DhtNode::start(NodeConfig {
                    bind: dht_bind_for(args.bind),
                    port: args.dht_port,
                    bootstrap: args.kenosis.bootstrap(),
                    extra: nodes.get(),
                    server_mode: true,
                })
                .await?;
                tracing::info!(
                    "Kenosis on: DHT node on udp/{}, registering port {}",
                    node.local_addr(),
                    tracker.local_addr().port()
                );
                let port = tracker.local_addr().port();
                Some(Registry::start(node, port, keys, Some(nodes), &limits))
            }
            None => None,
        };
        tracing::info!(
            "tracking on http://{}/announce (index page at /, figures at /stats)",
            tracker.local_addr()
        );
        let why = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{why}: stopping");
        if let Some(registry) = registry {
            registry.stop().await;
        }
        tracker.shutdown().await
    })
}
