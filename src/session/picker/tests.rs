use super::*;

fn geometry() -> PieceGeometry {
    // 8 pieces of 64 KiB (4 blocks each), the last one 40 KiB (3 blocks).
    PieceGeometry::new(65536, 7 * 65536 + 40960).unwrap()
}

fn data_for(b: BlockRef) -> Vec<u8> {
    vec![(b.piece * 7 + b.begin / BLOCK_SIZE) as u8; b.length as usize]
}

#[test]
fn downloads_everything_once_from_one_peer() {
    let g = geometry();
    let mut picker = Picker::new(g, Bitfield::new(8));
    let seed = Bitfield::full(8);
    picker.add_peer_pieces(&seed);
    let mut completed = Vec::new();
    let mut requests = 0;
    loop {
        let blocks = picker.pick(1, &seed, 5);
        if blocks.is_empty() {
            break;
        }
        requests += blocks.len();
        for b in blocks {
            match picker.on_block(1, b, &data_for(b)) {
                BlockOutcome::Completed(c) => {
                    assert_eq!(c.data.len() as u32, g.piece_size(c.piece).unwrap());
                    assert_eq!(&c.data[..16], &data_for(g.block(c.piece, 0).unwrap())[..16]);
                    picker.piece_verified(c.piece);
                    completed.push(c.piece);
                }
                BlockOutcome::Accepted { cancel } => assert!(cancel.is_empty()),
                other => panic!("{other:?}"),
            }
        }
    }
    completed.sort_unstable();
    assert_eq!(completed, (0..8).collect::<Vec<_>>());
    assert_eq!(
        requests,
        7 * 4 + 3,
        "no block requested twice outside endgame"
    );
    assert!(picker.done().is_complete());
}

#[test]
fn rarest_first_after_random_start_and_started_pieces_first() {
    let g = geometry();
    let mut done = Bitfield::new(8);
    for p in 0..4 {
        done.set(p);
    }
    let mut picker = Picker::new(g, done);
    let mut common = Bitfield::new(8);
    for p in 4..8 {
        common.set(p);
    }
    for _ in 0..3 {
        picker.add_peer_pieces(&common);
    }
    for p in [4, 5, 7] {
        picker.add_peer_have(p);
    }
    // Piece 6 is held by the fewest peers.
    let first = picker.pick(9, &common, 1);
    assert_eq!(first[0].piece, 6);
    // Strict priority: the started piece is continued before any other.
    let next = picker.pick(10, &common, 3);
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|b| b.piece == 6), "{next:?}");
    // A peer without piece 6 starts another piece.
    let mut no6 = common.clone();
    no6.clear(6);
    assert_ne!(picker.pick(11, &no6, 1)[0].piece, 6);
}

#[test]
fn endgame_asks_a_second_peer_and_cancels_the_loser() {
    let g = PieceGeometry::new(32768, 32768).unwrap();
    let mut picker = Picker::new(g, Bitfield::new(1));
    let all = Bitfield::full(1);
    picker.add_peer_pieces(&all);
    picker.add_peer_pieces(&all);
    let a = picker.pick(1, &all, 10);
    assert_eq!(a.len(), 2);
    // Everything is requested from peer 1: peer 2 gets endgame copies.
    let b = picker.pick(2, &all, 10);
    assert_eq!(b, a);
    assert!(picker.pick(2, &all, 10).is_empty(), "not asked twice");
    match picker.on_block(2, b[0], &data_for(b[0])) {
        BlockOutcome::Accepted { cancel } => assert_eq!(cancel, vec![1]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        picker.on_block(1, a[0], &data_for(a[0])),
        BlockOutcome::Duplicate
    );
    assert!(matches!(
        picker.on_block(1, a[1], &data_for(a[1])),
        BlockOutcome::Completed(_)
    ));
}

#[test]
fn failed_pieces_go_to_other_peers_and_departures_free_requests() {
    let g = PieceGeometry::new(32768, 32768).unwrap();
    let mut picker = Picker::new(g, Bitfield::new(1));
    let all = Bitfield::full(1);
    picker.add_peer_pieces(&all);
    picker.add_peer_pieces(&all);
    let blocks = picker.pick(1, &all, 10);
    picker.on_block(1, blocks[0], &data_for(blocks[0]));
    let BlockOutcome::Completed(c) = picker.on_block(1, blocks[1], &data_for(blocks[1])) else {
        panic!("not completed");
    };
    assert_eq!(c.senders, vec![1, 1]);
    picker.piece_failed(0, &c.senders);
    assert!(
        picker.pick(1, &all, 10).is_empty(),
        "the failed sender is asked last"
    );
    let again = picker.pick(2, &all, 1);
    assert_eq!(again.len(), 1);
    // Peer 2 leaves: its request is free again (and peer 1 is the only
    // one left, so it may retry).
    picker.remove_peer(2, &all);
    assert_eq!(picker.pick(1, &all, 10).len(), 2);
    // Stale and malformed blocks are refused.
    let wrong = BlockRef {
        piece: 0,
        begin: 1,
        length: 16384,
    };
    assert_eq!(picker.on_block(1, wrong, &[0; 16384]), BlockOutcome::Stale);
}

#[test]
fn urgent_pieces_are_started_and_finished_first() {
    // 16 pieces of two blocks.
    let geometry = PieceGeometry::new(32 * 1024, 16 * 32 * 1024).unwrap();
    let mut picker = Picker::new(geometry, Bitfield::new(16));
    let all = Bitfield::full(16);
    picker.add_peer_pieces(&all);
    // Past the random first pieces, so the order is the picker's choice.
    for p in 0..super::RANDOM_FIRST {
        picker.piece_verified(p);
    }
    picker.prioritize([15, 14, 99]);
    let blocks = picker.pick(2, &all, 4);
    let pieces: Vec<u32> = blocks.iter().map(|b| b.piece).collect();
    assert_eq!(pieces, vec![14, 14, 15, 15]);
    // Once verified, a piece is no longer urgent.
    picker.piece_verified(14);
    picker.prioritize([14]);
    assert!(!picker.urgent.contains(&14));
}

#[test]
fn a_half_received_piece_left_by_a_departed_peer_is_idle_for_coded_peers() {
    let g = geometry();
    let mut picker = Picker::new(g, Bitfield::new(8));
    let seed = Bitfield::full(8);
    picker.add_peer_pieces(&seed);
    // Peer 1 gets two blocks of a piece, then leaves with the rest requested.
    // Three blocks: all of one piece whichever is picked (four would spill
    // into a second piece when the three-block last piece comes first, and
    // that piece, released untouched, is idle too).
    let blocks = picker.pick(1, &seed, 3);
    let piece = blocks[0].piece;
    let of_piece: Vec<BlockRef> = blocks
        .iter()
        .filter(|b| b.piece == piece)
        .copied()
        .collect();
    assert!(of_piece.len() >= 3, "{blocks:?}");
    assert!(
        picker.idle_plain_partials(&seed).is_empty(),
        "requested: not idle"
    );
    for b in &of_piece[..2] {
        picker.on_block(1, *b, &data_for(*b));
    }
    assert!(
        picker.idle_plain_partials(&seed).is_empty(),
        "still requested"
    );
    for b in &blocks {
        picker.release(1, *b);
    }
    // Nobody works on it now: a coded peer may take it over, with what
    // was received.
    assert_eq!(picker.idle_plain_partials(&seed), vec![piece]);
    let received = picker.convert_to_coded(piece).unwrap();
    assert_eq!(received.len(), 2);
    assert!(picker.idle_plain_partials(&seed).is_empty());
}
