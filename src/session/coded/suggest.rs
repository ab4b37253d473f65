//! Suggestions (DESIGN §3.6): a seed of a torrent with an outer code spreads
//! its upload over the pieces it has sent least, so that once it has
//! uploaded a little more than one copy the swarm holds about that many
//! distinct original and repair pieces — what lets the swarm finish after
//! the seed leaves. Like BEP 16's initial seeding, for coded peers only: a
//! receiver starts new pieces from a suggesting seed only as suggested, and
//! the seed suggests another whenever the peer announces a piece — and, as
//! in BEP 16, only while few of the pieces it took from us are held by it
//! alone: a peer that leaves with the seed takes those with it.
//!
//! A seed of a torrent without an outer code suggests too, for speed: when
//! leechers choose for themselves, several pick the same rare pieces at
//! once, and every copy the seed uploads twice is upload the swarm never
//! gets new data from (at 0% loss four leechers took 1.27–1.36 copies from
//! the seed, and finished no sooner than 1/1.33 of its uplink allows).
//! Nothing is at risk there, so only the suggestions not yet taken count.

use anyhow::Result;
use rand::Rng;
use wire::fountain::CodedMessage;
use wire::peer::Violation;
use wire::Bitfield;

use crate::session::peer::PeerTask;
use crate::session::picker::Picker;
use crate::session::torrent::{PeerCmd, TorrentState};

/// Bytes of pieces at risk with one peer: suggested and not yet taken, or
/// taken and held by it alone. Enough to keep the path from the seed busy
/// while the peer passes pieces on; few enough that a peer leaving with
/// the seed takes little that nobody else has.
const AT_RISK_BYTES: u32 = 1 << 20;
/// Without an outer code: bytes of suggestions not yet taken by one peer.
/// Enough to keep the path from the seed busy between a piece's HAVE and
/// the next suggestion: a bandwidth-delay product of 100 Mbit/s × 80 ms
/// is 1 MB, and a receiver on loopback holds a few pieces in verification.
const AHEAD_BYTES: u32 = 2 << 20;
/// Suggestions a receiver keeps from one peer.
const MAX_SUGGESTIONS: usize = 64;

impl PeerTask {
    /// Seeding: suggests pieces to this coded peer until [`AT_RISK_BYTES`]
    /// are at risk with it (with an outer code) or [`AHEAD_BYTES`] are
    /// suggested and not yet taken (without).
    pub(crate) fn suggest_more(&mut self) {
        let Some(link) = self.link.as_ref() else {
            return;
        };
        // A connection about to move to QUIC: suggestions sent on it would
        // be forgotten with it by the receiver.
        if self
            .ext_wait_until
            .is_some_and(|until| std::time::Instant::now() < until)
        {
            return;
        }
        let piece_len = self.torrent.info.geometry.piece_length().max(1);
        let mut skip = link.suggested_to.clone();
        let before = skip.len();
        {
            let mut st = self.torrent.lock();
            if !st.picker.done().is_complete() {
                return;
            }
            let outer = !st.picker.repair_done().is_empty();
            let limit = if outer {
                (AT_RISK_BYTES / piece_len).clamp(2, 16)
            } else {
                (AHEAD_BYTES / piece_len).clamp(4, MAX_SUGGESTIONS as u32)
            } as usize;
            // Pieces held by this peer alone count while another connected
            // peer lacks pieces and could take them from it; the last
            // leecher has nobody to pass them to.
            let key = self.key;
            let others_lack = st
                .peers
                .iter()
                .any(|(k, p)| *k != key && !p.pieces.is_complete());
            let alone = if outer && others_lack {
                st.held_alone.values().filter(|k| **k == key).count()
            } else {
                0
            };
            while skip.len() + alone < limit {
                match st.pick_suggestion(&self.conn.peer_pieces, &self.their_repair, &skip) {
                    Some(piece) => skip.push(piece),
                    None => break,
                }
            }
        }
        let fresh: Vec<u32> = skip.split_off(before);
        for &piece in &fresh {
            self.send_coded(CodedMessage::Suggest { piece });
        }
        if let Some(link) = self.link.as_mut() {
            link.suggested_to.extend(fresh);
        }
    }

    /// The peer announced `piece` (coded numbering; called once it counts
    /// in the picker's availability). If we suggested it, the suggestion
    /// was taken, and the peer holds it alone unless another peer has it;
    /// if another peer took it from us alone, that one may have more.
    pub(crate) fn peer_announced(&mut self, piece: u32) {
        let taken = self.link.as_mut().is_some_and(|link| {
            let before = link.suggested_to.len();
            link.suggested_to.retain(|&p| p != piece);
            link.suggested_to.len() != before
        });
        {
            let mut st = self.torrent.lock();
            if let Some(&holder) = st.held_alone.get(&piece) {
                if holder != self.key {
                    st.held_alone.remove(&piece);
                    if let Some(p) = st.peers.get(&holder) {
                        let _ = p.tx.send(PeerCmd::Replicated);
                    }
                }
            }
            // Only an outer code's suggestions count pieces at risk.
            let outer = !st.picker.repair_done().is_empty();
            if taken && outer && st.picker.availability_of(piece) <= 1 {
                st.held_alone.insert(piece, self.key);
            }
        }
        if taken {
            self.suggest_more();
        }
    }

    /// The peer suggests a piece.
    pub(crate) fn on_suggest(&mut self, piece: u32) -> Result<()> {
        let count = self.our_have.len() + self.our_repair.len();
        if piece >= count {
            return Err(Violation::Coded(format!("suggested piece {piece} of {count}")).into());
        }
        if let Some(link) = self.link.as_mut() {
            link.suggesting = true;
            link.suggested_by_them.insert(piece);
            if !link.suggestions.contains(&piece) && link.suggestions.len() < MAX_SUGGESTIONS {
                link.suggestions.push_back(piece);
            }
        }
        self.refill();
        Ok(())
    }
}

impl TorrentState {
    /// The piece to suggest next to a peer holding `theirs` and
    /// `theirs_repair` (see [`choose_suggestion`]).
    pub fn pick_suggestion(
        &mut self,
        theirs: &Bitfield,
        theirs_repair: &Bitfield,
        skip: &[u32],
    ) -> Option<u32> {
        choose_suggestion(
            &self.picker,
            &mut self.suggested,
            &self.asked_of_us,
            theirs,
            theirs_repair,
            skip,
        )
    }

    /// A coded peer asked us for symbols of `piece`.
    pub fn note_asked_of_us(&mut self, piece: u32) {
        let i = piece as usize;
        if self.asked_of_us.len() <= i {
            self.asked_of_us.resize(i + 1, false);
        }
        if let Some(a) = self.asked_of_us.get_mut(i) {
            *a = true;
        }
    }
}

/// One piece we hold and the peer lacks, suggested least so far (per
/// `counts`, which it then bumps), then one nobody has asked us for yet
/// (suggested to a peer that has not got to it: whichever asks first
/// takes it, the other finds it held), then the rarest, at random among
/// equals; never one in `skip`.
fn choose_suggestion(
    picker: &Picker,
    counts: &mut Vec<u32>,
    asked: &[bool],
    theirs: &Bitfield,
    theirs_repair: &Bitfield,
    skip: &[u32],
) -> Option<u32> {
    let n = theirs.len();
    let total = n + theirs_repair.len();
    counts.resize(total as usize, 0);
    let mut rng = rand::rng();
    let mut best: Option<((u32, bool, u32), u32)> = None;
    let mut ties = 0u32;
    for piece in 0..total {
        let they_have = match piece.checked_sub(n) {
            Some(r) => theirs_repair.has(r),
            None => theirs.has(piece),
        };
        if they_have || !picker.held(piece) || skip.contains(&piece) {
            continue;
        }
        let score = (
            counts.get(piece as usize).copied().unwrap_or(0),
            asked.get(piece as usize).copied().unwrap_or(false),
            picker.availability_of(piece),
        );
        match best {
            Some((b, _)) if score > b => {}
            Some((b, _)) if score == b => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some((score, piece));
                }
            }
            _ => {
                best = Some((score, piece));
                ties = 1;
            }
        }
    }
    let (_, piece) = best?;
    if let Some(c) = counts.get_mut(piece as usize) {
        *c += 1;
    }
    Some(piece)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::PieceGeometry;

    #[test]
    fn a_suggestion_nobody_asked_for_goes_again_before_one_under_way() {
        let g = PieceGeometry::new(16 * 1024, 4 * 16 * 1024).unwrap();
        let seed = Picker::new(g, Bitfield::full(4));
        let theirs = Bitfield::new(4);
        let none = Bitfield::new(0);
        // Every piece suggested once; 0, 1 and 3 asked for, 2 not.
        let mut counts = vec![1; 4];
        let asked = [true, true, false, true];
        let p = choose_suggestion(&seed, &mut counts, &asked, &theirs, &none, &[]);
        assert_eq!(p, Some(2));
        assert_eq!(counts, [1, 1, 2, 1]);
        // Fewer suggestions still come first.
        let mut counts = vec![1, 0, 1, 1];
        let p = choose_suggestion(&seed, &mut counts, &asked, &theirs, &none, &[]);
        assert_eq!(p, Some(1));
    }

    #[test]
    fn every_piece_is_suggested_once_before_any_twice() {
        let g = PieceGeometry::new(16 * 1024, 6 * 16 * 1024).unwrap();
        let mut seed = Picker::new(g, Bitfield::full(6)).with_repair(Bitfield::full(2));
        let mut counts = Vec::new();
        let mut theirs = Bitfield::new(6);
        theirs.set(0);
        let none = Bitfield::new(2);
        // Two peers asking in turn: the 7 pieces the first lacks go out
        // once each before any goes twice.
        let mut seen = Vec::new();
        for _ in 0..7 {
            let p = choose_suggestion(&seed, &mut counts, &[], &theirs, &none, &[]).unwrap();
            assert!(p != 0 && !seen.contains(&p), "{p} again in {seen:?}");
            seen.push(p);
        }
        assert_eq!(counts.iter().sum::<u32>(), 7);
        // Now twice, but never one the peer has or one in `skip`.
        let skip = [1, 2, 3, 4, 5, 6];
        assert_eq!(
            choose_suggestion(&seed, &mut counts, &[], &theirs, &none, &skip),
            Some(7)
        );
        // Among equals, the rarest first.
        seed.add_peer_have(3);
        let mut fresh = Vec::new();
        let p = choose_suggestion(&seed, &mut fresh, &[], &theirs, &none, &[]).unwrap();
        assert_ne!(p, 3);
        // Nothing the peer lacks: nothing to suggest.
        assert_eq!(
            choose_suggestion(
                &seed,
                &mut fresh,
                &[],
                &Bitfield::full(6),
                &Bitfield::full(2),
                &[]
            ),
            None
        );
    }
}
