//! `make --repair PERCENT`: the outer code's repair pieces (DESIGN §3.6),
//! of which the torrent stores only the BLAKE3 hashes (`bf` in `info`);
//! any seed can compute the pieces again from the content.

use std::time::Duration;

use anyhow::{Context, Result};
use codec::{OuterCode, SymbolSize};
use wire::{OuterInfo, PieceGeometry};

use crate::storage::FileSet;
use crate::ui::Progress;

/// Memory for one window of stripes (N symbols of T bytes each).
const WINDOW_BYTES: usize = 256 << 20;

/// Hashes of the repair pieces for surviving the loss of `percent`% of the
/// pieces. Reads the content once per window of stripes (once for files up
/// to 256 MiB), encodes every stripe, and hashes each repair piece as its
/// bytes come out, so no repair piece is ever held whole.
pub fn outer_info(
    reader: &FileSet,
    geometry: PieceGeometry,
    percent: u32,
    show_progress: bool,
) -> Result<OuterInfo> {
    let symbol_size = SymbolSize::preferred_for(geometry.piece_length());
    let count = OuterCode::repair_count_for(geometry.piece_count(), percent);
    let code = OuterCode::new(geometry, symbol_size, count).context("outer code")?;
    let t = symbol_size.bytes() as usize;
    let n = geometry.piece_count() as usize;
    let width = (WINDOW_BYTES / (n * t).max(1)).max(1) as u32;
    let mut hashers = vec![blake3::Hasher::new(); count as usize];
    let mut progress = Progress::bytes(
        "repair pieces",
        u64::from(code.stripes()) * (n * t) as u64,
        show_progress.then_some(Duration::from_secs(5)),
    );
    let mut piece = Vec::new();
    let mut start = 0;
    while start < code.stripes() {
        let end = (start + width).min(code.stripes());
        let mut builder = code.builder(start..end)?;
        for index in 0..geometry.piece_count() {
            let len = geometry.piece_size(index).context("piece index")? as usize;
            piece.resize(len, 0);
            reader
                .read_exact_at(geometry.piece_offset(index), &mut piece)
                .with_context(|| format!("cannot read piece {index}"))?;
            builder.add_piece(index, &piece)?;
        }
        for (hasher, bytes) in hashers.iter_mut().zip(builder.finish()?) {
            hasher.update(&bytes);
        }
        progress.set(u64::from(end) * (n * t) as u64);
        start = end;
    }
    progress.finish();
    Ok(OuterInfo {
        symbol_size: symbol_size.bytes(),
        repair_hashes: hashers.iter().map(|h| *h.finalize().as_bytes()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Window by window, the hashes match the repair pieces the codec
    /// builds in one go.
    #[test]
    fn hashes_match_the_codecs_repair_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let reader = FileSet::open_read(&[(path, data.len() as u64)]).unwrap();
        let geometry = PieceGeometry::new(64 << 10, data.len() as u64).unwrap();
        let info = outer_info(&reader, geometry, 10, false).unwrap();
        let code = OuterCode::new(
            geometry,
            SymbolSize::preferred_for(64 << 10),
            info.repair_count(),
        )
        .unwrap();
        let pieces: Vec<&[u8]> = data.chunks(64 << 10).collect();
        let repairs = code.repair_pieces(&pieces).unwrap();
        assert_eq!(repairs.len(), info.repair_hashes.len());
        for (r, h) in repairs.iter().zip(&info.repair_hashes) {
            assert_eq!(&OuterCode::repair_hash(r), h);
        }
        assert!(info.repair_count() >= pieces.len() as u32 / 10);
    }
}
