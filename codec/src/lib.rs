//! `codec`: RaptorQ (RFC 6330) coding of BitTorrent pieces, with no I/O.
