//! `bitfountain dns`: the Kenosis DNS bridge for legacy clients.
//!
//! A legacy client resolves `<key>.bt.<zone>` like any host name; the
//! bridge, authoritative for the zone, answers with the address of the
//! tracker a Kenosis lookup chooses (the same ranking and probing as
//! `bitfountain get`, so both kinds of client meet at one tracker):
//!
//! | question                         | answer                               |
//! |----------------------------------|--------------------------------------|
//! | `A <key>.<zone>`, tracker found   | NOERROR, one A record, TTL 30 s      |
//! | `A <key>.<zone>`, none found      | NXDOMAIN                             |
//! | `AAAA` (or other types) in zone   | NOERROR, no records                  |
//! | malformed label in the zone      | NXDOMAIN                             |
//! | outside the zone, non-IN class   | REFUSED                              |
//! | not a query, not one question    | NOTIMP / FORMERR                     |
//! | too many lookups at once         | SERVFAIL                             |
//!
//! UDP and TCP on the same port (hickory-server); identical concurrent
//! questions share one lookup (the lookup's single-flight).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use wire::kenosis::{classify_dns_name, DnsName};

use crate::kenosis::{self, Lookup, LookupError};

/// TTL of the A records (the lookup cache's lifetime).
pub const TTL_SECS: u32 = 30;
/// An idle TCP client is dropped after this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Args)]
pub struct DnsArgs {
    /// The zone this bridge answers for: names <key>.<ZONE>.
    #[arg(long, default_value = "bt.kenosisp2p.org", value_name = "ZONE")]
    pub zone: String,

    /// UDP and TCP port to answer on.
    #[arg(long, default_value_t = 53)]
    pub port: u16,

    /// Address to answer on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// DHT node to join through, as HOST:PORT (repeatable). Default: the
    /// public Mainline DHT routers.
    #[arg(
        long = "kenosis_bootstrap",
        visible_alias = "kenosis-bootstrap",
        value_name = "HOST:PORT"
    )]
    pub kenosis_bootstrap: Vec<String>,

    /// Seconds between liveness checks of the trackers given out (a bare
    /// TCP connect), so a dead one is replaced at once (0: off; then only
    /// after the 30 s cache).
    #[arg(long = "kenosis_watch", visible_alias = "kenosis-watch", default_value = "1",
          value_name = "SECONDS", value_parser = kenosis::parse_watch)]
    pub kenosis_watch: f64,
}

/// Counters of a running bridge.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub answered: AtomicU64,
    pub nxdomain: AtomicU64,
    pub refused: AtomicU64,
    pub servfail: AtomicU64,
}

/// The request handler: one question in, one answer out.
pub struct Bridge {
    zone: String,
    lookup: Lookup,
    stats: Arc<BridgeStats>,
}

impl Bridge {
    pub fn new(zone: &str, lookup: Lookup) -> Bridge {
        Bridge {
            zone: zone.trim_matches('.').to_ascii_lowercase(),
            lookup,
            stats: Arc::default(),
        }
    }

    /// What to answer: a response code and maybe the tracker's address.
    async fn answer(&self, request: &Request) -> (ResponseCode, Option<std::net::Ipv4Addr>) {
        let meta = &request.metadata;
        if meta.message_type != MessageType::Query || meta.op_code != OpCode::Query {
            return (ResponseCode::NotImp, None);
        }
        let [query] = request.queries.queries() else {
            return (ResponseCode::FormErr, None);
        };
        let class = query.query_class();
        let name = query.original().name().to_ascii();
        let kind = classify_dns_name(&name, &self.zone);
        if class != DNSClass::IN || kind == DnsName::OutOfZone {
            return (ResponseCode::Refused, None);
        }
        let key = match kind {
            DnsName::Key(key) => key,
            DnsName::Apex => return (ResponseCode::NoError, None),
            DnsName::Malformed | DnsName::OutOfZone => return (ResponseCode::NXDomain, None),
        };
        if !matches!(query.query_type(), RecordType::A | RecordType::ANY) {
            return (ResponseCode::NoError, None);
        }
        match self.lookup.resolve(&key).await {
            Ok(tracker) => (ResponseCode::NoError, Some(*tracker.ip())),
            Err(LookupError::Busy) => (ResponseCode::ServFail, None),
            Err(e) => {
                tracing::debug!("{e}");
                (ResponseCode::NXDomain, None)
            }
        }
    }

    fn count(&self, code: ResponseCode) {
        let counter = match code {
            ResponseCode::NXDomain => &self.stats.nxdomain,
            ResponseCode::Refused => &self.stats.refused,
            ResponseCode::ServFail => &self.stats.servfail,
            _ => &self.stats.answered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl RequestHandler for Bridge {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let (code, address) = self.answer(request).await;
        self.count(code);
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.response_code = code;
        meta.authoritative = code != ResponseCode::Refused;
        meta.recursion_available = false;
        let records: Vec<Record> = match (address, request.queries.queries().first()) {
            (Some(ip), Some(q)) => vec![Record::from_rdata(
                q.original().name().clone(),
                TTL_SECS,
                RData::A(A(ip)),
            )],
            _ => Vec::new(),
        };
        tracing::debug!(
            src = %request.src(),
            question = ?request.queries.queries().first().map(|q| q.original().to_string()),
            ?code,
            ?address,
            "DNS"
        );
        let response = MessageResponseBuilder::from_message_request(request).build(
            meta,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("cannot send a DNS answer: {e}");
                meta.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: meta,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// A running bridge (UDP and TCP on one port).
pub struct DnsBridge {
    addr: SocketAddr,
    server: Server<Bridge>,
    stats: Arc<BridgeStats>,
}

impl DnsBridge {
    /// Binds UDP and TCP on `addr` (port 0: a free port, the same for both)
    /// and starts answering.
    pub async fn start(zone: &str, lookup: Lookup, addr: SocketAddr) -> Result<DnsBridge> {
        let (udp, tcp) = bind_pair(addr).await?;
        let addr = udp.local_addr()?;
        let bridge = Bridge::new(zone, lookup);
        let stats = Arc::clone(&bridge.stats);
        let mut server = Server::new(bridge);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, 64);
        Ok(DnsBridge {
            addr,
            server,
            stats,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stats(&self) -> &BridgeStats {
        &self.stats
    }

    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}

/// UDP and TCP sockets on the same address and port.
async fn bind_pair(addr: SocketAddr) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot answer DNS on udp/{addr}"))?;
        let port_addr = udp.local_addr()?;
        match tokio::net::TcpListener::bind(port_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // With port 0 another try gets another port.
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot answer DNS on tcp/{port_addr}"))
            }
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no port"), anyhow::Error::from))
        .context("cannot find a port free for both UDP and TCP")
}

/// Runs the bridge until SIGINT or SIGTERM.
pub fn run(args: &DnsArgs) -> Result<()> {
    let zone = args.zone.trim_matches('.').to_ascii_lowercase();
    if !wire::kenosis::valid_zone(&zone) {
        anyhow::bail!("--zone {:?} is not a DNS name", args.zone);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dns")
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let kargs = kenosis::KenosisArgs {
            kenosis: true,
            kenosis_bootstrap: args.kenosis_bootstrap.clone(),
        };
        let lookup =
            kenosis::start_lookup(&kargs, args.bind, kenosis::watch_period(args.kenosis_watch))
                .await?;
        let bridge = DnsBridge::start(&zone, lookup, SocketAddr::new(args.bind, args.port)).await?;
        tracing::info!(
            "DNS bridge for {zone} answering on {} (udp and tcp)",
            bridge.local_addr()
        );
        println!("dns bridge: {} zone {zone}", bridge.local_addr());
        let why = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        let s = bridge.stats();
        tracing::info!(
            "{why}: stopping ({} answered, {} NXDOMAIN, {} REFUSED, {} SERVFAIL)",
            s.answered.load(Ordering::Relaxed),
            s.nxdomain.load(Ordering::Relaxed),
            s.refused.load(Ordering::Relaxed),
            s.servfail.load(Ordering::Relaxed)
        );
        bridge.shutdown().await;
        Ok(())
    })
}
