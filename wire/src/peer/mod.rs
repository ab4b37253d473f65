//! The peer wire protocol: BEP 3 handshake and messages, BEP 6 fast
//! extension messages, BEP 10 extended messages and handshake.

pub mod conn;
mod extension;
mod handshake;
mod message;
mod metadata;

pub use conn::{PeerConn, PeerEvent, Violation};
pub use extension::{ExtendedHandshake, RaptorqCaps, EXT_HANDSHAKE_ID, RAPTORQ_EXTENSION};
pub use handshake::{Handshake, Reserved, HANDSHAKE_LEN, PROTOCOL};
pub use message::{Decoded, Message, MessageDecoder, MessageId};
pub use metadata::{
    metadata_piece, metadata_pieces, Assembled, MetadataAssembly, MetadataError, MetadataMessage,
    METADATA_EXTENSION, METADATA_PIECE,
};

use thiserror::Error;

/// Why bytes from a peer were refused. Every variant ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerWireError {
    #[error("handshake: protocol string is not \"BitTorrent protocol\"")]
    BadProtocol,
    #[error("message length {len} exceeds the {max}-byte limit")]
    MessageTooLong { len: u32, max: u32 },
    #[error("message {id:?} has length {len}, expected {expected}")]
    BadLength {
        id: MessageId,
        len: usize,
        expected: &'static str,
    },
    #[error("extended handshake: {0}")]
    BadExtendedHandshake(String),
}
