//! Property tests: bencode, metainfo, peer messages and tracker messages
//! survive encoding and decoding unchanged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sha1::{Digest, Sha1};
use wire::bencode::{self, OwnedValue};
use wire::peer::{Decoded, Message, MessageDecoder};
use wire::tracker::{AnnounceRequest, AnnounceResponse, Event, PeerEntry, TrackerReply};
use wire::{BlockRef, InfoHash, Limits, Metainfo, PeerId};

fn bvalue() -> impl Strategy<Value = OwnedValue> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(OwnedValue::Int),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(OwnedValue::Bytes),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..12),
                inner,
                0..8
            )
            .prop_map(OwnedValue::Dict),
        ]
    })
}

proptest! {
    #[test]
    fn bencode_round_trips(v in bvalue()) {
        let bytes = bencode::encode(&v);
        let node = bencode::decode(&bytes, &Limits::DEFAULT).unwrap();
        prop_assert_eq!(node.raw, &bytes[..]);
        prop_assert_eq!(node.to_owned_value(), v);
    }

    #[test]
    fn metainfo_round_trips(
        names in proptest::collection::vec("[a-zA-Z0-9 _.-]{1,12}", 1..6),
        lengths in proptest::collection::vec(0u64..200_000, 1..6),
        piece_shift in 10u32..20,
        private in any::<bool>(),
        single in any::<bool>(),
    ) {
        let names: Vec<String> = names.into_iter().filter(|n| n != "." && n != "..").collect();
        prop_assume!(!names.is_empty());
        let piece_length = 1u32 << piece_shift;
        let files: Vec<(Vec<String>, u64)> = if single {
            vec![(vec![], lengths[0].max(1))]
        } else {
            // Distinct paths: index-prefixed names in two levels.
            lengths.iter().enumerate().map(|(i, len)| {
                (vec![format!("d{}", i % 2), format!("{i}-{}", names[i % names.len()])], *len)
            }).collect()
        };
        let total: u64 = files.iter().map(|f| f.1).sum();
        prop_assume!(total > 0);
        let count = total.div_ceil(u64::from(piece_length));
        let pieces: Vec<u8> = (0..count).flat_map(|i| Sha1::digest(i.to_be_bytes()).to_vec()).collect();
        let mut info: BTreeMap<Vec<u8>, OwnedValue> = BTreeMap::new();
        info.insert(b"name".to_vec(), OwnedValue::bytes(&names[0]));
        info.insert(b"piece length".to_vec(), OwnedValue::Int(i64::from(piece_length)));
        info.insert(b"pieces".to_vec(), OwnedValue::Bytes(pieces.clone()));
        if private { info.insert(b"private".to_vec(), OwnedValue::Int(1)); }
        if single {
            info.insert(b"length".to_vec(), OwnedValue::Int(total as i64));
        } else {
            info.insert(b"files".to_vec(), OwnedValue::List(files.iter().map(|(p, l)| OwnedValue::dict([
                ("length", OwnedValue::Int(*l as i64)),
                ("path", OwnedValue::List(p.iter().map(OwnedValue::bytes).collect())),
            ])).collect()));
        }
        let info_bytes = OwnedValue::Dict(info).to_bytes();
        let tiers = vec![vec!["http://a/announce".to_string()], vec!["http://b/announce".to_string()]];
        let doc = Metainfo::encode_with_info(&info_bytes, Some("http://a/announce"), &tiers, Some("c"), None, Some(7));
        let meta = Metainfo::from_bytes(&doc, &Limits::DEFAULT).unwrap();
        prop_assert_eq!(meta.info.info_hash.0, <[u8; 20]>::from(Sha1::digest(&info_bytes)));
        prop_assert_eq!(&meta.info.raw, &info_bytes);
        prop_assert_eq!(meta.info.total_length(), total);
        prop_assert_eq!(meta.info.piece_count() as u64, count);
        prop_assert_eq!(meta.info.private, private);
        prop_assert_eq!(meta.info.single_file, single);
        prop_assert_eq!(meta.info.pieces.concat(), pieces);
        prop_assert_eq!(meta.tracker_tiers(), tiers);
        let mut offset = 0;
        for (entry, (path, len)) in meta.info.files.iter().zip(&files) {
            prop_assert_eq!(entry.length, *len);
            prop_assert_eq!(entry.offset, offset);
            if !single { prop_assert_eq!(entry.path.components(), &path[..]); }
            offset += len;
        }
    }

    #[test]
    fn peer_messages_round_trip_in_any_split(msgs in proptest::collection::vec(message(), 1..20), split in 1usize..64) {
        let mut stream = BytesMut::new();
        for m in &msgs { m.encode(&mut stream); }
        let decoder = MessageDecoder::new(Limits::DEFAULT.max_message_length);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(split) {
            buf.extend_from_slice(chunk);
            while let Decoded::Message(m) = decoder.decode(&mut buf).unwrap() { out.push(m); }
        }
        prop_assert_eq!(out, msgs);
    }

    #[test]
    fn announce_requests_round_trip(
        info_hash in any::<[u8; 20]>(), peer_id in any::<[u8; 20]>(), port in 1u16..,
        up in any::<u64>(), down in any::<u64>(), left in any::<u64>(),
        event in 0u8..5, compact in any::<bool>(), numwant in proptest::option::of(any::<u32>()),
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..12)),
    ) {
        let req = AnnounceRequest {
            info_hash: InfoHash(info_hash), peer_id: PeerId(peer_id), port,
            uploaded: up, downloaded: down, left,
            event: [Event::None, Event::Started, Event::Completed, Event::Stopped, Event::Paused][event as usize],
            compact, no_peer_id: !compact, numwant, ip: None, key, tracker_id: None,
        };
        prop_assert_eq!(AnnounceRequest::parse(req.to_query().as_bytes(), &Limits::DEFAULT), Ok(req));
    }

    #[test]
    fn announce_responses_round_trip(
        peers in proptest::collection::vec((any::<[u8; 4]>(), any::<u16>(), any::<[u8; 20]>()), 0..50),
        interval in any::<u32>(), complete in any::<u32>(), incomplete in any::<u32>(),
    ) {
        let resp = AnnounceResponse {
            interval, min_interval: None, complete, incomplete,
            peers: peers.iter().map(|(ip, port, id)| PeerEntry {
                addr: SocketAddr::from((*ip, *port)), peer_id: Some(PeerId(*id)),
            }).collect(),
            warning: None, tracker_id: None,
        };
        let dict = TrackerReply::decode(&resp.encode(false, false), &Limits::DEFAULT).unwrap();
        prop_assert_eq!(dict, TrackerReply::Announce(resp.clone()));
        let mut anon = resp.clone();
        anon.peers.iter_mut().for_each(|p| p.peer_id = None);
        let compact = TrackerReply::decode(&resp.encode(true, true), &Limits::DEFAULT).unwrap();
        prop_assert_eq!(compact, TrackerReply::Announce(anon));
    }
}

fn block() -> impl Strategy<Value = BlockRef> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, begin, length)| BlockRef {
        piece,
        begin,
        length,
    })
}

fn message() -> impl Strategy<Value = Message> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        any::<u32>().prop_map(|piece| Message::Have { piece }),
        any::<u32>().prop_map(|piece| Message::SuggestPiece { piece }),
        any::<u32>().prop_map(|piece| Message::AllowedFast { piece }),
        bytes().prop_map(Message::Bitfield),
        block().prop_map(Message::Request),
        block().prop_map(Message::Cancel),
        block().prop_map(Message::RejectRequest),
        (any::<u32>(), any::<u32>(), bytes()).prop_map(|(piece, begin, data)| Message::Piece {
            piece,
            begin,
            data
        }),
        any::<u16>().prop_map(Message::Port),
        (any::<u8>(), bytes()).prop_map(|(id, payload)| Message::Extended { id, payload }),
    ]
}
