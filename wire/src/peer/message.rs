//! Length-prefixed peer messages (BEP 3, BEP 6, BEP 10) and an incremental
//! decoder that never buffers more than one maximum-length message.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::PeerWireError;
use crate::geometry::BlockRef;

/// Message ids on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageId {
    Choke = 0,
    Unchoke = 1,
    Interested = 2,
    NotInterested = 3,
    Have = 4,
    Bitfield = 5,
    Request = 6,
    Piece = 7,
    Cancel = 8,
    Port = 9,
    SuggestPiece = 0x0d,
    HaveAll = 0x0e,
    HaveNone = 0x0f,
    RejectRequest = 0x10,
    AllowedFast = 0x11,
    Extended = 20,
}

impl MessageId {
    fn from_u8(id: u8) -> Option<Self> {
        use MessageId::*;
        Some(match id {
            0 => Choke,
            1 => Unchoke,
            2 => Interested,
            3 => NotInterested,
            4 => Have,
            5 => Bitfield,
            6 => Request,
            7 => Piece,
            8 => Cancel,
            9 => Port,
            0x0d => SuggestPiece,
            0x0e => HaveAll,
            0x0f => HaveNone,
            0x10 => RejectRequest,
            0x11 => AllowedFast,
            20 => Extended,
            _ => return None,
        })
    }
}

/// One peer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have {
        piece: u32,
    },
    /// Raw bitfield bytes; their length and spare bits are checked by the
    /// connection, which knows the piece count.
    Bitfield(Bytes),
    Request(BlockRef),
    Piece {
        piece: u32,
        begin: u32,
        data: Bytes,
    },
    Cancel(BlockRef),
    /// BEP 5 DHT port.
    Port(u16),
    SuggestPiece {
        piece: u32,
    },
    HaveAll,
    HaveNone,
    RejectRequest(BlockRef),
    AllowedFast {
        piece: u32,
    },
    /// BEP 10: extended message `id` (0 is the extended handshake).
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// A message id we do not know; the connection decides (usually ignores).
    Unknown {
        id: u8,
        payload: Bytes,
    },
}

/// The result of offering buffered bytes to the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole message was taken from the buffer.
    Message(Message),
    /// More bytes are needed; at least this many more.
    NeedMore(usize),
}

/// An incremental decoder of length-prefixed messages.
#[derive(Debug, Clone, Copy)]
pub struct MessageDecoder {
    max_len: u32,
}

impl MessageDecoder {
    /// `max_len` bounds the length prefix (see `Limits::max_message_length`).
    pub fn new(max_len: u32) -> Self {
        MessageDecoder { max_len }
    }

    /// Takes one message off the front of `buf`, or says how much more is
    /// needed. An oversized length prefix is refused as soon as its four
    /// bytes are in, before anything is buffered for it.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Decoded, PeerWireError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(Decoded::NeedMore(4 - buf.len()));
        };
        let len = u32::from_be_bytes(<[u8; 4]>::try_from(prefix).unwrap_or_default());
        if len > self.max_len {
            return Err(PeerWireError::MessageTooLong {
                len,
                max: self.max_len,
            });
        }
        let total = 4 + len as usize;
        if buf.len() < total {
            return Ok(Decoded::NeedMore(total - buf.len()));
        }
        buf.advance(4);
        let body = buf.split_to(len as usize).freeze();
        parse_body(body).map(Decoded::Message)
    }
}

fn parse_body(mut body: Bytes) -> Result<Message, PeerWireError> {
    if body.is_empty() {
        return Ok(Message::KeepAlive);
    }
    let raw_id = body.get_u8();
    let Some(id) = MessageId::from_u8(raw_id) else {
        return Ok(Message::Unknown {
            id: raw_id,
            payload: body,
        });
    };
    let len = body.len();
    let exact = |n: usize, expected: &'static str| {
        if len == n {
            Ok(())
        } else {
            Err(PeerWireError::BadLength { id, len, expected })
        }
    };
    use MessageId as I;
    Ok(match id {
        I::Choke => exact(0, "0").map(|_| Message::Choke)?,
        I::Unchoke => exact(0, "0").map(|_| Message::Unchoke)?,
        I::Interested => exact(0, "0").map(|_| Message::Interested)?,
        I::NotInterested => exact(0, "0").map(|_| Message::NotInterested)?,
        I::HaveAll => exact(0, "0").map(|_| Message::HaveAll)?,
        I::HaveNone => exact(0, "0").map(|_| Message::HaveNone)?,
        I::Have => {
            exact(4, "4")?;
            Message::Have {
                piece: body.get_u32(),
            }
        }
        I::SuggestPiece => {
            exact(4, "4")?;
            Message::SuggestPiece {
                piece: body.get_u32(),
            }
        }
        I::AllowedFast => {
            exact(4, "4")?;
            Message::AllowedFast {
                piece: body.get_u32(),
            }
        }
        I::Bitfield => Message::Bitfield(body),
        I::Request | I::Cancel | I::RejectRequest => {
            exact(12, "12")?;
            let block = BlockRef {
                piece: body.get_u32(),
                begin: body.get_u32(),
                length: body.get_u32(),
            };
            match id {
                I::Request => Message::Request(block),
                I::Cancel => Message::Cancel(block),
                _ => Message::RejectRequest(block),
            }
        }
        I::Piece => {
            if len < 8 {
                return Err(PeerWireError::BadLength {
                    id,
                    len,
                    expected: "at least 8",
                });
            }
            let piece = body.get_u32();
            let begin = body.get_u32();
            Message::Piece {
                piece,
                begin,
                data: body,
            }
        }
        I::Port => {
            exact(2, "2")?;
            Message::Port(body.get_u16())
        }
        I::Extended => {
            if len < 1 {
                return Err(PeerWireError::BadLength {
                    id,
                    len,
                    expected: "at least 1",
                });
            }
            let ext = body.get_u8();
            Message::Extended {
                id: ext,
                payload: body,
            }
        }
    })
}

impl Message {
    /// Appends the length-prefixed encoding to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let (id, payload_len) = match self {
            Message::KeepAlive => {
                out.put_u32(0);
                return;
            }
            Message::Choke => (MessageId::Choke as u8, 0),
            Message::Unchoke => (MessageId::Unchoke as u8, 0),
            Message::Interested => (MessageId::Interested as u8, 0),
            Message::NotInterested => (MessageId::NotInterested as u8, 0),
            Message::HaveAll => (MessageId::HaveAll as u8, 0),
            Message::HaveNone => (MessageId::HaveNone as u8, 0),
            Message::Have { .. } => (MessageId::Have as u8, 4),
            Message::SuggestPiece { .. } => (MessageId::SuggestPiece as u8, 4),
            Message::AllowedFast { .. } => (MessageId::AllowedFast as u8, 4),
            Message::Bitfield(bits) => (MessageId::Bitfield as u8, bits.len()),
            Message::Request(_) => (MessageId::Request as u8, 12),
            Message::Cancel(_) => (MessageId::Cancel as u8, 12),
            Message::RejectRequest(_) => (MessageId::RejectRequest as u8, 12),
            Message::Piece { data, .. } => (MessageId::Piece as u8, 8 + data.len()),
            Message::Port(_) => (MessageId::Port as u8, 2),
            Message::Extended { payload, .. } => (MessageId::Extended as u8, 1 + payload.len()),
            Message::Unknown { id, payload } => (*id, payload.len()),
        };
        out.reserve(5 + payload_len);
        out.put_u32(u32::try_from(1 + payload_len).unwrap_or(u32::MAX));
        out.put_u8(id);
        match self {
            Message::Have { piece }
            | Message::SuggestPiece { piece }
            | Message::AllowedFast { piece } => out.put_u32(*piece),
            Message::Bitfield(bits) => out.put_slice(bits),
            Message::Request(b) | Message::Cancel(b) | Message::RejectRequest(b) => {
                out.put_u32(b.piece);
                out.put_u32(b.begin);
                out.put_u32(b.length);
            }
            Message::Piece { piece, begin, data } => {
                out.put_u32(*piece);
                out.put_u32(*begin);
                out.put_slice(data);
            }
            Message::Port(port) => out.put_u16(*port),
            Message::Extended { id, payload } => {
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::Unknown { payload, .. } => out.put_slice(payload),
            _ => {}
        }
    }

    /// The 13-byte header of a PIECE message carrying `len` bytes, so the
    /// payload can be written from where it lies without copying it.
    pub fn piece_header(piece: u32, begin: u32, len: u32) -> [u8; 13] {
        let mut h = [0u8; 13];
        let total = len.saturating_add(9);
        for (dst, src) in h.iter_mut().zip(
            total
                .to_be_bytes()
                .into_iter()
                .chain([MessageId::Piece as u8])
                .chain(piece.to_be_bytes())
                .chain(begin.to_be_bytes()),
        ) {
            *dst = src;
        }
        h
    }

    /// The encoding in a fresh buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Message> {
        let block = BlockRef {
            piece: 3,
            begin: 16384,
            length: 16384,
        };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have { piece: 7 },
            Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
            Message::Request(block),
            Message::Piece {
                piece: 1,
                begin: 0,
                data: Bytes::from_static(b"data"),
            },
            Message::Cancel(block),
            Message::Port(6881),
            Message::SuggestPiece { piece: 2 },
            Message::HaveAll,
            Message::HaveNone,
            Message::RejectRequest(block),
            Message::AllowedFast { piece: 9 },
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"de"),
            },
            Message::Unknown {
                id: 99,
                payload: Bytes::from_static(b"?"),
            },
        ]
    }

    #[test]
    fn stream_of_every_message_decodes_byte_by_byte() {
        let decoder = MessageDecoder::new(1 << 20);
        let mut stream = BytesMut::new();
        for m in all_kinds() {
            m.encode(&mut stream);
        }
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for byte in stream.iter() {
            buf.put_u8(*byte);
            while let Decoded::Message(m) = decoder.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert_eq!(out, all_kinds());
        assert!(buf.is_empty());
    }

    #[test]
    fn piece_header_matches_the_full_encoding() {
        let data = Bytes::from_static(b"0123456789");
        let full = Message::Piece {
            piece: 7,
            begin: 16384,
            data: data.clone(),
        }
        .to_bytes();
        assert_eq!(&full[..13], &Message::piece_header(7, 16384, 10)[..]);
        assert_eq!(&full[13..], &data[..]);
    }

    #[test]
    fn refuses_oversized_prefix_and_bad_lengths() {
        let decoder = MessageDecoder::new(1000);
        let mut buf = BytesMut::from(&[0u8, 0, 0x10, 0][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(PeerWireError::MessageTooLong {
                len: 4096,
                max: 1000
            })
        );
        let mut have_short = BytesMut::from(&[0u8, 0, 0, 3, 4, 0, 1][..]);
        assert!(matches!(
            decoder.decode(&mut have_short),
            Err(PeerWireError::BadLength {
                id: MessageId::Have,
                ..
            })
        ));
        let mut piece_short = BytesMut::from(&[0u8, 0, 0, 2, 7, 0][..]);
        assert!(matches!(
            decoder.decode(&mut piece_short),
            Err(PeerWireError::BadLength { .. })
        ));
        let mut partial = BytesMut::from(&[0u8, 0, 0, 5, 4][..]);
        assert_eq!(decoder.decode(&mut partial), Ok(Decoded::NeedMore(4)));
    }
}
