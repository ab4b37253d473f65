//! Kenosis: trackers found through the Mainline DHT.
//!
//! A torrent made with `make PATH kenosisp2p` announces to
//! `http://<key>.bt.<zone>:<port>/announce`. Nobody owns that name:
//!
//! - Kenosis trackers (`bitfountain track`, on by default) register
//!   themselves in the DHT under sha1(key) for every key their clients name
//!   in the `Host` header, and under a service id ([`registry`]).
//! - Kenosis clients (`bitfountain get`) find, rank and probe the
//!   registered trackers and announce to the chosen one on the URL's port
//!   with the URL's `Host`; when it dies they move to the next ([`lookup`]).
//! - Legacy clients ask DNS; the bridge (`bitfountain dns`, see
//!   [`crate::dns`]) answers with the tracker the same lookup chooses.
//! - `bitfountain kenosis` runs a bare node others bootstrap from
//!   ([`cli`]).
//!
//! The DHT engine is the `mainline` crate ([`node`]); the names, targets
//! and ranking are pure functions in `wire::kenosis`.

pub mod cli;
pub mod lookup;
pub mod node;
pub mod registry;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::Result;
use clap::Args;

pub use lookup::{KenosisResolver, Lookup, LookupConfig, LookupError};
pub use node::{DhtNode, NodeConfig};
pub use registry::{KeyBook, Registry};

/// `--kenosis` and `--kenosis_bootstrap`, shared by `track`, `get` and
/// `dns` (the seeds' spellings, with dash aliases).
#[derive(Debug, Clone, Args)]
pub struct KenosisArgs {
    /// Kenosis tracker discovery through the DHT: 1 on, 0 off. For `track`:
    /// register this tracker for the keys it serves; for `get`: find the
    /// tracker of a http://<key>.bt.<zone>/announce URL through the DHT
    /// (0: resolve that name with ordinary DNS).
    #[arg(long, default_value = "1", value_name = "0|1", value_parser = parse_switch,
          action = clap::ArgAction::Set)]
    pub kenosis: bool,

    /// DHT node to join through, as HOST:PORT (repeatable), e.g. a
    /// `bitfountain kenosis` root node. Default: the public Mainline DHT
    /// routers.
    #[arg(
        long = "kenosis_bootstrap",
        visible_alias = "kenosis-bootstrap",
        value_name = "HOST:PORT"
    )]
    pub kenosis_bootstrap: Vec<String>,
}

impl KenosisArgs {
    /// The bootstrap list for [`NodeConfig`]: `None` = the crate's default.
    pub fn bootstrap(&self) -> Option<Vec<String>> {
        (!self.kenosis_bootstrap.is_empty()).then(|| self.kenosis_bootstrap.clone())
    }
}

/// `--kenosis_watch`: seconds between liveness checks, 0 to 3600.
pub fn parse_watch(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&secs) {
        return Err("use 0 (off) to 3600 seconds".to_owned());
    }
    Ok(secs)
}

/// The watch period for `--kenosis_watch SECONDS` (0: no watch).
pub fn watch_period(secs: f64) -> Option<Duration> {
    (secs > 0.0).then(|| Duration::from_secs_f64(secs.clamp(0.1, 3600.0)))
}

/// `0`/`1` (also `off`/`on`, `false`/`true`, `no`/`yes`).
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{text:?}: use 1 (on) or 0 (off)")),
    }
}

/// The IPv4 address a DHT node should bind for a service bound to `ip`
/// (the DHT is IPv4; `::` and IPv6 addresses fall back to all IPv4
/// addresses).
pub fn dht_bind_for(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

/// Starts a client-side lookup (for `get` and `dns`).
pub async fn start_lookup(
    args: &KenosisArgs,
    bind: IpAddr,
    watch_every: Option<Duration>,
) -> Result<Lookup> {
    let node = DhtNode::start(NodeConfig {
        bind: dht_bind_for(bind),
        bootstrap: args.bootstrap(),
        // Answer queries like any BitTorrent client's DHT node: a node
        // that is listed but silent (the crate's read-only mode) makes
        // every lookup that visits it wait for its request timeout.
        server_mode: true,
        ..NodeConfig::default()
    })
    .await?;
    Ok(Lookup::new(
        node,
        LookupConfig {
            bind_ip: Some(bind).filter(|ip| !ip.is_unspecified()),
            watch_every,
            ..LookupConfig::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Command {
        let mut all = vec!["bitfountain"];
        all.extend(args);
        Cli::try_parse_from(all).unwrap().command
    }

    #[test]
    fn command_line_spellings() {
        Cli::command().debug_assert();
        for (args, on) in [
            (&["track"][..], true),
            (&["track", "--kenosis", "0"][..], false),
            (&["track", "--kenosis", "1"][..], true),
            (&["track", "--kenosis=off"][..], false),
        ] {
            let Command::Track(t) = parse(args) else {
                panic!("not track")
            };
            assert_eq!(t.kenosis.kenosis, on, "{args:?}");
        }
        let Command::Get(g) = parse(&[
            "get",
            "t.torrent",
            "--kenosis",
            "0",
            "--kenosis_bootstrap",
            "a:1",
            "--kenosis-bootstrap",
            "b:2",
            "--kenosis_watch",
            "0",
        ]) else {
            panic!("not get")
        };
        assert!(!g.kenosis.kenosis);
        assert_eq!(
            g.kenosis.bootstrap(),
            Some(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(watch_period(g.kenosis_watch), None);
        let Command::Dns(d) = parse(&["dns", "--port", "5353", "--kenosis-bootstrap", "x:1"])
        else {
            panic!("not dns")
        };
        assert_eq!((d.port, d.zone.as_str()), (5353, "bt.kenosisp2p.org"));
        assert_eq!(watch_period(d.kenosis_watch), Some(Duration::from_secs(1)));
        assert!(matches!(
            parse(&["kenosis", "--lookup", "foo"]),
            Command::Kenosis(_)
        ));
        assert!(Cli::try_parse_from(["bitfountain", "track", "--kenosis", "2"]).is_err());
        assert!(parse_watch("-1").is_err() && parse_watch("x").is_err());
    }
}
