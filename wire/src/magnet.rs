//! Magnet links (BEP 9): `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<tracker>&x.pe=<peer>`.
//!
//! Only what a v1 download needs is kept: the info-hash (40 hex digits or
//! 32 base32 characters), the display name, tracker URLs and peer
//! addresses. Everything else (`xl`, `ws`, `so`, v2 `btmh`, ...) is
//! ignored, as clients do, so links made by newer software still work.

use std::net::SocketAddr;

use thiserror::Error;

use crate::ids::InfoHash;
use crate::tracker::{percent_decode, percent_encode};
use crate::Limits;

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `dn`: a name to show until the metadata arrives.
    pub display_name: Option<String>,
    /// `tr`: tracker URLs, in the order given (one tier each, as libtorrent
    /// and Transmission treat them).
    pub trackers: Vec<String>,
    /// `x.pe`: peers to connect to directly (IP literals only: this crate
    /// does no name resolution; `host:port` entries are ignored).
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MagnetError {
    #[error("not a magnet link (must start with `magnet:?`)")]
    NotMagnet,
    #[error("magnet link is {len} bytes (limit {limit})")]
    TooLong { len: usize, limit: usize },
    #[error("magnet link has no `xt=urn:btih:` info-hash")]
    NoInfoHash,
    #[error("magnet link's btih `{0}` is neither 40 hex digits nor 32 base32 characters")]
    BadInfoHash(String),
    #[error("magnet link has a bad %-escape")]
    BadEncoding,
    #[error("magnet link has more than {limit} parameters")]
    TooManyParams { limit: usize },
}

impl Magnet {
    /// Parses a magnet URI. Bounded by `limits.tracker_max_query` (length)
    /// and `limits.tracker_max_params` (parameters): a magnet is a query
    /// string with a scheme in front.
    pub fn parse(uri: &str, limits: &Limits) -> Result<Magnet, MagnetError> {
        let uri = uri.trim();
        if uri.len() > limits.tracker_max_query {
            return Err(MagnetError::TooLong {
                len: uri.len(),
                limit: limits.tracker_max_query,
            });
        }
        let query = uri
            .get(..8)
            .filter(|s| s.eq_ignore_ascii_case("magnet:?"))
            .and_then(|_| uri.get(8..))
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash = None;
        let mut display_name = None;
        let mut trackers = Vec::new();
        let mut peers = Vec::new();
        for (n, part) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
            if n >= limits.tracker_max_params {
                return Err(MagnetError::TooManyParams {
                    limit: limits.tracker_max_params,
                });
            }
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            // `xt.1`, `tr.2`...: numbered variants mean the same thing.
            let key = key.split_once('.').map_or(key, |(k, rest)| {
                if rest.bytes().all(|b| b.is_ascii_digit()) {
                    k
                } else {
                    key
                }
            });
            let decoded_from = |value: &str| {
                percent_decode(value.as_bytes())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|_| MagnetError::BadEncoding)
            };
            let decoded = || decoded_from(value);
            match key {
                "xt" => {
                    let xt = decoded()?;
                    if let Some(hash) = strip_prefix_ci(&xt, "urn:btih:") {
                        // The first v1 hash wins; later ones (rare) are ignored.
                        if info_hash.is_none() {
                            info_hash = Some(parse_btih(hash)?);
                        }
                    }
                }
                // Form-encoded names use `+` for spaces (an escaped `%2B`
                // stays a plus).
                "dn" => display_name = Some(decoded_from(&value.replace('+', " "))?),
                "tr" => {
                    let tr = decoded()?;
                    if !tr.is_empty() && !trackers.contains(&tr) {
                        trackers.push(tr);
                    }
                }
                "x.pe" => {
                    if let Ok(addr) = decoded()?.parse::<SocketAddr>() {
                        if !peers.contains(&addr) {
                            peers.push(addr);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Magnet {
            info_hash: info_hash.ok_or(MagnetError::NoInfoHash)?,
            display_name,
            trackers,
            peers,
        })
    }

    /// The link as text, with every value percent-encoded.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(name) = &self.display_name {
            uri.push_str("&dn=");
            uri.push_str(&percent_encode(name.as_bytes()));
        }
        for tr in &self.trackers {
            uri.push_str("&tr=");
            uri.push_str(&percent_encode(tr.as_bytes()));
        }
        for peer in &self.peers {
            uri.push_str("&x.pe=");
            uri.push_str(&percent_encode(peer.to_string().as_bytes()));
        }
        uri
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .and_then(|_| s.get(prefix.len()..))
}

/// 40 hex digits, or 32 characters of RFC 4648 base32 (older links).
fn parse_btih(text: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(text.chars().take(64).collect());
    match text.len() {
        40 => InfoHash::from_hex(&text.to_ascii_lowercase()).ok_or_else(bad),
        32 => {
            let mut out = [0u8; 20];
            let (mut acc, mut bits, mut n) = (0u64, 0u32, 0usize);
            for c in text.bytes() {
                let v = match c.to_ascii_uppercase() {
                    c @ b'A'..=b'Z' => c - b'A',
                    c @ b'2'..=b'7' => c - b'2' + 26,
                    _ => return Err(bad()),
                };
                acc = (acc << 5) | u64::from(v);
                bits += 5;
                if bits >= 8 {
                    bits -= 8;
                    let slot = out.get_mut(n).ok_or_else(bad)?;
                    *slot = (acc >> bits) as u8;
                    n += 1;
                }
            }
            Ok(InfoHash(out))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_hash_name_trackers_and_peers() {
        let uri = format!(
            "magnet:?xt=urn:btih:{}&dn=Some+File%20%C3%A9%2B.iso&tr=http%3A%2F%2F198.18.0.1%3A6969%2Fannounce\
             &tr=http://b/announce&tr=http://b/announce&x.pe=198.18.0.3:6881&x.pe=[::1]:7000&x.pe=host:1&xl=99",
            HEX.to_ascii_uppercase()
        );
        let m = Magnet::parse(&uri, &Limits::DEFAULT).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.display_name.as_deref(), Some("Some File é+.iso"));
        assert_eq!(
            m.trackers,
            vec!["http://198.18.0.1:6969/announce", "http://b/announce"]
        );
        assert_eq!(
            m.peers,
            vec![
                "198.18.0.3:6881".parse().unwrap(),
                "[::1]:7000".parse().unwrap()
            ]
        );
        let again = Magnet::parse(&m.to_uri(), &Limits::DEFAULT).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn base32_hash_equals_hex() {
        // Base32 of the bytes c1 2f e1 ... (RFC 4648 alphabet).
        let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}"), &Limits::DEFAULT).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
    }

    #[test]
    fn refuses_what_is_not_a_v1_magnet() {
        let l = Limits::DEFAULT;
        assert_eq!(Magnet::parse("http://x", &l), Err(MagnetError::NotMagnet));
        assert_eq!(
            Magnet::parse("magnet:?dn=x", &l),
            Err(MagnetError::NoInfoHash)
        );
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:abc", &l),
            Err(MagnetError::BadInfoHash(_))
        ));
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:1111111111111111111111111111111!", &l),
            Err(MagnetError::BadInfoHash(_))
        ));
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%zz"), &l),
            Err(MagnetError::BadEncoding)
        );
        let long = format!("magnet:?xt=urn:btih:{HEX}{}", "&a=b".repeat(3000));
        assert!(matches!(
            Magnet::parse(&long, &l),
            Err(MagnetError::TooLong { .. })
        ));
        let many = format!("magnet:?xt=urn:btih:{HEX}{}", "&a".repeat(500));
        assert!(matches!(
            Magnet::parse(&many, &l),
            Err(MagnetError::TooManyParams { .. })
        ));
    }
}
