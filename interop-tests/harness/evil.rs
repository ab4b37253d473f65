//! An evil peer built from `wire` encoders: it speaks the protocol well
//! enough to be used, then misbehaves as a test asks (corrupt blocks for
//! now; hostile-input tests add more behaviours).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;
use wire::peer::{Decoded, Handshake, Message, MessageDecoder, Reserved};
use wire::{Bitfield, InfoHash, Limits, PeerId, PieceGeometry};

/// What the evil peer does wrong.
#[derive(Debug, Clone, Copy)]
pub enum Evil {
    /// Serves every block with its first byte flipped.
    CorruptEveryBlock,
}

/// A seeding peer with a flaw, listening on its own address.
pub struct EvilPeer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Blocks it sent.
    pub blocks_sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl EvilPeer {
    /// Listens on `ip` and serves `data` (the torrent's content) badly.
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
        let stop = Arc::new(AtomicBool::new(false));
        let blocks_sent = Arc::new(AtomicU64::new(0));
        let (s, b) = (stop.clone(), blocks_sent.clone());
        let content = Arc::new(std::fs::read(&data).expect("evil peer reads its data"));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, b, content) = (s.clone(), b.clone(), content.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, info_hash, geometry, &content, evil, &s, &b);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        EvilPeer {
            addr,
            stop,
            blocks_sent,
            thread: Some(thread),
        }
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

fn serve(
    mut stream: TcpStream,
    info_hash: InfoHash,
    geometry: PieceGeometry,
    content: &[u8],
    evil: Evil,
    stop: &AtomicBool,
    blocks_sent: &AtomicU64,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let ours = Handshake {
        reserved: Reserved::default(),
        info_hash,
        peer_id: PeerId(*b"-EV0001-evilevilevil"),
    };
    stream.write_all(&ours.encode())?;
    let mut out = BytesMut::new();
    Message::Bitfield(Bitfield::full(geometry.piece_count()).to_wire()).encode(&mut out);
    Message::Unchoke.encode(&mut out);
    stream.write_all(&out)?;
    let decoder = MessageDecoder::new(Limits::DEFAULT.max_message_length);
    let mut buf = BytesMut::new();
    let mut got_handshake = false;
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
            if let Message::Request(block) = msg {
                let start = (geometry.piece_offset(block.piece) + u64::from(block.begin)) as usize;
                let mut data = content[start..start + block.length as usize].to_vec();
                match evil {
                    Evil::CorruptEveryBlock => data[0] ^= 0xff,
                }
                Message::Piece {
                    piece: block.piece,
                    begin: block.begin,
                    data: data.into(),
                }
                .encode(&mut reply);
                blocks_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        stream.write_all(&reply)?;
    }
    Ok(())
}
