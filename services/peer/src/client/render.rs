//! What the client shows: results on stdout (text, or JSON with `--json`) and how a download
//! goes on stderr (a bar on a terminal, lines otherwise, nothing with `--json`). The CLI and the
//! menu both print through here; a download's progress arrives as [`Event`]s whether this
//! process runs it or a peer streams it (`get --via`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::error::Error;
use crate::share::Digest;
use crate::swarm::Report;
use crate::tracker::Match;
use crate::wire::download::Event;
use crate::wire::upload::Uploaded;

/// Matches as text: a line per file, then a line per holder.
pub(crate) fn format_matches(matches: &[Match]) -> String {
    let mut s = String::new();
    for m in matches {
        s.push_str(&format!(
            "{}  {} bytes  sha256:{}\n",
            m.name, m.size, m.sha256
        ));
        for p in &m.holders {
            s.push_str(&format!("    {}  {}\n", p.peer_id, p.address));
        }
        if m.holder_count > m.holders.len() {
            s.push_str(&format!(
                "    ... {} holders in all ({} listed)\n",
                m.holder_count,
                m.holders.len()
            ));
        }
    }
    s
}

fn match_json(m: &Match) -> serde_json::Value {
    json!({
        "name": m.name, "size": m.size, "sha256": m.sha256, "peer_count": m.holder_count,
        "peers": m.holders.iter().map(|p| json!({"peer_id": p.peer_id, "address": p.address})).collect::<Vec<_>>(),
    })
}

/// A file that a get placed (or found already there).
pub(crate) struct Got<'a> {
    pub name: &'a str,
    pub size: u64,
    pub sha256: &'a Digest,
}

/// Prints results for people or, with `--json`, for scripts.
pub(crate) struct Output {
    pub json: bool,
}

impl Output {
    pub(crate) fn error(&self, e: &Error) {
        if self.json {
            println!(
                "{}",
                json!({ "error": e.to_string(), "kind": e.kind(), "exit_code": e.exit_code() })
            );
        }
        eprintln!("p2p-peer: {e}");
    }

    pub(crate) fn matches(&self, matches: &[Match]) {
        if self.json {
            let list: Vec<_> = matches.iter().map(match_json).collect();
            println!("{}", json!({ "files": list }));
            return;
        }
        print!("{}", format_matches(matches));
    }

    /// `what`: "downloaded" or "already present".
    pub(crate) fn got(&self, t: &Got<'_>, dest: &Path, what: &str) {
        if self.json {
            println!(
                "{}",
                json!({"name": t.name, "path": dest.display().to_string(), "size": t.size, "sha256": t.sha256, "status": what})
            );
        } else {
            println!(
                "{what}: {} ({} bytes, sha256 {} verified)",
                dest.display(),
                t.size,
                t.sha256
            );
        }
    }

    /// A peer downloaded the file into its share (`get --via` without `-o`).
    pub(crate) fn got_via(&self, t: &Got<'_>, status: &str, via: &str) {
        if self.json {
            println!(
                "{}",
                json!({"name": t.name, "size": t.size, "sha256": t.sha256, "status": status, "via": via})
            );
        } else {
            println!(
                "{status}: {} on {via} ({} bytes, sha256 {} verified)",
                t.name, t.size, t.sha256
            );
        }
    }

    pub(crate) fn uploaded(&self, up: &Uploaded, addr: &str) {
        if self.json {
            println!("{}", json!(up));
        } else {
            println!(
                "{}: {} ({} bytes, sha256 {}) on {addr}",
                up.word(),
                up.name,
                up.size,
                up.sha256
            );
        }
    }

    pub(crate) fn leaving(&self, addr: &str) {
        if self.json {
            println!("{}", json!({"peer": addr, "status": "leaving"}));
        } else {
            println!("{addr} is leaving the network");
        }
    }
}

/// Progress lines (without a terminal) are printed at most this often.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// How a download goes, on stderr: a bar on a terminal, else a line per event (progress at most
/// once a second); nothing with `--json`.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    name: String,
    /// The peer that downloads, when it is not this process (`get --via`).
    via: Option<String>,
    started: Mutex<Option<Instant>>,
    last_line: Mutex<Option<Instant>>,
}

impl Progress {
    pub(crate) fn new(json: bool, name: &str, via: Option<&str>) -> Self {
        Self {
            bar: (!json && std::io::stderr().is_terminal()).then(bar),
            quiet: json,
            name: name.to_owned(),
            via: via.map(str::to_owned),
            started: Mutex::new(None),
            last_line: Mutex::new(None),
        }
    }

    /// Clears the bar (the download ended, one way or another).
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn line(&self, s: String) {
        match &self.bar {
            Some(b) => b.println(s),
            None if !self.quiet => eprintln!("{s}"),
            None => {}
        }
    }

    fn line_due(&self) -> bool {
        match self.last_line.lock() {
            Ok(mut last) if last.is_none_or(|t| t.elapsed() >= LINE_EVERY) => {
                *last = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    pub(crate) fn show(&self, e: &Event) {
        match e {
            Event::Start { size, have, .. } => {
                let via = self.via.as_deref().unwrap_or("this peer");
                if let Some(b) = &self.bar {
                    b.set_length(*size);
                    b.set_position(*have);
                    b.set_message(format!("{} via {via}", self.name));
                } else {
                    self.line(format!(
                        "{via} downloading {} ({size} bytes{})",
                        self.name,
                        if *have > 0 {
                            format!(", {have} already verified")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
            Event::Source {
                peer,
                address,
                size,
                have,
            } => {
                if let Ok(mut s) = self.started.lock() {
                    s.get_or_insert_with(Instant::now);
                }
                if let Some(b) = &self.bar {
                    b.set_length(*size);
                    b.set_position(*have);
                    b.set_message(format!("{} from {peer}", self.name));
                } else {
                    self.line(format!(
                        "downloading {} ({size} bytes) from {peer} at {address}{}",
                        self.name,
                        if *have > 0 {
                            format!(", resuming at byte {have}")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
            Event::Progress {
                have,
                size,
                sources,
            } => {
                if let Some(b) = &self.bar {
                    b.set_length(*size);
                    b.set_position(*have);
                } else if !self.quiet && self.line_due() {
                    self.line(format!(
                        "{} {have}/{size} bytes from {sources} source(s)",
                        self.name
                    ));
                }
            }
            Event::SourceFailed {
                peer,
                address,
                reason,
                bad,
            } => self.line(format!(
                "{peer} ({address}): {}",
                Event::source_fate(reason, *bad)
            )),
            Event::Verified { .. } => {
                self.finish();
                let secs = self
                    .started
                    .lock()
                    .ok()
                    .and_then(|s| *s)
                    .map_or(0.0, |t| t.elapsed().as_secs_f64());
                if !self.quiet && self.bar.is_none() {
                    eprintln!("verified {} in {secs:.1}s", self.name);
                }
            }
            Event::Done { .. } | Event::Error { .. } => {}
        }
    }
}

impl Report for Progress {
    fn event(&self, e: Event) {
        self.show(&e);
    }
}

fn bar() -> ProgressBar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b
}
