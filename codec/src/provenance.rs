//! Who sent which symbol, and naming poisoners after the fact.
//!
//! A poisoned symbol makes RaptorQ "succeed" with wrong bytes, so the piece
//! hash is the only alarm. The decoder therefore records, for every symbol it
//! accepts, the sender and the ESI, and keeps the bytes until the piece is
//! verified:
//!
//! - hash good → [`VerifiedPiece`]; [`VerifiedPiece::audit_surplus`] checks
//!   the symbols that did not determine the piece (a sender can poison a
//!   surplus symbol and still see the piece verify).
//! - hash bad → [`HashFailure`]: try [`HashFailure::leave_one_sender_out`]
//!   when spare symbols allow it, otherwise seal the evidence into a compact
//!   [`Provenance`] of keyed BLAKE3 digests, fetch the piece from an
//!   uninvolved peer and call [`Provenance::attribute`]: it regenerates every
//!   recorded ESI from the good piece and names exactly the senders whose
//!   symbols differ.
//!
//! Digests are computed when the hash fails, not as symbols arrive: the bytes
//! are still held at that point, and hashing every symbol of every piece
//! would roughly double the cost of the clean path (SHA-1 of the piece is
//! the only per-byte work there). They are keyed with a per-session random
//! key so a sender cannot aim at a collision with the digest of a symbol it
//! has not seen.
//!
//! Besides one digest per symbol, the seal keeps one per sender over all its
//! symbols in arrival order. Attribution compares those: BLAKE3 hashes a long
//! input several chunks at a time with SIMD, about 7× faster here than
//! hashing 1 KiB symbols one by one, which keeps attribution within a few
//! ms per MiB. The per-symbol digests then say which symbols were wrong
//! ([`Provenance::bad_symbols`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use raptorq::SourceBlockEncoder;
use sha1::{Digest, Sha1};

use crate::encoder::padded;
use crate::params::PieceParams;
use crate::{raptor, CodecError, SenderId};

/// The per-session key of the symbol digests.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestKey([u8; 32]);

impl DigestKey {
    /// A fresh random key (once per session).
    pub fn random() -> Self {
        DigestKey(rand::random())
    }

    /// A fixed key, for tests and reproducible fuzzing.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DigestKey(bytes)
    }

    fn digest(&self, symbol: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.0, symbol).as_bytes()
    }
}

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

/// Keyed digests of each sender's symbols, concatenated in arrival order.
/// Symbols are gathered into a buffer so BLAKE3 sees long inputs (its SIMD
/// paths hash many 1 KiB chunks at once).
struct SenderDigests {
    key: DigestKey,
    open: BTreeMap<SenderId, (blake3::Hasher, Vec<u8>)>,
}

impl SenderDigests {
    const FLUSH: usize = 64 * 1024;

    fn new(key: DigestKey) -> Self {
        SenderDigests {
            key,
            open: BTreeMap::new(),
        }
    }

    fn add(&mut self, sender: SenderId, symbol: &[u8]) {
        let (hasher, buf) = self
            .open
            .entry(sender)
            .or_insert_with(|| (blake3::Hasher::new_keyed(&self.key.0), Vec::new()));
        buf.extend_from_slice(symbol);
        if buf.len() >= Self::FLUSH {
            hasher.update(buf);
            buf.clear();
        }
    }

    fn finish(self) -> BTreeMap<SenderId, [u8; 32]> {
        self.open
            .into_iter()
            .map(|(sender, (mut hasher, buf))| {
                hasher.update(&buf);
                (sender, *hasher.finalize().as_bytes())
            })
            .collect()
    }
}

pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// What a piece must hash to: an original piece's SHA-1 from the metainfo,
/// or a repair piece's BLAKE3 from its `bf` dictionary (DESIGN §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceHash {
    Sha1([u8; 20]),
    Blake3([u8; 32]),
}

impl PieceHash {
    pub fn matches(&self, data: &[u8]) -> bool {
        match self {
            PieceHash::Sha1(h) => sha1(data) == *h,
            PieceHash::Blake3(h) => blake3::hash(data).as_bytes() == h,
        }
    }
}

/// One accepted symbol: who sent it and where its bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub sender: SenderId,
    pub esi: u32,
    /// For a repair symbol, its index in the repair store (arrival order).
    pub slot: u32,
}

/// The symbols behind a decoded piece, kept until the piece is verified.
#[derive(Debug)]
pub(crate) struct Evidence {
    pub params: PieceParams,
    pub key: DigestKey,
    pub records: Vec<Record>,
    /// The received source symbols in place (as in the decoder), when they
    /// are not the decoded piece itself (i.e. when raptorq decoded).
    pub source: Option<Vec<u8>>,
    /// Repair symbols, T bytes each, in arrival order.
    pub repair: Vec<u8>,
    /// The decode used every source symbol and the first `used_repair`
    /// repair symbols.
    pub used_repair: u32,
    /// The decode used exactly K symbols, so each of them determined the
    /// piece: a wrong one cannot hide behind a verified hash.
    pub exact: bool,
}

impl Evidence {
    /// The bytes `record` arrived with: T bytes, or for a source symbol the
    /// part inside the piece. `data` is the decoded piece.
    fn received<'a>(&'a self, data: &'a [u8], record: &Record) -> &'a [u8] {
        let t = self.params.t_usize();
        if record.esi < self.params.k() {
            let start = record.esi as usize * t;
            let block = self.source.as_deref().unwrap_or(data);
            // The padding of the last source symbol was checked to be zero on
            // arrival and is not part of `data`; regeneration cuts it off too
            // (see `Regenerator::symbol`).
            let len = self.params.source_bytes_in(record.esi);
            block.get(start..start + len).unwrap_or_default()
        } else {
            let start = record.slot as usize * t;
            self.repair.get(start..start + t).unwrap_or_default()
        }
    }

    fn used(&self, record: &Record) -> bool {
        record.esi < self.params.k() || record.slot < self.used_repair
    }

    /// Senders whose symbols (from `records`) differ from `good`.
    fn mismatches<'a>(
        &self,
        data: &[u8],
        good: &[u8],
        records: impl Iterator<Item = &'a Record>,
    ) -> Vec<SenderId> {
        let mut regen = Regenerator::new(&self.params, good);
        let mut bad = BTreeSet::new();
        for r in records {
            if !bad.contains(&r.sender) && !regen.matches(r.esi, self.received(data, r)) {
                bad.insert(r.sender);
            }
        }
        bad.into_iter().collect()
    }
}

/// Regenerates symbols of a known-good piece; builds the raptorq encoder only
/// if a repair symbol is asked for.
struct Regenerator<'a> {
    params: PieceParams,
    block: Cow<'a, [u8]>,
    encoder: Option<SourceBlockEncoder>,
}

impl<'a> Regenerator<'a> {
    fn new(params: &PieceParams, good: &'a [u8]) -> Self {
        Regenerator {
            params: *params,
            block: padded(params, good),
            encoder: None,
        }
    }

    /// The symbol `esi` of the good piece; a source symbol is cut to the
    /// piece bytes it holds (its padding is zero by construction).
    fn symbol(&mut self, esi: u32) -> Cow<'_, [u8]> {
        let k = self.params.k();
        if esi < k {
            let start = esi as usize * self.params.t_usize();
            let len = self.params.source_bytes_in(esi);
            return Cow::Borrowed(self.block.get(start..start + len).unwrap_or_default());
        }
        let enc = self
            .encoder
            .get_or_insert_with(|| raptor::encoder(k, self.params.symbol_size(), &self.block));
        Cow::Owned(
            raptor::repair_symbols(enc, k, esi, 1)
                .next()
                .unwrap_or_default(),
        )
    }

    fn matches(&mut self, esi: u32, received: &[u8]) -> bool {
        *self.symbol(esi) == *received
    }
}

/// A piece out of the decoder, not yet checked against its hash.
#[derive(Debug)]
pub struct DecodedPiece {
    data: Vec<u8>,
    evidence: Box<Evidence>,
}

/// The outcome of [`DecodedPiece::verify`].
#[derive(Debug)]
pub enum Verdict {
    /// The piece matches its hash: write it, announce HAVE, serve it.
    Good(VerifiedPiece),
    /// The piece does not: do not write it; find who poisoned it.
    Bad(HashFailure),
}

impl DecodedPiece {
    pub(crate) fn new(data: Vec<u8>, evidence: Evidence) -> Self {
        DecodedPiece {
            data,
            evidence: Box::new(evidence),
        }
    }

    /// The decoded bytes (exactly the piece length).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether raptorq had to decode (false: all K source symbols arrived and
    /// the piece was simply assembled).
    pub fn used_repair(&self) -> bool {
        self.evidence.used_repair > 0
    }

    /// Symbols that went into the piece (K when decoding succeeded at once).
    pub fn symbols_used(&self) -> u32 {
        let source = self
            .evidence
            .records
            .iter()
            .filter(|r| r.esi < self.evidence.params.k())
            .count() as u32;
        source + self.evidence.used_repair
    }

    /// Checks the piece against its SHA-1 from the metainfo.
    pub fn verify(self, expected_sha1: &[u8; 20]) -> Verdict {
        self.verify_against(PieceHash::Sha1(*expected_sha1))
    }

    /// Checks the piece against its hash (SHA-1, or BLAKE3 for a repair
    /// piece of the outer code).
    pub fn verify_against(self, expected: PieceHash) -> Verdict {
        if expected.matches(&self.data) {
            Verdict::Good(VerifiedPiece {
                data: self.data,
                evidence: self.evidence,
            })
        } else {
            Verdict::Bad(HashFailure {
                data: self.data,
                evidence: self.evidence,
                expected,
            })
        }
    }
}

/// A piece that matched its hash, with the symbols it came from.
#[derive(Debug)]
pub struct VerifiedPiece {
    data: Vec<u8>,
    evidence: Box<Evidence>,
}

impl VerifiedPiece {
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// Senders of symbols that disagree with the verified piece: each is a
    /// poisoner (strike it) even though the piece came out right.
    ///
    /// When the decode used exactly K symbols only the surplus ones can be
    /// wrong; after a retry with more than K, raptorq may have ignored a
    /// redundant symbol, so all are checked. Free when nothing is to check;
    /// a surplus repair symbol costs one encoder build (about one encode of
    /// the piece), so run it off the reactor.
    pub fn audit_surplus(&self) -> Vec<SenderId> {
        let ev = &self.evidence;
        let records = ev.records.iter().filter(|r| !ev.exact || !ev.used(r));
        ev.mismatches(&self.data, &self.data, records)
    }
}

/// A decoded piece whose hash did not match, with every symbol behind it.
#[derive(Debug)]
pub struct HashFailure {
    data: Vec<u8>,
    evidence: Box<Evidence>,
    expected: PieceHash,
}

impl HashFailure {
    /// The wrong bytes that came out.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Everyone who contributed a symbol (the candidates).
    pub fn senders(&self) -> Vec<SenderId> {
        let set: BTreeSet<_> = self.evidence.records.iter().map(|r| r.sender).collect();
        set.into_iter().collect()
    }

    /// Tries to decode the piece without each sender in turn, using the spare
    /// symbols already held. Returns the excluded sender and the piece when
    /// one such decoding matches the hash; the piece is then a good copy for
    /// [`HashFailure::attribute`] (which also names any second poisoner).
    /// Costs up to one decode per sender: run it off the reactor.
    pub fn leave_one_sender_out(&self) -> Option<(SenderId, Vec<u8>)> {
        let ev = &self.evidence;
        let k = ev.params.k();
        let senders = self.senders();
        if senders.len() < 2 {
            return None;
        }
        for out in senders {
            let kept: Vec<&Record> = ev.records.iter().filter(|r| r.sender != out).collect();
            if (kept.len() as u32) < k {
                continue;
            }
            let symbols = kept.iter().map(|r| {
                let mut bytes = ev.received(&self.data, r).to_vec();
                // Source symbols are stored without their (zero) padding.
                bytes.resize(ev.params.t_usize(), 0);
                (r.esi, bytes)
            });
            let Some(mut piece) = raptor::decode(k, ev.params.symbol_size(), symbols) else {
                continue;
            };
            piece.truncate(ev.params.piece_len() as usize);
            if self.expected.matches(&piece) {
                return Some((out, piece));
            }
        }
        None
    }

    /// Names exactly the senders whose symbols differ from `good`, which must
    /// match the piece hash (else [`CodecError::GoodCopyMismatch`]: fetch
    /// another copy). Never names a sender whose symbols were all right.
    pub fn attribute(&self, good: &[u8]) -> Result<Vec<SenderId>, CodecError> {
        check_good(&self.evidence.params, &self.expected, good)?;
        Ok(self
            .evidence
            .mismatches(&self.data, good, self.evidence.records.iter()))
    }

    /// Seals the evidence into digests (32 bytes per symbol instead of T) to
    /// keep while a good copy is fetched.
    pub fn into_provenance(self) -> Provenance {
        let ev = &self.evidence;
        let mut senders = SenderDigests::new(ev.key);
        let mut entries = Vec::with_capacity(ev.records.len());
        for r in &ev.records {
            let bytes = ev.received(&self.data, r);
            senders.add(r.sender, bytes);
            entries.push((r.sender, r.esi, ev.key.digest(bytes)));
        }
        Provenance {
            params: ev.params,
            key: ev.key,
            expected: self.expected,
            entries,
            senders: senders.finish(),
        }
    }
}

fn check_good(params: &PieceParams, expected: &PieceHash, good: &[u8]) -> Result<(), CodecError> {
    if good.len() != params.piece_len() as usize {
        return Err(CodecError::WrongLength {
            expected: params.piece_len() as usize,
            got: good.len(),
        });
    }
    if !expected.matches(good) {
        return Err(CodecError::GoodCopyMismatch);
    }
    Ok(())
}

/// Sender, ESI and keyed BLAKE3 digest of every symbol behind a piece that
/// failed its hash, plus one digest per sender over its symbols.
#[derive(Debug, Clone)]
pub struct Provenance {
    params: PieceParams,
    key: DigestKey,
    expected: PieceHash,
    entries: Vec<(SenderId, u32, [u8; 32])>,
    senders: BTreeMap<SenderId, [u8; 32]>,
}

impl Provenance {
    pub fn params(&self) -> &PieceParams {
        &self.params
    }

    /// Number of recorded symbols.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Regenerates every recorded ESI from `good` (which must match the piece
    /// hash, else [`CodecError::GoodCopyMismatch`]) and returns exactly the
    /// senders whose symbols differ, sorted. Costs one keyed hash over the
    /// piece's worth of symbols plus one encoder build when repair symbols
    /// were recorded.
    pub fn attribute(&self, good: &[u8]) -> Result<Vec<SenderId>, CodecError> {
        check_good(&self.params, &self.expected, good)?;
        let mut regen = Regenerator::new(&self.params, good);
        let mut digests = SenderDigests::new(self.key);
        for (sender, esi, _) in &self.entries {
            digests.add(*sender, &regen.symbol(*esi));
        }
        let regenerated = digests.finish();
        Ok(self
            .senders
            .iter()
            .filter(|(sender, digest)| regenerated.get(sender) != Some(digest))
            .map(|(sender, _)| *sender)
            .collect())
    }

    /// Every wrong symbol, as (sender, ESI) in arrival order: what to log
    /// about a poisoner. Slower than [`Provenance::attribute`] (one keyed hash
    /// per symbol).
    pub fn bad_symbols(&self, good: &[u8]) -> Result<Vec<(SenderId, u32)>, CodecError> {
        check_good(&self.params, &self.expected, good)?;
        let mut regen = Regenerator::new(&self.params, good);
        Ok(self
            .entries
            .iter()
            .filter(|(_, esi, digest)| self.key.digest(&regen.symbol(*esi)) != *digest)
            .map(|(sender, esi, _)| (*sender, *esi))
            .collect())
    }
}
