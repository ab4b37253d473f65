//! The only place that calls raptorq.
//!
//! raptorq asserts (panics) on inconsistent input: payloads of the wrong
//! length, K beyond K'max, data that is not a whole number of symbols. Every
//! caller here has already checked those, and this module keeps the calls in
//! one spot so that is easy to audit.

use raptorq::{EncodingPacket, PayloadId, SourceBlockDecoder, SourceBlockEncoder};

use crate::params::{oti, SymbolSize};

/// Builds the encoder of one source block. `padded` is exactly K·T bytes with
/// 1 ≤ K ≤ K'max (callers check both).
pub(crate) fn encoder(k: u32, symbol_size: SymbolSize, padded: &[u8]) -> SourceBlockEncoder {
    debug_assert_eq!(padded.len(), k as usize * symbol_size.bytes() as usize);
    SourceBlockEncoder::new(0, &oti(k, symbol_size), padded)
}

/// Repair symbols `first_esi .. first_esi + count` (all ≥ K, ≤ 2²⁴ − 1) of
/// a source block of `k` symbols, in ESI order.
pub(crate) fn repair_symbols(
    encoder: &SourceBlockEncoder,
    k: u32,
    first_esi: u32,
    count: u32,
) -> impl Iterator<Item = Vec<u8>> {
    encoder
        .repair_packets(first_esi.saturating_sub(k), count)
        .into_iter()
        .map(|p| p.split().1)
}

/// Decodes a source block of `k` symbols from distinct-ESI symbols, each
/// exactly T bytes. Returns the K·T source block, or `None` when these
/// symbols do not determine it (too few, or a rank-deficient set: add one
/// more and try again).
pub(crate) fn decode(
    k: u32,
    symbol_size: SymbolSize,
    symbols: impl IntoIterator<Item = (u32, Vec<u8>)>,
) -> Option<Vec<u8>> {
    let config = oti(k, symbol_size);
    let mut decoder =
        SourceBlockDecoder::new(0, &config, u64::from(k) * u64::from(symbol_size.bytes()));
    decoder.decode(
        symbols
            .into_iter()
            .map(|(esi, data)| EncodingPacket::new(PayloadId::new(0, esi), data)),
    )
}
