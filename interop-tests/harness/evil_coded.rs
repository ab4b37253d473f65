//! An evil coded peer built from `wire` and `codec` encoders: it negotiates
//! `bf_raptorq` (over TCP: it advertises no QUIC port), has every piece,
//! answers every symbol request with correct symbols except the first of
//! each range, which it corrupts: a poisoner hiding among honest senders.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use codec::{PieceEncoder, SymbolSize, TorrentCode};
use wire::fountain::CodedMessage;
use wire::peer::{
    Decoded, ExtendedHandshake, Handshake, Message, MessageDecoder, RaptorqCaps, Reserved,
};
use wire::{Bitfield, InfoHash, Limits, PeerId, PieceGeometry};

/// The id we ask peers to use for `bf_raptorq` messages to us.
const OUR_RAPTORQ_ID: u8 = 9;

pub struct EvilCodedPeer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Symbols sent, and how many of them were corrupted.
    pub symbols_sent: Arc<AtomicU64>,
    pub corrupted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl EvilCodedPeer {
    pub fn start(
        ip: &str,
        info_hash: InfoHash,
        geometry: PieceGeometry,
        content: Arc<Vec<u8>>,
    ) -> EvilCodedPeer {
        let listener = TcpListener::bind((ip, 0)).expect("evil coded peer binds");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let symbols_sent = Arc::new(AtomicU64::new(0));
        let corrupted = Arc::new(AtomicU64::new(0));
        let (s, n, c) = (stop.clone(), symbols_sent.clone(), corrupted.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, n, c, content) = (s.clone(), n.clone(), c.clone(), content.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, info_hash, geometry, &content, &s, &n, &c);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        EvilCodedPeer {
            addr,
            stop,
            symbols_sent,
            corrupted,
            thread: Some(thread),
        }
    }
}

impl Drop for EvilCodedPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Symbols `first_esi .. first_esi + count` of a piece, the first corrupted.
fn poisoned_symbols(
    code: &TorrentCode,
    piece: u32,
    piece_data: &[u8],
    first: u32,
    count: u32,
) -> Vec<u8> {
    let params = code.piece(piece).unwrap();
    let (t, k) = (params.t() as usize, params.k());
    let encoder = PieceEncoder::new(params, piece_data).unwrap();
    let mut out = Vec::with_capacity(count as usize * t);
    for esi in first..first + count {
        if esi < k {
            let start = esi as usize * t;
            let mut symbol =
                piece_data[start.min(piece_data.len())..(start + t).min(piece_data.len())].to_vec();
            symbol.resize(t, 0);
            out.extend_from_slice(&symbol);
        } else {
            out.extend_from_slice(&encoder.repair_symbol(esi).unwrap());
        }
    }
    out[0] ^= 0x5a;
    out
}

fn serve(
    mut stream: TcpStream,
    info_hash: InfoHash,
    geometry: PieceGeometry,
    content: &[u8],
    stop: &AtomicBool,
    symbols_sent: &AtomicU64,
    corrupted: &AtomicU64,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let code =
        TorrentCode::new(geometry, SymbolSize::preferred_for(geometry.piece_length())).unwrap();
    let t = code.symbol_size().bytes();
    let ours = Handshake {
        reserved: Reserved::ours(),
        info_hash,
        peer_id: PeerId(*b"-EV0002-poisonpoison"),
    };
    stream.write_all(&ours.encode())?;
    let hello = ExtendedHandshake {
        extensions: [("bf_raptorq".to_owned(), OUR_RAPTORQ_ID)].into(),
        client: Some("evil coded peer".into()),
        raptorq: Some(RaptorqCaps {
            version: wire::fountain::VERSION,
            symbol_sizes: vec![1024, 4096, 16384],
            quic_port: None,
        }),
        ..ExtendedHandshake::default()
    };
    let mut out = BytesMut::new();
    Message::Extended {
        id: 0,
        payload: Bytes::from(hello.encode()),
    }
    .encode(&mut out);
    Message::Bitfield(Bitfield::full(geometry.piece_count()).to_wire()).encode(&mut out);
    Message::Unchoke.encode(&mut out);
    stream.write_all(&out)?;
    let decoder = MessageDecoder::new(Limits::DEFAULT.max_message_length);
    let mut buf = BytesMut::new();
    let mut got_handshake = false;
    let mut their_id: Option<u8> = None;
    let mut chunk = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
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
            let Message::Extended { id, payload } = msg else {
                continue;
            };
            if id == 0 {
                their_id = ExtendedHandshake::decode(&payload, &Limits::DEFAULT)
                    .ok()
                    .and_then(|h| h.id_of("bf_raptorq"));
                continue;
            }
            let (Some(their_id), true) = (their_id, id == OUR_RAPTORQ_ID) else {
                continue;
            };
            let Ok(CodedMessage::SymbolRequest { range, .. }) =
                CodedMessage::decode(&payload, t, &Limits::DEFAULT)
            else {
                continue;
            };
            let start = geometry.piece_offset(range.piece) as usize;
            let len = geometry.piece_size(range.piece).unwrap() as usize;
            let data = poisoned_symbols(
                &code,
                range.piece,
                &content[start..start + len],
                range.first_esi,
                range.count,
            );
            Message::Extended {
                id: their_id,
                payload: CodedMessage::Symbols {
                    piece: range.piece,
                    first_esi: range.first_esi,
                    data: data.into(),
                }
                .encode(),
            }
            .encode(&mut reply);
            symbols_sent.fetch_add(u64::from(range.count), Ordering::Relaxed);
            corrupted.fetch_add(1, Ordering::Relaxed);
        }
        stream.write_all(&reply)?;
    }
    Ok(())
}
