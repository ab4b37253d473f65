//! Announce and scrape queries: building them (client) and parsing them from
//! the raw query string (server). Percent-decoding yields bytes, so a 20-byte
//! info_hash stays exactly 20 bytes whatever it contains.

use super::TrackerError;
use crate::ids::{InfoHash, PeerId};
use crate::Limits;

/// The `event` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Event {
    /// A regular periodic announce (no `event`, or `event=empty`).
    #[default]
    None,
    Started,
    Completed,
    Stopped,
    /// BEP 21 partial seeds.
    Paused,
}

impl Event {
    pub fn as_str(&self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
            Event::Paused => Some("paused"),
        }
    }
}

/// An announce request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    /// BEP 23: compact peer lists. Defaults to true (absent or `compact=1`).
    pub compact: bool,
    pub no_peer_id: bool,
    pub numwant: Option<u32>,
    /// A client-supplied address; servers ignore it unless configured.
    pub ip: Option<String>,
    pub key: Option<Vec<u8>>,
    pub tracker_id: Option<Vec<u8>>,
}

/// A scrape request: the info-hashes named (empty = "everything").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    pub info_hashes: Vec<InfoHash>,
}

/// A percent-decoded `(key, value)` pair of a query string.
pub type QueryPair = (Vec<u8>, Vec<u8>);

/// Splits a raw query into percent-decoded `(key, value)` pairs.
pub fn parse_query_pairs(raw: &[u8], limits: &Limits) -> Result<Vec<QueryPair>, TrackerError> {
    if raw.len() > limits.tracker_max_query {
        return Err(TrackerError::QueryTooLong {
            len: raw.len(),
            limit: limits.tracker_max_query,
        });
    }
    let mut pairs = Vec::new();
    for part in raw.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        if pairs.len() >= limits.tracker_max_params {
            return Err(TrackerError::TooManyParams {
                limit: limits.tracker_max_params,
            });
        }
        let (key, value) = match part.iter().position(|b| *b == b'=') {
            Some(eq) => (
                part.get(..eq).unwrap_or_default(),
                part.get(eq + 1..).unwrap_or_default(),
            ),
            None => (part, &b""[..]),
        };
        pairs.push((percent_decode(key)?, percent_decode(value)?));
    }
    Ok(pairs)
}

/// Decodes `%XX` escapes into bytes. `+` stays `+` (RFC 3986; clients escape
/// a real plus, and turning it into a space would corrupt binary values).
pub fn percent_decode(input: &[u8]) -> Result<Vec<u8>, TrackerError> {
    let mut out = Vec::with_capacity(input.len());
    let mut iter = input.iter();
    while let Some(&b) = iter.next() {
        if b == b'%' {
            let hi = iter.next().and_then(|c| (*c as char).to_digit(16));
            let lo = iter.next().and_then(|c| (*c as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    out.push(u8::try_from(hi << 4 | lo).map_err(|_| TrackerError::BadEncoding)?)
                }
                _ => return Err(TrackerError::BadEncoding),
            }
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
pub fn percent_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len() * 3);
    for &b in input {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push_str(&crate::ids::hex40(&[b]).to_ascii_uppercase());
        }
    }
    out
}

fn number<T: std::str::FromStr>(value: &[u8], param: &'static str) -> Result<T, TrackerError> {
    // Only plain decimal digits: `str::parse` would accept a leading `+`.
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(TrackerError::NotANumber(param));
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(TrackerError::NotANumber(param))
}

fn id20(value: &[u8], param: &'static str) -> Result<[u8; 20], TrackerError> {
    <[u8; 20]>::try_from(value).map_err(|_| TrackerError::BadLength {
        param,
        expected: 20,
        len: value.len(),
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, param: &'static str) -> Result<(), TrackerError> {
    if slot.replace(value).is_some() {
        return Err(TrackerError::Repeated(param));
    }
    Ok(())
}

impl AnnounceRequest {
    /// Parses the raw query string of `/announce`.
    pub fn parse(raw_query: &[u8], limits: &Limits) -> Result<Self, TrackerError> {
        let mut info_hash = None;
        let mut peer_id = None;
        let mut port = None;
        let (mut uploaded, mut downloaded, mut left) = (None, None, None);
        let mut event = Event::None;
        let mut compact = true;
        let mut no_peer_id = false;
        let mut numwant = None;
        let mut ip = None;
        let mut key = None;
        let mut tracker_id = None;
        for (k, v) in parse_query_pairs(raw_query, limits)? {
            match k.as_slice() {
                b"info_hash" => set_once(
                    &mut info_hash,
                    InfoHash(id20(&v, "info_hash")?),
                    "info_hash",
                )?,
                b"peer_id" => set_once(&mut peer_id, PeerId(id20(&v, "peer_id")?), "peer_id")?,
                b"port" => {
                    let p: u16 = number(&v, "port").map_err(|_| TrackerError::BadPort)?;
                    if p == 0 {
                        return Err(TrackerError::BadPort);
                    }
                    set_once(&mut port, p, "port")?;
                }
                b"uploaded" => set_once(&mut uploaded, number(&v, "uploaded")?, "uploaded")?,
                b"downloaded" => {
                    set_once(&mut downloaded, number(&v, "downloaded")?, "downloaded")?
                }
                b"left" => set_once(&mut left, number(&v, "left")?, "left")?,
                b"event" => {
                    event = match v.as_slice() {
                        b"" | b"empty" => Event::None,
                        b"started" => Event::Started,
                        b"completed" => Event::Completed,
                        b"stopped" => Event::Stopped,
                        b"paused" => Event::Paused,
                        other => {
                            return Err(TrackerError::BadEvent(
                                String::from_utf8_lossy(other).into_owned(),
                            ))
                        }
                    }
                }
                b"compact" => compact = v.as_slice() != b"0",
                b"no_peer_id" => no_peer_id = v.as_slice() == b"1",
                b"numwant" => {
                    let n: u64 = number(&v, "numwant")?;
                    numwant = Some(u32::try_from(n).unwrap_or(u32::MAX));
                }
                b"ip" => ip = String::from_utf8(v).ok(),
                b"key" => key = Some(v),
                b"trackerid" => tracker_id = Some(v),
                _ => {}
            }
        }
        Ok(AnnounceRequest {
            info_hash: info_hash.ok_or(TrackerError::Missing("info_hash"))?,
            peer_id: peer_id.ok_or(TrackerError::Missing("peer_id"))?,
            port: port.ok_or(TrackerError::Missing("port"))?,
            uploaded: uploaded.unwrap_or(0),
            downloaded: downloaded.unwrap_or(0),
            left: left.ok_or(TrackerError::Missing("left"))?,
            event,
            compact,
            no_peer_id,
            numwant,
            ip,
            key,
            tracker_id,
        })
    }

    /// The query string a client appends to the announce URL.
    pub fn to_query(&self) -> String {
        let mut q = format!(
            "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact={}",
            percent_encode(&self.info_hash.0),
            percent_encode(&self.peer_id.0),
            self.port,
            self.uploaded,
            self.downloaded,
            self.left,
            u8::from(self.compact),
        );
        if self.no_peer_id {
            q.push_str("&no_peer_id=1");
        }
        if let Some(e) = self.event.as_str() {
            q.push_str("&event=");
            q.push_str(e);
        }
        if let Some(n) = self.numwant {
            q.push_str(&format!("&numwant={n}"));
        }
        if let Some(ip) = &self.ip {
            q.push_str("&ip=");
            q.push_str(&percent_encode(ip.as_bytes()));
        }
        if let Some(key) = &self.key {
            q.push_str("&key=");
            q.push_str(&percent_encode(key));
        }
        if let Some(id) = &self.tracker_id {
            q.push_str("&trackerid=");
            q.push_str(&percent_encode(id));
        }
        q
    }
}

impl ScrapeRequest {
    /// Parses the raw query string of `/scrape`.
    pub fn parse(raw_query: &[u8], limits: &Limits) -> Result<Self, TrackerError> {
        let mut info_hashes = Vec::new();
        for (k, v) in parse_query_pairs(raw_query, limits)? {
            if k == b"info_hash" {
                if info_hashes.len() >= limits.tracker_max_scrape_hashes {
                    return Err(TrackerError::TooManyHashes {
                        limit: limits.tracker_max_scrape_hashes,
                    });
                }
                info_hashes.push(InfoHash(id20(&v, "info_hash")?));
            }
        }
        Ok(ScrapeRequest { info_hashes })
    }

    pub fn to_query(&self) -> String {
        self.info_hashes
            .iter()
            .map(|h| format!("info_hash={}", percent_encode(&h.0)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash(*b"\x00%&=+ \xff1234567890123"),
            peer_id: PeerId(*b"-BF0100-abcdefghijkl"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            compact: true,
            no_peer_id: true,
            numwant: Some(30),
            ip: None,
            key: Some(b"k&y".to_vec()),
            tracker_id: None,
        }
    }

    #[test]
    fn round_trips_binary_info_hash() {
        let req = sample();
        let parsed = AnnounceRequest::parse(req.to_query().as_bytes(), &Limits::DEFAULT).unwrap();
        assert_eq!(parsed, req);
    }

    #[test]
    fn refuses_malformed_queries() {
        let l = Limits::DEFAULT;
        let base = sample().to_query();
        let short = base.replacen("info_hash=", "info_hash=%00", 1);
        assert!(matches!(
            AnnounceRequest::parse(short.as_bytes(), &l),
            Err(TrackerError::BadLength { .. })
        ));
        let no_port = base.replace("port=6881&", "");
        assert_eq!(
            AnnounceRequest::parse(no_port.as_bytes(), &l),
            Err(TrackerError::Missing("port"))
        );
        let bad_num = base.replace("left=3", "left=x3");
        assert_eq!(
            AnnounceRequest::parse(bad_num.as_bytes(), &l),
            Err(TrackerError::NotANumber("left"))
        );
        let plus = base.replace("left=3", "left=+3");
        assert_eq!(
            AnnounceRequest::parse(plus.as_bytes(), &l),
            Err(TrackerError::NotANumber("left"))
        );
        assert_eq!(percent_decode(b"%4"), Err(TrackerError::BadEncoding));
        assert_eq!(percent_decode(b"%zz"), Err(TrackerError::BadEncoding));
        let many = "a=1&".repeat(l.tracker_max_params + 1);
        assert!(matches!(
            parse_query_pairs(many.as_bytes(), &l),
            Err(TrackerError::TooManyParams { .. })
        ));
        let long = "a".repeat(l.tracker_max_query + 1);
        assert!(matches!(
            parse_query_pairs(long.as_bytes(), &l),
            Err(TrackerError::QueryTooLong { .. })
        ));
        let twice = format!("{base}&port=1");
        assert_eq!(
            AnnounceRequest::parse(twice.as_bytes(), &l),
            Err(TrackerError::Repeated("port"))
        );
    }

    #[test]
    fn a_full_size_scrape_fits_the_parameter_limit() {
        let l = Limits::DEFAULT;
        let req = ScrapeRequest {
            info_hashes: (0..l.tracker_max_scrape_hashes)
                .map(|i| InfoHash([i as u8; 20]))
                .collect(),
        };
        let query = format!("{}&peer_id=x&key=y", req.to_query());
        assert!(
            query.len() <= l.tracker_max_query,
            "a full scrape must fit the query limit"
        );
        assert_eq!(
            ScrapeRequest::parse(query.as_bytes(), &l).map(|r| r.info_hashes.len()),
            Ok(l.tracker_max_scrape_hashes)
        );
    }

    #[test]
    fn scrape_names_hashes() {
        let req = ScrapeRequest {
            info_hashes: vec![InfoHash([1; 20]), InfoHash([2; 20])],
        };
        assert_eq!(
            ScrapeRequest::parse(req.to_query().as_bytes(), &Limits::DEFAULT),
            Ok(req)
        );
    }
}
