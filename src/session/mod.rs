//! The swarm engine: torrents, peers, picking, choking, announcing.

pub mod choker;
pub mod picker;
pub mod rate;
