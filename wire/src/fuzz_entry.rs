//! One entry function per parser, shared by the cargo-fuzz targets in
//! `wire/fuzz` and by the stable test that replays the committed corpus.
//!
//! Each function feeds arbitrary bytes to a parser under the default limits
//! and, where a value comes out, checks an invariant that must hold for it
//! (usually that re-encoding and re-parsing gives the same value). They never
//! panic on their own; a panic means a bug was found.

use bytes::BytesMut;

use crate::bencode;
use crate::fountain::{CodedMessage, Datagram, DatagramPacer, PacerConfig, UplinkPacer};
use crate::kenosis::{classify_dns_name, DnsName, KenosisHost, KenosisUrl, Key, KEY_MAX_LEN};
use crate::metainfo::{Info, Metainfo};
use crate::peer::{Decoded, ExtendedHandshake, Handshake, MessageDecoder, PeerConn, PeerEvent};
use crate::tracker::{AnnounceRequest, ScrapeRequest, ScrapeResponse, TrackerReply};
use crate::{Bitfield, Limits, PieceGeometry};

/// A fuzz entry: takes arbitrary bytes, panics only on a bug.
pub type Entry = fn(&[u8]);

/// Names of every entry, matching the cargo-fuzz target and corpus folders.
pub const TARGETS: &[(&str, Entry)] = &[
    ("bencode", bencode_doc),
    ("metainfo", metainfo),
    ("info_dict", info_dict),
    ("peer_stream", peer_stream),
    ("handshake", handshake),
    ("extended_handshake", extended_handshake),
    ("tracker_announce_query", tracker_announce_query),
    ("tracker_scrape_query", tracker_scrape_query),
    ("tracker_response", tracker_response),
    ("peer_conn", peer_conn),
    ("kenosis_name", kenosis_name),
    ("ut_metadata", ut_metadata),
    ("magnet", magnet),
    ("fountain_message", fountain_message),
    ("fountain_datagram", fountain_datagram),
    ("fountain_pacer", fountain_pacer),
];

/// BEP 9 metadata messages: a decoded message re-encodes to one that
/// decodes equal, and an assembly fed the message never panics.
pub fn ut_metadata(data: &[u8]) {
    use crate::peer::{MetadataAssembly, MetadataMessage};
    let limits = Limits::DEFAULT;
    if let Ok(msg) = MetadataMessage::decode(data, &limits) {
        let again = MetadataMessage::decode(&msg.encode(), &limits);
        assert_eq!(
            again.as_ref(),
            Ok(&msg),
            "ut_metadata re-encoding changed it"
        );
        // Sizes around the message's own claim, so data messages sometimes
        // fit the assembly and reach the hash check.
        let size = match &msg {
            MetadataMessage::Data { total_size, .. } => *total_size,
            _ => data.len() as u64,
        };
        if let Ok(mut a) = MetadataAssembly::new(crate::InfoHash([0; 20]), size, &limits) {
            while a.next_request().is_some() {}
            let _ = a.on_message(msg);
        }
    }
}

/// Magnet links: what parses prints as a link that parses equal.
pub fn magnet(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = crate::Magnet::parse(text, &Limits::DEFAULT) {
        // Escaping can make the printed link longer than the limit allows.
        let uri = m.to_uri();
        if uri.len() <= Limits::DEFAULT.tracker_max_query {
            let again = crate::Magnet::parse(&uri, &Limits::DEFAULT);
            assert_eq!(again.as_ref(), Ok(&m), "magnet re-encoding changed it");
        }
    }
}

/// Bencode: a decoded value re-encodes to a document that decodes equal.
pub fn bencode_doc(data: &[u8]) {
    let limits = Limits::DEFAULT;
    if let Ok(node) = bencode::decode(data, &limits) {
        let owned = node.to_owned_value();
        let again = bencode::encode(&owned);
        let reparsed = bencode::decode(&again, &limits).map(|n| n.to_owned_value());
        assert_eq!(
            reparsed.as_ref(),
            Ok(&owned),
            "bencode re-encoding changed the value"
        );
    }
}

/// Metainfo: whatever parses has consistent geometry.
pub fn metainfo(data: &[u8]) {
    if let Ok(meta) = Metainfo::from_bytes(data, &Limits::DEFAULT) {
        check_info(&meta.info);
    }
}

/// A bare info dictionary (BEP 9 metadata).
pub fn info_dict(data: &[u8]) {
    if let Ok(info) = Info::from_bytes(data, &Limits::DEFAULT) {
        check_info(&info);
    }
}

fn check_info(info: &Info) {
    let total: u64 = info.files.iter().map(|f| f.length).sum();
    assert_eq!(total, info.total_length());
    assert_eq!(info.pieces.len() as u64, u64::from(info.piece_count()));
}

/// A stream of peer messages fed in irregular chunks: every message decoded
/// re-encodes to exactly the bytes it came from.
pub fn peer_stream(data: &[u8]) {
    let decoder = MessageDecoder::new(Limits::DEFAULT.max_message_length);
    let mut buf = BytesMut::new();
    let mut consumed = Vec::new();
    let mut reencoded = BytesMut::new();
    // Chunk sizes come from the data itself so the fuzzer explores splits.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        consumed.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Message(m)) => m.encode(&mut reencoded),
                Ok(Decoded::NeedMore(_)) => break,
                Err(_) => return,
            }
        }
    }
    let used = consumed.len() - buf.len();
    assert_eq!(
        consumed.get(..used),
        Some(&reencoded[..]),
        "peer message re-encoding differs"
    );
}

/// The 68-byte handshake.
pub fn handshake(data: &[u8]) {
    if let Ok(Some(hs)) = Handshake::decode(data) {
        assert_eq!(data.get(..68), Some(&hs.encode()[..]));
    }
}

/// The BEP 10 extended handshake: re-encoding is stable.
pub fn extended_handshake(data: &[u8]) {
    let limits = Limits::DEFAULT;
    if let Ok(hs) = ExtendedHandshake::decode(data, &limits) {
        let again = ExtendedHandshake::decode(&hs.encode(), &limits);
        assert_eq!(again.as_ref(), Ok(&hs));
    }
}

/// An announce query string: what parses rebuilds to an equal request.
pub fn tracker_announce_query(data: &[u8]) {
    let limits = Limits::DEFAULT;
    if let Ok(req) = AnnounceRequest::parse(data, &limits) {
        let again = AnnounceRequest::parse(req.to_query().as_bytes(), &limits);
        assert_eq!(again.as_ref(), Ok(&req));
    }
}

/// A scrape query string.
pub fn tracker_scrape_query(data: &[u8]) {
    let limits = Limits::DEFAULT;
    if let Ok(req) = ScrapeRequest::parse(data, &limits) {
        assert!(req.info_hashes.len() <= limits.tracker_max_scrape_hashes);
    }
}

/// Announce and scrape response bodies (what a client parses).
pub fn tracker_response(data: &[u8]) {
    let limits = Limits::DEFAULT;
    if let Ok(TrackerReply::Announce(resp)) = TrackerReply::decode(data, &limits) {
        assert!(resp.peers.len() <= limits.tracker_max_response_peers);
    }
    let _ = ScrapeResponse::decode(data, &limits);
}

/// The per-peer state machine fed a random message sequence: the first
/// byte chooses fast/extended support and our pieces; the rest is a message
/// stream. Whatever happens, the state stays within its bounds.
pub fn peer_conn(data: &[u8]) {
    let limits = Limits::DEFAULT;
    let Some((&flags, stream)) = data.split_first() else {
        return;
    };
    let Some(geometry) = PieceGeometry::new(32768, 32768 * 37 - 5) else {
        return;
    };
    let now = std::time::Instant::now();
    let mut conn = PeerConn::new(geometry, &limits, flags & 1 != 0, flags & 2 != 0, now);
    let ours = if flags & 4 != 0 {
        Bitfield::full(geometry.piece_count())
    } else {
        Bitfield::new(geometry.piece_count())
    };
    if flags & 8 != 0 {
        conn.unchoke(now);
    }
    let decoder = MessageDecoder::new(limits.max_message_length);
    let mut buf = BytesMut::from(stream);
    let mut step = 0u32;
    while let Ok(Decoded::Message(msg)) = decoder.decode(&mut buf) {
        step += 1;
        // Keep a few of our own requests outstanding so blocks can match.
        if let Some(block) = geometry.block(step % geometry.piece_count(), 0) {
            let _ = conn.request(block, now);
        }
        match conn.receive(msg, &ours, now) {
            Ok(PeerEvent::RequestQueued) => {
                assert!(conn.queued_requests() <= limits.max_queued_requests);
                if step.is_multiple_of(3) {
                    let _ = conn.next_request();
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
        assert_eq!(conn.peer_pieces.len(), geometry.piece_count());
    }
}

/// Kenosis names as a `Host` header, an announce URL and a DNS question:
/// whatever parses has a valid key and prints back to something that parses
/// to the same value.
pub fn kenosis_name(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key_ok = |k: &Key| {
        let s = k.as_str();
        !s.is_empty()
            && s.len() <= KEY_MAX_LEN
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    };
    if let Ok(host) = KenosisHost::parse(text) {
        assert!(key_ok(&host.key), "bad key from a host");
        assert_eq!(KenosisHost::parse(&host.host_header()).as_ref(), Ok(&host));
    }
    if let Ok(url) = KenosisUrl::parse(text) {
        assert!(key_ok(&url.host.key), "bad key from a URL");
        assert_eq!(KenosisUrl::parse(&url.to_string()).as_ref(), Ok(&url));
        let at = url.at(std::net::Ipv4Addr::LOCALHOST);
        assert!(at.starts_with("http://127.0.0.1:"));
    }
    let zone = "bt.kenosisp2p.org";
    if let DnsName::Key(key) = classify_dns_name(text, zone) {
        assert!(key_ok(&key), "bad key from a DNS name");
        let again = classify_dns_name(&format!("{key}.{zone}."), zone);
        assert_eq!(again, DnsName::Key(key));
    }
}

/// The symbol size a coded-transfer input is parsed with: the first two bytes
/// (0 included, which a torrent never yields but the parser must survive).
fn split_t(data: &[u8]) -> Option<(u32, bytes::Bytes)> {
    let (head, rest) = data.split_at_checked(2)?;
    let t = u32::from(u16::from_be_bytes([*head.first()?, *head.get(1)?]));
    Some((t, bytes::Bytes::copy_from_slice(rest)))
}

/// A `bf_raptorq` extended-message payload: what parses re-encodes to the
/// same bytes and stays within the ESI and per-message limits.
pub fn fountain_message(data: &[u8]) {
    let limits = Limits::DEFAULT;
    let Some((t, payload)) = split_t(data) else {
        return;
    };
    let Ok(msg) = CodedMessage::decode(&payload, t, &limits) else {
        return;
    };
    assert_eq!(msg.encode(), payload, "coded message re-encoding differs");
    let ranges = match &msg {
        CodedMessage::SymbolRequest { range, .. }
        | CodedMessage::Cancel(range)
        | CodedMessage::Reject { range, .. }
        | CodedMessage::RangeSent { range, .. } => vec![*range],
        CodedMessage::Symbols {
            piece,
            first_esi,
            data,
        } => {
            assert!(t > 0 && !data.is_empty() && data.len() % t as usize == 0);
            let count = u32::try_from(data.len() / t as usize).unwrap_or(u32::MAX);
            vec![crate::fountain::SymbolRange {
                piece: *piece,
                first_esi: *first_esi,
                count,
            }]
        }
        CodedMessage::PieceDone { .. }
        | CodedMessage::Ack { .. }
        | CodedMessage::HaveRepair { .. }
        | CodedMessage::RepairBitfield(_)
        | CodedMessage::Suggest { .. } => Vec::new(),
    };
    for r in ranges {
        assert!(r.count <= limits.max_symbols_per_message);
        assert!(r.end().saturating_sub(1) <= limits.max_esi);
    }
}

/// A QUIC datagram frame: what parses carries whole symbols with ESIs below
/// 2^24 and re-encodes to the same bytes.
pub fn fountain_datagram(data: &[u8]) {
    let limits = Limits::DEFAULT;
    let Some((t, datagram)) = split_t(data) else {
        return;
    };
    let frame = match Datagram::decode(&datagram, t, &limits) {
        Ok(Datagram::Symbols(frame)) => frame,
        Ok(Datagram::Ack {
            highest_seq,
            received,
            receive_us,
        }) => {
            let again = Datagram::ack(highest_seq, received, receive_us);
            assert_eq!(again, datagram, "ack re-encoding differs");
            return;
        }
        Err(_) => return,
    };
    let count = frame.count(t);
    assert!(t > 0 && (1..=255).contains(&count));
    assert_eq!(frame.symbols.len(), count as usize * t as usize);
    assert!(frame.esi + (count - 1) <= limits.max_esi);
    assert_eq!(frame.encode(t), datagram, "datagram re-encoding differs");
}

/// The datagram pacer driven by a hostile receiver: a sequence of sends,
/// acknowledgements with arbitrary sequence numbers and byte counts, and
/// clock steps, with the uplink pacer fed what it reports (its sends
/// attributed to four flows). Rates stay finite and within their configured
/// bounds, and no send is scheduled absurdly far ahead.
pub fn fountain_pacer(data: &[u8]) {
    let config = PacerConfig::default();
    let start = std::time::Instant::now();
    let mut now = start;
    let mut pacer = DatagramPacer::new(config.clone(), now);
    let mut uplink = UplinkPacer::new(config.clone(), now);
    let mut uplink_wait = std::time::Duration::ZERO;
    let mut sends = 0u64;
    for op in data.chunks_exact(9) {
        let Some((&kind, rest)) = op.split_first() else {
            return;
        };
        let a = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes);
        let b = rest
            .get(4..)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes);
        let (Some(a), Some(b)) = (a, b) else {
            return;
        };
        match kind % 4 {
            // A datagram of up to 64 KiB.
            0 => {
                sends += 1;
                let bytes = (a % 65_536) as usize + 1;
                let _ = pacer.on_send(bytes, now);
                uplink_wait = uplink.on_send(u64::from(kind >> 6), bytes, now);
            }
            // An acknowledgement of any sequence number and byte count
            // (`b` scaled up so huge counts are reachable).
            // The receiver's clock is any value: it only counts in
            // differences, wrapping.
            1 => {
                if let Some(delta) =
                    pacer.on_ack(a, u64::from(b) << (kind >> 4), b.rotate_left(7), now)
                {
                    uplink.on_ack(delta, now);
                }
            }
            // The clock moves up to ~65 s.
            // The clock moves up to ~65 s; sometimes the sender had
            // nothing to send.
            2 => {
                now += std::time::Duration::from_micros(u64::from(a % 65_536_000));
                if kind & 0x10 != 0 {
                    pacer.on_idle();
                }
            }
            // An acknowledgement of a recent sequence number.
            _ => {
                sends += 1;
                let seq = pacer.on_send(1200, now).wrapping_sub(a % 64);
                uplink_wait = uplink.on_send(u64::from(kind >> 6), 1200, now);
                if let Some(delta) = pacer.on_ack(seq, u64::from(b), b, now) {
                    uplink.on_ack(delta, now);
                }
            }
        }
        let rate = pacer.rate();
        assert!(rate.is_finite() && rate >= config.min_rate && rate <= config.max_rate);
        assert!(pacer.loss().is_finite() && (0.0..=1.0).contains(&pacer.loss()));
        // One 64 KiB datagram at the slowest rate is about a second; a
        // schedule further out than the sends can explain is a bug.
        let per_send = 65_536.0 / config.min_rate;
        let horizon = now.duration_since(start)
            + std::time::Duration::from_secs_f64(per_send * (sends as f64 + 1.0));
        assert!(pacer.next_send_time(now).duration_since(start) <= horizon);
        let rate = uplink.rate();
        assert!(rate.is_finite() && rate >= config.min_rate && rate <= config.max_rate);
        assert!(uplink.loss().is_finite() && (0.0..=1.0).contains(&uplink.loss()));
        assert!(uplink_wait <= horizon);
    }
}
