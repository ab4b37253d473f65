//! Coded transfer in the swarm: the `bf_raptorq` extension between capable
//! peers, over TCP or QUIC.

pub mod state;
