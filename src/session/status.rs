//! Snapshots of a torrent's progress for the progress bar, status lines,
//! `--json` and the demo's table.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

/// What a torrent is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TorrentPhase {
    #[default]
    Checking,
    Downloading,
    Seeding,
    /// Downloading paused by an error (e.g. disk full); seeding goes on.
    Error(String),
}

impl std::fmt::Display for TorrentPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TorrentPhase::Checking => f.write_str("checking"),
            TorrentPhase::Downloading => f.write_str("downloading"),
            TorrentPhase::Seeding => f.write_str("seeding"),
            TorrentPhase::Error(e) => f.write_str(e),
        }
    }
}

/// One connected peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub addr: SocketAddr,
    pub client: String,
    pub outgoing: bool,
    pub down_rate: f64,
    pub up_rate: f64,
    /// Payload received from this peer as plain blocks.
    pub downloaded_plain: u64,
    /// Payload received from this peer as coded symbols.
    pub downloaded_coded: u64,
    pub uploaded: u64,
    /// Extended messages sent to this peer, the extended handshake aside.
    pub extended_sent: u64,
    pub pieces: u32,
    pub interested: bool,
    pub choked: bool,
    /// The peer speaks the `bf_raptorq` extension.
    pub coded: bool,
}

/// One torrent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TorrentStatus {
    pub name: String,
    pub info_hash: String,
    pub total_bytes: u64,
    pub have_bytes: u64,
    pub pieces_have: u32,
    pub pieces_total: u32,
    pub down_rate: f64,
    pub up_rate: f64,
    /// Payload bytes received (including wasted ones).
    pub downloaded: u64,
    pub uploaded: u64,
    /// Bytes received that were of no use (duplicates, failed pieces).
    pub wasted: u64,
    /// Useful payload received as plain blocks, over all peers ever.
    pub received_plain: u64,
    /// Useful payload received as coded symbols, over all peers ever.
    pub received_coded: u64,
    /// Repair pieces of the outer code held, of how many (0 without one).
    pub repair_have: u32,
    pub repair_total: u32,
    /// Original pieces rebuilt from the outer code instead of downloaded.
    pub rebuilt: u32,
    pub peers: Vec<PeerStatus>,
    pub phase: TorrentPhase,
    #[serde(with = "secs")]
    pub elapsed: Duration,
    #[serde(with = "opt_secs")]
    pub completed_after: Option<Duration>,
}

impl TorrentStatus {
    pub fn is_complete(&self) -> bool {
        self.pieces_total > 0 && self.pieces_have == self.pieces_total
    }

    /// Payload received as plain blocks and as coded symbols, over all peers
    /// (present ones only).
    pub fn plain_and_coded(&self) -> (u64, u64) {
        self.peers.iter().fold((0, 0), |(p, c), peer| {
            (p + peer.downloaded_plain, c + peer.downloaded_coded)
        })
    }
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod opt_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}
