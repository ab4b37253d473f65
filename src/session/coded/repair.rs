//! Which repair pieces of the outer code each side of a coded connection
//! holds (DESIGN §3.6). Only coded peers learn of them: a legacy peer's
//! bitfield and HAVEs cover the original pieces alone. Coded messages
//! address repair piece r as piece N + r.

use anyhow::Result;
use wire::fountain::CodedMessage;
use wire::peer::Violation;
use wire::Bitfield;

use crate::session::peer::PeerTask;

impl PeerTask {
    /// Whether we hold coded piece `piece` (original, or repair from N on).
    pub(crate) fn holds(&self, piece: u32) -> bool {
        match piece.checked_sub(self.our_have.len()) {
            Some(r) => self.our_repair.has(r),
            None => self.our_have.has(piece),
        }
    }

    /// Tells a peer that just became coded which repair pieces we hold.
    pub(crate) fn announce_repair(&mut self) {
        if self.our_repair.count() > 0 {
            let bits = self.our_repair.to_wire();
            self.send_coded(CodedMessage::RepairBitfield(bits));
        }
    }

    /// We hold a new repair piece: a coded peer hears of it (even one that
    /// has it, like a HAVE). Without a coded link this sends nothing.
    pub(crate) fn on_have_repair(&mut self, index: u32) {
        if !self.our_repair.set(index) {
            return;
        }
        self.send_coded(CodedMessage::HaveRepair { index });
        if self.their_repair.has(index) {
            self.update_interest();
        }
    }

    /// The peer's repair pieces, sent once it is coded.
    pub(crate) fn on_repair_bitfield(&mut self, bits: &[u8]) -> Result<()> {
        let theirs = Bitfield::from_wire(bits, self.our_repair.len())
            .map_err(|e| Violation::Coded(format!("repair bitfield: {e}")))?;
        {
            let mut st = self.torrent.lock();
            st.picker.remove_peer_repair(&self.their_repair);
            st.picker.add_peer_repair(&theirs);
            if let Some(p) = st.peers.get_mut(&self.key) {
                p.repair = theirs.clone();
            }
        }
        self.their_repair = theirs;
        self.update_interest();
        self.refill();
        Ok(())
    }

    /// The peer holds a new repair piece.
    pub(crate) fn on_peer_have_repair(&mut self, index: u32) -> Result<()> {
        let count = self.their_repair.len();
        if index >= count {
            return Err(Violation::Coded(format!(
                "repair piece {index} of a torrent with {count} repair pieces"
            ))
            .into());
        }
        if !self.their_repair.set(index) {
            return Ok(());
        }
        {
            let mut st = self.torrent.lock();
            st.picker.add_peer_have(self.our_have.len() + index);
            if let Some(p) = st.peers.get_mut(&self.key) {
                p.repair.set(index);
            }
        }
        self.peer_announced(self.our_have.len() + index);
        if !self.our_repair.has(index) {
            self.update_interest();
            self.refill();
        }
        Ok(())
    }

    /// Whether the peer holds a repair piece we would fetch.
    pub(crate) fn wants_repair(&self) -> bool {
        self.link.is_some()
            && self.their_repair.count() > 0
            && self
                .torrent
                .lock()
                .picker
                .wants_repair_from(&self.their_repair)
    }
}
