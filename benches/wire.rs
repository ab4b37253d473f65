//! Parsing speed of the `wire` crate: bencode, metainfo, peer messages.
//!
//! `cargo bench --bench wire`

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use wire::bencode::{self, OwnedValue};
use wire::peer::{Decoded, Message, MessageDecoder};
use wire::{BlockRef, Limits, Metainfo};

/// A metainfo of `files` files and `pieces` pieces, like a large album.
fn big_torrent(files: usize, pieces: usize) -> Vec<u8> {
    let piece_length = 256 * 1024u64;
    let total = piece_length * pieces as u64;
    let per_file = total / files as u64;
    let list = (0..files)
        .map(|i| {
            let len = if i + 1 == files {
                total - per_file * (files as u64 - 1)
            } else {
                per_file
            };
            OwnedValue::dict([
                ("length", OwnedValue::Int(len as i64)),
                (
                    "path",
                    OwnedValue::List(vec![
                        OwnedValue::bytes(format!("disc {}", i / 20)),
                        OwnedValue::bytes(format!("{i:04} some track name.flac")),
                    ]),
                ),
            ])
        })
        .collect();
    let info = OwnedValue::dict([
        ("files", OwnedValue::List(list)),
        ("name", OwnedValue::bytes("album")),
        ("piece length", OwnedValue::Int(piece_length as i64)),
        ("pieces", OwnedValue::Bytes(vec![7u8; 20 * pieces])),
    ]);
    Metainfo::encode_with_info(
        &info.to_bytes(),
        Some("http://t/announce"),
        &[],
        None,
        None,
        None,
    )
}

fn parsing(c: &mut Criterion) {
    let limits = Limits::DEFAULT;
    let mut group = c.benchmark_group("wire");
    let torrent = big_torrent(1000, 40_000);
    group.throughput(Throughput::Bytes(torrent.len() as u64));
    group.bench_function("bencode_decode_1000_files_40k_pieces", |b| {
        b.iter(|| bencode::decode(&torrent, &limits).map(|n| n.raw.len()))
    });
    group.bench_function("metainfo_parse_1000_files_40k_pieces", |b| {
        b.iter(|| Metainfo::from_bytes(&torrent, &limits).map(|m| m.info.piece_count()))
    });

    // A stream as a downloader sees it: PIECE messages with 16 KiB blocks
    // between a few HAVEs and REQUESTs.
    let mut stream = BytesMut::new();
    let block = bytes::Bytes::from(vec![0x5au8; 16384]);
    for i in 0..256u32 {
        Message::Have { piece: i }.encode(&mut stream);
        Message::Request(BlockRef {
            piece: i,
            begin: 0,
            length: 16384,
        })
        .encode(&mut stream);
        Message::Piece {
            piece: i,
            begin: 0,
            data: block.clone(),
        }
        .encode(&mut stream);
    }
    let stream = stream.freeze();
    let decoder = MessageDecoder::new(limits.max_message_length);
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("peer_messages_decode_4MiB_stream", |b| {
        b.iter_batched(
            || BytesMut::from(&stream[..]),
            |mut buf| {
                let mut n = 0;
                while let Ok(Decoded::Message(_)) = decoder.decode(&mut buf) {
                    n += 1;
                }
                n
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, parsing);
criterion_main!(benches);
