//! Kenosis names: `http://<key>.bt.<domain>[:port]/announce` announce URLs,
//! their `Host` headers and DNS names, the DHT targets they map to, and the
//! ranking every client applies to the trackers it finds.
//!
//! - A **key** is 1–63 characters of `[a-z0-9-]` (one DNS label; DNS is
//!   case-insensitive, so upper case is accepted and lowered). `make`
//!   writes the lowercase hex SHA-1 of the content.
//! - The **zone** is `bt.<domain>`: the label right after the key must be
//!   `bt` (the seeds' `hash.bt.kenosisp2p.org`).
//! - A tracker serving a key announces itself in the DHT under
//!   [`Key::target`] = SHA-1(key), and every Kenosis tracker under
//!   [`service_id`] = SHA-1(`kenosis:bt:v1`).
//! - Clients order the trackers they find by [`tracker_distance`]: the XOR
//!   of the key's target and SHA-1(IPv4 ‖ port), so every client that sees
//!   the same trackers tries them in the same order.
//!
//! Everything here is pure and total: any string gives a value or an error.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use sha1::{Digest, Sha1};

/// The service name whose SHA-1 every Kenosis tracker announces under.
pub const SERVICE_NAME: &str = "kenosis:bt:v1";
/// Longest key: one DNS label.
pub const KEY_MAX_LEN: usize = 63;
/// Longest DNS name (RFC 1035, without the trailing dot).
pub const NAME_MAX_LEN: usize = 253;
/// The label between the key and the domain.
pub const ZONE_LABEL: &str = "bt";

/// Why a string is not a usable Kenosis name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("not a Kenosis name (expected <key>.bt.<domain>)")]
    NotKenosis,
    #[error("the key is empty")]
    EmptyKey,
    #[error("the key is longer than {KEY_MAX_LEN} characters")]
    KeyTooLong,
    #[error("the key may hold only a-z, 0-9 and '-'")]
    BadKeyChar,
    #[error("the domain is not a valid DNS name")]
    BadDomain,
    #[error("bad port")]
    BadPort,
    #[error("not an http:// URL with a plain host")]
    BadUrl,
}

/// A validated, lowercase Kenosis key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Checks the key rules; upper-case letters are lowered.
    pub fn parse(text: &str) -> Result<Key, NameError> {
        if text.is_empty() {
            return Err(NameError::EmptyKey);
        }
        if text.len() > KEY_MAX_LEN {
            return Err(NameError::KeyTooLong);
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(NameError::BadKeyChar);
        }
        Ok(Key(text.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DHT target: SHA-1 of the key's bytes.
    pub fn target(&self) -> [u8; 20] {
        sha1_of(self.0.as_bytes())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

/// A Kenosis host as found in a URL or a `Host` header:
/// `<key>.bt.<domain>[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KenosisHost {
    pub key: Key,
    /// `bt.<domain>`, lowercase, no trailing dot.
    pub zone: String,
    /// The explicit port, if one was written.
    pub port: Option<u16>,
}

impl KenosisHost {
    /// Parses a host with an optional `:port` (a `Host` header value).
    pub fn parse(host: &str) -> Result<KenosisHost, NameError> {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(parse_port(port)?)),
            None => (host, None),
        };
        let (key, zone) = split_name(name)?;
        Ok(KenosisHost { key, zone, port })
    }

    /// `<key>.<zone>` without a port.
    pub fn name(&self) -> String {
        format!("{}.{}", self.key, self.zone)
    }

    /// The `Host` header a client sends: the name and the explicit port.
    pub fn host_header(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.name()),
            None => self.name(),
        }
    }
}

/// A Kenosis announce URL: `http://<key>.bt.<domain>[:port]<rest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KenosisUrl {
    pub host: KenosisHost,
    /// Path, query and fragment as written (`/announce` when empty).
    pub rest: String,
}

impl KenosisUrl {
    /// Parses an `http://` URL whose host is a Kenosis name. Any other URL
    /// is [`NameError::NotKenosis`] (or [`NameError::BadUrl`] when it has
    /// user info or an unusable authority).
    pub fn parse(url: &str) -> Result<KenosisUrl, NameError> {
        let scheme = url.get(..7).ok_or(NameError::NotKenosis)?;
        if !scheme.eq_ignore_ascii_case("http://") {
            return Err(NameError::NotKenosis);
        }
        let after = url.get(7..).ok_or(NameError::NotKenosis)?;
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        if authority.contains('@') || authority.starts_with('[') {
            return Err(NameError::BadUrl);
        }
        let host = KenosisHost::parse(authority)?;
        let rest = if rest.is_empty() { "/announce" } else { rest };
        Ok(KenosisUrl {
            host,
            rest: rest.to_owned(),
        })
    }

    /// The port the tracker listens on (the URL's, 80 when not written).
    pub fn port(&self) -> u16 {
        self.host.port.unwrap_or(80)
    }

    /// The same request aimed at a tracker's IPv4 address (on the URL's
    /// port, as the design says; the DHT's port is the HTTP port too).
    pub fn at(&self, tracker: Ipv4Addr) -> String {
        format!("http://{tracker}:{}{}", self.port(), self.rest)
    }
}

impl fmt::Display for KenosisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host.host_header(), self.rest)
    }
}

/// What a DNS question's name is to a bridge serving `zone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsName {
    /// `<key>.<zone>` with a valid key.
    Key(Key),
    /// The zone itself.
    Apex,
    /// Inside the zone but not one valid key label.
    Malformed,
    /// Not inside the zone.
    OutOfZone,
}

/// Classifies a DNS name (either case, trailing dot optional) against the
/// bridge's zone (e.g. `bt.kenosisp2p.org`).
pub fn classify_dns_name(name: &str, zone: &str) -> DnsName {
    let name = name.strip_suffix('.').unwrap_or(name);
    let zone = zone.trim_matches('.');
    if name.len() > NAME_MAX_LEN || zone.is_empty() {
        return DnsName::OutOfZone;
    }
    if name.eq_ignore_ascii_case(zone) {
        return DnsName::Apex;
    }
    let Some(cut) = name.len().checked_sub(zone.len() + 1) else {
        return DnsName::OutOfZone;
    };
    let (Some(prefix), Some(dot), Some(suffix)) =
        (name.get(..cut), name.get(cut..cut + 1), name.get(cut + 1..))
    else {
        return DnsName::OutOfZone;
    };
    if dot != "." || !suffix.eq_ignore_ascii_case(zone) {
        return DnsName::OutOfZone;
    }
    match Key::parse(prefix) {
        Ok(key) => DnsName::Key(key),
        Err(_) => DnsName::Malformed,
    }
}

/// Whether `zone` (e.g. `bt.kenosisp2p.org`, trailing dot optional) is a
/// usable DNS name: LDH labels, at most 253 characters.
pub fn valid_zone(zone: &str) -> bool {
    let zone = zone.strip_suffix('.').unwrap_or(zone);
    !zone.is_empty() && zone.len() <= NAME_MAX_LEN && zone.split('.').all(valid_label)
}

/// The DHT target every Kenosis tracker announces under.
pub fn service_id() -> [u8; 20] {
    sha1_of(SERVICE_NAME.as_bytes())
}

/// XOR distance between a key's target and SHA-1(IPv4 ‖ port, big-endian).
pub fn tracker_distance(target: &[u8; 20], tracker: SocketAddrV4) -> [u8; 20] {
    let mut bytes = [0u8; 6];
    let (ip, port) = bytes.split_at_mut(4);
    ip.copy_from_slice(&tracker.ip().octets());
    port.copy_from_slice(&tracker.port().to_be_bytes());
    let mut d = sha1_of(&bytes);
    for (x, t) in d.iter_mut().zip(target) {
        *x ^= t;
    }
    d
}

/// Sorts trackers nearest first (ties by address) and drops duplicates and
/// unusable addresses (unspecified, broadcast, multicast, port 0).
pub fn rank_trackers(target: &[u8; 20], trackers: &mut Vec<SocketAddrV4>) {
    trackers.retain(|t| {
        let ip = t.ip();
        t.port() != 0 && !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast()
    });
    trackers.sort_by_cached_key(|t| (tracker_distance(target, *t), *t));
    trackers.dedup();
}

fn sha1_of(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

fn parse_port(text: &str) -> Result<u16, NameError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(NameError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// `<key>.bt.<domain>` → (key, `bt.<domain>`).
fn split_name(name: &str) -> Result<(Key, String), NameError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > NAME_MAX_LEN {
        return Err(NameError::BadDomain);
    }
    let (key, zone) = name.split_once('.').ok_or(NameError::NotKenosis)?;
    let (bt, domain) = zone.split_once('.').ok_or(NameError::NotKenosis)?;
    if !bt.eq_ignore_ascii_case(ZONE_LABEL) {
        return Err(NameError::NotKenosis);
    }
    if domain.is_empty() || !domain.split('.').all(valid_label) {
        return Err(NameError::BadDomain);
    }
    Ok((Key::parse(key)?, zone.to_ascii_lowercase()))
}

/// An LDH DNS label: 1–63 of letters, digits and '-', not starting or
/// ending with '-'.
fn valid_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn urls_from_make_parse() {
        let url = format!("http://{HEX}.bt.kenosisp2p.org:6969/announce");
        let k = KenosisUrl::parse(&url).unwrap();
        assert_eq!(k.host.key.as_str(), HEX);
        assert_eq!(k.host.zone, "bt.kenosisp2p.org");
        assert_eq!(k.port(), 6969);
        assert_eq!(k.rest, "/announce");
        assert_eq!(k.to_string(), url);
        assert_eq!(
            k.at(Ipv4Addr::new(127, 0, 0, 2)),
            "http://127.0.0.2:6969/announce"
        );
        assert_eq!(
            k.host.host_header(),
            format!("{HEX}.bt.kenosisp2p.org:6969")
        );
        // Case, no port, no path, query kept.
        let k = KenosisUrl::parse("HTTP://Foo.BT.Example.NET?x=1").unwrap();
        assert_eq!(k.host.key.as_str(), "foo");
        assert_eq!(k.host.zone, "bt.example.net");
        assert_eq!((k.port(), k.rest.as_str()), (80, "?x=1"));
        let k = KenosisUrl::parse("http://foo.bt.example.net").unwrap();
        assert_eq!(k.rest, "/announce");
    }

    #[test]
    fn other_urls_are_not_kenosis() {
        for url in [
            "http://tracker.example.org:6969/announce",
            "https://foo.bt.example.org/announce",
            "udp://foo.bt.example.org:6969",
            "http://127.0.0.1:6969/announce",
            "http://foo.bt/announce",
            "http://bt.example.org/announce",
            "",
            "http:/",
        ] {
            assert_eq!(KenosisUrl::parse(url), Err(NameError::NotKenosis), "{url}");
        }
        assert_eq!(
            KenosisUrl::parse("http://u@foo.bt.x.org/"),
            Err(NameError::BadUrl)
        );
        assert_eq!(
            KenosisUrl::parse("http://[::1]:80/"),
            Err(NameError::BadUrl)
        );
        assert_eq!(
            KenosisUrl::parse("http://foo.bt.x.org:0/"),
            Err(NameError::BadPort)
        );
        assert_eq!(
            KenosisUrl::parse("http://foo.bt.x.org:99999/"),
            Err(NameError::BadPort)
        );
        assert_eq!(
            KenosisUrl::parse("http://fo_o.bt.x.org/"),
            Err(NameError::BadKeyChar)
        );
        assert_eq!(
            KenosisUrl::parse("http://foo.bt.x..org/"),
            Err(NameError::BadDomain)
        );
        assert_eq!(
            KenosisUrl::parse(&format!("http://{}.bt.x.org/", "a".repeat(64))),
            Err(NameError::KeyTooLong)
        );
        assert_eq!(
            KenosisUrl::parse("http://.bt.x.org/"),
            Err(NameError::EmptyKey)
        );
    }

    #[test]
    fn dns_names() {
        let zone = "bt.kenosisp2p.org";
        let key = Key::parse(HEX).unwrap();
        assert_eq!(
            classify_dns_name(&format!("{HEX}.bt.kenosisp2p.org."), zone),
            DnsName::Key(key.clone())
        );
        assert_eq!(
            classify_dns_name(&format!("{}.BT.KenosisP2P.org", HEX.to_uppercase()), zone),
            DnsName::Key(key)
        );
        assert_eq!(classify_dns_name("bt.kenosisp2p.org.", zone), DnsName::Apex);
        assert_eq!(
            classify_dns_name("a.b.bt.kenosisp2p.org", zone),
            DnsName::Malformed
        );
        assert_eq!(
            classify_dns_name("a_b.bt.kenosisp2p.org", zone),
            DnsName::Malformed
        );
        assert_eq!(classify_dns_name("example.org.", zone), DnsName::OutOfZone);
        assert_eq!(
            classify_dns_name("xbt.kenosisp2p.org", zone),
            DnsName::OutOfZone
        );
        assert_eq!(classify_dns_name("", zone), DnsName::OutOfZone);
        assert_eq!(
            classify_dns_name("é.bt.kenosisp2p.org", zone),
            DnsName::Malformed
        );
        assert_eq!(classify_dns_name("éé", "é"), DnsName::OutOfZone);
        assert!(valid_zone("bt.kenosisp2p.org."));
        assert!(!valid_zone("bt..org") && !valid_zone("") && !valid_zone("-bt.org"));
    }

    #[test]
    fn targets_and_ranking_are_fixed() {
        // SHA-1("kenosis:bt:v1") and SHA-1("foo"), so a change is noticed.
        assert_eq!(
            crate::ids::hex40(&service_id()),
            crate::ids::hex40(&Sha1::digest(b"kenosis:bt:v1"))
        );
        let foo = Key::parse("foo").unwrap().target();
        assert_eq!(
            crate::ids::hex40(&foo),
            "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"
        );
        let a = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 6969);
        let b = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), 6969);
        let c = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 4), 6969);
        let mut one = vec![a, b, c, a, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1)];
        let mut two = vec![c, b, a];
        rank_trackers(&foo, &mut one);
        rank_trackers(&foo, &mut two);
        assert_eq!(one, two);
        assert_eq!(one.len(), 3);
        let d: Vec<_> = one.iter().map(|t| tracker_distance(&foo, *t)).collect();
        assert!(d.windows(2).all(|w| w[0] < w[1]));
        // Another key orders them differently somewhere.
        let differs = (0..20).any(|i| {
            let mut v = vec![a, b, c];
            rank_trackers(&Key::parse(&format!("k{i}")).unwrap().target(), &mut v);
            v != one
        });
        assert!(differs);
    }
}
