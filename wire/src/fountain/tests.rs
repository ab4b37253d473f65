use super::*;

fn all() -> Vec<CodedMessage> {
    let r = SymbolRange {
        piece: 9,
        first_esi: 1000,
        count: 24,
    };
    vec![
        CodedMessage::SymbolRequest {
            range: r,
            delivery: Delivery::Datagram,
        },
        CodedMessage::SymbolRequest {
            range: r,
            delivery: Delivery::Stream,
        },
        CodedMessage::Symbols {
            piece: 9,
            first_esi: 3,
            data: Bytes::from(vec![7u8; 2048]),
        },
        CodedMessage::Cancel(r),
        CodedMessage::PieceDone { piece: 4 },
        CodedMessage::Reject {
            range: r,
            reason: RejectReason::NotHeld,
        },
        CodedMessage::RangeSent {
            range: r,
            last_seq: 42,
        },
        CodedMessage::Ack {
            highest_seq: u32::MAX,
            received: 1 << 40,
            receive_us: 7,
        },
        CodedMessage::HaveRepair { index: 3 },
        CodedMessage::RepairBitfield(Bytes::from_static(&[0b1010_0000, 0x01])),
        CodedMessage::RepairBitfield(Bytes::new()),
        CodedMessage::Suggest { piece: 1 << 20 },
    ]
}

#[test]
fn every_message_round_trips() {
    let l = Limits::DEFAULT;
    for m in all() {
        assert_eq!(CodedMessage::decode(&m.encode(), 1024, &l), Ok(m));
    }
    let header = CodedMessage::symbols_header(9, 3);
    let full = CodedMessage::Symbols {
        piece: 9,
        first_esi: 3,
        data: Bytes::from(vec![1u8; 1024]),
    }
    .encode();
    assert_eq!(&full[..9], &header[..]);
}

#[test]
fn have_repair_must_be_exactly_four_bytes() {
    let l = Limits::DEFAULT;
    for bad in [&[8u8, 0, 0, 1][..], &[8, 0, 0, 0, 1, 2]] {
        assert!(matches!(
            CodedMessage::decode(&Bytes::copy_from_slice(bad), 1024, &l),
            Err(FountainError::BadLength { kind: 8, .. })
        ));
    }
}

#[test]
fn hostile_messages_are_refused() {
    let l = Limits::DEFAULT;
    let t = 1024;
    assert_eq!(
        CodedMessage::decode(&Bytes::new(), t, &l),
        Err(FountainError::Empty)
    );
    assert_eq!(
        CodedMessage::decode(&Bytes::from_static(&[99]), t, &l),
        Err(FountainError::UnknownType(99))
    );
    // Symbols that are not whole T-byte symbols, or none at all.
    let ragged = CodedMessage::Symbols {
        piece: 1,
        first_esi: 0,
        data: Bytes::from(vec![0u8; 1000]),
    }
    .encode();
    assert!(matches!(
        CodedMessage::decode(&ragged, t, &l),
        Err(FountainError::RaggedSymbols { .. })
    ));
    // ESI beyond 2^24 - 1, and a range crossing it.
    let far = SymbolRange {
        piece: 0,
        first_esi: 1 << 24,
        count: 1,
    };
    let req = CodedMessage::SymbolRequest {
        range: far,
        delivery: Delivery::Stream,
    };
    assert!(matches!(
        CodedMessage::decode(&req.encode(), t, &l),
        Err(FountainError::EsiOutOfRange(_))
    ));
    let crossing = CodedMessage::Cancel(SymbolRange {
        piece: 0,
        first_esi: (1 << 24) - 2,
        count: 5,
    });
    assert!(matches!(
        CodedMessage::decode(&crossing.encode(), t, &l),
        Err(FountainError::EsiOutOfRange(_))
    ));
    // Too many symbols in one request.
    let greedy = CodedMessage::SymbolRequest {
        range: SymbolRange {
            piece: 0,
            first_esi: 0,
            count: l.max_symbols_per_message + 1,
        },
        delivery: Delivery::Datagram,
    };
    assert!(matches!(
        CodedMessage::decode(&greedy.encode(), t, &l),
        Err(FountainError::TooManySymbols { .. })
    ));
    // Every truncation of every message is an error, never a panic.
    for m in all() {
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            let _ = CodedMessage::decode(&bytes.slice(..cut), t, &l);
        }
    }
    let mut bad_delivery = CodedMessage::SymbolRequest {
        range: SymbolRange {
            piece: 0,
            first_esi: 0,
            count: 1,
        },
        delivery: Delivery::Stream,
    }
    .encode()
    .to_vec();
    bad_delivery[13] = 9;
    assert_eq!(
        CodedMessage::decode(&Bytes::from(bad_delivery), t, &l),
        Err(FountainError::BadDelivery(9))
    );
}

#[test]
fn datagram_frames_round_trip_and_check_length() {
    let l = Limits::DEFAULT;
    let f = DatagramFrame {
        seq: 77,
        piece: 123_456,
        esi: (1 << 24) - 1,
        symbols: Bytes::from(vec![3u8; 1024]),
    };
    let bytes = f.encode(1024);
    assert_eq!(bytes.len(), DATAGRAM_HEADER + 1024);
    assert_eq!(DatagramFrame::decode(&bytes, 1024, &l), Ok(f));
    assert!(matches!(
        DatagramFrame::decode(&bytes, 4096, &l),
        Err(FountainError::BadLength { .. })
    ));
    assert!(DatagramFrame::decode(&bytes.slice(..100), 1024, &l).is_err());
    assert!(DatagramFrame::decode(&Bytes::from_static(&[1, 2, 3]), 1024, &l).is_err());
    // Both kinds through `Datagram`.
    assert_eq!(
        Datagram::decode(&bytes, 1024, &l),
        Ok(Datagram::Symbols(
            DatagramFrame::decode(&bytes, 1024, &l).unwrap()
        ))
    );
    let ack = Datagram::ack(7, 1 << 40, 123_456);
    assert_eq!(ack.len(), 17);
    assert_eq!(
        Datagram::decode(&ack, 1024, &l),
        Ok(Datagram::Ack {
            highest_seq: 7,
            received: 1 << 40,
            receive_us: 123_456
        })
    );
    assert!(Datagram::decode(&ack.slice(..16), 1024, &l).is_err());
    assert!(DatagramFrame::decode(&ack, 1024, &l).is_err());
    // Several symbols per datagram; none may pass the largest ESI.
    let many = DatagramFrame {
        seq: 1,
        piece: 2,
        esi: 100,
        symbols: Bytes::from(vec![9u8; 16 * 1024]),
    };
    let decoded = DatagramFrame::decode(&many.encode(1024), 1024, &l).unwrap();
    assert_eq!(decoded.count(1024), 16);
    assert_eq!(decoded, many);
    let past_end = DatagramFrame {
        esi: (1 << 24) - 2,
        ..many
    };
    assert!(matches!(
        DatagramFrame::decode(&past_end.encode(1024), 1024, &l),
        Err(FountainError::EsiOutOfRange(_))
    ));
    // Found by fuzzing: with T = 0 a header claiming three symbols matched
    // its "expected" length of 13 bytes and parsed with no symbol at all.
    let header_only = Bytes::copy_from_slice(&DatagramFrame::header(1, 2, 3, 3));
    assert!(matches!(
        DatagramFrame::decode(&header_only, 0, &l),
        Err(FountainError::RaggedSymbols { .. })
    ));
}
