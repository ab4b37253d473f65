//! The per-peer protocol state machine: choke and interest state of both
//! sides, the peer's pieces, our outstanding requests and their queued ones,
//! and every rule a hostile peer could break.
//!
//! Sans-IO: messages and the current time go in, events and messages to
//! send come out. A [`Violation`] means "close the connection"; the caller
//! decides whether it also earns a strike or a ban.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use super::{ExtendedHandshake, Message, EXT_HANDSHAKE_ID};
use crate::bitfield::{Bitfield, BitfieldError};
use crate::geometry::{BlockRef, PieceGeometry};
use crate::Limits;

/// Send a keep-alive after this long without sending anything.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(60);
/// Drop a peer after this long without receiving anything (BEP 3 peers send
/// keep-alives every two minutes).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(150);
/// Blocks that arrive unrequested (beyond recent cancels) before we give up.
const MAX_UNREQUESTED_BLOCKS: u32 = 32;
/// Requests for pieces we do not have before we give up on the peer.
const MAX_BAD_REQUESTS: u32 = 64;
/// Recently cancelled requests remembered, so a block already in flight
/// when we cancelled it (endgame) is not held against the peer.
const CANCEL_MEMORY: usize = 512;

/// A broken protocol rule; the connection must close.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Violation {
    #[error("bad bitfield: {0}")]
    Bitfield(#[from] BitfieldError),
    #[error("have for piece {piece} of {count}")]
    HaveOutOfRange { piece: u32, count: u32 },
    #[error("request for an invalid block {0:?}")]
    InvalidRequest(BlockRef),
    #[error("{0} requests for pieces we do not have")]
    RequestsForMissingPieces(u32),
    #[error("request flood: more than {0} queued requests")]
    RequestFlood(usize),
    #[error("{0} blocks we never asked for")]
    UnrequestedBlocks(u32),
    #[error("block {got:?} does not match the request {expected:?}")]
    WrongBlockLength { got: BlockRef, expected: BlockRef },
    #[error("fast-extension message without the fast extension")]
    FastNotNegotiated,
    #[error("bad extended handshake: {0}")]
    ExtendedHandshake(String),
    #[error("no message for {0:?}")]
    Idle(Duration),
    /// A broken rule of the coded extension (malformed frames, symbols
    /// never requested, …).
    #[error("coded transfer: {0}")]
    Coded(String),
}

/// What a received message meant, for the torrent to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// Nothing for the torrent (keep-alive, ignored message, duplicate…).
    Nothing,
    /// They choked us; `dropped` are our requests that died with it.
    Choked {
        dropped: Vec<BlockRef>,
    },
    Unchoked,
    Interested,
    NotInterested,
    /// They now have this piece.
    Have(u32),
    /// Their pieces changed wholesale (BITFIELD, HAVE ALL or HAVE NONE):
    /// compare `peer_pieces` with what was known before.
    Bitfield,
    /// A block we requested, and when we requested it (for round-trip
    /// estimates).
    Block {
        block: BlockRef,
        data: Bytes,
        requested_at: Instant,
    },
    /// A valid request was queued; take it with [`PeerConn::next_request`].
    RequestQueued,
    /// A request we must refuse: send this REJECT (fast extension).
    Reject(Message),
    /// They rejected our request.
    Rejected(BlockRef),
    /// We may request this piece even while choked.
    AllowedFast(u32),
    Suggest(u32),
    ExtendedHandshake(Box<ExtendedHandshake>),
    /// An extended message other than the handshake.
    Extended {
        id: u8,
        payload: Bytes,
    },
    DhtPort(u16),
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct PeerConn {
    geometry: PieceGeometry,
    max_block: u32,
    max_queued: usize,
    /// Both sides support BEP 6.
    pub fast: bool,
    /// Both sides support BEP 10.
    pub extended: bool,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    /// The pieces the peer has.
    pub peer_pieces: Bitfield,
    /// The peer's extended handshake, once received.
    pub peer_ext: Option<ExtendedHandshake>,
    /// Our requests in flight, with the time each was sent.
    outstanding: HashMap<BlockRef, Instant>,
    recently_cancelled: VecDeque<BlockRef>,
    queued: VecDeque<BlockRef>,
    allowed_fast: HashSet<u32>,
    unrequested: u32,
    bad_requests: u32,
    /// Requests refused since our last CHOKE (sent while choked) or
    /// repeating one already queued: a few cross a CHOKE on the wire, a
    /// flood of them is abuse that would otherwise cost nothing to send.
    ignored_requests: usize,
    last_received: Instant,
    last_sent: Instant,
}

impl PeerConn {
    /// A fresh connection after the handshake; `fast` and `extended` are
    /// what both sides' reserved bits agree on.
    pub fn new(
        geometry: PieceGeometry,
        limits: &Limits,
        fast: bool,
        extended: bool,
        now: Instant,
    ) -> Self {
        PeerConn {
            geometry,
            max_block: limits.max_block_length,
            max_queued: limits.max_queued_requests,
            fast,
            extended,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            peer_pieces: Bitfield::new(geometry.piece_count()),
            peer_ext: None,
            outstanding: HashMap::new(),
            recently_cancelled: VecDeque::new(),
            queued: VecDeque::new(),
            allowed_fast: HashSet::new(),
            unrequested: 0,
            bad_requests: 0,
            ignored_requests: 0,
            last_received: now,
            last_sent: now,
        }
    }

    /// Handles one received message. `we_have` is our own bitfield.
    pub fn receive(
        &mut self,
        msg: Message,
        we_have: &Bitfield,
        now: Instant,
    ) -> Result<PeerEvent, Violation> {
        self.last_received = now;
        let count = self.geometry.piece_count();
        Ok(match msg {
            Message::KeepAlive | Message::Unknown { .. } => PeerEvent::Nothing,
            Message::Choke => {
                self.peer_choking = true;
                // Without the fast extension a choke silently discards our
                // requests; with it the peer rejects each one explicitly.
                let dropped = if self.fast {
                    Vec::new()
                } else {
                    self.outstanding.drain().map(|(b, _)| b).collect()
                };
                PeerEvent::Choked { dropped }
            }
            Message::Unchoke => {
                self.peer_choking = false;
                PeerEvent::Unchoked
            }
            Message::Interested => {
                self.peer_interested = true;
                PeerEvent::Interested
            }
            Message::NotInterested => {
                self.peer_interested = false;
                PeerEvent::NotInterested
            }
            Message::Have { piece } => {
                if piece >= count {
                    return Err(Violation::HaveOutOfRange { piece, count });
                }
                if self.peer_pieces.set(piece) {
                    PeerEvent::Have(piece)
                } else {
                    PeerEvent::Nothing
                }
            }
            Message::Bitfield(bits) => {
                // BEP 3 sends one bitfield, first; aria2 re-sends its whole
                // bitfield as it downloads. A later one adds to what the
                // peer said before: a peer cannot take back a piece. Each
                // costs work in proportion to its size, like any message.
                let bits = Bitfield::from_wire(&bits, count)?;
                self.peer_pieces.union_with(&bits);
                PeerEvent::Bitfield
            }
            Message::HaveAll | Message::HaveNone => {
                if !self.fast {
                    return Err(Violation::FastNotNegotiated);
                }
                if msg == Message::HaveAll {
                    self.peer_pieces = Bitfield::full(count);
                }
                PeerEvent::Bitfield
            }
            Message::Request(block) => self.on_request(block, we_have)?,
            Message::Cancel(block) => {
                self.queued.retain(|b| *b != block);
                PeerEvent::Nothing
            }
            Message::Piece { piece, begin, data } => self.on_block(piece, begin, data)?,
            Message::RejectRequest(block) => {
                if !self.fast {
                    return Err(Violation::FastNotNegotiated);
                }
                if self.outstanding.remove(&block).is_some() {
                    PeerEvent::Rejected(block)
                } else {
                    PeerEvent::Nothing
                }
            }
            Message::AllowedFast { piece } => {
                if !self.fast {
                    return Err(Violation::FastNotNegotiated);
                }
                if piece < count {
                    self.allowed_fast.insert(piece);
                    PeerEvent::AllowedFast(piece)
                } else {
                    PeerEvent::Nothing
                }
            }
            Message::SuggestPiece { piece } => {
                if !self.fast {
                    return Err(Violation::FastNotNegotiated);
                }
                if piece < count {
                    PeerEvent::Suggest(piece)
                } else {
                    PeerEvent::Nothing
                }
            }
            Message::Port(port) => PeerEvent::DhtPort(port),
            Message::Extended { id, payload } => {
                if !self.extended {
                    // Some clients send these regardless; ignoring is harmless.
                    PeerEvent::Nothing
                } else if id == EXT_HANDSHAKE_ID {
                    let hs = ExtendedHandshake::decode(&payload, &Limits::DEFAULT)
                        .map_err(|e| Violation::ExtendedHandshake(e.to_string()))?;
                    self.peer_ext = Some(hs.clone());
                    PeerEvent::ExtendedHandshake(Box::new(hs))
                } else {
                    PeerEvent::Extended { id, payload }
                }
            }
        })
    }

    fn on_request(&mut self, block: BlockRef, we_have: &Bitfield) -> Result<PeerEvent, Violation> {
        if !self
            .geometry
            .is_valid_request(block.piece, block.begin, block.length, self.max_block)
        {
            return Err(Violation::InvalidRequest(block));
        }
        let refuse = |this: &Self| {
            if this.fast {
                PeerEvent::Reject(Message::RejectRequest(block))
            } else {
                PeerEvent::Nothing
            }
        };
        if !we_have.has(block.piece) {
            self.bad_requests += 1;
            if self.bad_requests > MAX_BAD_REQUESTS {
                return Err(Violation::RequestsForMissingPieces(self.bad_requests));
            }
            return Ok(refuse(self));
        }
        if self.am_choking || self.queued.contains(&block) {
            // Requests that crossed our CHOKE on the wire are normal; so is
            // the odd repeat. Thousands are a flood.
            self.ignored_requests += 1;
            if self.ignored_requests > self.max_queued {
                return Err(Violation::RequestFlood(self.max_queued));
            }
            if self.am_choking {
                return Ok(refuse(self));
            }
            return Ok(PeerEvent::Nothing);
        }
        if self.queued.len() >= self.max_queued {
            return Err(Violation::RequestFlood(self.max_queued));
        }
        self.queued.push_back(block);
        Ok(PeerEvent::RequestQueued)
    }

    fn on_block(&mut self, piece: u32, begin: u32, data: Bytes) -> Result<PeerEvent, Violation> {
        let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let block = BlockRef {
            piece,
            begin,
            length,
        };
        if let Some(requested_at) = self.outstanding.remove(&block) {
            return Ok(PeerEvent::Block {
                block,
                data,
                requested_at,
            });
        }
        if let Some(expected) = self
            .outstanding
            .keys()
            .find(|b| b.piece == piece && b.begin == begin)
            .copied()
        {
            return Err(Violation::WrongBlockLength {
                got: block,
                expected,
            });
        }
        if let Some(at) = self.recently_cancelled.iter().position(|b| *b == block) {
            self.recently_cancelled.remove(at);
            return Ok(PeerEvent::Nothing);
        }
        self.unrequested += 1;
        if self.unrequested > MAX_UNREQUESTED_BLOCKS {
            return Err(Violation::UnrequestedBlocks(self.unrequested));
        }
        Ok(PeerEvent::Nothing)
    }

    /// The next queued request of theirs to serve.
    pub fn next_request(&mut self) -> Option<BlockRef> {
        self.queued.pop_front()
    }

    /// Requests of theirs still queued.
    pub fn queued_requests(&self) -> usize {
        self.queued.len()
    }

    /// Our requests still outstanding.
    pub fn outstanding(&self) -> impl Iterator<Item = &BlockRef> {
        self.outstanding.keys()
    }

    pub fn outstanding_count(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether we may send a request for `piece` now.
    pub fn can_request(&self, piece: u32) -> bool {
        self.peer_pieces.has(piece) && (!self.peer_choking || self.allowed_fast.contains(&piece))
    }

    /// Records and returns a REQUEST; `None` if it may not be sent or is
    /// already outstanding.
    pub fn request(&mut self, block: BlockRef, now: Instant) -> Option<Message> {
        if !self.can_request(block.piece) || self.outstanding.contains_key(&block) {
            return None;
        }
        self.outstanding.insert(block, now);
        self.last_sent = now;
        Some(Message::Request(block))
    }

    /// Cancels an outstanding request; returns the CANCEL to send.
    pub fn cancel(&mut self, block: BlockRef, now: Instant) -> Option<Message> {
        self.outstanding.remove(&block)?;
        if self.recently_cancelled.len() >= CANCEL_MEMORY {
            self.recently_cancelled.pop_front();
        }
        self.recently_cancelled.push_back(block);
        self.last_sent = now;
        Some(Message::Cancel(block))
    }

    /// Forgets every outstanding request (the caller gives them back to the
    /// picker), e.g. when the peer has been snubbing us.
    pub fn abandon_outstanding(&mut self) -> Vec<BlockRef> {
        self.outstanding.drain().map(|(b, _)| b).collect()
    }

    /// Chokes the peer: the CHOKE, then a REJECT for every queued request
    /// under the fast extension (without it, the choke discards them).
    pub fn choke(&mut self, now: Instant) -> Vec<Message> {
        if self.am_choking {
            return Vec::new();
        }
        self.am_choking = true;
        self.ignored_requests = 0;
        self.last_sent = now;
        let mut out = vec![Message::Choke];
        let queued = std::mem::take(&mut self.queued);
        if self.fast {
            out.extend(queued.into_iter().map(Message::RejectRequest));
        }
        out
    }

    pub fn unchoke(&mut self, now: Instant) -> Option<Message> {
        if !self.am_choking {
            return None;
        }
        self.am_choking = false;
        self.last_sent = now;
        Some(Message::Unchoke)
    }

    /// Sets our interest; returns the message when it changed.
    pub fn set_interested(&mut self, interested: bool, now: Instant) -> Option<Message> {
        if self.am_interested == interested {
            return None;
        }
        self.am_interested = interested;
        self.last_sent = now;
        Some(if interested {
            Message::Interested
        } else {
            Message::NotInterested
        })
    }

    /// The first message to send after the handshake: our pieces.
    pub fn announce_pieces(&self, we_have: &Bitfield) -> Option<Message> {
        if self.fast && we_have.is_complete() {
            Some(Message::HaveAll)
        } else if we_have.count() == 0 {
            self.fast.then_some(Message::HaveNone)
        } else {
            Some(Message::Bitfield(we_have.to_wire()))
        }
    }

    /// Notes that something was sent (for keep-alive timing).
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// Time-driven duties: `Ok(Some(KeepAlive))` when one is due, an error
    /// when the peer has been silent too long.
    pub fn poll_time(&mut self, now: Instant) -> Result<Option<Message>, Violation> {
        let silent = now.saturating_duration_since(self.last_received);
        if silent > IDLE_TIMEOUT {
            return Err(Violation::Idle(silent));
        }
        if now.saturating_duration_since(self.last_sent) >= KEEPALIVE_EVERY {
            self.last_sent = now;
            return Ok(Some(Message::KeepAlive));
        }
        Ok(None)
    }

    /// Whether the peer has pieces we lack.
    pub fn has_pieces_we_lack(&self, we_have: &Bitfield) -> bool {
        we_have.lacks_any_of(&self.peer_pieces)
    }
}
