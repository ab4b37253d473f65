//! netlab: the link emulator. One network namespace per node, a TUN device
//! in each, and one forwarder thread joining them through emulated access
//! links (see [`forwarder`] for the topology and [`link`] for the model).
//!
//! The kernel here has no netem, so the emulation is ours, in userspace.

pub mod forwarder;
pub mod link;
pub mod ns;

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub use forwarder::{Forwarder, Snapshot};
pub use link::{LinkSettings, LossModel};

/// The address of node `index`: 198.18.0.1, 198.18.0.2, … (RFC 2544's
/// benchmarking range, never routed anywhere).
pub fn node_addr(index: usize) -> Result<Ipv4Addr> {
    if index >= 250 * 250 {
        bail!("too many nodes ({index})");
    }
    Ok(Ipv4Addr::new(
        198,
        18,
        (index / 250) as u8,
        (index % 250 + 1) as u8,
    ))
}

/// A node: its namespace and address.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub netns: String,
    pub addr: Ipv4Addr,
}

impl Node {
    /// A command running `program` inside this node's namespace. `ip netns
    /// exec` execs the program itself, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }
}

/// The lab: nodes and the forwarder. Dropping it kills every process left
/// in its namespaces and deletes them (also after an error or Ctrl-C).
pub struct Lab {
    pub nodes: Vec<Node>,
    forwarder: Option<Forwarder>,
    made: Vec<String>,
}

impl Lab {
    /// Makes one namespace per `(name, up, down)` and starts the forwarder.
    pub fn new(specs: &[(String, LinkSettings, LinkSettings)], seed: u64) -> Result<Lab> {
        ns::sweep_stale();
        let mut lab = Lab {
            nodes: Vec::new(),
            forwarder: None,
            made: Vec::new(),
        };
        let mut fwd_nodes = Vec::new();
        for (i, (name, up, down)) in specs.iter().enumerate() {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!("node name {name:?}: use letters, digits, '-' and '_'");
            }
            let netns = format!("{}{}-{name}", ns::PREFIX, std::process::id());
            let addr = node_addr(i)?;
            // Recorded before creation so a half-made namespace is removed too.
            lab.made.push(netns.clone());
            let tun = ns::create(&netns, addr)
                .with_context(|| format!("cannot set up namespace {netns}"))?;
            fwd_nodes.push(forwarder::ForwardNode {
                name: name.clone(),
                addr,
                tun,
                up: *up,
                down: *down,
            });
            lab.nodes.push(Node {
                name: name.clone(),
                netns,
                addr,
            });
        }
        lab.forwarder = Some(Forwarder::start(fwd_nodes, seed)?);
        tracing::info!("lab up: {} namespaces", lab.nodes.len());
        Ok(lab)
    }

    pub fn forwarder(&self) -> Result<&Forwarder> {
        self.forwarder
            .as_ref()
            .context("the link emulator is not running")
    }

    pub fn node(&self, name: &str) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("no node named {name}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first (they would otherwise outlive their namespace's
        // name), then the forwarder (closing the TUN devices), then names.
        for netns in &self.made {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", netns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill has no memory effects.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        self.forwarder.take();
        for netns in &self.made {
            ns::destroy(netns);
        }
        tracing::info!("lab down: {} namespaces removed", self.made.len());
    }
}
