//! The HTTP tracker protocol (BEP 3, compact peers BEP 23, IPv6 BEP 7,
//! scrape BEP 48): query strings parsed from raw bytes, and responses.

mod query;
mod response;

pub use query::{
    parse_query_pairs, percent_decode, percent_encode, AnnounceRequest, Event, QueryPair,
    ScrapeRequest,
};
pub use response::{
    encode_failure, AnnounceResponse, PeerEntry, ScrapeResponse, ScrapeStats, TrackerReply,
};

use thiserror::Error;

/// Why a tracker request or response was refused. The server sends the
/// `Display` text back as the bencoded `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrackerError {
    #[error("query string is {len} bytes (limit {limit})")]
    QueryTooLong { len: usize, limit: usize },
    #[error("query has more than {limit} parameters")]
    TooManyParams { limit: usize },
    #[error("malformed percent-encoding in the query")]
    BadEncoding,
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("parameter `{0}` given more than once")]
    Repeated(&'static str),
    #[error("parameter `{param}` must be {expected} bytes, got {len}")]
    BadLength {
        param: &'static str,
        expected: usize,
        len: usize,
    },
    #[error("parameter `{0}` is not a valid number")]
    NotANumber(&'static str),
    #[error("invalid port")]
    BadPort,
    #[error("unknown event {0:?}")]
    BadEvent(String),
    #[error("too many info_hash parameters (limit {limit})")]
    TooManyHashes { limit: usize },
    #[error("tracker response: {0}")]
    BadResponse(String),
}
