//! What cancel, pause and resume act on: the downloads the daemon runs, by digest. A download
//! registers when it starts (after the tracker named its digest) and watches its command; the
//! routes (`DELETE /downloads/{sha256}`, `.../pause`, `.../resume`) send one. Two downloads of
//! one digest (they share one partial file) share one command. Each download's [`Tally`] is
//! here too: `GET /api/transfers` lists them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use crate::share::Digest;
use crate::transfer::tally::{Tally, View};

/// What a running download is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Run,
    /// Stop fetching, keep what is verified, wait for [`Command::Run`].
    Pause,
    /// Stop for good; `keep`: leave the partial download for a later resume.
    Cancel {
        keep: bool,
    },
}

/// A download's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Running,
    Paused,
    Cancelling,
}

impl State {
    pub(crate) fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Cancelling => "cancelling",
        }
    }
}

impl From<Command> for State {
    fn from(c: Command) -> Self {
        match c {
            Command::Run => State::Running,
            Command::Pause => State::Paused,
            Command::Cancel { .. } => State::Cancelling,
        }
    }
}

struct Entry {
    command: watch::Sender<Command>,
    /// Downloads of this digest running now, by their key: name and tally.
    users: Vec<(u64, String, Arc<Mutex<Tally>>)>,
}

/// The daemon's downloads in progress, by digest.
#[derive(Default)]
pub(crate) struct Controls {
    running: Mutex<HashMap<Digest, Entry>>,
    next: AtomicU64,
}

/// One download in progress as `GET /api/transfers` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Listed {
    pub name: String,
    pub sha256: Digest,
    pub state: State,
    #[serde(flatten)]
    pub view: View,
}

/// No download of that digest runs here (the routes' 404).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotRunning;

impl Controls {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Entry>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A download of `sha256` as `name` starts, with its `tally`: its commands, until the
    /// returned registration drops.
    pub(crate) fn register(
        self: &Arc<Self>,
        sha256: Digest,
        name: &str,
        tally: Arc<Mutex<Tally>>,
    ) -> Registration {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let mut running = self.running();
        let entry = running.entry(sha256).or_insert_with(|| Entry {
            command: watch::Sender::new(Command::Run),
            users: Vec::new(),
        });
        entry.users.push((key, name.to_owned(), tally));
        Registration {
            commands: entry.command.subscribe(),
            controls: Arc::clone(self),
            sha256,
            key,
        }
    }

    /// Every download in progress, oldest first.
    pub(crate) fn list(&self) -> Vec<Listed> {
        let now = Instant::now();
        let running = self.running();
        let mut all: Vec<(u64, Listed)> = running
            .iter()
            .flat_map(|(sha256, e)| {
                let state = State::from(*e.command.borrow());
                e.users.iter().map(move |(key, name, tally)| {
                    let view = tally.lock().unwrap_or_else(|p| p.into_inner()).view(now);
                    (
                        *key,
                        Listed {
                            name: name.clone(),
                            sha256: *sha256,
                            state,
                            view,
                        },
                    )
                })
            })
            .collect();
        all.sort_by_key(|(k, _)| *k);
        all.into_iter().map(|(_, l)| l).collect()
    }

    /// Tells every download of `sha256` to do `command`; its state after.
    pub(crate) fn send(&self, sha256: &Digest, command: Command) -> Result<State, NotRunning> {
        let running = self.running();
        let entry = running.get(sha256).ok_or(NotRunning)?;
        // A cancel is final: a pause or resume arriving after it changes nothing.
        entry.command.send_if_modified(|c| {
            let change = !matches!(c, Command::Cancel { .. }) && *c != command;
            if change {
                *c = command;
            }
            change
        });
        Ok(State::from(*entry.command.borrow()))
    }

    /// The state of the download of `sha256`, if one runs.
    pub(crate) fn state(&self, sha256: &Digest) -> Option<State> {
        self.running()
            .get(sha256)
            .map(|e| State::from(*e.command.borrow()))
    }
}

/// One download's place in [`Controls`]: its commands; dropping it takes it out.
pub(crate) struct Registration {
    pub commands: watch::Receiver<Command>,
    controls: Arc<Controls>,
    sha256: Digest,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut running = self.controls.running();
        if let Some(e) = running.get_mut(&self.sha256) {
            e.users.retain(|(k, _, _)| *k != self.key);
            if e.users.is_empty() {
                running.remove(&self.sha256);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn commands_reach_every_download_of_a_digest_until_the_last_ends() {
        let c = Arc::new(Controls::default());
        let d: Digest = D.parse().unwrap();
        assert_eq!(c.send(&d, Command::Pause), Err(NotRunning));
        let tally = || Arc::new(Mutex::new(Tally::new(10, 0, Instant::now())));
        let a = c.register(d, "a", tally());
        let b = c.register(d, "b", tally());
        let names: Vec<String> = c.list().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(c.send(&d, Command::Pause), Ok(State::Paused));
        assert_eq!(*a.commands.borrow(), Command::Pause);
        assert_eq!(*b.commands.borrow(), Command::Pause);
        assert_eq!(c.send(&d, Command::Run), Ok(State::Running));
        assert_eq!(
            c.send(&d, Command::Cancel { keep: true }),
            Ok(State::Cancelling)
        );
        // Final: a resume after a cancel does not undo it.
        assert_eq!(c.send(&d, Command::Run), Ok(State::Cancelling));
        drop(a);
        assert_eq!(c.state(&d), Some(State::Cancelling));
        drop(b);
        assert_eq!(c.state(&d), None);
        // A new download of the digest starts afresh.
        let _n = c.register(d, "n", tally());
        assert_eq!(c.state(&d), Some(State::Running));
    }
}
