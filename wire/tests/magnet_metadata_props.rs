//! Property tests for the magnet-link parser and the BEP 9 metadata
//! messages and assembly: arbitrary and mutated input never panics, and
//! what parses survives re-encoding (the same checks as their fuzz entries).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use sha1::{Digest, Sha1};
use wire::peer::{metadata_piece, Assembled, MetadataAssembly, MetadataMessage};
use wire::{InfoHash, Limits};

proptest! {
    #[test]
    fn magnet_entry_never_panics(s in "magnet:\\?[a-zA-Z0-9%=&.:/+\\[\\]_-]{0,300}") {
        wire::fuzz_entry::magnet(s.as_bytes());
    }

    #[test]
    fn ut_metadata_entry_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        wire::fuzz_entry::ut_metadata(&data);
    }

    #[test]
    fn mutated_data_messages_never_panic(piece in 0u32..4, total in 0u64..70_000, len in 0usize..17_000, flip in any::<usize>()) {
        let mut bytes = MetadataMessage::Data { piece, total_size: total, data: vec![7; len] }.encode();
        if !bytes.is_empty() {
            let i = flip % bytes.len();
            bytes[i] ^= 0x5a;
        }
        wire::fuzz_entry::ut_metadata(&bytes);
    }

    /// Pieces in any order assemble to the metadata; any changed byte is
    /// caught by the hash.
    #[test]
    fn assembly_in_any_order(size in 1usize..60_000, seed in any::<u64>(), corrupt in any::<bool>()) {
        let meta: Vec<u8> = (0..size).map(|i| (i as u64).wrapping_mul(seed | 1) as u8).collect();
        let hash = InfoHash(Sha1::digest(&meta).into());
        let mut a = MetadataAssembly::new(hash, size as u64, &Limits::DEFAULT).unwrap();
        let mut pieces = Vec::new();
        while let Some(MetadataMessage::Request { piece }) = a.next_request() {
            pieces.push(piece);
        }
        // Up to 4 pieces: all fit the in-flight window at once.
        prop_assert_eq!(pieces.len(), size.div_ceil(16 << 10));
        pieces.reverse();
        let mut result = None;
        for (n, &p) in pieces.iter().enumerate() {
            let mut data = metadata_piece(&meta, p).unwrap().to_vec();
            if corrupt && n == 0 {
                data[0] ^= 1;
            }
            result = Some(a.on_message(MetadataMessage::Data { piece: p, total_size: size as u64, data }));
        }
        match result.unwrap() {
            Ok(Assembled::Done(got)) => prop_assert!(!corrupt && got == meta),
            Err(wire::peer::MetadataError::HashMismatch) => prop_assert!(corrupt),
            other => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
