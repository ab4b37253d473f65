//! HTTP: the accept loop (connection caps), hyper's HTTP/1 connection driver
//! (head size and count limits, the header-read timeout that also bounds
//! idle keep-alive), and the request handlers.
//!
//! Handlers are synchronous: an announce is a parse, one shard lock and a
//! buffer write, so the service returns a ready future and no per-request
//! task or boxed future exists. The query string is taken raw from the URI
//! and decoded by `wire::tracker`, so binary info-hashes stay 20 bytes.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wire::tracker::{encode_failure, AnnounceRequest, ScrapeRequest, ScrapeResponse};

use super::store::Announce;
use super::{page, AnnounceSeen, Shared};

type Body = Full<Bytes>;

const TEXT: HeaderValue = HeaderValue::from_static("text/plain");
/// How long connections get to finish when the tracker stops.
const DRAIN: Duration = Duration::from_secs(2);

/// Accepts connections until `cancel` fires, then lets the open ones finish
/// their current request (bounded by [`DRAIN`]).
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let limits = &shared.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(u64::from(
            limits.tracker_header_timeout_secs.max(1),
        )))
        .max_buf_size(limits.tracker_max_header_bytes.max(8192))
        .max_header_size(limits.tracker_max_header_bytes);
    // hyper already caps headers at 100 using a stack array; asking for
    // another count moves that array to the heap on every request.
    if limits.tracker_max_headers != 100 {
        builder.max_headers(limits.tracker_max_headers);
    }
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead
                // of spinning, and keep serving the open connections.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match shared.conns.acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(_) => {
                shared
                    .counters
                    .conns_refused
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = Handler {
            shared: Arc::clone(&shared),
            peer,
        };
        let builder = Arc::clone(&builder);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = builder.serve_connection(TokioIo::new(stream), handler);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
        });
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + DRAIN + Duration::from_millis(500);
    while shared.conns.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Clone)]
struct Handler {
    shared: Arc<Shared>,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        ready(Ok(self.shared.handle(self.peer, &req)))
    }
}

/// A response before it becomes a `hyper::Response`.
struct Reply {
    status: StatusCode,
    content_type: HeaderValue,
    body: Bytes,
    retry_after: bool,
}

impl Reply {
    fn ok(content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        Reply {
            status: StatusCode::OK,
            content_type,
            body: body.into(),
            retry_after: false,
        }
    }

    /// A bencoded `failure reason`. BEP 3 failures travel with 200 so that
    /// every client shows the reason; transport-level refusals use `status`.
    fn failure(status: StatusCode, reason: &str) -> Self {
        Reply {
            status,
            content_type: TEXT,
            body: encode_failure(reason).into(),
            retry_after: false,
        }
    }
}

impl Shared {
    fn handle(&self, peer: SocketAddr, req: &Request<Incoming>) -> Response<Body> {
        let ip = peer.ip().to_canonical();
        let reply = self.route(SocketAddr::new(ip, peer.port()), req);
        if let Some(log) = &self.log {
            let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            log.record(
                ip,
                req.method().as_str(),
                target,
                version_str(req.version()),
                reply.status.as_u16(),
                reply.body.len(),
            );
        }
        let mut resp = Response::new(Full::new(reply.body));
        *resp.status_mut() = reply.status;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, reply.content_type);
        if reply.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if reply.status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if reply.status != StatusCode::OK || req.uri().path() != "/announce" {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        resp
    }

    fn route(&self, peer: SocketAddr, req: &Request<Incoming>) -> Reply {
        if !self.rate.allow(peer.ip()) {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            let mut r = Reply::failure(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests from your address; slow down",
            );
            r.retry_after = true;
            return r;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Reply::failure(StatusCode::METHOD_NOT_ALLOWED, "only GET is supported");
        }
        let query = req.uri().query().unwrap_or("").as_bytes();
        match req.uri().path() {
            "/announce" => self.announce(peer, query, req),
            "/scrape" => self.scrape(query),
            "/" | "/index.html" => Reply::ok(
                HeaderValue::from_static("text/html; charset=utf-8"),
                self.index_page(),
            ),
            "/stats" => Reply::ok(
                HeaderValue::from_static("application/json"),
                serde_json::to_vec_pretty(&self.stats()).unwrap_or_default(),
            ),
            _ => Reply {
                status: StatusCode::NOT_FOUND,
                content_type: TEXT,
                body: Bytes::from_static(
                    b"not found: this tracker serves /announce, /scrape, / and /stats\n",
                ),
                retry_after: false,
            },
        }
    }

    /// Refuses queries over the limit with 414 before any parsing.
    fn oversized(&self, query: &[u8]) -> Option<Reply> {
        (query.len() > self.limits.tracker_max_query).then(|| {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            Reply::failure(
                StatusCode::URI_TOO_LONG,
                &format!(
                    "query string is {} bytes (limit {})",
                    query.len(),
                    self.limits.tracker_max_query
                ),
            )
        })
    }

    fn fail(&self, reason: &str) -> Reply {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        Reply::failure(StatusCode::OK, reason)
    }

    fn announce(&self, peer: SocketAddr, query: &[u8], req: &Request<Incoming>) -> Reply {
        if let Some(r) = self.oversized(query) {
            return r;
        }
        let parsed = match AnnounceRequest::parse(query, &self.limits) {
            Ok(p) => p,
            Err(e) => return self.fail(&e.to_string()),
        };
        if !self.allow.permits(&parsed.info_hash) {
            return self.fail("Requested download is not authorized for use with this tracker.");
        }
        // The TCP peer address, unless the operator trusts `ip=` (for peers
        // behind the same NAT as the tracker, as in the seeds' `--ip`).
        let ip = match (&parsed.ip, self.allow_client_ip) {
            (Some(text), true) => text
                .parse::<IpAddr>()
                .map(|ip| ip.to_canonical())
                .unwrap_or(peer.ip()),
            _ => peer.ip(),
        };
        let numwant = parsed
            .numwant
            .unwrap_or(self.limits.tracker_default_numwant)
            .min(self.limits.tracker_max_numwant) as usize;
        let a = Announce {
            info_hash: parsed.info_hash,
            peer_id: parsed.peer_id,
            addr: SocketAddr::new(ip, parsed.port),
            left: parsed.left,
            event: parsed.event,
            numwant,
            compact: parsed.compact,
            no_peer_id: parsed.no_peer_id,
        };
        let mut body = Vec::with_capacity(128 + numwant * 6);
        if let Err(refused) = self.store.announce(&a, self.clock.now(), &mut body) {
            return self.fail(&refused.to_string());
        }
        if let Some(hook) = &self.hook {
            (hook.0)(&AnnounceSeen {
                host: req.headers().get(HOST).and_then(|h| h.to_str().ok()),
                info_hash: a.info_hash,
                peer: a.addr,
                event: a.event,
            });
        }
        Reply::ok(TEXT, body)
    }

    /// BEP 48 scrape of the named info-hashes. A scrape naming none (a "full
    /// scrape") is refused: it would let anyone pull the whole swarm table
    /// (megabytes at 100,000 swarms) with one tiny request; `/` and `/stats`
    /// give the overview instead.
    fn scrape(&self, query: &[u8]) -> Reply {
        if let Some(r) = self.oversized(query) {
            return r;
        }
        let parsed = match ScrapeRequest::parse(query, &self.limits) {
            Ok(p) => p,
            Err(e) => return self.fail(&e.to_string()),
        };
        if parsed.info_hashes.is_empty() {
            return self.fail("scrape needs at least one info_hash (full scrape is not offered)");
        }
        self.counters.scrapes.fetch_add(1, Ordering::Relaxed);
        let files = parsed
            .info_hashes
            .iter()
            .filter(|h| self.allow.permits(h))
            .map(|h| (*h, self.store.scrape(h)))
            .collect();
        Reply::ok(TEXT, ScrapeResponse { files }.encode())
    }

    /// The index page, re-rendered at most once per second (it walks every
    /// swarm, and anyone may ask for it).
    fn index_page(&self) -> Bytes {
        let mut cache = self.index_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, page)) = &*cache {
            if at.elapsed() < Duration::from_secs(1) {
                return page.clone();
            }
        }
        let page = page::index_html(
            self.store.rows(),
            &self.allow.snapshot(),
            &self.store.totals(),
        );
        let page = Bytes::from(page);
        *cache = Some((std::time::Instant::now(), page.clone()));
        page
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}
