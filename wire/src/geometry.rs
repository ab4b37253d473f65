//! Piece and block geometry: how a torrent's bytes divide into pieces (BEP 3)
//! and pieces into 16 KiB blocks.

/// The standard block size of BEP 3 requests.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// Checked piece geometry: piece length, total length and the derived count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceGeometry {
    piece_length: u32,
    total_length: u64,
    piece_count: u32,
}

/// A block of a piece: `begin` and `length` in bytes within the piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub piece: u32,
    pub begin: u32,
    pub length: u32,
}

impl PieceGeometry {
    /// `None` when the piece length is zero, the total is zero or the piece
    /// count does not fit in 32 bits.
    pub fn new(piece_length: u32, total_length: u64) -> Option<Self> {
        if piece_length == 0 || total_length == 0 {
            return None;
        }
        let count = u32::try_from(total_length.div_ceil(u64::from(piece_length))).ok()?;
        Some(PieceGeometry {
            piece_length,
            total_length,
            piece_count: count,
        })
    }

    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Length of piece `index` (the last one may be short); `None` out of range.
    pub fn piece_size(&self, index: u32) -> Option<u32> {
        if index >= self.piece_count {
            return None;
        }
        let start = self.piece_offset(index);
        let len = (self.total_length - start).min(u64::from(self.piece_length));
        u32::try_from(len).ok()
    }

    /// Offset of piece `index` in the torrent's byte space.
    pub fn piece_offset(&self, index: u32) -> u64 {
        u64::from(index) * u64::from(self.piece_length)
    }

    /// Number of 16 KiB blocks in piece `index`.
    pub fn block_count(&self, index: u32) -> u32 {
        self.piece_size(index)
            .map_or(0, |len| len.div_ceil(BLOCK_SIZE))
    }

    /// The `n`-th block of piece `index`.
    pub fn block(&self, index: u32, n: u32) -> Option<BlockRef> {
        let size = self.piece_size(index)?;
        let begin = n.checked_mul(BLOCK_SIZE).filter(|b| *b < size)?;
        Some(BlockRef {
            piece: index,
            begin,
            length: (size - begin).min(BLOCK_SIZE),
        })
    }

    /// True when `(index, begin, length)` lies inside the torrent with a
    /// non-zero length no larger than `max_block`.
    pub fn is_valid_request(&self, index: u32, begin: u32, length: u32, max_block: u32) -> bool {
        match self.piece_size(index) {
            Some(size) => {
                length > 0
                    && length <= max_block
                    && begin.checked_add(length).is_some_and(|end| end <= size)
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_piece_is_short() {
        let g = PieceGeometry::new(32768, 100_000).unwrap();
        assert_eq!(g.piece_count(), 4);
        assert_eq!(g.piece_size(3), Some(100_000 - 3 * 32768));
        assert_eq!(g.piece_size(4), None);
        assert_eq!(g.block_count(3), 1);
        assert_eq!(
            g.block(3, 0),
            Some(BlockRef {
                piece: 3,
                begin: 0,
                length: 1696
            })
        );
        assert_eq!(g.block(3, 1), None);
        assert!(g.is_valid_request(0, 16384, 16384, BLOCK_SIZE));
        assert!(!g.is_valid_request(0, 16385, 16384, BLOCK_SIZE));
        assert!(!g.is_valid_request(0, u32::MAX, 2, BLOCK_SIZE));
        assert!(!g.is_valid_request(3, 0, 1697, BLOCK_SIZE));
        assert!(PieceGeometry::new(0, 1).is_none());
        assert!(PieceGeometry::new(1, u64::MAX).is_none());
    }
}

/// Maps ranges of a torrent's byte space onto its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpans {
    /// `(start, length)` of every file in torrent order.
    files: Vec<(u64, u64)>,
    total: u64,
}

/// The part of a range that falls into one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSlice {
    /// Index of the file in torrent order.
    pub file: usize,
    /// Offset inside that file.
    pub offset: u64,
    pub length: u64,
}

impl FileSpans {
    /// From file lengths in torrent order; `None` if they overflow.
    pub fn new(lengths: impl IntoIterator<Item = u64>) -> Option<Self> {
        let mut files = Vec::new();
        let mut total: u64 = 0;
        for len in lengths {
            files.push((total, len));
            total = total.checked_add(len)?;
        }
        Some(FileSpans { files, total })
    }

    pub fn total_length(&self) -> u64 {
        self.total
    }

    /// The file slices covering `[offset, offset + length)`, clipped to the
    /// torrent's end; zero-length files never appear.
    pub fn slices(&self, offset: u64, length: u64) -> impl Iterator<Item = FileSlice> + '_ {
        let end = offset.saturating_add(length).min(self.total);
        // First file whose end lies beyond `offset`.
        let first = self
            .files
            .partition_point(|(start, len)| start + len <= offset);
        self.files
            .get(first..)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .take_while(move |(_, (start, _))| *start < end)
            .filter(|(_, (_, len))| *len > 0)
            .map(move |(i, (start, len))| {
                let from = offset.max(*start);
                let to = end.min(start + len);
                FileSlice {
                    file: first + i,
                    offset: from - start,
                    length: to - from,
                }
            })
    }
}

#[cfg(test)]
mod span_tests {
    use super::*;

    #[test]
    fn ranges_cross_files_and_skip_empty_ones() {
        let spans = FileSpans::new([10, 0, 5, 20]).unwrap();
        let got: Vec<_> = spans.slices(8, 10).collect();
        assert_eq!(
            got,
            vec![
                FileSlice {
                    file: 0,
                    offset: 8,
                    length: 2
                },
                FileSlice {
                    file: 2,
                    offset: 0,
                    length: 5
                },
                FileSlice {
                    file: 3,
                    offset: 0,
                    length: 3
                },
            ]
        );
        assert_eq!(
            spans.slices(30, 100).collect::<Vec<_>>(),
            vec![FileSlice {
                file: 3,
                offset: 15,
                length: 5
            }]
        );
        assert_eq!(spans.slices(35, 1).count(), 0);
        assert!(FileSpans::new([u64::MAX, 1]).is_none());
    }
}
