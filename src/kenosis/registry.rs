//! A tracker's side of Kenosis: announce itself in the DHT under the
//! service id and under sha1(key) for every key it serves, renew before the
//! entries age out, and keep the DHT nodes it knows for the dfile.
//!
//! Keys are learned from the `Host` header of successful announces
//! ([`KeyBook::hook`]): `<key>.bt.<domain>[:port]` names the key. Anyone
//! can write any `Host`, so keys are bounded in number
//! (`Limits::kenosis_max_keys`), registered at a bounded rate
//! (`Limits::kenosis_registrations_per_sec`), and dropped when no announce
//! has named them for [`KEY_IDLE`].

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wire::kenosis::{service_id, KenosisHost, Key};
use wire::Limits;

use super::node::DhtNode;
use crate::tracker::{AnnounceHook, AnnounceSeen, DhtNodeBook};

/// Registrations are renewed this often (DHT nodes keep announces for
/// about half an hour and drop the least recent first).
pub const RENEW_EVERY: Duration = Duration::from_secs(10 * 60);
/// A failed registration is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// A key no announce has named for this long is no longer registered.
pub const KEY_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
/// How often the known DHT nodes are copied for the dfile.
const NODES_EVERY: Duration = Duration::from_secs(60);
/// Most registrations in flight at once. With mainline 8.0.1, one node
/// running 20 announce queries at once left about half of them stored
/// nowhere a lookup finds them (200-node test network); 2 and 4 stored all.
const MAX_IN_FLIGHT: usize = 4;
/// Most nodes kept in the dfile.
const MAX_SAVED_NODES: usize = 200;

/// What one registration is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Service,
    Key(Key),
}

impl Target {
    fn id(&self) -> [u8; 20] {
        match self {
            Target::Service => service_id(),
            Target::Key(k) => k.target(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct KeyState {
    last_seen: Instant,
    /// When the last registration was sent; `None`: not yet (or failed).
    registered: Option<Instant>,
    in_flight: bool,
}

/// The keys a tracker serves, shared between the announce hook (which adds
/// them) and the registry task (which registers them).
pub struct KeyBook {
    keys: Mutex<HashMap<Target, KeyState>>,
    wake: Notify,
    max_keys: usize,
}

impl KeyBook {
    pub fn new(limits: &Limits) -> Arc<KeyBook> {
        let mut keys = HashMap::new();
        keys.insert(
            Target::Service,
            KeyState {
                last_seen: Instant::now(),
                registered: None,
                in_flight: false,
            },
        );
        Arc::new(KeyBook {
            keys: Mutex::new(keys),
            wake: Notify::new(),
            max_keys: limits.kenosis_max_keys,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Target, KeyState>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a key named by an announce; a new one wakes the registry.
    pub fn saw_host(&self, host: &str) {
        let Ok(name) = KenosisHost::parse(host) else {
            return;
        };
        let now = Instant::now();
        let mut keys = self.lock();
        let target = Target::Key(name.key);
        if let Some(state) = keys.get_mut(&target) {
            state.last_seen = now;
            return;
        }
        if keys.len() > self.max_keys {
            return;
        }
        keys.insert(
            target,
            KeyState {
                last_seen: now,
                registered: None,
                in_flight: false,
            },
        );
        drop(keys);
        self.wake.notify_one();
    }

    /// The tracker hook that feeds this book (cheap: a parse and a lock).
    pub fn hook(self: &Arc<Self>) -> AnnounceHook {
        let book = Arc::clone(self);
        AnnounceHook(Arc::new(move |seen: &AnnounceSeen<'_>| {
            if let Some(host) = seen.host {
                book.saw_host(host);
            }
        }))
    }

    /// Keys registered at least once (for tests and logs).
    pub fn registered_keys(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|(t, s)| match t {
                Target::Key(k) if s.registered.is_some() => Some(k.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Up to `budget` targets due for (re-)registration, marked in flight;
    /// forgets idle keys.
    fn due(&self, now: Instant, budget: usize) -> Vec<Target> {
        let mut keys = self.lock();
        keys.retain(|t, s| {
            *t == Target::Service || s.in_flight || now.duration_since(s.last_seen) < KEY_IDLE
        });
        let mut due: Vec<(Option<Instant>, Target)> = keys
            .iter()
            .filter(|(_, s)| {
                !s.in_flight
                    && s.registered
                        .is_none_or(|at| now.duration_since(at) >= RENEW_EVERY)
            })
            .map(|(t, s)| (s.registered, t.clone()))
            .collect();
        // Never-registered first, then the oldest registrations.
        due.sort_by_key(|(at, _)| *at);
        due.truncate(budget);
        for (_, t) in &due {
            if let Some(s) = keys.get_mut(t) {
                s.in_flight = true;
            }
        }
        due.into_iter().map(|(_, t)| t).collect()
    }

    fn finished(&self, target: &Target, ok: bool, now: Instant) {
        if let Some(s) = self.lock().get_mut(target) {
            s.in_flight = false;
            s.registered = if ok {
                Some(now)
            } else {
                // Due again after RETRY_AFTER.
                now.checked_sub(RENEW_EVERY.saturating_sub(RETRY_AFTER))
            };
        }
    }
}

/// The running registry; stop it with [`Registry::stop`] before the
/// tracker's final save so the freshest nodes reach the dfile.
pub struct Registry {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Registry {
    /// Starts registering `port` (the tracker's HTTP port) for the keys in
    /// `book`, copying known nodes into `nodes` now and then.
    pub fn start(
        node: DhtNode,
        port: u16,
        book: Arc<KeyBook>,
        nodes: Option<Arc<DhtNodeBook>>,
        limits: &Limits,
    ) -> Registry {
        let cancel = CancellationToken::new();
        let per_sec = usize::try_from(limits.kenosis_registrations_per_sec.max(1)).unwrap_or(1);
        let task = tokio::spawn(run(node, port, book, nodes, per_sec, cancel.clone()));
        Registry { cancel, task }
    }

    /// Stops registering and copies the known nodes a last time.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    node: DhtNode,
    port: u16,
    book: Arc<KeyBook>,
    nodes: Option<Arc<DhtNodeBook>>,
    per_sec: usize,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut save_nodes = tokio::time::interval(NODES_EVERY);
    save_nodes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flying: JoinSet<(Target, anyhow::Result<Duration>)> = JoinSet::new();
    // The budget refills every second; a burst of new keys waits its turn.
    let mut budget = per_sec;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => budget = per_sec,
            _ = book.wake.notified() => {}
            Some(done) = flying.join_next() => {
                if let Ok((target, result)) = done {
                    report(&target, &result, port);
                    book.finished(&target, result.is_ok(), Instant::now());
                }
                continue;
            }
            _ = save_nodes.tick() => {
                if let Some(book) = &nodes {
                    copy_nodes(&node, book).await;
                }
                continue;
            }
        }
        let room = MAX_IN_FLIGHT.saturating_sub(flying.len()).min(budget);
        for target in book.due(Instant::now(), room) {
            budget = budget.saturating_sub(1);
            let node = node.clone();
            flying.spawn(async move {
                let result = node.announce(target.id(), port).await;
                (target, result)
            });
        }
    }
    flying.abort_all();
    if let Some(book) = &nodes {
        copy_nodes(&node, book).await;
    }
}

fn report(target: &Target, result: &anyhow::Result<Duration>, port: u16) {
    let what = match target {
        Target::Service => "the Kenosis service".to_owned(),
        Target::Key(k) => format!("key {k}"),
    };
    match result {
        Ok(took) => tracing::info!("registered port {port} under {what} in the DHT ({took:?})"),
        Err(e) => tracing::warn!("cannot register under {what} (will retry): {e:#}"),
    }
}

async fn copy_nodes(node: &DhtNode, book: &DhtNodeBook) {
    let mut known: Vec<SocketAddrV4> = node.known_nodes().await;
    known.truncate(MAX_SAVED_NODES);
    if !known.is_empty() {
        book.set(known);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_kenosis_hosts_only_and_are_bounded() {
        let limits = Limits {
            kenosis_max_keys: 3,
            ..Limits::DEFAULT
        };
        let book = KeyBook::new(&limits);
        for host in [
            "abc.bt.kenosisp2p.org:6969",
            "ABC.bt.kenosisp2p.org",
            "tracker.example.org:6969",
            "127.0.0.1:6969",
            "a_b.bt.x.org",
            "",
            "def.bt.x.org",
            "ghi.bt.x.org",
            "jkl.bt.x.org",
            "mno.bt.x.org",
        ] {
            book.saw_host(host);
        }
        let now = Instant::now();
        let due = book.due(now, 100);
        // The service, abc (once), def, ghi: the bound stops the rest.
        assert_eq!(due.len(), 4, "{due:?}");
        assert!(due.contains(&Target::Service));
        assert!(book.due(now, 100).is_empty(), "in flight twice");
        for t in &due {
            book.finished(t, true, now);
        }
        assert_eq!(book.registered_keys().len(), 3);
        assert!(book.due(now + Duration::from_secs(60), 100).is_empty());
        assert_eq!(book.due(now + RENEW_EVERY, 100).len(), 4);
    }

    #[test]
    fn failures_retry_soon_and_budget_is_respected() {
        let book = KeyBook::new(&Limits::DEFAULT);
        for i in 0..10 {
            book.saw_host(&format!("k{i}.bt.kenosisp2p.org"));
        }
        let now = Instant::now();
        let first = book.due(now, 4);
        assert_eq!(first.len(), 4);
        book.finished(&first[0], false, now);
        assert!(!book
            .due(now + Duration::from_secs(1), 100)
            .contains(&first[0]));
        assert!(book.due(now + RETRY_AFTER, 100).contains(&first[0]));
    }
}
