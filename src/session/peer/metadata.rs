//! Serving our torrent's metadata to peers that came from a magnet link
//! (BEP 9 `ut_metadata`).

use bytes::Bytes;
use wire::peer::{metadata_piece, Message, MetadataMessage, METADATA_EXTENSION};
use wire::Limits;

use super::{PeerTask, WRITE_HIGH_WATER};

impl PeerTask {
    /// Answers a metadata request with the piece, or a reject when the
    /// piece does not exist or the socket is already backed up (a peer
    /// asking in a loop must not grow our write queue: each answer is up to
    /// 16 KiB for a 30-byte request). Anything else is ignored, as BEP 9
    /// says.
    pub(crate) fn on_metadata_message(&mut self, payload: &[u8]) {
        let Ok(MetadataMessage::Request { piece }) =
            MetadataMessage::decode(payload, &Limits::DEFAULT)
        else {
            return;
        };
        // Their id for ut_metadata; without one they cannot receive it.
        let Some(id) = self
            .conn
            .peer_ext
            .as_ref()
            .and_then(|hs| hs.id_of(METADATA_EXTENSION))
        else {
            return;
        };
        let raw = &self.torrent.info.raw;
        let reply = match metadata_piece(raw, piece) {
            Some(data) if self.writer.queued() < WRITE_HIGH_WATER => MetadataMessage::Data {
                piece,
                total_size: raw.len() as u64,
                data: data.to_vec(),
            },
            _ => MetadataMessage::Reject { piece },
        };
        self.send(Message::Extended {
            id,
            payload: Bytes::from(reply.encode()),
        });
    }
}
