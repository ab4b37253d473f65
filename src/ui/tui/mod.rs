//! `get -g` / `--ui`: the full-screen terminal interface (ratatui over
//! crossterm), like the seeds' `-g` progress interface: the torrent's
//! progress and piece map, peers with their kind, rates and ratio; `l`
//! (or Tab, or Ctrl-Z as in the seed) switches to the log and back; `q`,
//! Esc or Ctrl-C quits. The terminal is restored on every way out,
//! including a panic (ratatui's hook) and SIGTERM.

mod draw;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use crate::session::TorrentHandle;
pub use draw::{piece_map, View};

/// How often the screen is redrawn (and status sampled).
const FRAME: Duration = Duration::from_millis(250);

/// How the interface ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user quit (q, Esc, Ctrl-C) or a signal arrived.
    Quit,
    /// The download finished and `--exit-on-complete` was given.
    Complete,
    /// `--seed-ratio`'s share was uploaded.
    SeedRatio,
}

/// Puts the terminal back (cooked mode, main screen, cursor) when dropped,
/// and sends log lines to stderr again.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
        crate::logging::capture_stop();
    }
}

/// Stops the key-reading thread when dropped.
struct KeyThread {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for KeyThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // It wakes at least every 100 ms to look at the flag.
            let _ = t.join();
        }
    }
}

/// crossterm's reads block, so keys come from a thread that polls with a
/// short timeout (it notices `stop` within 100 ms).
fn spawn_keys(tx: mpsc::UnboundedSender<KeyEvent>) -> KeyThread {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                        if tx.send(key).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
    KeyThread {
        stop,
        thread: Some(thread),
    }
}

enum Action {
    Quit,
    Toggle,
    None,
}

fn action(key: &KeyEvent) -> Action {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Action::Quit,
        // Raw mode turns Ctrl-C into a key, not SIGINT.
        KeyCode::Char('c') if ctrl => Action::Quit,
        KeyCode::Char('l') | KeyCode::Char('L') | KeyCode::Tab => Action::Toggle,
        KeyCode::Char('z') if ctrl => Action::Toggle,
        _ => Action::None,
    }
}

/// Runs the interface until the user quits, a signal arrives, (with
/// `exit_on_complete`) the download finishes, or `--seed-ratio` is reached. Log lines should already be
/// captured ([`crate::logging::capture_start`]) so startup lines show in
/// the log view.
pub async fn run(
    handle: &TorrentHandle,
    saveas: &str,
    listen: &str,
    exit_on_complete: bool,
) -> Result<Exit> {
    crate::logging::capture_start();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut terminal = ratatui::try_init().context("cannot start the terminal interface")?;
    let _restore = Restore;
    let (tx, mut keys) = mpsc::unbounded_channel();
    let _keys = spawn_keys(tx);
    let mut view = View::Progress;
    let mut tick = tokio::time::interval(FRAME);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sigterm.recv() => return Ok(Exit::Quit),
            _ = tokio::signal::ctrl_c() => return Ok(Exit::Quit),
            key = keys.recv() => match key.as_ref().map(action) {
                Some(Action::Quit) | None => return Ok(Exit::Quit),
                Some(Action::Toggle) => {
                    view = match view {
                        View::Progress => View::Log,
                        View::Log => View::Progress,
                    };
                }
                Some(Action::None) => {}
            },
        }
        let status = handle.status();
        if exit_on_complete && status.is_complete() {
            return Ok(Exit::Complete);
        }
        if handle.shared.upload.reached() {
            return Ok(Exit::SeedRatio);
        }
        let have = handle.shared.lock().picker.done().clone();
        let height = terminal.size().map(|s| s.height).unwrap_or(50);
        let log = crate::logging::captured_tail(usize::from(height));
        let snapshot = draw::Snapshot {
            status: &status,
            have: &have,
            saveas,
            listen,
            log: &log,
            view,
        };
        terminal
            .draw(|frame| draw::draw(frame, &snapshot))
            .context("cannot draw the terminal interface")?;
    }
}
