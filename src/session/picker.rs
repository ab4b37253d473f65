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
            rng: SmallRng::from_os_rng(),
        }
    }

    pub fn done(&self) -> &Bitfield {
        &self.done
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
            let Some(piece) = self.choose_new_piece(theirs) else {
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
            .filter(|(&p, part)| theirs.has(p) && !self.shuns(peer, p, part))
            .map(|(&p, part)| (p, part.received))
            .collect();
        started.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
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

    fn choose_new_piece(&mut self, theirs: &Bitfield) -> Option<u32> {
        let candidates = theirs.iter_set().filter(|&p| {
            !self.done.has(p) && !self.partial.contains_key(&p) && !self.verifying.contains(&p)
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
            },
        );
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
        let any_missing = self
            .partial
            .iter()
            .any(|(_, part)| part.blocks.iter().any(|b| matches!(b, Block::Missing)));
        let unstarted = (0..self.geometry.piece_count()).any(|p| {
            !self.done.has(p) && !self.partial.contains_key(&p) && !self.verifying.contains(&p)
        });
        if any_missing || unstarted {
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
                if let Block::Requested(peers) = block {
                    if !peers.contains(&peer) && peers.len() < ENDGAME_REQUESTERS {
                        if let Some(b) = self.geometry.block(piece, n as u32) {
                            peers.push(peer);
                            out.push(b);
                        }
                    }
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
        self.verifying.remove(&piece);
        self.partial.remove(&piece);
        self.done.set(piece);
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
        if self.done.has(piece) || self.verifying.contains(&piece) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> PieceGeometry {
        // 8 pieces of 64 KiB (4 blocks each), the last one 40 KiB (3 blocks).
        PieceGeometry::new(65536, 7 * 65536 + 40960).unwrap()
    }

    fn data_for(b: BlockRef) -> Vec<u8> {
        vec![(b.piece * 7 + b.begin / BLOCK_SIZE) as u8; b.length as usize]
    }

    #[test]
    fn downloads_everything_once_from_one_peer() {
        let g = geometry();
        let mut picker = Picker::new(g, Bitfield::new(8));
        let seed = Bitfield::full(8);
        picker.add_peer_pieces(&seed);
        let mut completed = Vec::new();
        let mut requests = 0;
        loop {
            let blocks = picker.pick(1, &seed, 5);
            if blocks.is_empty() {
                break;
            }
            requests += blocks.len();
            for b in blocks {
                match picker.on_block(1, b, &data_for(b)) {
                    BlockOutcome::Completed(c) => {
                        assert_eq!(c.data.len() as u32, g.piece_size(c.piece).unwrap());
                        assert_eq!(&c.data[..16], &data_for(g.block(c.piece, 0).unwrap())[..16]);
                        picker.piece_verified(c.piece);
                        completed.push(c.piece);
                    }
                    BlockOutcome::Accepted { cancel } => assert!(cancel.is_empty()),
                    other => panic!("{other:?}"),
                }
            }
        }
        completed.sort_unstable();
        assert_eq!(completed, (0..8).collect::<Vec<_>>());
        assert_eq!(
            requests,
            7 * 4 + 3,
            "no block requested twice outside endgame"
        );
        assert!(picker.done().is_complete());
    }

    #[test]
    fn rarest_first_after_random_start_and_started_pieces_first() {
        let g = geometry();
        let mut done = Bitfield::new(8);
        for p in 0..4 {
            done.set(p);
        }
        let mut picker = Picker::new(g, done);
        let mut common = Bitfield::new(8);
        for p in 4..8 {
            common.set(p);
        }
        for _ in 0..3 {
            picker.add_peer_pieces(&common);
        }
        for p in [4, 5, 7] {
            picker.add_peer_have(p);
        }
        // Piece 6 is held by the fewest peers.
        let first = picker.pick(9, &common, 1);
        assert_eq!(first[0].piece, 6);
        // Strict priority: the started piece is continued before any other.
        let next = picker.pick(10, &common, 3);
        assert_eq!(next.len(), 3);
        assert!(next.iter().all(|b| b.piece == 6), "{next:?}");
        // A peer without piece 6 starts another piece.
        let mut no6 = common.clone();
        no6.clear(6);
        assert_ne!(picker.pick(11, &no6, 1)[0].piece, 6);
    }

    #[test]
    fn endgame_asks_a_second_peer_and_cancels_the_loser() {
        let g = PieceGeometry::new(32768, 32768).unwrap();
        let mut picker = Picker::new(g, Bitfield::new(1));
        let all = Bitfield::full(1);
        picker.add_peer_pieces(&all);
        picker.add_peer_pieces(&all);
        let a = picker.pick(1, &all, 10);
        assert_eq!(a.len(), 2);
        // Everything is requested from peer 1: peer 2 gets endgame copies.
        let b = picker.pick(2, &all, 10);
        assert_eq!(b, a);
        assert!(picker.pick(2, &all, 10).is_empty(), "not asked twice");
        match picker.on_block(2, b[0], &data_for(b[0])) {
            BlockOutcome::Accepted { cancel } => assert_eq!(cancel, vec![1]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            picker.on_block(1, a[0], &data_for(a[0])),
            BlockOutcome::Duplicate
        );
        assert!(matches!(
            picker.on_block(1, a[1], &data_for(a[1])),
            BlockOutcome::Completed(_)
        ));
    }

    #[test]
    fn failed_pieces_go_to_other_peers_and_departures_free_requests() {
        let g = PieceGeometry::new(32768, 32768).unwrap();
        let mut picker = Picker::new(g, Bitfield::new(1));
        let all = Bitfield::full(1);
        picker.add_peer_pieces(&all);
        picker.add_peer_pieces(&all);
        let blocks = picker.pick(1, &all, 10);
        picker.on_block(1, blocks[0], &data_for(blocks[0]));
        let BlockOutcome::Completed(c) = picker.on_block(1, blocks[1], &data_for(blocks[1])) else {
            panic!("not completed");
        };
        assert_eq!(c.senders, vec![1, 1]);
        picker.piece_failed(0, &c.senders);
        assert!(
            picker.pick(1, &all, 10).is_empty(),
            "the failed sender is asked last"
        );
        let again = picker.pick(2, &all, 1);
        assert_eq!(again.len(), 1);
        // Peer 2 leaves: its request is free again (and peer 1 is the only
        // one left, so it may retry).
        picker.remove_peer(2, &all);
        assert_eq!(picker.pick(1, &all, 10).len(), 2);
        // Stale and malformed blocks are refused.
        let wrong = BlockRef {
            piece: 0,
            begin: 1,
            length: 16384,
        };
        assert_eq!(picker.on_block(1, wrong, &[0; 16384]), BlockOutcome::Stale);
    }
}
