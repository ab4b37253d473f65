//! Scenarios: the TOML schema, the built-in ones (the files shipped in
//! `benches/scenarios/`, compiled in), and their checked, expanded form.
//!
//! Schema (every key but `file_size` and `peers` optional):
//!
//! ```toml
//! name = "grid"                 # default: the file's stem
//! description = "…"
//! file_size = "64MiB"           # bytes, or with KiB/MiB/GiB
//! repetitions = 5               # each repetition runs every variant in turn
//! time_limit_s = 60             # per run; peers not done by then never finished
//! variants = ["plain-cubic", "plain-bbr", "coded-quic", "coded-tcp"]
//! seed = 1                      # loss patterns (same for every variant of a repetition)
//!
//! [link]                        # every node's access link (the tracker's is ideal)
//! rate_mbit = 100               # 0: unlimited
//! rtt_ms = 20                   # path RTT between two nodes
//! loss_percent = 1              # per path direction
//! loss_model = "random"         # or "burst" (Gilbert–Elliott)
//! burst_len = 4                 # mean burst length in packets, for "burst"
//!
//! [grid]                        # optional: one cell per combination
//! loss_percent = [0, 1, 5, 10]
//! rtt_ms = [0, 20, 80]
//!
//! [[peers]]
//! name = "leecher"              # count > 1 names them leecher-1 … leecher-N
//! role = "leecher"              # or "seed"
//! count = 4
//! client = "bitfountain"        # or "libtorrent", "aria2"
//! start_s = 0                   # seconds after the leechers' start; omit with
//! start = false                 #   start = false for peers an event starts
//! rate_mbit = 10                # per-peer link overrides: rate_mbit, rtt_ms,
//!                               #   loss_percent
//!
//! [seed_departure]              # the seeds leave after uploading this many
//! upload_multiple = 1.1         #   copies of the file between them (a lone
//!                               #   seed of ours stops itself at the byte,
//!                               #   with --seed-ratio; others are stopped
//!                               #   when a status line says so)
//!
//! [[events]]
//! at_s = 5                      # or after_seed_left_s = 0
//! action = "kill"               # kill (SIGKILL), stop (SIGTERM), start, set_link
//! peers = ["leecher-2"]         # names or base names
//! rate_mbit = 50                # for set_link: rate_mbit, rtt_ms, loss_percent
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::netlab::{LinkSettings, LossModel};
use super::variants;

/// The built-in scenarios: (name, TOML).
pub const BUILT_IN: &[(&str, &str)] = &[
    ("smoke", include_str!("../../benches/scenarios/smoke.toml")),
    ("clean", include_str!("../../benches/scenarios/clean.toml")),
    ("grid", include_str!("../../benches/scenarios/grid.toml")),
    (
        "stragglers",
        include_str!("../../benches/scenarios/stragglers.toml"),
    ),
    ("churn", include_str!("../../benches/scenarios/churn.toml")),
    (
        "seed-departure",
        include_str!("../../benches/scenarios/seed-departure.toml"),
    ),
    (
        "legacy",
        include_str!("../../benches/scenarios/legacy.toml"),
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    #[serde(default)]
    description: String,
    file_size: Size,
    #[serde(default = "default_reps")]
    repetitions: u32,
    #[serde(default = "default_time_limit")]
    time_limit_s: f64,
    variants: Option<Vec<String>>,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default)]
    link: LinkSpec,
    grid: Option<Grid>,
    peers: Vec<PeerSpec>,
    #[serde(default)]
    events: Vec<EventSpec>,
    seed_departure: Option<SeedDeparture>,
}

fn default_reps() -> u32 {
    5
}
fn default_time_limit() -> f64 {
    120.0
}
fn default_seed() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// An access link as the scenario describes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    #[serde(default = "default_rate")]
    pub rate_mbit: f64,
    #[serde(default)]
    pub rtt_ms: f64,
    #[serde(default)]
    pub loss_percent: f64,
    #[serde(default)]
    pub loss_model: LossKind,
    #[serde(default = "default_burst")]
    pub burst_len: f64,
}

fn default_rate() -> f64 {
    100.0
}
fn default_burst() -> f64 {
    4.0
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            rate_mbit: default_rate(),
            rtt_ms: 0.0,
            loss_percent: 0.0,
            loss_model: LossKind::Random,
            burst_len: default_burst(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    #[default]
    Random,
    Burst,
}

impl LinkSpec {
    /// The emulator's settings for both directions.
    pub fn settings(&self) -> (LinkSettings, LinkSettings) {
        let p = self.loss_percent / 100.0;
        let loss = match (p > 0.0, self.loss_model) {
            (false, _) => LossModel::None,
            (true, LossKind::Random) => LossModel::Random { p },
            (true, LossKind::Burst) => LossModel::Burst {
                p,
                burst: self.burst_len,
            },
        };
        LinkSettings::access(
            (self.rate_mbit * 1e6) as u64,
            (self.rtt_ms * 1e6) as u64,
            loss,
        )
    }

    fn with(mut self, o: &Overrides) -> LinkSpec {
        self.rate_mbit = o.rate_mbit.unwrap_or(self.rate_mbit);
        self.rtt_ms = o.rtt_ms.unwrap_or(self.rtt_ms);
        self.loss_percent = o.loss_percent.unwrap_or(self.loss_percent);
        self
    }

    fn check(&self, what: &str) -> Result<()> {
        let ok = (0.0..=100_000.0).contains(&self.rate_mbit)
            && (0.0..=10_000.0).contains(&self.rtt_ms)
            && (0.0..90.0).contains(&self.loss_percent)
            && (1.0..=1000.0).contains(&self.burst_len);
        if !ok {
            bail!(
                "{what}: rate_mbit must be 0..100000, rtt_ms 0..10000, loss_percent 0..90 \
                 (a percentage: 5 means 5%), burst_len 1..1000"
            );
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grid {
    #[serde(default)]
    loss_percent: Vec<f64>,
    #[serde(default)]
    rtt_ms: Vec<f64>,
}

/// Per-peer or per-event link changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub rate_mbit: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub loss_percent: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Seed,
    Leecher,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    #[default]
    Bitfountain,
    Libtorrent,
    Aria2,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSpec {
    name: String,
    role: Role,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    client: Client,
    #[serde(default)]
    start_s: f64,
    #[serde(default = "yes")]
    start: bool,
    #[serde(flatten)]
    link: Overrides,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedDeparture {
    upload_multiple: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Kill,
    Stop,
    Start,
    SetLink,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSpec {
    at_s: Option<f64>,
    after_seed_left_s: Option<f64>,
    action: Action,
    peers: Vec<String>,
    #[serde(flatten)]
    link: Overrides,
}

/// One combination of link settings (a grid has several).
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub label: String,
    pub link: LinkSpec,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub name: String,
    pub role: Role,
    pub client: Client,
    /// Seconds after the start; None: only an event starts it.
    pub start_s: Option<f64>,
    pub link: Overrides,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    At(f64),
    AfterSeedLeft(f64),
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub when: When,
    pub action: Action,
    pub peers: Vec<String>,
    pub link: Overrides,
}

/// A checked scenario with peers and events expanded.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub file_size: u64,
    pub repetitions: u32,
    pub time_limit_s: f64,
    pub variants: Vec<String>,
    pub seed: u64,
    pub cells: Vec<Cell>,
    pub peers: Vec<Peer>,
    pub events: Vec<Event>,
    pub seed_departure: Option<f64>,
}

impl Scenario {
    /// A built-in name or a path to a .toml file.
    pub fn load(what: &str) -> Result<Scenario> {
        if let Some((name, text)) = BUILT_IN.iter().find(|(n, _)| *n == what) {
            return Scenario::parse(text, name);
        }
        let path = Path::new(what);
        if !path.exists() {
            let names: Vec<_> = BUILT_IN.iter().map(|(n, _)| *n).collect();
            bail!(
                "no scenario {what:?}: give a .toml file or one of {}",
                names.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let stem = path
            .file_stem()
            .map_or("scenario".into(), |s| s.to_string_lossy());
        Scenario::parse(&text, &stem).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str, default_name: &str) -> Result<Scenario> {
        let f: File = toml::from_str(text).context("not a valid scenario")?;
        let file_size = parse_size(&f.file_size)?;
        if !(1024..=16 << 30).contains(&file_size) {
            bail!("file_size must be between 1 KiB and 16 GiB");
        }
        if !(1..=1000).contains(&f.repetitions) {
            bail!("repetitions must be 1..1000");
        }
        if !(f.time_limit_s > 0.0 && f.time_limit_s <= 86_400.0) {
            bail!("time_limit_s must be in (0, 86400]");
        }
        f.link.check("[link]")?;
        let variants = f.variants.unwrap_or_else(|| {
            variants::DEFAULT
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
        });
        if variants.is_empty() {
            bail!("variants is empty");
        }
        for v in &variants {
            variants::find(v)?;
        }
        let cells = expand_grid(f.link, f.grid.as_ref())?;
        let peers = expand_peers(&f.peers, &f.link)?;
        let events = expand_events(&f.events, &peers, f.seed_departure.is_some())?;
        let seed_departure = match f.seed_departure {
            Some(d) if !(d.upload_multiple > 0.0 && d.upload_multiple < 1000.0) => {
                bail!("seed_departure.upload_multiple must be in (0, 1000)")
            }
            d => d.map(|d| d.upload_multiple),
        };
        Ok(Scenario {
            name: f.name.unwrap_or_else(|| default_name.to_string()),
            description: f.description,
            file_size,
            repetitions: f.repetitions,
            time_limit_s: f.time_limit_s,
            variants,
            seed: f.seed,
            cells,
            peers,
            events,
            seed_departure,
        })
    }

    /// The link of `peer` in `cell` (peer overrides beat the cell).
    pub fn peer_link(&self, cell: &Cell, peer: &Peer) -> LinkSpec {
        cell.link.with(&peer.link)
    }

    pub fn uses(&self, client: Client) -> bool {
        self.peers.iter().any(|p| p.client == client)
    }
}

fn parse_size(s: &Size) -> Result<u64> {
    let text = match s {
        Size::Bytes(n) => return Ok(*n),
        Size::Text(t) => t.trim(),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("file_size {text:?}: expected e.g. 64MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        u => bail!("file_size {text:?}: unknown unit {u:?} (B, KiB, MiB, GiB)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("file_size {text:?} is too large"))
}

fn expand_grid(base: LinkSpec, grid: Option<&Grid>) -> Result<Vec<Cell>> {
    let label = |l: &LinkSpec| format!("loss {}% rtt {} ms", l.loss_percent, l.rtt_ms);
    let Some(g) = grid else {
        return Ok(vec![Cell {
            label: label(&base),
            link: base,
        }]);
    };
    let losses = if g.loss_percent.is_empty() {
        vec![base.loss_percent]
    } else {
        g.loss_percent.clone()
    };
    let rtts = if g.rtt_ms.is_empty() {
        vec![base.rtt_ms]
    } else {
        g.rtt_ms.clone()
    };
    let mut cells = Vec::new();
    for &rtt_ms in &rtts {
        for &loss_percent in &losses {
            let link = LinkSpec {
                loss_percent,
                rtt_ms,
                ..base
            };
            link.check("[grid]")?;
            cells.push(Cell {
                label: label(&link),
                link,
            });
        }
    }
    if cells.len() > 1000 {
        bail!("the grid has {} cells; at most 1000", cells.len());
    }
    Ok(cells)
}

fn expand_peers(specs: &[PeerSpec], base: &LinkSpec) -> Result<Vec<Peer>> {
    let mut peers = Vec::new();
    let mut names = BTreeSet::new();
    for s in specs {
        let ok_name = !s.name.is_empty()
            && s.name.len() <= 24
            && s.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_name {
            bail!(
                "peer name {:?}: 1-24 characters of a-z, 0-9 and '-'",
                s.name
            );
        }
        if !(1..=200).contains(&s.count) {
            bail!("peer {}: count must be 1..200", s.name);
        }
        if !(0.0..=86_400.0).contains(&s.start_s) {
            bail!("peer {}: start_s must be 0..86400", s.name);
        }
        base.with(&s.link).check(&format!("peer {}", s.name))?;
        for i in 1..=s.count {
            let name = if s.count == 1 {
                s.name.clone()
            } else {
                format!("{}-{i}", s.name)
            };
            if name == "tracker" || !names.insert(name.clone()) {
                bail!("peer name {name:?} is used twice (or is \"tracker\")");
            }
            peers.push(Peer {
                name,
                role: s.role,
                client: s.client,
                start_s: s.start.then_some(s.start_s),
                link: s.link,
            });
        }
    }
    if !peers
        .iter()
        .any(|p| p.role == Role::Seed && p.start_s == Some(0.0))
    {
        bail!("a scenario needs a seed that starts at 0");
    }
    if !peers.iter().any(|p| p.role == Role::Leecher) {
        bail!("a scenario needs at least one leecher");
    }
    if peers.len() > 240 {
        bail!("at most 240 peers");
    }
    Ok(peers)
}

fn expand_events(specs: &[EventSpec], peers: &[Peer], departure: bool) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for s in specs {
        let when = match (s.at_s, s.after_seed_left_s) {
            (Some(t), None) if (0.0..=86_400.0).contains(&t) => When::At(t),
            (None, Some(t)) if (0.0..=86_400.0).contains(&t) && departure => When::AfterSeedLeft(t),
            (None, Some(_)) if !departure => {
                bail!("an event uses after_seed_left_s but there is no [seed_departure]")
            }
            _ => bail!("every event needs one of at_s or after_seed_left_s (0..86400)"),
        };
        let mut names = Vec::new();
        for want in &s.peers {
            let matched: Vec<_> = peers
                .iter()
                .filter(|p| p.name == *want || p.name.rsplit_once('-').map(|x| x.0) == Some(want))
                .map(|p| p.name.clone())
                .collect();
            if matched.is_empty() {
                bail!("an event names peer {want:?}, which the scenario does not have");
            }
            names.extend(matched);
        }
        if names.is_empty() {
            bail!("an event names no peers");
        }
        let link_change = s.link != Overrides::default();
        if link_change != (s.action == Action::SetLink) {
            bail!("rate_mbit/rtt_ms/loss_percent go with action = \"set_link\" (and it needs one)");
        }
        events.push(Event {
            when,
            action: s.action,
            peers: names,
            link: s.link,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_parses() {
        for (name, text) in BUILT_IN {
            let s = Scenario::parse(text, name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(&s.name, name);
        }
    }

    #[test]
    fn grid_expands_and_names_expand() {
        let s = Scenario::parse(
            r#"file_size = "1MiB"
               [grid]
               loss_percent = [0, 5]
               rtt_ms = [0, 20, 80]
               [[peers]]
               name = "seed"
               role = "seed"
               [[peers]]
               name = "l"
               role = "leecher"
               count = 3
               [[events]]
               at_s = 2
               action = "kill"
               peers = ["l"]"#,
            "t",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(s.cells.len(), 6);
        assert_eq!(s.file_size, 1 << 20);
        assert_eq!(s.peers.len(), 4);
        assert_eq!(s.events.first().map(|e| e.peers.len()), Some(3));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let cases = [
            ("file_size = \"1MB\"\npeers = []", "unknown unit"),
            ("file_size = 5000\nbogus = 1\npeers = []", "bogus"),
            (
                "file_size = 5000\n[[peers]]\nname = \"s\"\nrole = \"leecher\"",
                "needs a seed",
            ),
            (
                "file_size = 5000\n[link]\nloss_percent = 0.05e4\n[[peers]]\nname=\"s\"\nrole=\"seed\"",
                "loss_percent",
            ),
            (
                "file_size = 5000\nvariants = [\"fast\"]\n[[peers]]\nname=\"s\"\nrole=\"seed\"",
                "unknown variant",
            ),
        ];
        for (text, want) in cases {
            let err = format!(
                "{:#}",
                Scenario::parse(text, "t")
                    .err()
                    .unwrap_or_else(|| panic!("{text} parsed"))
            );
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
