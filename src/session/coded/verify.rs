//! The torrent's side of coded transfer: symbols to serve, and what happens
//! when a piece's symbols are in — decode off the reactor, check the SHA-1,
//! write, or find the poisoners.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use bytes::{BufMut, Bytes, BytesMut};
use codec::{DecodeStep, DecodedPiece, HashFailure, PieceEncoder, SenderId, Verdict};

use super::send::source_symbols;
use crate::session::picker::PeerKey;
use crate::session::torrent::{PeerCmd, TorrentShared};

/// What verifying a decoded piece came to.
enum Outcome {
    /// Good and written; `surplus` lists senders whose spare symbols were bad.
    Written {
        data: Vec<u8>,
        surplus: Vec<SenderId>,
    },
    /// Good but could not be written (disk full…).
    WriteFailed(std::io::Error),
    /// Bad: `culprit` when leaving one sender out gave a good copy (then
    /// written as `data`).
    Poisoned {
        failure: Box<HashFailure>,
        recovered: Option<(SenderId, Vec<u8>)>,
    },
}

/// Repair symbols generated on the reactor rather than the blocking pool.
const INLINE_REPAIR_SYMBOLS: u32 = 4;
/// Pieces read ahead at once: requests arrive unpaced (a peer may queue
/// thousands of one-symbol ranges), reads must not.
const MAX_PREFETCHING: usize = 8;

impl TorrentShared {
    /// Symbols of `range` are next in a sender's queue: reads the piece
    /// (and builds its encoder, for repair symbols) now, in the background,
    /// so that the paced sender finds them ready when their turn comes
    /// instead of waiting on the disk and the blocking pool then.
    pub fn prefetch_symbols(self: &Arc<Self>, range: wire::fountain::SymbolRange) {
        let Some(params) = self
            .lock()
            .coded
            .as_ref()
            .and_then(|c| c.code().piece(range.piece).ok())
        else {
            return;
        };
        let needs_encoder = range.end() > params.k();
        if self.is_reading(range.piece) {
            return;
        }
        let cached = self.is_cached(range.piece)
            && (!needs_encoder
                || self
                    .encoders
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(range.piece, params.symbol_size())
                    .is_some());
        if cached {
            return;
        }
        // Beyond the limit the send reads the piece itself, as it would
        // without read-ahead.
        let taken = self
            .prefetching
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PREFETCHING).then_some(n + 1)
            });
        if taken.is_err() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Ok(data) = this.piece_data(range.piece).await {
                if needs_encoder {
                    // A failure here is the send's to report.
                    let _ = this.encoder(range.piece, params, data).await;
                }
            }
            this.prefetching.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Symbols `first_esi ..` of a piece we have, concatenated: source
    /// symbols straight from the piece, repair symbols from its encoder
    /// (built once, off the reactor, and kept in an LRU).
    pub async fn symbols(
        self: &Arc<Self>,
        piece: u32,
        first_esi: u32,
        count: u32,
    ) -> Result<Bytes> {
        let params = {
            let st = self.lock();
            let coded = st
                .coded
                .as_ref()
                .ok_or_else(|| anyhow!("coded transfer is off"))?;
            coded.code().piece(piece)?
        };
        let (t, k) = (params.t(), params.k());
        let data = self.piece_data(piece).await?;
        let source_count = k.saturating_sub(first_esi).min(count);
        let source = if source_count > 0 {
            source_symbols(&data, t, k, first_esi, source_count)
        } else {
            Bytes::new()
        };
        if source_count == count {
            return Ok(source);
        }
        let first_repair = first_esi.max(k);
        let repair_count = count - source_count;
        let encoder = self.encoder(piece, params, data).await?;
        let generate = move || -> Result<Vec<u8>> {
            let mut out = Vec::with_capacity(repair_count as usize * t as usize);
            for symbol in encoder.repair_symbols(first_repair, repair_count)? {
                out.extend_from_slice(&symbol);
            }
            Ok(out)
        };
        // A few symbols from a built encoder take microseconds: a trip to
        // the blocking pool would cost more, and a paced sender waiting on
        // it misses its slot.
        let repair = if repair_count <= INLINE_REPAIR_SYMBOLS {
            generate()?
        } else {
            tokio::task::spawn_blocking(generate).await??
        };
        if source.is_empty() {
            return Ok(Bytes::from(repair));
        }
        let mut both = BytesMut::with_capacity(source.len() + repair.len());
        both.put_slice(&source);
        both.put_slice(&repair);
        Ok(both.freeze())
    }

    async fn encoder(
        self: &Arc<Self>,
        piece: u32,
        params: codec::PieceParams,
        data: Bytes,
    ) -> Result<Arc<PieceEncoder>> {
        let size = params.symbol_size();
        if let Some(enc) = self
            .encoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(piece, size)
        {
            return Ok(enc);
        }
        let enc = tokio::task::spawn_blocking(move || PieceEncoder::new(params, &data)).await??;
        let enc = Arc::new(enc);
        self.encoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(piece, enc.clone());
        Ok(enc)
    }

    /// Enough symbols for a decode attempt: decode off the reactor.
    pub fn coded_ready(self: &Arc<Self>, piece: u32) {
        let Some(mut decoder) = self
            .lock()
            .coded
            .as_mut()
            .and_then(|c| c.take_decoder(piece))
        else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let Ok((decoder, step)) = tokio::task::spawn_blocking(move || {
                let step = decoder.decode();
                (decoder, step)
            })
            .await
            else {
                return;
            };
            match step {
                DecodeStep::Decoded(d) => this.coded_decoded(piece, d),
                DecodeStep::NeedMore { .. } => {
                    // About one decode in 200 needs a symbol more.
                    if let Some(coded) = this.lock().coded.as_mut() {
                        coded.restore_decoder(piece, decoder);
                    }
                    this.refill_all();
                }
                DecodeStep::GaveUp | DecodeStep::Finished => {
                    tracing::warn!(piece, "could not decode; fetching the piece again");
                    let mut st = this.lock();
                    let senders = st.coded.as_mut().map_or(Vec::new(), |c| c.finish(piece));
                    st.picker.piece_failed(piece, &senders);
                    drop(st);
                    this.refill_all();
                }
            }
        });
    }

    /// A decoded piece: check its hash, write it, or find who poisoned it.
    pub fn coded_decoded(self: &Arc<Self>, piece: u32, decoded: DecodedPiece) {
        // An original's SHA-1, or a repair piece's BLAKE3 (pieces N on).
        let Some(expected) = self.storage.piece_hash(piece) else {
            return;
        };
        self.lock().picker.mark_verifying(piece);
        self.verifying.fetch_add(1, Ordering::AcqRel);
        let this = self.clone();
        let storage = self.storage.clone();
        tokio::spawn(async move {
            let outcome =
                tokio::task::spawn_blocking(move || match decoded.verify_against(expected) {
                    Verdict::Good(piece_data) => {
                        let surplus = piece_data.audit_surplus();
                        let data = piece_data.into_data();
                        match storage.write_piece(piece, &data) {
                            Ok(()) => Outcome::Written { data, surplus },
                            Err(e) => Outcome::WriteFailed(e),
                        }
                    }
                    Verdict::Bad(failure) => {
                        // Spare symbols may already show the poisoner.
                        let recovered = failure.leave_one_sender_out();
                        if let Some((_, data)) = &recovered {
                            if storage.write_piece(piece, data).is_err() {
                                return Outcome::Poisoned {
                                    failure: Box::new(failure),
                                    recovered: None,
                                };
                            }
                        }
                        Outcome::Poisoned {
                            failure: Box::new(failure),
                            recovered,
                        }
                    }
                })
                .await;
            this.verifying.fetch_sub(1, Ordering::AcqRel);
            let Ok(outcome) = outcome else {
                return;
            };
            this.coded_outcome(piece, outcome);
            this.refill_all();
        });
    }

    fn coded_outcome(self: &Arc<Self>, piece: u32, outcome: Outcome) {
        let senders = self
            .lock()
            .coded
            .as_mut()
            .map_or(Vec::new(), |c| c.finish(piece));
        // Senders still at it can stop.
        self.tell(&senders, PeerCmd::CodedDone(piece));
        match outcome {
            Outcome::Written { data, surplus } => {
                self.piece_verified(piece, data);
                for sender in surplus {
                    self.strike_key(sender.0, "sent a bad spare symbol");
                }
            }
            Outcome::WriteFailed(e) => self.write_failed(piece, e),
            Outcome::Poisoned { failure, recovered } => {
                let involved: Vec<PeerKey> = failure.senders().iter().map(|s| s.0).collect();
                tracing::warn!(piece, senders = ?involved, "decoded piece failed its hash check");
                if let [only] = involved[..] {
                    // One sender: no doubt who it was.
                    self.ban_key(only, "sent symbols that decode to a wrong piece");
                    self.restart(piece, &involved);
                } else if let Some((culprit, data)) = recovered {
                    let others = failure.attribute(&data).unwrap_or_default();
                    self.ban_key(culprit.0, "poisoned symbols");
                    for s in others {
                        self.ban_key(s.0, "poisoned symbols");
                    }
                    self.piece_verified(piece, data);
                } else {
                    // Fetch a good copy from someone uninvolved; it will name
                    // the culprits exactly (see `piece_verified`).
                    self.lock().failed_coded.insert(piece, *failure);
                    self.restart(piece, &involved);
                }
            }
        }
    }

    fn restart(&self, piece: u32, involved: &[PeerKey]) {
        self.lock().picker.piece_failed(piece, involved);
    }

    /// Names the poisoners of an earlier failed copy from a good copy.
    pub(crate) fn attribute_coded(&self, piece: u32, good: &[u8]) {
        let failure = self.lock().failed_coded.remove(&piece);
        if let Some(failure) = failure {
            for s in failure.attribute(good).unwrap_or_default() {
                self.ban_key(s.0, "poisoned symbols (confirmed by a good copy)");
            }
        }
    }

    pub(crate) fn tell(&self, keys: &[PeerKey], cmd: PeerCmd) {
        let st = self.lock();
        for key in keys {
            if let Some(p) = st.peers.get(key) {
                let _ = p.tx.send(cmd.clone());
            }
        }
    }

    fn ip_of(&self, key: PeerKey) -> Option<IpAddr> {
        self.lock().peers.get(&key).map(|p| p.addr.ip())
    }

    fn ban_key(&self, key: PeerKey, why: &str) {
        if let Some(ip) = self.ip_of(key) {
            self.ban(ip, why);
        }
    }

    fn strike_key(&self, key: PeerKey, why: &str) {
        if let Some(ip) = self.ip_of(key) {
            self.strike_ip(ip, why);
        }
    }
}
