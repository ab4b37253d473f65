//! Helpers shared by the integration tests: pieces and honest symbols.

#![allow(dead_code, clippy::unwrap_used)]

use codec::{source_symbol, PieceEncoder, PieceParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn random_piece(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

/// Symbol `esi` of `piece` as an honest sender would send it.
pub fn symbol(params: &PieceParams, piece: &[u8], enc: &PieceEncoder, esi: u32) -> Vec<u8> {
    if esi < params.k() {
        source_symbol(params, piece, esi).unwrap().into_owned()
    } else {
        enc.repair_symbol(esi).unwrap()
    }
}
