//! The per-peer state machine against hostile and honest message sequences,
//! without sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use wire::peer::conn::{IDLE_TIMEOUT, KEEPALIVE_EVERY};
use wire::peer::{Message, PeerConn, PeerEvent, Violation};
use wire::{Bitfield, BlockRef, Limits, PieceGeometry};

const PIECES: u32 = 10;

fn conn(fast: bool) -> (PeerConn, Bitfield, Instant) {
    let now = Instant::now();
    let geometry = PieceGeometry::new(32768, 32768 * u64::from(PIECES) - 100).unwrap();
    (
        PeerConn::new(geometry, &Limits::DEFAULT, fast, true, now),
        Bitfield::full(PIECES),
        now,
    )
}

fn block(piece: u32, begin: u32) -> BlockRef {
    BlockRef {
        piece,
        begin,
        length: 16384,
    }
}

#[test]
fn bitfields_are_checked_and_merged() {
    let (mut c, ours, now) = conn(false);
    let bad_len = Message::Bitfield(Bytes::from_static(&[0xff]));
    assert!(matches!(
        c.receive(bad_len, &ours, now),
        Err(Violation::Bitfield(_))
    ));
    let (mut c, ours, now) = conn(false);
    let spare = Message::Bitfield(Bytes::from_static(&[0xff, 0xff]));
    assert!(matches!(
        c.receive(spare, &ours, now),
        Err(Violation::Bitfield(_))
    ));
    let (mut c, ours, now) = conn(false);
    c.receive(Message::Have { piece: 9 }, &ours, now).unwrap();
    let half = Message::Bitfield(Bytes::from_static(&[0xf0, 0x00]));
    assert_eq!(c.receive(half.clone(), &ours, now), Ok(PeerEvent::Bitfield));
    // A bitfield after a HAVE adds to it rather than erasing it.
    assert_eq!(
        c.peer_pieces.iter_set().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 9]
    );
    // aria2 re-sends its bitfield as it downloads.
    let more = Message::Bitfield(Bytes::from_static(&[0xf8, 0x00]));
    for _ in 0..10 {
        assert_eq!(c.receive(more.clone(), &ours, now), Ok(PeerEvent::Bitfield));
    }
    assert_eq!(c.peer_pieces.count(), 6);
    // HAVE ALL needs the fast extension.
    let (mut c, ours, now) = conn(false);
    assert_eq!(
        c.receive(Message::HaveAll, &ours, now),
        Err(Violation::FastNotNegotiated)
    );
}

#[test]
fn have_out_of_range_is_a_violation() {
    let (mut c, ours, now) = conn(false);
    assert_eq!(
        c.receive(Message::Have { piece: 3 }, &ours, now),
        Ok(PeerEvent::Have(3))
    );
    assert_eq!(
        c.receive(Message::Have { piece: 3 }, &ours, now),
        Ok(PeerEvent::Nothing)
    );
    assert_eq!(
        c.receive(Message::Have { piece: PIECES }, &ours, now),
        Err(Violation::HaveOutOfRange {
            piece: PIECES,
            count: PIECES
        })
    );
}

#[test]
fn requests_are_validated_queued_and_bounded() {
    let (mut c, ours, now) = conn(true);
    // Choked: rejected under the fast extension.
    let r = block(0, 0);
    assert_eq!(
        c.receive(Message::Request(r), &ours, now),
        Ok(PeerEvent::Reject(Message::RejectRequest(r)))
    );
    c.unchoke(now);
    assert_eq!(
        c.receive(Message::Request(r), &ours, now),
        Ok(PeerEvent::RequestQueued)
    );
    assert_eq!(
        c.receive(Message::Request(r), &ours, now),
        Ok(PeerEvent::Nothing),
        "duplicate"
    );
    // Out of range, past the piece end, oversized.
    for bad in [
        BlockRef {
            piece: PIECES,
            begin: 0,
            length: 16384,
        },
        BlockRef {
            piece: 9,
            begin: 16384,
            length: 16384,
        },
        BlockRef {
            piece: 0,
            begin: 0,
            length: 1 << 20,
        },
        BlockRef {
            piece: 0,
            begin: 0,
            length: 0,
        },
    ] {
        assert_eq!(
            c.receive(Message::Request(bad), &ours, now),
            Err(Violation::InvalidRequest(bad))
        );
    }
    // Cancel removes it; then a flood is refused.
    c.receive(Message::Cancel(r), &ours, now).unwrap();
    assert_eq!(c.next_request(), None);
    let limit = Limits::DEFAULT.max_queued_requests;
    let mut flood = (0..).map(|i| BlockRef {
        piece: i % PIECES,
        begin: (i / PIECES) % 2 * 16384,
        length: 1 + i / 20,
    });
    for _ in 0..limit {
        assert_eq!(
            c.receive(Message::Request(flood.next().unwrap()), &ours, now),
            Ok(PeerEvent::RequestQueued)
        );
    }
    assert_eq!(
        c.receive(Message::Request(flood.next().unwrap()), &ours, now),
        Err(Violation::RequestFlood(limit))
    );
}

#[test]
fn requests_for_pieces_we_lack_are_refused_then_fatal() {
    let (mut c, _, now) = conn(true);
    let none = Bitfield::new(PIECES);
    c.unchoke(now);
    let r = block(1, 0);
    for _ in 0..64 {
        assert_eq!(
            c.receive(Message::Request(r), &none, now),
            Ok(PeerEvent::Reject(Message::RejectRequest(r)))
        );
    }
    assert!(matches!(
        c.receive(Message::Request(r), &none, now),
        Err(Violation::RequestsForMissingPieces(_))
    ));
}

#[test]
fn blocks_must_have_been_requested() {
    let (mut c, ours, now) = conn(false);
    c.receive(
        Message::Bitfield(Bitfield::full(PIECES).to_wire()),
        &ours,
        now,
    )
    .unwrap();
    c.receive(Message::Unchoke, &ours, now).unwrap();
    let r = block(2, 0);
    assert!(c.request(r, now).is_some());
    assert!(c.request(r, now).is_none(), "already outstanding");
    let data = Bytes::from(vec![7u8; 16384]);
    let got = c.receive(
        Message::Piece {
            piece: 2,
            begin: 0,
            data: data.clone(),
        },
        &ours,
        now,
    );
    assert_eq!(
        got,
        Ok(PeerEvent::Block {
            block: r,
            data: data.clone(),
            requested_at: now
        })
    );
    // A cancelled block that still arrives is not held against the peer.
    let r2 = block(3, 0);
    c.request(r2, now).unwrap();
    c.cancel(r2, now).unwrap();
    assert_eq!(
        c.receive(
            Message::Piece {
                piece: 3,
                begin: 0,
                data: data.clone()
            },
            &ours,
            now
        ),
        Ok(PeerEvent::Nothing)
    );
    // Wrong length for an outstanding request.
    c.request(block(4, 0), now).unwrap();
    let short = Message::Piece {
        piece: 4,
        begin: 0,
        data: Bytes::from_static(b"xx"),
    };
    assert!(matches!(
        c.receive(short, &ours, now),
        Err(Violation::WrongBlockLength { .. })
    ));
    // Unrequested blocks: tolerated a little, then fatal.
    let (mut c, ours, now) = conn(false);
    let junk = || Message::Piece {
        piece: 5,
        begin: 0,
        data: Bytes::from_static(b"junk"),
    };
    for _ in 0..32 {
        assert_eq!(c.receive(junk(), &ours, now), Ok(PeerEvent::Nothing));
    }
    assert_eq!(
        c.receive(junk(), &ours, now),
        Err(Violation::UnrequestedBlocks(33))
    );
}

#[test]
fn chokes_drop_or_reject_requests() {
    // Without the fast extension their choke discards our requests.
    let (mut c, ours, now) = conn(false);
    c.receive(
        Message::Bitfield(Bitfield::full(PIECES).to_wire()),
        &ours,
        now,
    )
    .unwrap();
    c.receive(Message::Unchoke, &ours, now).unwrap();
    c.request(block(1, 0), now).unwrap();
    assert_eq!(
        c.receive(Message::Choke, &ours, now),
        Ok(PeerEvent::Choked {
            dropped: vec![block(1, 0)]
        })
    );
    assert!(c.request(block(1, 0), now).is_none(), "choked");
    // With it, our choke rejects what they queued.
    let (mut c, ours, now) = conn(true);
    c.unchoke(now);
    c.receive(Message::Request(block(0, 0)), &ours, now)
        .unwrap();
    assert_eq!(
        c.choke(now),
        vec![Message::Choke, Message::RejectRequest(block(0, 0))]
    );
    assert_eq!(c.next_request(), None);
    // Allowed-fast pieces may be requested while choked.
    c.receive(Message::HaveAll, &ours, now).unwrap();
    c.receive(Message::AllowedFast { piece: 6 }, &ours, now)
        .unwrap();
    assert!(c.request(block(6, 0), now).is_some());
    assert!(c.request(block(7, 0), now).is_none());
}

#[test]
fn requests_while_choked_or_repeated_are_a_flood_past_the_queue_limit() {
    let max = Limits::DEFAULT.max_queued_requests;
    for fast in [false, true] {
        // While choked: a CHOKE's worth crossing on the wire is fine, and a
        // new CHOKE allows as many again; past that it is a flood.
        let (mut c, ours, now) = conn(fast);
        for i in 0..max {
            let b = block(i as u32 % PIECES, 0);
            assert!(c.receive(Message::Request(b), &ours, now).is_ok(), "{i}");
        }
        c.unchoke(now);
        c.choke(now);
        for i in 0..max {
            let b = block(i as u32 % PIECES, 0);
            assert!(c.receive(Message::Request(b), &ours, now).is_ok(), "{i}");
        }
        assert_eq!(
            c.receive(Message::Request(block(0, 0)), &ours, now),
            Err(Violation::RequestFlood(max))
        );
        // Unchoked: the same block asked for over and over.
        let (mut c, ours, now) = conn(fast);
        c.unchoke(now);
        assert_eq!(
            c.receive(Message::Request(block(0, 0)), &ours, now),
            Ok(PeerEvent::RequestQueued)
        );
        for _ in 0..max {
            assert_eq!(
                c.receive(Message::Request(block(0, 0)), &ours, now),
                Ok(PeerEvent::Nothing)
            );
        }
        assert_eq!(
            c.receive(Message::Request(block(0, 0)), &ours, now),
            Err(Violation::RequestFlood(max))
        );
    }
}

#[test]
fn keepalives_and_idle_timeout() {
    let (mut c, ours, now) = conn(false);
    assert_eq!(c.poll_time(now + Duration::from_secs(1)), Ok(None));
    assert_eq!(
        c.poll_time(now + KEEPALIVE_EVERY),
        Ok(Some(Message::KeepAlive))
    );
    assert_eq!(
        c.poll_time(now + KEEPALIVE_EVERY),
        Ok(None),
        "just sent one"
    );
    c.receive(Message::KeepAlive, &ours, now + IDLE_TIMEOUT)
        .unwrap();
    assert_eq!(
        c.poll_time(now + IDLE_TIMEOUT * 2),
        Ok(Some(Message::KeepAlive))
    );
    assert!(matches!(
        c.poll_time(now + IDLE_TIMEOUT * 3),
        Err(Violation::Idle(_))
    ));
}
