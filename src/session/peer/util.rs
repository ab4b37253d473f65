//! Small helpers of the peer task: round-trip tracking, timers, names.

use std::time::{Duration, Instant};

use wire::peer::Message;
use wire::PeerId;

/// The smallest request round trip seen recently (like BBR's min RTT):
/// queueing at the sender inflates single samples, the minimum does not.
#[derive(Debug, Default)]
pub(crate) struct MinRtt {
    current: Option<(Duration, Instant)>,
}

impl MinRtt {
    const WINDOW: Duration = Duration::from_secs(10);

    pub(crate) fn sample(&mut self, rtt: Duration, now: Instant) {
        let stale = self
            .current
            .is_none_or(|(_, at)| now.duration_since(at) > Self::WINDOW);
        if stale || self.current.is_some_and(|(min, _)| rtt <= min) {
            self.current = Some((rtt, now));
        }
    }

    pub(crate) fn get(&self) -> Option<Duration> {
        self.current.map(|(rtt, _)| rtt)
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A readable client name from an Azureus-style peer id (`-TR3000-…`).
pub fn client_from_peer_id(id: &PeerId) -> String {
    let b = &id.0;
    if b[0] == b'-' && b[7] == b'-' && b[1..7].iter().all(u8::is_ascii_alphanumeric) {
        let code = String::from_utf8_lossy(&b[1..3]);
        let name = match &*code {
            "TR" => "Transmission",
            "LT" | "lt" => "libtorrent",
            "A2" => "aria2",
            "BF" => "bitfountain",
            "qB" => "qBittorrent",
            "DE" => "Deluge",
            "UT" => "µTorrent",
            _ => return String::from_utf8_lossy(&b[0..8]).into_owned(),
        };
        return format!("{name} {}", String::from_utf8_lossy(&b[3..7]));
    }
    String::from_utf8_lossy(&b[0..8])
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

/// A short description of a message for trace logs (no payloads).
pub(crate) fn describe(msg: &Message) -> String {
    match msg {
        Message::Piece { piece, begin, data } => format!("piece {piece}@{begin}+{}", data.len()),
        Message::Bitfield(bits) => format!("bitfield ({} bytes)", bits.len()),
        Message::Extended { id, payload } => format!("extended {id} ({} bytes)", payload.len()),
        Message::Unknown { id, payload } => format!("unknown {id} ({} bytes)", payload.len()),
        other => format!("{other:?}"),
    }
}
