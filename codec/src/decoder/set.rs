//! The decoders of all requested pieces.

use std::collections::{HashMap, HashSet};

use wire::Limits;

use super::{PieceDecoder, Push, Reject};
use crate::params::PieceParams;
use crate::provenance::DigestKey;
use crate::SenderId;

/// The decoders of all requested pieces, keyed by piece index.
///
/// Symbols for pieces without a decoder are rejected as not requested; a
/// decoder that finishes is removed, so late symbols are dropped the same way.
#[derive(Debug)]
pub struct Decoders {
    limits: Limits,
    key: DigestKey,
    active: HashMap<u32, PieceDecoder>,
    /// Pieces whose decoder was taken to run `decode` elsewhere.
    busy: HashSet<u32>,
}

impl Decoders {
    pub fn new(limits: &Limits, key: DigestKey) -> Self {
        Decoders {
            limits: limits.clone(),
            key,
            active: HashMap::new(),
            busy: HashSet::new(),
        }
    }

    /// Starts receiving `piece`. Returns false (keeping the existing decoder)
    /// if it is already being received.
    pub fn request(&mut self, piece: u32, params: PieceParams) -> bool {
        if self.active.contains_key(&piece) || self.busy.contains(&piece) {
            return false;
        }
        let decoder = PieceDecoder::new(params, &self.limits, self.key);
        self.active.insert(piece, decoder);
        true
    }

    /// Stops receiving `piece`, dropping its symbols. Returns whether it was
    /// being received.
    pub fn cancel(&mut self, piece: u32) -> bool {
        self.active.remove(&piece).is_some() | self.busy.remove(&piece)
    }

    pub fn is_requested(&self, piece: u32) -> bool {
        self.active.contains_key(&piece) || self.busy.contains(&piece)
    }

    pub fn get(&self, piece: u32) -> Option<&PieceDecoder> {
        self.active.get(&piece)
    }

    /// Pieces being received.
    pub fn len(&self) -> usize {
        self.active.len() + self.busy.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`PieceDecoder::push`] for `piece`.
    pub fn push(&mut self, piece: u32, esi: u32, payload: &[u8], sender: SenderId) -> Push {
        self.with(piece, |d| d.push(esi, payload, sender))
    }

    /// [`PieceDecoder::push_block`] for `piece`.
    pub fn push_block(&mut self, piece: u32, offset: u32, data: &[u8], sender: SenderId) -> Push {
        self.with(piece, |d| d.push_block(offset, data, sender))
    }

    fn with(&mut self, piece: u32, f: impl FnOnce(&mut PieceDecoder) -> Push) -> Push {
        let Some(decoder) = self.active.get_mut(&piece) else {
            let reject = if self.busy.contains(&piece) {
                Reject::Busy
            } else {
                Reject::NotRequested { piece }
            };
            return Push::Rejected(reject);
        };
        let push = f(decoder);
        if decoder.is_finished() {
            self.active.remove(&piece);
        }
        push
    }

    /// Takes the decoder of `piece` out to run [`PieceDecoder::decode`] on a
    /// blocking pool; symbols for it are rejected as [`Reject::Busy`] until
    /// [`Decoders::restore`].
    pub fn take(&mut self, piece: u32) -> Option<PieceDecoder> {
        let decoder = self.active.remove(&piece)?;
        self.busy.insert(piece);
        Some(decoder)
    }

    /// Puts a taken decoder back, unless it has finished or the piece was
    /// cancelled meanwhile.
    pub fn restore(&mut self, piece: u32, decoder: PieceDecoder) {
        if self.busy.remove(&piece) && !decoder.is_finished() {
            self.active.insert(piece, decoder);
        }
    }
}
