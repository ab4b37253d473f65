//! Coded transfer in the swarm: the `bf_raptorq` extension between capable
//! peers, over TCP or QUIC.
//!
//! - [`state`]: per-torrent decoders and the receiver-driven ESI allocation.
//! - [`link`]: the coded side of one connection.
//! - `recv`, `send`: the peer task's coded receiving and sending.
//! - `verify`: decode, verify, write; poisoner attribution.
//! - `repair`: which repair pieces of the outer code each side holds.
//! - `suggest`: a seed spreading its upload over distinct pieces.

pub mod link;
mod recv;
mod repair;
mod send;
pub mod state;
mod suggest;
mod verify;
pub(crate) use recv::asks_suggesting_seed;
