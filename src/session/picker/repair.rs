//! Repair pieces of the outer code in the picker (DESIGN §3.6).
//!
//! Coded peers trade repair pieces like pieces, numbered N .. N + R − 1.
//! Any N of the original and repair pieces rebuild the file, so a repair
//! piece is as good as a missing original, and picking the rarest of both
//! spreads the seed's upload over pieces nobody has: the swarm then holds
//! more than one copy's worth of distinct pieces and survives the seed's
//! departure. A leecher never needs more than about N pieces in all, so
//! repair pieces stop being picked once enough are held or coming.

use wire::Bitfield;

use super::Picker;

/// What became of a suggested piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suggested {
    /// Started: request its symbols.
    Started,
    /// Held, being received already, or not a piece: forget it.
    Useless,
    /// Enough pieces are held or coming for now: keep it for later.
    NotNow,
}

impl Picker {
    /// Adds the outer code's repair pieces, `have` being those held.
    pub fn with_repair(mut self, have: Bitfield) -> Self {
        let total = self.done.len() as usize + have.len() as usize;
        self.availability.resize(total, 0);
        self.repair_done = have;
        self
    }

    /// Repair piece index of piece `piece`, if it is one.
    pub(super) fn repair_index(&self, piece: u32) -> Option<u32> {
        piece
            .checked_sub(self.done.len())
            .filter(|&r| r < self.repair_done.len())
    }

    /// Whether we hold `piece` (original or repair).
    pub fn held(&self, piece: u32) -> bool {
        match self.repair_index(piece) {
            Some(r) => self.repair_done.has(r),
            None => self.done.has(piece),
        }
    }

    pub fn repair_done(&self) -> &Bitfield {
        &self.repair_done
    }

    /// Original and repair pieces held.
    pub fn held_count(&self) -> u32 {
        self.done.count() + self.repair_done.count()
    }

    /// Whether enough pieces are held to try rebuilding the missing
    /// originals from the outer code.
    pub fn can_rebuild(&self) -> bool {
        !self.repair_done.is_empty()
            && !self.done.is_complete()
            && self.held_count() >= self.done.len()
    }

    pub fn add_peer_repair(&mut self, pieces: &Bitfield) {
        let n = self.done.len();
        for r in pieces.iter_set() {
            self.add_peer_have(n + r);
        }
    }

    pub fn remove_peer_repair(&mut self, pieces: &Bitfield) {
        let n = self.done.len() as usize;
        for r in pieces.iter_set() {
            if let Some(a) = self.availability.get_mut(n + r as usize) {
                *a = a.saturating_sub(1);
            }
        }
    }

    /// Whether starting another piece may help: always without an outer
    /// code; with one, while the pieces held plus those on their way
    /// (started, and held by someone connected) are fewer than a rebuild
    /// needs — N + 1, plus one per rebuild that fell short. Pieces whose
    /// every holder left do not count, or they would block the rest.
    pub fn room_for_more(&self) -> bool {
        if self.repair_done.is_empty() {
            return true;
        }
        let coming = self
            .partial
            .keys()
            .chain(&self.verifying)
            .filter(|&&p| self.availability.get(p as usize).is_some_and(|&a| a > 0))
            .count() as u32;
        let enough = self.done.len() + 1 + self.rebuild_shortfalls;
        self.held_count() + coming < enough
    }

    /// Starts `piece` (original, or repair from N on) as a coded piece
    /// because its sender suggested it, if we lack it, nobody works on it
    /// and it may help (see [`Self::room_for_more`]).
    pub fn start_suggested(&mut self, piece: u32) -> Suggested {
        let known = piece < self.done.len() || self.repair_index(piece).is_some();
        if !known
            || self.held(piece)
            || self.partial.contains_key(&piece)
            || self.verifying.contains(&piece)
        {
            return Suggested::Useless;
        }
        let useful = match self.repair_index(piece) {
            Some(_) => self.repair_wanted(),
            None => self.room_for_more(),
        };
        if !useful {
            return Suggested::NotNow;
        }
        self.insert_coded(piece);
        Suggested::Started
    }

    /// Connected peers holding `piece` (original or repair).
    pub fn availability_of(&self, piece: u32) -> u32 {
        self.availability.get(piece as usize).copied().unwrap_or(0)
    }

    /// Pieces in progress as (piece, holders connected), for stall logs.
    pub fn in_progress_availability(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self
            .partial
            .keys()
            .chain(&self.verifying)
            .map(|&p| (p, self.availability.get(p as usize).copied().unwrap_or(0)))
            .collect();
        v.sort_unstable();
        v
    }

    /// A rebuild from held pieces fell short (RaptorQ's rare rank
    /// deficiency): allow one more piece.
    pub fn rebuild_fell_short(&mut self) {
        self.rebuild_shortfalls += 1;
    }

    /// Whether more repair pieces would help: the file is not complete and
    /// there is room for more pieces.
    fn repair_wanted(&self) -> bool {
        !self.repair_done.is_empty() && !self.done.is_complete() && self.room_for_more()
    }

    /// Repair pieces of `theirs` worth starting, as piece numbers.
    pub(super) fn repair_candidates(&self, theirs: Option<&Bitfield>) -> Vec<u32> {
        let Some(theirs) = theirs.filter(|_| self.repair_wanted()) else {
            return Vec::new();
        };
        let n = self.done.len();
        theirs
            .iter_set()
            .filter(|&r| !self.repair_done.has(r))
            .map(|r| n + r)
            .collect()
    }

    /// Whether a peer holding these repair pieces has one we may fetch
    /// (our interest in it). Not limited by [`Self::room_for_more`]: pieces
    /// already started must be finished from someone, and a peer we are
    /// not interested in sends nothing.
    pub fn wants_repair_from(&self, theirs: &Bitfield) -> bool {
        !self.done.is_complete() && self.repair_done.lacks_any_of(theirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::PieceGeometry;

    fn picker(pieces: u32, repair: u32) -> Picker {
        let g = PieceGeometry::new(16 * 1024, u64::from(pieces) * 16 * 1024).unwrap();
        Picker::new(g, Bitfield::new(pieces)).with_repair(Bitfield::new(repair))
    }

    #[test]
    fn repair_pieces_are_picked_only_from_coded_peers_and_only_while_useful() {
        let mut p = picker(4, 2);
        let theirs = Bitfield::new(4);
        let repair = Bitfield::full(2);
        // A peer with repair pieces only: nothing for a plain pick.
        assert!(p.pick(1, &theirs, 8).is_empty());
        assert!(p.wants_repair_from(&repair));
        p.add_peer_repair(&repair);
        let first = p.start_coded(&theirs, Some(&repair)).unwrap();
        let second = p.start_coded(&theirs, Some(&repair)).unwrap();
        let mut got = [first, second];
        got.sort_unstable();
        assert_eq!(got, [4, 5]);
        assert_eq!(p.start_coded(&theirs, Some(&repair)), None);
        p.piece_verified(4);
        assert!(p.held(4) && !p.held(5) && !p.held(0));
        assert_eq!(p.held_count(), 1);
        assert!(!p.can_rebuild());
    }

    #[test]
    fn no_more_repair_pieces_than_a_rebuild_needs() {
        let mut p = picker(4, 4);
        let all = Bitfield::full(4);
        p.add_peer_pieces(&all);
        p.add_peer_repair(&all);
        for piece in [0, 1, 2] {
            p.mark_verifying(piece);
            p.piece_verified(piece);
        }
        // Three held: two repair pieces may come (N + 1 = 5 in all)...
        let mut none = Bitfield::new(4);
        let a = p.start_coded(&none, Some(&all)).unwrap();
        let b = p.start_coded(&none, Some(&all)).unwrap();
        assert!(a >= 4 && b >= 4 && a != b);
        // ...and no third while they are on their way.
        assert_eq!(p.start_coded(&none, Some(&all)), None);
        // Still interested: the two started must come from someone.
        assert!(p.wants_repair_from(&all));
        p.piece_verified(a);
        assert!(p.can_rebuild());
        // Four held and one coming: enough for a rebuild, so not even the
        // last original is started...
        none.set(3);
        assert_eq!(p.start_coded(&none, Some(&all)), None);
        assert!(p.pick(9, &none, 4).is_empty());
        // ...unless a rebuild falls short of a piece.
        p.piece_verified(b);
        p.rebuild_fell_short();
        assert_eq!(p.start_coded(&none, None), Some(3));
    }

    #[test]
    fn a_complete_file_wants_no_repair_pieces() {
        let g = PieceGeometry::new(16 * 1024, 2 * 16 * 1024).unwrap();
        let mut p = Picker::new(g, Bitfield::full(2)).with_repair(Bitfield::new(1));
        assert!(!p.wants_repair_from(&Bitfield::full(1)));
        assert_eq!(
            p.start_coded(&Bitfield::new(2), Some(&Bitfield::full(1))),
            None
        );
        assert!(!p.can_rebuild());
    }
}
