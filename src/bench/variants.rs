//! Variants: how our peers are run in a repetition. A variant is only extra
//! arguments to `bitfountain get` (and, for the outer code, to `make`), so a
//! new transport is one table entry. A variant whose flags this binary does
//! not have is reported as not yet available, never imitated.

use std::process::Command;

use anyhow::{bail, Result};
use serde::Serialize;

/// One way of running our peers.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Variant {
    pub name: &'static str,
    pub description: &'static str,
    /// Extra arguments for every `bitfountain get` (seeds and leechers).
    pub get_args: &'static [&'static str],
    /// Extra arguments for `bitfountain make`: the outer code's repair pieces.
    pub make_args: &'static [&'static str],
}

impl Variant {
    /// Whether the torrent differs from the plain one.
    pub fn needs_own_torrent(&self) -> bool {
        !self.make_args.is_empty()
    }
}

/// `get` arguments of the coded variants, with and without the outer code.
const CODED_QUIC: &[&str] = &["--coded", "only", "--coded-transport", "quic"];
const CODED_TCP: &[&str] = &[
    "--coded",
    "only",
    "--coded-transport",
    "tcp",
    "--tcp-congestion",
    "bbr",
];

pub const ALL: &[Variant] = &[
    Variant {
        name: "plain-cubic",
        description: "plain BitTorrent over TCP, Cubic",
        get_args: &["--coded", "off", "--tcp-congestion", "cubic"],
        make_args: &[],
    },
    Variant {
        name: "plain-bbr",
        description: "plain BitTorrent over TCP, BBR",
        get_args: &["--coded", "off", "--tcp-congestion", "bbr"],
        make_args: &[],
    },
    Variant {
        name: "coded-quic",
        description: "fountain-coded, symbols as QUIC datagrams",
        get_args: CODED_QUIC,
        make_args: &[],
    },
    Variant {
        name: "coded-tcp",
        description: "fountain-coded, symbols over TCP (BBR)",
        get_args: CODED_TCP,
        make_args: &[],
    },
    Variant {
        name: "coded-quic-outer",
        description: "coded over QUIC datagrams, torrent with 10% outer repair pieces",
        get_args: CODED_QUIC,
        make_args: &["--repair", "10"],
    },
    Variant {
        name: "coded-tcp-outer",
        description: "coded over TCP, torrent with 10% outer repair pieces",
        get_args: CODED_TCP,
        make_args: &["--repair", "10"],
    },
];

/// Variants a scenario runs unless it names its own.
pub const DEFAULT: &[&str] = &["plain-cubic", "plain-bbr", "coded-quic", "coded-tcp"];

pub fn find(name: &str) -> Result<&'static Variant> {
    match ALL.iter().find(|v| v.name == name) {
        Some(v) => Ok(v),
        None => {
            let names: Vec<_> = ALL.iter().map(|v| v.name).collect();
            bail!("unknown variant {name:?} (known: {})", names.join(", "))
        }
    }
}

/// What this binary's `get --help` and `make --help` offer.
pub struct Support {
    get_help: String,
    make_help: String,
}

impl Support {
    pub fn probe(exe: &std::path::Path) -> Support {
        let help = |sub: &str| {
            Command::new(exe)
                .args([sub, "--help"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        Support {
            get_help: help("get"),
            make_help: help("make"),
        }
    }

    /// None if `v` can run; otherwise why not.
    pub fn missing(&self, v: &Variant) -> Option<String> {
        let flags = |args: &[&'static str]| -> Vec<&'static str> {
            args.iter()
                .copied()
                .filter(|a| a.starts_with("--"))
                .collect()
        };
        let lacking_get: Vec<_> = flags(v.get_args)
            .into_iter()
            .filter(|f| !has_flag(&self.get_help, f))
            .collect();
        let lacking_make: Vec<_> = flags(v.make_args)
            .into_iter()
            .filter(|f| !has_flag(&self.make_help, f))
            .collect();
        if lacking_get.is_empty() && lacking_make.is_empty() {
            return None;
        }
        let mut why = Vec::new();
        if !lacking_get.is_empty() {
            why.push(format!("`get` has no {}", lacking_get.join(", ")));
        }
        if !lacking_make.is_empty() {
            why.push(format!("`make` has no {}", lacking_make.join(", ")));
        }
        Some(format!("not yet available: {}", why.join("; ")))
    }
}

/// `--flag` appears in the help as a flag (followed by a space, `=` or the
/// end of a line), not as the prefix of a longer one.
fn has_flag(help: &str, flag: &str) -> bool {
    help.match_indices(flag).any(|(i, _)| {
        help.get(i + flag.len()..)
            .and_then(|rest| rest.chars().next())
            .is_none_or(|c| c == ' ' || c == '=' || c == '\n' || c == ',' || c == '<')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_matched_whole() {
        assert!(has_flag("  --coded <MODE>\n", "--coded"));
        assert!(!has_flag("  --coded-transport <T>\n", "--coded"));
        let s = Support {
            get_help: "--coded <MODE>\n--tcp-congestion <NAME>\n".into(),
            make_help: String::new(),
        };
        assert!(s.missing(find("plain-bbr").unwrap_or(&ALL[0])).is_none());
        let why = s.missing(find("coded-quic-outer").unwrap_or(&ALL[0]));
        assert!(why.is_some_and(|w| w.contains("--coded") && w.contains("--repair")));
    }
}
