//! `bitfountain kenosis`: a bare DHT node others bootstrap from (the seeds'
//! root node on port 5005), or, with `--lookup`, one lookup printed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use wire::kenosis::{KenosisHost, KenosisUrl, Key};

use super::{dht_bind_for, DhtNode, Lookup, LookupConfig, NodeConfig};

#[derive(Debug, Clone, Args)]
pub struct KenosisCmdArgs {
    /// UDP port of the node (0: any free port).
    #[arg(long, default_value_t = 5005)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Node to join through, as HOST:PORT (repeatable). Without it this
    /// node starts a network of its own that others join through it.
    #[arg(
        long = "kenosis_bootstrap",
        visible_alias = "kenosis-bootstrap",
        value_name = "HOST:PORT"
    )]
    pub kenosis_bootstrap: Vec<String>,

    /// Instead of running a node: find the tracker for a key, a
    /// <key>.bt.<zone> name or a Kenosis announce URL, print the ranked
    /// candidates and the choice, and exit (needs --kenosis_bootstrap or the
    /// public DHT).
    #[arg(long, value_name = "KEY|NAME|URL")]
    pub lookup: Option<String>,
}

/// Runs the command until SIGINT/SIGTERM (or, with `--lookup`, once).
pub fn run(args: &KenosisCmdArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kenosis")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        match &args.lookup {
            Some(name) => lookup_once(args, name).await,
            None => serve(args).await,
        }
    })
}

async fn serve(args: &KenosisCmdArgs) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let node = DhtNode::start(NodeConfig {
        bind: dht_bind_for(args.bind),
        port: args.port,
        // No bootstrap list: a root, not a member of the public DHT.
        bootstrap: Some(args.kenosis_bootstrap.clone()),
        server_mode: true,
        ..NodeConfig::default()
    })
    .await?;
    let addr = node.contact_addr();
    println!("kenosis node: {addr} (others join with --kenosis_bootstrap {addr})");
    let mut report = tokio::time::interval(Duration::from_secs(300));
    report.tick().await;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = report.tick() => {
                tracing::info!("{} nodes known", node.known_nodes().await.len());
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}

/// A key from a bare key, a `<key>.bt.<zone>` name or an announce URL.
fn parse_key(text: &str) -> Result<Key> {
    if let Ok(url) = KenosisUrl::parse(text) {
        return Ok(url.host.key);
    }
    if let Ok(host) = KenosisHost::parse(text) {
        return Ok(host.key);
    }
    Key::parse(text).map_err(|e| anyhow::anyhow!("{text:?} is not a Kenosis key, name or URL: {e}"))
}

async fn lookup_once(args: &KenosisCmdArgs, name: &str) -> Result<()> {
    let key = parse_key(name)?;
    let bind = dht_bind_for(args.bind);
    let node = DhtNode::start(NodeConfig {
        bind,
        port: 0,
        bootstrap: (!args.kenosis_bootstrap.is_empty()).then(|| args.kenosis_bootstrap.clone()),
        server_mode: true,
        ..NodeConfig::default()
    })
    .await?;
    let lookup = Lookup::new(
        node,
        LookupConfig {
            bind_ip: (bind != Ipv4Addr::UNSPECIFIED).then_some(IpAddr::V4(bind)),
            watch_every: None,
            ..LookupConfig::default()
        },
    );
    let chosen = lookup.resolve(&key).await;
    println!("key {key} (DHT target {})", wire::ids::hex40(&key.target()));
    for (i, (c, dead)) in lookup.candidates(&key).iter().enumerate() {
        println!(
            "{:>3}. {}  {}{}",
            i + 1,
            c.addr,
            if c.serves_key {
                "serves the key"
            } else {
                "service only"
            },
            if *dead { ", not answering" } else { "" }
        );
    }
    match chosen {
        Ok(tracker) => {
            println!("chosen: {tracker}");
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}
