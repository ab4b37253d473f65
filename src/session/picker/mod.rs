//! Which blocks to request from whom: random first pieces, then rarest
//! first, strict priority for pieces already started, and an endgame that
//! requests the last blocks from several peers.
//!
//! Pure state, no I/O: the torrent calls it under its lock. It also holds
//! the buffers of pieces in progress, so a completed piece is hashed and
//! written from memory without reading it back.

use std::collections::{HashMap, HashSet};

use rand::seq::IndexedRandom;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use wire::{Bitfield, BlockRef, PieceGeometry, BLOCK_SIZE};

/// Identifies a connection within a torrent.
pub type PeerKey = u64;

/// Pieces picked at random before switching to rarest first, so a new peer
/// quickly has something to trade.
const RANDOM_FIRST: u32 = 4;
/// At most this many peers are asked for the same block in endgame.
const ENDGAME_REQUESTERS: usize = 2;

#[derive(Debug, Clone)]
enum Block {
    Missing,
    Requested(Vec<PeerKey>),
    Received(PeerKey),
}

#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    blocks: Vec<Block>,
    received: u32,
    /// Peers that sent data for an earlier copy of this piece that failed
    /// its hash; they are asked last.
    avoid: Vec<PeerKey>,
    /// Received as symbols: blocks that arrive go to the piece's decoder,
    /// not to `data`, and the decoder says when the piece is complete.
    coded: bool,
}

/// What happened to a received block.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// The piece is not in progress (already done, or never requested).
    Stale,
    /// We already had this block (endgame duplicate).
    Duplicate,
    /// Stored; `cancel` lists other peers that were also asked for it.
    Accepted { cancel: Vec<PeerKey> },
    /// Stored, and it completed the piece: hash and write `data`.
    Completed(CompletedPiece),
    /// The piece is received as symbols: feed the block to its decoder.
    ToDecoder { cancel: Vec<PeerKey> },
}

/// A piece whose every block arrived.
#[derive(Debug, PartialEq, Eq)]
pub struct CompletedPiece {
    pub piece: u32,
    pub data: Vec<u8>,
    /// Sender of each block, in block order.
    pub senders: Vec<PeerKey>,
    pub cancel: Vec<PeerKey>,
}

/// The piece picker of one torrent.
pub struct Picker {
    geometry: PieceGeometry,
    done: Bitfield,
    availability: Vec<u32>,
    partial: HashMap<u32, Partial>,
    /// Complete pieces being hashed and written.
    verifying: HashSet<u32>,
    /// Buffers of written pieces, reused for new ones: no allocation, no
    /// zeroing, no page faults per piece.
    spare: Vec<Vec<u8>>,
    /// Pieces someone is waiting for (a read on the mounted torrent): they
    /// are started before any other and their blocks requested first.
    urgent: std::collections::BTreeSet<u32>,
    /// Repair pieces of the outer code held (empty without one); they are
    /// picked as pieces N .. N + R − 1, for coded peers only (`repair.rs`).
    repair_done: Bitfield,
    /// Rebuilds that fell short for want of one more piece.
    rebuild_shortfalls: u32,
    rng: SmallRng,
}

/// Spare piece buffers kept for reuse.
const SPARE_BUFFERS: usize = 16;

impl Picker {
    pub fn new(geometry: PieceGeometry, done: Bitfield) -> Self {
        Picker {
            geometry,
            availability: vec![0; geometry.piece_count() as usize],
            done,
            partial: HashMap::new(),
            verifying: HashSet::new(),
            spare: Vec::new(),
            urgent: std::collections::BTreeSet::new(),
            repair_done: Bitfield::new(0),
            rebuild_shortfalls: 0,
            rng: SmallRng::from_os_rng(),
        }
    }

    pub fn done(&self) -> &Bitfield {
        &self.done
    }

    /// Raises `pieces` to top priority until they are verified (the
    /// priority hook for streaming reads). Pieces already done are ignored.
    pub fn prioritize(&mut self, pieces: impl IntoIterator<Item = u32>) {
        for p in pieces {
            if p < self.geometry.piece_count() && !self.done.has(p) {
                self.urgent.insert(p);
            }
        }
    }

    /// Whether `theirs` has a piece we still need.
    pub fn is_interesting(&self, theirs: &Bitfield) -> bool {
        self.done.lacks_any_of(theirs)
    }

    /// Pieces started but not complete, and bytes received in them.
    pub fn in_progress(&self) -> (usize, u64) {
        let bytes = self
            .partial
            .iter()
            .map(|(&p, part)| {
                (0..part.blocks.len() as u32)
                    .filter(|&b| matches!(part.blocks.get(b as usize), Some(Block::Received(_))))
                    .filter_map(|b| self.geometry.block(p, b))
                    .map(|b| u64::from(b.length))
                    .sum::<u64>()
            })
            .sum();
        (self.partial.len(), bytes)
    }

    pub fn add_peer_pieces(&mut self, pieces: &Bitfield) {
        for i in pieces.iter_set() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a += 1;
            }
        }
    }

    pub fn add_peer_have(&mut self, piece: u32) {
        if let Some(a) = self.availability.get_mut(piece as usize) {
            *a += 1;
        }
    }

    /// A peer left: its pieces no longer count and its requests are free.
    pub fn remove_peer(&mut self, peer: PeerKey, pieces: &Bitfield) {
        for i in pieces.iter_set() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
        for part in self.partial.values_mut() {
            for block in &mut part.blocks {
                release_in(block, peer);
            }
        }
    }

    /// Gives a request back (choked, rejected, timed out, cancelled).
    pub fn release(&mut self, peer: PeerKey, block: BlockRef) {
        let index = block.begin / BLOCK_SIZE;
        if let Some(b) = self
            .partial
            .get_mut(&block.piece)
            .and_then(|p| p.blocks.get_mut(index as usize))
        {
            release_in(b, peer);
        }
    }

    /// Up to `max` blocks to request from `peer`, who has `theirs`.
    pub fn pick(&mut self, peer: PeerKey, theirs: &Bitfield, max: usize) -> Vec<BlockRef> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        self.pick_from_partials(peer, theirs, max, &mut out);
        while out.len() < max {
            let Some(piece) = self.choose_new_piece(theirs, None) else {
                break;
            };
            self.start(piece);
            self.pick_blocks_of(piece, peer, max, &mut out);
        }
        if out.len() < max {
            self.pick_endgame(peer, theirs, max, &mut out);
        }
        out
    }

    fn pick_from_partials(
        &mut self,
        peer: PeerKey,
        theirs: &Bitfield,
        max: usize,
        out: &mut Vec<BlockRef>,
    ) {
        // Finish the most advanced pieces first, so pieces complete instead
        // of all progressing together.
        let mut started: Vec<(u32, u32)> = self
            .partial
            .iter()
            .filter(|(&p, part)| !part.coded && theirs.has(p) && !self.shuns(peer, p, part))
            .map(|(&p, part)| (p, part.received))
            .collect();
        let urgent = &self.urgent;
        started.sort_unstable_by(|a, b| {
            urgent
                .contains(&b.0)
                .cmp(&urgent.contains(&a.0))
                .then(b.1.cmp(&a.1))
                .then(a.0.cmp(&b.0))
        });
        for (piece, _) in started {
            if out.len() >= max {
                break;
            }
            self.pick_blocks_of(piece, peer, max, out);
        }
    }

    /// Whether `peer` should leave `piece` to others: it sent data for a
    /// copy that failed, and someone else has the piece.
    fn shuns(&self, peer: PeerKey, piece: u32, part: &Partial) -> bool {
        part.avoid.contains(&peer)
            && self
                .availability
                .get(piece as usize)
                .is_some_and(|&a| a as usize > part.avoid.len())
    }

    fn pick_blocks_of(&mut self, piece: u32, peer: PeerKey, max: usize, out: &mut Vec<BlockRef>) {
        let Some(part) = self.partial.get_mut(&piece) else {
            return;
        };
        for (n, block) in part.blocks.iter_mut().enumerate() {
            if out.len() >= max {
                return;
            }
            if matches!(block, Block::Missing) {
                if let Some(b) = self.geometry.block(piece, n as u32) {
                    *block = Block::Requested(vec![peer]);
                    out.push(b);
                }
            }
        }
    }

    /// A new piece to start from a peer with `theirs` (and, from a coded
    /// peer, `theirs_repair`: repair pieces count as pieces N + r).
    fn choose_new_piece(
        &mut self,
        theirs: &Bitfield,
        theirs_repair: Option<&Bitfield>,
    ) -> Option<u32> {
        // Waited-for pieces first, in order (a streaming read wants the
        // earliest first).
        if let Some(&p) = self.urgent.iter().find(|&&p| {
            theirs.has(p)
                && !self.done.has(p)
                && !self.partial.contains_key(&p)
                && !self.verifying.contains(&p)
        }) {
            return Some(p);
        }
        // With an outer code, about N pieces of any kind are enough.
        if !self.room_for_more() {
            return None;
        }
        let repairs = self.repair_candidates(theirs_repair);
        let (done, repair_done) = (&self.done, &self.repair_done);
        let (partial, verifying) = (&self.partial, &self.verifying);
        let n = done.len();
        let candidates = theirs.iter_set().chain(repairs).filter(|&p| {
            let held = match p.checked_sub(n) {
                Some(r) => repair_done.has(r),
                None => done.has(p),
            };
            !held && !partial.contains_key(&p) && !verifying.contains(&p)
        });
        if self.done.count() < RANDOM_FIRST {
            let all: Vec<u32> = candidates.collect();
            return all.choose(&mut self.rng).copied();
        }
        // Rarest first; ties broken at random so peers spread out.
        let mut best: Option<(u32, u32)> = None;
        let mut ties = 0u32;
        for p in candidates {
            let avail = self.availability.get(p as usize).copied().unwrap_or(0);
            match best {
                Some((_, b)) if avail > b => {}
                Some((_, b)) if avail == b => {
                    ties += 1;
                    if self.rng.random_range(0..ties) == 0 {
                        best = Some((p, avail));
                    }
                }
                _ => {
                    best = Some((p, avail));
                    ties = 1;
                }
            }
        }
        best.map(|(p, _)| p)
    }

    fn start(&mut self, piece: u32) {
        let size = self.geometry.piece_size(piece).unwrap_or(0) as usize;
        let blocks = self.geometry.block_count(piece);
        // Every byte is overwritten by a block before the piece completes,
        // so a reused buffer's old content never shows.
        let data = match self.spare.pop() {
            Some(mut buf) if buf.capacity() >= size => {
                buf.resize(size, 0);
                buf
            }
            _ => vec![0; size],
        };
        self.partial.insert(
            piece,
            Partial {
                data,
                blocks: vec![Block::Missing; blocks as usize],
                received: 0,
                avoid: Vec::new(),
                coded: false,
            },
        );
    }

    /// Starts a new piece (random first, then rarest) to be received as
    /// symbols from a peer that has `theirs`.
    pub fn start_coded(
        &mut self,
        theirs: &Bitfield,
        theirs_repair: Option<&Bitfield>,
    ) -> Option<u32> {
        let piece = self.choose_new_piece(theirs, theirs_repair)?;
        self.insert_coded(piece);
        Some(piece)
    }

    /// A new coded partial for `piece`.
    fn insert_coded(&mut self, piece: u32) {
        let blocks = self.geometry.block_count(piece);
        self.partial.insert(
            piece,
            Partial {
                data: Vec::new(),
                blocks: vec![Block::Missing; blocks as usize],
                received: 0,
                avoid: Vec::new(),
                coded: true,
            },
        );
    }

    /// Plain pieces that `theirs` has and nobody is working on (no block
    /// requested from anyone: restarted after a hash failure, or left half
    /// received by a peer that went away): a coded peer may take them over
    /// at any time, the blocks already received feeding its decoder.
    pub fn idle_plain_partials(&self, theirs: &Bitfield) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .partial
            .iter()
            .filter(|(&p, part)| {
                !part.coded
                    && theirs.has(p)
                    && !part.blocks.iter().any(|b| matches!(b, Block::Requested(_)))
            })
            .map(|(&p, _)| p)
            .collect();
        v.sort_unstable();
        v
    }

    /// Plain pieces in progress that `theirs` has (a coded peer may join
    /// them in endgame).
    pub fn plain_partials(&self, theirs: &Bitfield) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .partial
            .iter()
            .filter(|(&p, part)| !part.coded && theirs.has(p))
            .map(|(&p, _)| p)
            .collect();
        v.sort_unstable();
        v
    }

    /// Turns a plain piece in progress into a coded one; returns the blocks
    /// already received (offset, bytes, sender) to feed its decoder.
    /// Requests still out with legacy peers stay valid: their blocks will go
    /// to the decoder too.
    pub fn convert_to_coded(&mut self, piece: u32) -> Option<Vec<(u32, Vec<u8>, PeerKey)>> {
        let part = self.partial.get_mut(&piece).filter(|p| !p.coded)?;
        part.coded = true;
        let data = std::mem::take(&mut part.data);
        let received = part
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(n, b)| match b {
                Block::Received(peer) => {
                    let block = self.geometry.block(piece, n as u32)?;
                    let bytes =
                        data.get(block.begin as usize..(block.begin + block.length) as usize)?;
                    Some((block.begin, bytes.to_vec(), *peer))
                }
                _ => None,
            })
            .collect();
        self.recycle(data);
        Some(received)
    }

    /// True when every piece is started and every block of plain pieces is
    /// requested: the time for duplicate requests and extra senders.
    pub fn is_endgame(&self) -> bool {
        let any_missing = self
            .partial
            .values()
            .filter(|part| !part.coded)
            .any(|part| part.blocks.iter().any(|b| matches!(b, Block::Missing)));
        let unstarted = (0..self.geometry.piece_count()).any(|p| {
            !self.done.has(p) && !self.partial.contains_key(&p) && !self.verifying.contains(&p)
        });
        !any_missing && !unstarted
    }

    /// Endgame: every missing block is requested somewhere; ask this peer
    /// too for blocks it has not been asked for yet.
    fn pick_endgame(
        &mut self,
        peer: PeerKey,
        theirs: &Bitfield,
        max: usize,
        out: &mut Vec<BlockRef>,
    ) {
        if !self.is_endgame() {
            return;
        }
        let mut pieces: Vec<u32> = self
            .partial
            .keys()
            .copied()
            .filter(|&p| theirs.has(p))
            .collect();
        pieces.sort_unstable();
        for piece in pieces {
            let Some(part) = self.partial.get_mut(&piece) else {
                continue;
            };
            for (n, block) in part.blocks.iter_mut().enumerate() {
                if out.len() >= max {
                    return;
                }
                match block {
                    Block::Requested(peers)
                        if !peers.contains(&peer) && peers.len() < ENDGAME_REQUESTERS =>
                    {
                        if let Some(b) = self.geometry.block(piece, n as u32) {
                            peers.push(peer);
                            out.push(b);
                        }
                    }
                    // Coded pieces leave their blocks unrequested: in endgame
                    // a legacy peer's blocks help their decoders too.
                    Block::Missing if part.coded => {
                        if let Some(b) = self.geometry.block(piece, n as u32) {
                            *block = Block::Requested(vec![peer]);
                            out.push(b);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Stores a received block.
    pub fn on_block(&mut self, peer: PeerKey, block: BlockRef, data: &[u8]) -> BlockOutcome {
        let index = (block.begin / BLOCK_SIZE) as usize;
        let expected = self.geometry.block(block.piece, index as u32);
        let Some(part) = self.partial.get_mut(&block.piece) else {
            return BlockOutcome::Stale;
        };
        if expected != Some(block) || data.len() != block.length as usize {
            return BlockOutcome::Stale;
        }
        let Some(state) = part.blocks.get_mut(index) else {
            return BlockOutcome::Stale;
        };
        let cancel = match state {
            Block::Received(_) => return BlockOutcome::Duplicate,
            Block::Missing => Vec::new(),
            Block::Requested(peers) => peers.iter().copied().filter(|p| *p != peer).collect(),
        };
        *state = Block::Received(peer);
        if part.coded {
            return BlockOutcome::ToDecoder { cancel };
        }
        let begin = block.begin as usize;
        if let Some(dst) = part.data.get_mut(begin..begin + data.len()) {
            dst.copy_from_slice(data);
        }
        part.received += 1;
        if part.received as usize != part.blocks.len() {
            return BlockOutcome::Accepted { cancel };
        }
        let Some(part) = self.partial.remove(&block.piece) else {
            return BlockOutcome::Stale;
        };
        self.verifying.insert(block.piece);
        let senders = part
            .blocks
            .iter()
            .map(|b| match b {
                Block::Received(p) => *p,
                _ => peer,
            })
            .collect();
        BlockOutcome::Completed(CompletedPiece {
            piece: block.piece,
            data: part.data,
            senders,
            cancel,
        })
    }

    /// Gives back the buffer of a piece that was written.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS
            && buf.capacity() >= self.geometry.piece_length() as usize
        {
            self.spare.push(buf);
        }
    }

    /// The piece passed its hash and is written.
    pub fn piece_verified(&mut self, piece: u32) {
        self.urgent.remove(&piece);
        self.verifying.remove(&piece);
        self.partial.remove(&piece);
        match self.repair_index(piece) {
            Some(r) => self.repair_done.set(r),
            None => self.done.set(piece),
        };
    }

    /// The piece failed its hash: download it again, asking the peers that
    /// sent the failed copy last.
    pub fn piece_failed(&mut self, piece: u32, senders: &[PeerKey]) {
        self.verifying.remove(&piece);
        self.start(piece);
        if let Some(part) = self.partial.get_mut(&piece) {
            let mut avoid = senders.to_vec();
            avoid.sort_unstable();
            avoid.dedup();
            part.avoid = avoid;
        }
    }

    /// The piece could not be written (e.g. disk full): forget it for now.
    pub fn piece_abandoned(&mut self, piece: u32) {
        self.verifying.remove(&piece);
        self.partial.remove(&piece);
    }

    /// A piece that arrived some other way (e.g. decoded from symbols).
    pub fn mark_verifying(&mut self, piece: u32) -> bool {
        if self.held(piece) || self.verifying.contains(&piece) {
            return false;
        }
        self.partial.remove(&piece);
        self.verifying.insert(piece)
    }
}

fn release_in(block: &mut Block, peer: PeerKey) {
    if let Block::Requested(peers) = block {
        peers.retain(|p| *p != peer);
        if peers.is_empty() {
            *block = Block::Missing;
        }
    }
}

mod repair;
pub use repair::Suggested;
#[cfg(test)]
mod tests;
