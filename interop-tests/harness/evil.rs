//! Evil peers built from `wire` encoders: each speaks the protocol well
//! enough to be used, then misbehaves as a test asks. An evil peer either
//! listens (our node connects to it) or connects to our node from an
//! address of its own, and records what it managed to do and when our node
//! hung up.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use codec::{PieceEncoder, SymbolSize, TorrentCode};
use wire::fountain::{CodedMessage, SymbolRange};
use wire::peer::{
    Decoded, ExtendedHandshake, Handshake, Message, MessageDecoder, RaptorqCaps, Reserved,
    EXT_HANDSHAKE_ID, RAPTORQ_EXTENSION,
};
use wire::{Bitfield, BlockRef, InfoHash, Limits, PeerId, PieceGeometry};

/// What the evil peer does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evil {
    /// Serves every block with its first byte flipped.
    CorruptEveryBlock,
    /// After the handshake, a message length prefix of almost 2 GiB.
    OversizedLength,
    /// A bitfield one byte short.
    ShortBitfield,
    /// A bitfield of the right size with its spare bits set.
    SpareBits,
    /// HAVE for a piece past the end.
    HaveOutOfRange,
    /// A leecher asking for pieces our node does not have.
    RequestsForMissing,
    /// A leecher sending 100,000 requests for pieces our node has.
    RequestFlood,
    /// A seed pushing blocks nobody asked for.
    Unrequested,
    /// A coded peer (`bf_raptorq` over TCP) answering symbol requests with
    /// garbage symbols.
    PoisonedSymbols,
    /// A coded peer answering symbol requests with the right symbols except
    /// the first of each range, corrupted: a poisoner hiding among honest
    /// senders.
    SubtlePoison,
    /// A coded peer pushing 400 symbols nobody asked for.
    UnrequestedSymbols,
    /// A coded peer sending a symbol with ESI 2^24 (past the largest).
    EsiOutOfRange,
    /// Connects and sends nothing at all.
    Silent,
    /// Sends its handshake one byte a second.
    Trickle,
}

/// What a peer's connection amounted to.
#[derive(Debug, Default)]
pub struct Record {
    /// Blocks or symbol messages it sent.
    pub sent: AtomicU64,
    /// Requests it sent.
    pub requests: AtomicU64,
    /// How long after connecting our node closed the connection.
    pub closed_after: Mutex<Option<Duration>>,
}

/// An evil peer, running on its own threads until dropped.
pub struct EvilPeer {
    pub addr: SocketAddr,
    pub evil: Evil,
    pub record: Arc<Record>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct Torrent {
    info_hash: InfoHash,
    geometry: PieceGeometry,
    content: Arc<Vec<u8>>,
    evil: Evil,
}

impl EvilPeer {
    /// Listens on `ip` and serves `data` (the torrent's content) badly to
    /// whoever connects.
    pub fn start(
        ip: &str,
        info_hash: InfoHash,
        geometry: PieceGeometry,
        data: PathBuf,
        evil: Evil,
    ) -> EvilPeer {
        let listener = TcpListener::bind((ip, 0)).expect("evil peer binds");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let t = Torrent {
            info_hash,
            geometry,
            content: Arc::new(std::fs::read(&data).expect("evil peer reads its data")),
            evil,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Record::default());
        let (s, r) = (stop.clone(), record.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, r, t) = (s.clone(), r.clone(), t.clone());
                        std::thread::spawn(move || run(stream, &t, &s, &r));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        EvilPeer::new(addr, evil, record, stop, thread)
    }

    /// Connects from `ip` to our node at `target` and misbehaves there.
    pub fn connect(
        ip: &str,
        target: SocketAddr,
        info_hash: InfoHash,
        geometry: PieceGeometry,
        data: PathBuf,
        evil: Evil,
    ) -> EvilPeer {
        let src: IpAddr = ip.parse().unwrap();
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(src, 0).into()).unwrap();
        socket
            .connect_timeout(&target.into(), Duration::from_secs(5))
            .expect("evil peer connects");
        let stream: TcpStream = socket.into();
        let addr = stream.local_addr().unwrap();
        let t = Torrent {
            info_hash,
            geometry,
            content: Arc::new(std::fs::read(&data).expect("evil peer reads its data")),
            evil,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Record::default());
        let (s, r) = (stop.clone(), record.clone());
        let thread = std::thread::spawn(move || run(stream, &t, &s, &r));
        EvilPeer::new(addr, evil, record, stop, thread)
    }

    fn new(
        addr: SocketAddr,
        evil: Evil,
        record: Arc<Record>,
        stop: Arc<AtomicBool>,
        thread: JoinHandle<()>,
    ) -> EvilPeer {
        EvilPeer {
            addr,
            evil,
            record,
            stop,
            thread: Some(thread),
        }
    }

    /// Blocks (or symbol messages) it sent so far.
    pub fn sent(&self) -> u64 {
        self.record.sent.load(Ordering::Relaxed)
    }

    /// When our node hung up, if it did.
    pub fn closed_after(&self) -> Option<Duration> {
        *self.record.closed_after.lock().unwrap()
    }
}

impl Drop for EvilPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A peer id of its own for every evil connection (our node refuses a
/// second connection with an id it already has).
fn evil_peer_id(local: SocketAddr) -> PeerId {
    let mut id = *b"-EV0001-000000000000";
    let tag = format!(
        "{:012}",
        u64::from(match local.ip() {
            IpAddr::V4(v4) => u32::from(v4),
            IpAddr::V6(_) => 0,
        }) * 65536
            + u64::from(local.port())
    );
    id[8..].copy_from_slice(&tag.as_bytes()[tag.len() - 12..]);
    PeerId(id)
}

/// Runs one connection and records when it ended.
fn run(stream: TcpStream, t: &Torrent, stop: &AtomicBool, record: &Record) {
    let start = Instant::now();
    let _ = serve(stream, t, stop, record);
    if !stop.load(Ordering::Relaxed) {
        *record.closed_after.lock().unwrap() = Some(start.elapsed());
    }
}

/// Our (evil) id for `bf_raptorq` messages.
const OUR_RAPTORQ_ID: u8 = 7;

fn serve(
    mut stream: TcpStream,
    t: &Torrent,
    stop: &AtomicBool,
    record: &Record,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let count = t.geometry.piece_count();
    let ours = Handshake {
        reserved: Reserved::ours(),
        info_hash: t.info_hash,
        peer_id: evil_peer_id(stream.local_addr()?),
    }
    .encode();
    match t.evil {
        Evil::Silent => return wait_closed(&mut stream, stop),
        Evil::Trickle => {
            for byte in ours.iter() {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                stream.write_all(&[*byte])?;
                // A second between bytes, noticing a close meanwhile.
                let until = Instant::now() + Duration::from_secs(1);
                while Instant::now() < until {
                    let mut b = [0u8; 256];
                    match stream.read(&mut b) {
                        Ok(0) => return Ok(()),
                        Err(e) if !would_block(&e) => return Err(e),
                        _ => {}
                    }
                }
            }
            return wait_closed(&mut stream, stop);
        }
        _ => {}
    }
    stream.write_all(&ours)?;
    let mut out = BytesMut::new();
    let full = Bitfield::full(count).to_wire();
    let seedlike = !matches!(t.evil, Evil::RequestsForMissing | Evil::RequestFlood);
    match t.evil {
        Evil::ShortBitfield => {
            Message::Bitfield(full.slice(..full.len() - 1)).encode(&mut out);
        }
        Evil::SpareBits => {
            assert!(
                !count.is_multiple_of(8),
                "spare bits need a piece count that is not a multiple of 8"
            );
            let mut bits = full.to_vec();
            *bits.last_mut().unwrap() = 0xff;
            Message::Bitfield(bits.into()).encode(&mut out);
        }
        Evil::HaveOutOfRange => Message::Have { piece: count + 10 }.encode(&mut out),
        Evil::PoisonedSymbols
        | Evil::SubtlePoison
        | Evil::UnrequestedSymbols
        | Evil::EsiOutOfRange => {
            let hs = ExtendedHandshake {
                extensions: BTreeMap::from([(RAPTORQ_EXTENSION.to_owned(), OUR_RAPTORQ_ID)]),
                client: Some("evil coded".into()),
                raptorq: Some(RaptorqCaps {
                    version: wire::fountain::VERSION,
                    symbol_sizes: vec![1024, 4096, 16384],
                    quic_port: None,
                }),
                ..ExtendedHandshake::default()
            };
            Message::Extended {
                id: EXT_HANDSHAKE_ID,
                payload: Bytes::from(hs.encode()),
            }
            .encode(&mut out);
            // Symbols from a peer that has nothing cannot have been asked for.
            let bits = if t.evil == Evil::UnrequestedSymbols {
                Bitfield::new(count).to_wire()
            } else {
                full
            };
            Message::Bitfield(bits).encode(&mut out);
            Message::Unchoke.encode(&mut out);
        }
        _ if seedlike => {
            Message::Bitfield(full).encode(&mut out);
            Message::Unchoke.encode(&mut out);
        }
        _ => Message::Interested.encode(&mut out),
    }
    stream.write_all(&out)?;
    match t.evil {
        Evil::OversizedLength => {
            stream.write_all(&[0x7f, 0xff, 0xff, 0xf0, 7, 0, 0, 0, 0])?;
        }
        Evil::Unrequested => {
            // Blocks of the middle of the torrent, correct but unasked for.
            let mut out = BytesMut::new();
            for n in 0..100 {
                let piece = (count / 2 + n) % count;
                let block = t.geometry.block(piece, 0).unwrap();
                Message::Piece {
                    piece,
                    begin: 0,
                    data: block_data(t, block).into(),
                }
                .encode(&mut out);
                record.sent.fetch_add(1, Ordering::Relaxed);
            }
            stream.write_all(&out)?;
        }
        _ => {}
    }
    let decoder = MessageDecoder::new(Limits::DEFAULT.max_message_length);
    let mut buf = BytesMut::new();
    let mut got_handshake = false;
    let mut chunk = vec![0u8; 65536];
    // What our node says it has (for the leecher behaviours).
    let mut theirs = Bitfield::new(count);
    let mut their_raptorq_id = None;
    let mut flooded = false;
    let mut asked_missing = false;
    while !stop.load(Ordering::Relaxed) {
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if would_block(&e) => 0,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        if !got_handshake {
            if buf.len() < 68 {
                continue;
            }
            let _ = buf.split_to(68);
            got_handshake = true;
        }
        let mut reply = BytesMut::new();
        while let Ok(Decoded::Message(msg)) = decoder.decode(&mut buf) {
            match msg {
                Message::Request(block) if t.evil == Evil::CorruptEveryBlock => {
                    let mut data = block_data(t, block);
                    data[0] ^= 0xff;
                    Message::Piece {
                        piece: block.piece,
                        begin: block.begin,
                        data: data.into(),
                    }
                    .encode(&mut reply);
                    record.sent.fetch_add(1, Ordering::Relaxed);
                }
                Message::Bitfield(bits) => {
                    if let Ok(b) = Bitfield::from_wire(&bits, count) {
                        theirs = b;
                    }
                }
                Message::HaveAll => theirs = Bitfield::full(count),
                Message::Have { piece } => {
                    theirs.set(piece);
                }
                Message::Extended {
                    id: EXT_HANDSHAKE_ID,
                    payload,
                } => {
                    if let Ok(hs) = ExtendedHandshake::decode(&payload, &Limits::DEFAULT) {
                        their_raptorq_id = hs.id_of(RAPTORQ_EXTENSION);
                    }
                    if let Some(id) = their_raptorq_id {
                        push_symbols(t, id, &mut reply, record);
                    }
                }
                Message::Extended {
                    id: OUR_RAPTORQ_ID,
                    payload,
                } if matches!(t.evil, Evil::PoisonedSymbols | Evil::SubtlePoison) => {
                    let tsym = SymbolSize::preferred_for(t.geometry.piece_length()).bytes();
                    if let (Ok(CodedMessage::SymbolRequest { range, .. }), Some(id)) = (
                        CodedMessage::decode(&payload, tsym, &Limits::DEFAULT),
                        their_raptorq_id,
                    ) {
                        let data: Vec<u8> = if t.evil == Evil::SubtlePoison {
                            symbols_first_corrupted(t, range)
                        } else {
                            // Garbage of exactly the requested size.
                            (0..range.count * tsym)
                                .map(|i| (i as u8).wrapping_mul(31) ^ range.first_esi as u8)
                                .collect()
                        };
                        let symbols = CodedMessage::Symbols {
                            piece: range.piece,
                            first_esi: range.first_esi,
                            data: data.into(),
                        };
                        Message::Extended {
                            id,
                            payload: symbols.encode(),
                        }
                        .encode(&mut reply);
                        record.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
        // Leecher behaviours act once they know what our node has.
        if t.evil == Evil::RequestsForMissing && !asked_missing {
            asked_missing = true;
            let mut out = BytesMut::new();
            let missing = (0..count).rev().filter(|&p| !theirs.has(p)).take(200);
            for piece in missing {
                Message::Request(t.geometry.block(piece, 0).unwrap()).encode(&mut out);
                record.requests.fetch_add(1, Ordering::Relaxed);
            }
            reply.extend_from_slice(&out);
        }
        if t.evil == Evil::RequestFlood && !flooded && theirs.count() >= 20 {
            flooded = true;
            stream.write_all(&reply)?;
            reply.clear();
            flood(&mut stream, t, &theirs, record)?;
        }
        stream.write_all(&reply)?;
    }
    Ok(())
}

/// The symbols of `range`, right except the first, whose first byte is
/// flipped: source symbols are slices of the piece, repair symbols come
/// from its encoder.
fn symbols_first_corrupted(t: &Torrent, range: SymbolRange) -> Vec<u8> {
    let code = TorrentCode::new(
        t.geometry,
        SymbolSize::preferred_for(t.geometry.piece_length()),
    )
    .unwrap();
    let params = code.piece(range.piece).unwrap();
    let (tsym, k) = (params.t() as usize, params.k());
    let start = t.geometry.piece_offset(range.piece) as usize;
    let piece = &t.content[start..start + params.piece_len() as usize];
    let encoder = PieceEncoder::new(params, piece).unwrap();
    let mut out = Vec::with_capacity(range.count as usize * tsym);
    for esi in range.first_esi..range.first_esi + range.count {
        if esi < k {
            out.extend_from_slice(&codec::source_symbol(&params, piece, esi).unwrap());
        } else {
            out.extend_from_slice(&encoder.repair_symbol(esi).unwrap());
        }
    }
    out[0] ^= 0x5a;
    out
}

/// The unasked-for symbol messages of the coded misbehaviours, sent as soon
/// as our node's extended handshake names its `bf_raptorq` id.
fn push_symbols(t: &Torrent, id: u8, out: &mut BytesMut, record: &Record) {
    let tsym = 1024u32;
    // (piece, first ESI, symbols)
    let messages: Vec<(u32, u32, u32)> = match t.evil {
        Evil::UnrequestedSymbols => (0..4).map(|i| (i, 0, 100)).collect(),
        Evil::EsiOutOfRange => vec![(0, 1 << 24, 1)],
        _ => Vec::new(),
    };
    for (piece, first_esi, count) in messages {
        let symbols = CodedMessage::Symbols {
            piece,
            first_esi,
            data: vec![0x5a; (count * tsym) as usize].into(),
        };
        Message::Extended {
            id,
            payload: symbols.encode(),
        }
        .encode(out);
        record.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// 100,000 requests for blocks of pieces our node has, in 1,000-request
/// writes (stops when our node hangs up).
fn flood(
    stream: &mut TcpStream,
    t: &Torrent,
    theirs: &Bitfield,
    record: &Record,
) -> std::io::Result<()> {
    let blocks: Vec<BlockRef> = theirs
        .iter_set()
        .flat_map(|p| (0..t.geometry.block_count(p)).filter_map(move |b| t.geometry.block(p, b)))
        .collect();
    for round in 0..100 {
        let mut out = BytesMut::new();
        for i in 0..1000 {
            let block = blocks[(round * 1000 + i) % blocks.len()];
            Message::Request(block).encode(&mut out);
        }
        stream.write_all(&out)?;
        record.requests.fetch_add(1000, Ordering::Relaxed);
    }
    Ok(())
}

fn block_data(t: &Torrent, block: BlockRef) -> Vec<u8> {
    let start = (t.geometry.piece_offset(block.piece) + u64::from(block.begin)) as usize;
    t.content[start..start + block.length as usize].to_vec()
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads (and ignores) until the other side closes.
fn wait_closed(stream: &mut TcpStream, stop: &AtomicBool) -> std::io::Result<()> {
    let mut b = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut b) {
            Ok(0) => return Ok(()),
            Err(e) if !would_block(&e) => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
