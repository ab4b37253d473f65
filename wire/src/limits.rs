//! Every bound that protects bitfountain from hostile input, in one place.
//!
//! Parsers in `wire` and `codec` take a `&Limits` instead of hard-coding
//! numbers, so a test or a user can tighten them and a reviewer can see at a
//! glance what an attacker is allowed to make us do. [`Limits::DEFAULT`] is
//! what the binary uses.

/// Bounds applied to everything parsed from the network, a file or a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    // --- bencode ---------------------------------------------------------
    /// Deepest nesting of lists and dictionaries. Real torrents use 4–5
    /// levels; 64 leaves room while keeping recursion shallow.
    pub bencode_max_depth: usize,
    /// Most values (integers, strings, lists, dictionaries) one document may
    /// hold. Bounds the decoder's memory to a small multiple of this count
    /// even for inputs made only of `le` pairs.
    pub bencode_max_items: usize,

    // --- metainfo --------------------------------------------------------
    /// Largest .torrent file we read (also the largest metadata we accept
    /// from peers). Big multi-file torrents reach a few MiB.
    pub metainfo_max_size: usize,
    /// Smallest accepted piece length: BEP 3 uses 16 KiB blocks, and a few
    /// old torrents have smaller pieces, so allow down to 1 KiB.
    pub min_piece_length: u32,
    /// Largest accepted piece length. `make` produces at most 16 MiB; other
    /// tools go to 64 MiB. Anything larger would force huge buffers.
    pub max_piece_length: u32,
    /// Most files in a multi-file torrent.
    pub max_files: usize,
    /// Most path components of one file.
    pub max_path_depth: usize,
    /// Longest single path component in bytes (the Linux NAME_MAX).
    pub max_path_component: usize,
    /// Largest total content size (1 PiB); keeps piece arithmetic far from
    /// overflow.
    pub max_total_length: u64,

    // --- peer wire -------------------------------------------------------
    /// Largest peer message we accept (length prefix). A PIECE carrying a
    /// 16 KiB block is 16 KiB + 13; bitfields of huge torrents and BEP 9
    /// metadata pieces are the other large messages.
    pub max_message_length: u32,
    /// Largest block a peer may request or send (BEP 3 says 16 KiB; many
    /// clients accept up to 128 KiB requests but never send them).
    pub max_block_length: u32,
    /// Requests queued from one peer before further ones are rejected.
    pub max_queued_requests: usize,
    /// Our own outstanding requests to one peer (upper bound of the adaptive
    /// pipeline).
    pub max_outstanding_requests: usize,
    /// Largest info dictionary we fetch from peers for a magnet link
    /// (BEP 9): a peer's `metadata_size` above it is refused before any
    /// buffer is allocated. Real info dictionaries reach a few MiB.
    pub metadata_max_size: usize,
    /// Metadata pieces requested from one peer at a time.
    pub metadata_max_in_flight: usize,

    // --- tracker ---------------------------------------------------------
    /// Largest announce/scrape query string we parse.
    pub tracker_max_query: usize,
    /// Most `key=value` parameters in one query. At least
    /// `tracker_max_scrape_hashes` plus a few, or a full-size scrape would be
    /// refused.
    pub tracker_max_params: usize,
    /// Most peers we hand out in one announce response.
    pub tracker_max_numwant: u32,
    /// Peers we hand out when the client does not say.
    pub tracker_default_numwant: u32,
    /// Most info-hashes in one scrape.
    pub tracker_max_scrape_hashes: usize,
    /// Most peers we accept from one tracker response.
    pub tracker_max_response_peers: usize,
    /// Most swarms a tracker keeps; announces that would start another are
    /// refused. With no allow-list anyone can invent info-hashes, so memory
    /// must be bounded by count, not by trust.
    pub tracker_max_swarms: usize,
    /// Most peers a tracker keeps over all swarms (about 60–80 bytes each).
    pub tracker_max_peers: usize,
    /// Largest request head (request line + headers) the tracker reads.
    /// Above it the HTTP layer answers 431. Leaves room for a query of
    /// `tracker_max_query` bytes so that one gets the tracker's own 414.
    pub tracker_max_header_bytes: usize,
    /// Most header lines in one request (real clients send fewer than 10).
    /// 100 is also hyper's own default, which it checks without a heap
    /// allocation per request; other values cost one.
    pub tracker_max_headers: usize,
    /// Seconds a client may take to send a complete request head, and the
    /// longest a keep-alive connection may sit idle (slowloris defence).
    pub tracker_header_timeout_secs: u32,
    /// Most open connections to the tracker.
    pub tracker_max_connections: usize,
    /// Most open connections from one IPv4 address or IPv6 /64, so one
    /// address cannot take every connection slot.
    pub tracker_max_connections_per_ip: usize,
    /// Sustained requests per second allowed from one IPv4 address or IPv6
    /// /64 (token bucket; 0 disables the limit). Clients announce every
    /// few minutes, so this only bites floods and very large NATs.
    pub tracker_rate_per_ip: u32,
    /// Token-bucket depth: requests one address may send in a burst.
    pub tracker_rate_burst: u32,
    /// Most info-hashes in a tracker allow-list (file or folder).
    pub tracker_max_allowed: usize,

    // --- coded transfer (codec and the bf_raptorq frames) -----------------
    /// Largest encoding symbol ID (RFC 6330 §3.2: 24 bits).
    pub max_esi: u32,
    /// Extra symbols a decoder may buffer beyond K for one piece.
    pub decoder_spare_symbols: u32,
    /// Decode attempts per piece before giving up on the symbols held.
    pub decode_attempts: u32,
    /// Most symbols one symbol request or symbols message may cover.
    pub max_symbols_per_message: u32,
    /// Bytes of RaptorQ encoders kept for hot pieces (`codec::EncoderCache`).
    /// An encoder holds about 2.2× its piece, so peers asking for repair
    /// symbols of many different pieces cannot grow memory past this.
    pub encoder_cache_bytes: usize,

    // --- Kenosis -----------------------------------------------------------
    /// Most trackers one lookup considers (the DHT may return hundreds of
    /// addresses, some made up); the nearest by rank are kept.
    pub kenosis_max_candidates: usize,
    /// Most Kenosis keys a tracker registers in the DHT. Keys come from the
    /// `Host` header of announces, which anyone can write.
    pub kenosis_max_keys: usize,
    /// New keys a tracker registers per second at most (each registration
    /// is a DHT lookup and a few packets); the rest wait in a bounded queue.
    pub kenosis_registrations_per_sec: u32,
    /// Distinct lookups the DNS bridge runs at once; further questions for
    /// other keys get SERVFAIL until one finishes.
    pub kenosis_max_concurrent_lookups: usize,
}

impl Limits {
    /// The defaults the `bitfountain` binary runs with.
    pub const DEFAULT: Limits = Limits {
        bencode_max_depth: 64,
        bencode_max_items: 4_000_000,
        metainfo_max_size: 64 << 20,
        min_piece_length: 1 << 10,
        max_piece_length: 64 << 20,
        max_files: 1_000_000,
        max_path_depth: 64,
        max_path_component: 255,
        max_total_length: 1 << 50,
        max_message_length: (1 << 20) + 64,
        max_block_length: 128 << 10,
        max_queued_requests: 2000,
        max_outstanding_requests: 2000,
        metadata_max_size: 16 << 20,
        metadata_max_in_flight: 8,
        tracker_max_query: 8 << 10,
        tracker_max_params: 128,
        tracker_max_numwant: 200,
        tracker_default_numwant: 50,
        tracker_max_scrape_hashes: 100,
        tracker_max_response_peers: 10_000,
        tracker_max_swarms: 1_000_000,
        tracker_max_peers: 5_000_000,
        tracker_max_header_bytes: 32 << 10,
        tracker_max_headers: 100,
        tracker_header_timeout_secs: 15,
        tracker_max_connections: 4096,
        tracker_max_connections_per_ip: 256,
        tracker_rate_per_ip: 50,
        tracker_rate_burst: 200,
        tracker_max_allowed: 1_000_000,
        max_esi: (1 << 24) - 1,
        decoder_spare_symbols: 8,
        decode_attempts: 3,
        max_symbols_per_message: 1024,
        encoder_cache_bytes: 64 << 20,
        kenosis_max_candidates: 64,
        kenosis_max_keys: 100_000,
        kenosis_registrations_per_sec: 20,
        kenosis_max_concurrent_lookups: 64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
