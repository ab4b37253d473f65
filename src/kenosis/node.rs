//! A Mainline DHT node (the `mainline` crate) with the few operations
//! Kenosis needs: announce a port under a target, collect the peers stored
//! under a target, and list the nodes it knows for a fast rejoin.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::{Dht, Id};

/// How long a lookup waits for more answers after the first peers came.
pub const GRACE: Duration = Duration::from_millis(300);

/// How a node starts.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address the UDP socket binds to. Announces are stored under the
    /// address other nodes see, so a tracker's node binds the tracker's IP.
    pub bind: Ipv4Addr,
    /// UDP port; 0 picks a free one.
    pub port: u16,
    /// `host:port` nodes to join through. `None`: the public Mainline
    /// routers (the crate's default list). `Some(empty)`: none — this node
    /// starts a network of its own (a root node).
    pub bootstrap: Option<Vec<String>>,
    /// More nodes to try first (known nodes kept in a tracker's dfile).
    pub extra: Vec<SocketAddrV4>,
    /// Answer other nodes' queries and store their announces from the
    /// start (trackers and root nodes are long-lived and reachable).
    pub server_mode: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            bind: Ipv4Addr::UNSPECIFIED,
            port: 0,
            bootstrap: None,
            extra: Vec::new(),
            server_mode: false,
        }
    }
}

/// A running DHT node; dropping the last clone stops it.
#[derive(Debug, Clone)]
pub struct DhtNode {
    dht: AsyncDht,
    addr: SocketAddrV4,
}

impl DhtNode {
    /// Resolves the bootstrap names and starts the node (its own thread).
    pub async fn start(config: NodeConfig) -> Result<DhtNode> {
        let mut bootstrap: Option<Vec<SocketAddrV4>> = None;
        if let Some(names) = &config.bootstrap {
            let mut addrs = Vec::new();
            for name in names {
                let found = resolve_v4(name)
                    .await
                    .with_context(|| format!("cannot use Kenosis bootstrap node {name:?}"))?;
                addrs.extend(found);
            }
            bootstrap = Some(addrs);
        }
        let bind = config.bind;
        let started = tokio::task::spawn_blocking(move || {
            let mut b = Dht::builder();
            b.bind_address(bind).port(config.port);
            if config.server_mode {
                b.server_mode();
            }
            // BEP 42: a node on a public address needs an id derived from
            // it, or others keep only one node per address.
            if !bind.is_unspecified() && !bind.is_loopback() && !bind.is_private() {
                b.public_ip(bind);
            }
            match bootstrap {
                Some(list) => {
                    let mut all: Vec<SocketAddrV4> = config.extra.clone();
                    all.extend(list);
                    b.bootstrap(&all);
                }
                None if config.extra.is_empty() => {}
                None => {
                    b.extra_bootstrap(&config.extra);
                }
            }
            b.build()
        })
        .await
        .context("the DHT start task failed")?;
        let dht = started
            .with_context(|| format!("cannot start a DHT node on {bind}:{}", config.port))?
            .as_async();
        let addr = dht.info().await.local_addr();
        tracing::info!(%addr, "Kenosis DHT node started");
        Ok(DhtNode { dht, addr })
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// Address others can bootstrap from (an unspecified bind shows as
    /// loopback).
    pub fn contact_addr(&self) -> SocketAddrV4 {
        if self.addr.ip().is_unspecified() {
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.addr.port())
        } else {
            self.addr
        }
    }

    /// Stores `port` (with the address other nodes see) under `target` on
    /// the nodes closest to it. Returns how long it took.
    pub async fn announce(&self, target: [u8; 20], port: u16) -> Result<Duration> {
        let started = std::time::Instant::now();
        self.dht
            .announce_peer(Id::from(target), Some(port))
            .await
            .map_err(|e| anyhow::anyhow!("DHT announce failed: {e}"))?;
        Ok(started.elapsed())
    }

    /// The peers stored under `target`, as found until the lookup ends,
    /// `wait` passes, `max` distinct addresses have come, or [`GRACE`] after
    /// the first answer that held any (whatever is first). Order: as
    /// received; callers rank them.
    ///
    /// The grace matters: an iterative lookup only ends when every node it
    /// asked has answered or timed out (2 s), and nodes of exited processes
    /// stay listed for a while. Peers stored under a target sit on the few
    /// nodes closest to it, which answer together.
    pub async fn get_peers(
        &self,
        target: [u8; 20],
        max: usize,
        wait: Duration,
    ) -> Vec<SocketAddrV4> {
        let mut stream = self.dht.get_peers(Id::from(target));
        let mut found: Vec<SocketAddrV4> = Vec::new();
        let mut deadline = tokio::time::Instant::now() + wait;
        while found.len() < max {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(batch)) => {
                    if found.is_empty() && !batch.is_empty() {
                        deadline = deadline.min(tokio::time::Instant::now() + GRACE);
                    }
                    for peer in batch {
                        if found.len() < max && !found.contains(&peer) {
                            found.push(peer);
                        }
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        found
    }

    /// Nodes of the routing table that answered recently (for the dfile).
    pub async fn known_nodes(&self) -> Vec<SocketAddrV4> {
        let mut nodes = Vec::new();
        for text in self.dht.to_bootstrap().await {
            if let Ok(addr) = text.parse::<SocketAddrV4>() {
                nodes.push(addr);
            }
        }
        nodes
    }

    /// Whether the node has joined a network: its routing table holds
    /// anyone at all.
    pub async fn has_neighbours(&self) -> bool {
        !self.dht.to_bootstrap().await.is_empty()
    }
}

/// `host:port` → its IPv4 addresses (the DHT speaks IPv4 only).
async fn resolve_v4(name: &str) -> Result<Vec<SocketAddrV4>> {
    let addrs: Vec<SocketAddrV4> = tokio::net::lookup_host(name)
        .await?
        .filter_map(|a| match a {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        })
        .collect();
    if addrs.is_empty() {
        bail!("no IPv4 address");
    }
    Ok(addrs)
}
