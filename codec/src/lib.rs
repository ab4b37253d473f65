//! `codec`: RaptorQ (RFC 6330) coding of BitTorrent pieces, with no I/O.
//!
//! Bytes in, values out: nothing here touches files, sockets, clocks or
//! threads. The CPU-heavy steps ([`PieceDecoder::decode`],
//! [`PieceEncoder::new`], attribution and the outer code) are plain functions
//! on owned, `Send` values so the session can run them on a blocking pool.
//!
//! - [`params`]: K, T and padding, derived from the torrent alone.
//! - [`encoder`]: source symbols as slices of the piece, repair symbols, and
//!   an LRU of encoders for hot pieces.
//! - [`decoder`]: a bounded per-piece decoder that validates every symbol
//!   before raptorq sees it (raptorq panics on some malformed input).
//! - [`provenance`]: who sent which symbol; poisoner attribution after a hash
//!   failure, leave-one-sender-out decoding and the surplus audit.
//! - [`outer`]: the outer code across pieces (repair pieces, DESIGN §3.6).
//!
//! Every rejection and error says what the caller should do: see [`Action`].

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod decoder;
pub mod encoder;
pub mod fuzz_entry;
pub mod outer;
pub mod params;
pub mod provenance;
mod raptor;

pub use decoder::{DecodeStep, Decoders, PieceDecoder, Push, Reject};
pub use encoder::{source_symbol, EncoderCache, PieceEncoder};
pub use outer::{OuterCode, OuterError, PieceRef, Rebuilt, RepairBuilder};
pub use params::{PieceParams, SymbolSize, TorrentCode, MAX_ESI, MAX_SOURCE_SYMBOLS};
pub use provenance::{
    DecodedPiece, DigestKey, HashFailure, PieceHash, Provenance, Verdict, VerifiedPiece,
};

/// Who sent a symbol. The session assigns these (one per peer connection);
/// the codec only compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderId(pub u64);

/// What the caller should do about a rejection or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Discard the symbol or request; nobody is at fault (late, duplicate or
    /// surplus data, or the piece is no longer wanted).
    Drop,
    /// The sender broke the protocol: discard what it sent and count a strike
    /// against it (the session bans after a few).
    StrikeSender,
    /// The symbols held cannot produce the piece: discard them and fetch the
    /// piece again (another peer, or plain blocks).
    RefetchPiece,
    /// The caller passed inconsistent arguments (a bug in the caller, not the
    /// peer's fault): log it and fix the call.
    FixCaller,
}

/// Errors of the codec's own API (as opposed to per-symbol [`Reject`]s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("a piece of length 0 has no code")]
    EmptyPiece,
    #[error("the piece needs {k} source symbols, RaptorQ allows at most {max}; use a larger symbol size")]
    TooManySymbols { k: u32, max: u32 },
    #[error("piece {index} does not exist (the torrent has {count})")]
    NoSuchPiece { index: u32, count: u32 },
    #[error("expected {expected} bytes, got {got}")]
    WrongLength { expected: usize, got: usize },
    #[error("ESI {esi} is outside {min}..={max}")]
    EsiOutOfRange { esi: u32, min: u32, max: u32 },
    #[error("the piece offered as the good copy does not match the piece hash")]
    GoodCopyMismatch,
}

impl CodecError {
    /// What to do about it.
    pub fn action(&self) -> Action {
        match self {
            // A good copy that is not good: fetch another one.
            CodecError::GoodCopyMismatch => Action::RefetchPiece,
            _ => Action::FixCaller,
        }
    }
}
