//! What the client shows: results on stdout (text, or JSON with `--json`) and how a download
//! goes on stderr (a bar on a terminal, lines otherwise, nothing with `--json`). The CLI and the
//! menu both print through here; a download's progress arrives as [`Event`]s whether this
//! process runs it or a peer streams it (`get --via`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::error::Error;
use crate::share::Digest;
use crate::swarm::Report;
use crate::tracker::Match;
use crate::transfer::ledger::Ledger;
use crate::transfer::tally::{Tally, View};
use crate::wire::download::Event;
use crate::wire::upload::Uploaded;

/// A byte count for people: "1.50 MiB" (binary units), "312 B".
pub(crate) fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Matches as text: a line per file, then a line per holder.
pub(crate) fn format_matches(matches: &[Match]) -> String {
    let mut s = String::new();
    for m in matches {
        s.push_str(&format!(
            "{}  {}  sha256:{}\n",
            m.name,
            size(m.size),
            m.sha256
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
    /// How the download went, when this process made one.
    pub run: Option<View>,
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
            let mut v = json!({"name": t.name, "path": dest.display().to_string(), "size": t.size, "sha256": t.sha256, "status": what});
            // The same account the progress showed: kept bytes apart from this run's.
            if let Some(run) = &t.run {
                v["kept"] = json!(run.kept);
                v["this_run"] = json!(run.this_run);
                v["seconds"] = json!((run.elapsed_secs * 1000.0).round() / 1000.0);
            }
            println!("{v}");
        } else {
            println!(
                "{what}: {} ({}, sha256 {} verified)",
                dest.display(),
                size(t.size),
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
                "{status}: {} on {via} ({}, sha256 {} verified)",
                t.name,
                size(t.size),
                t.sha256
            );
        }
    }

    pub(crate) fn uploaded(&self, up: &Uploaded, addr: &str) {
        if self.json {
            println!("{}", json!(up));
        } else {
            println!(
                "{}: {} ({}, sha256 {}) on {addr}",
                up.word(),
                up.name,
                size(up.size),
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

/// A size for people, with the exact count when it is not already that: "5.00 MiB (5242880
/// bytes)", "15 bytes".
pub(crate) fn size(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format!("{} ({n} bytes)", human_bytes(n))
    }
}

/// "from 1 peer", "from 3 peers".
fn from_peers(n: usize) -> String {
    format!("from {n} peer{}", if n == 1 { "" } else { "s" })
}

/// The rate part of a line: "2.50 MiB/s over 5 s, eta 3 s".
fn rate_words(v: &View) -> String {
    let eta = v
        .eta_secs
        .map_or_else(|| "-".to_owned(), |s| format!("{s} s"));
    format!(
        "{}/s over {} s, eta {eta}",
        human_bytes(v.rate),
        v.rate_window_secs
    )
}

/// How a download goes, on stderr: a bar on a terminal, else a line per event (progress at most
/// once a second); nothing with `--json`. Every number comes from the download's [`Tally`], as
/// on the peer's page and API: kept bytes are not this run's, rates are over the same window.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    name: String,
    /// The peer that downloads, when it is not this process (`get --via`).
    via: Option<String>,
    tally: Mutex<Tally>,
    /// What each source sent this process (its own download; none with `--via`).
    ledger: Option<Arc<Ledger>>,
    last_line: Mutex<Option<Instant>>,
}

impl Progress {
    pub(crate) fn new(
        json: bool,
        name: &str,
        via: Option<&str>,
        ledger: Option<Arc<Ledger>>,
    ) -> Self {
        Self {
            bar: (!json && std::io::stderr().is_terminal()).then(bar),
            quiet: json,
            name: name.to_owned(),
            via: via.map(str::to_owned),
            tally: Mutex::new(Tally::new(0, 0, Instant::now())),
            ledger,
            last_line: Mutex::new(None),
        }
    }

    /// The download as it stands.
    pub(crate) fn view(&self) -> View {
        self.tally
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .view(Instant::now())
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

    /// Takes `e` into the tally (with the sources' bytes from the ledger); the view after.
    fn observe(&self, e: &Event) -> View {
        let now = Instant::now();
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        t.observe(e, now);
        if let Some(ledger) = &self.ledger {
            for a in t.source_addresses() {
                let received = ledger.received(&a);
                t.received(&a, received, now);
            }
        }
        t.view(now)
    }

    fn show_bar(&self, b: &ProgressBar, v: &View) {
        b.set_length(v.size);
        b.set_position(v.have);
        let sources = if self.via.is_some() {
            String::new()
        } else {
            format!(" {}", from_peers(v.sources.len()))
        };
        b.set_message(format!("{}{sources}", self.name));
        b.set_prefix(rate_words(v));
    }

    pub(crate) fn show(&self, e: &Event) {
        let v = self.observe(e);
        let kept = |v: &View| {
            if v.kept > 0 {
                format!(", {} kept from before", human_bytes(v.kept))
            } else {
                String::new()
            }
        };
        match e {
            Event::Start { size, .. } => {
                let who = match &self.via {
                    Some(via) => format!("{via} downloading"),
                    None => "downloading".to_owned(),
                };
                match &self.bar {
                    Some(b) => self.show_bar(b, &v),
                    None => self.line(format!(
                        "{who} {} ({}{})",
                        self.name,
                        self::size(*size),
                        kept(&v)
                    )),
                }
            }
            Event::Source {
                peer,
                address,
                size,
                ..
            } => match &self.bar {
                Some(b) => self.show_bar(b, &v),
                None => self.line(format!(
                    "downloading {} ({}{}): source {peer} at {address}",
                    self.name,
                    self::size(*size),
                    kept(&v)
                )),
            },
            Event::Progress { .. } => {
                if let Some(b) = &self.bar {
                    self.show_bar(b, &v);
                } else if !self.quiet && self.line_due() {
                    let sources = match (&self.via, e) {
                        (Some(_), Event::Progress { sources, .. }) => from_peers(*sources as usize),
                        _ => from_peers(v.sources.len()),
                    };
                    self.line(format!(
                        "{} {} of {} {sources}, {}",
                        self.name,
                        human_bytes(v.have),
                        human_bytes(v.size),
                        rate_words(&v)
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
                if !self.quiet && self.bar.is_none() {
                    let secs = v.elapsed_secs.max(0.001);
                    eprintln!(
                        "verified {} in {secs:.1} s ({} this run, {}/s on average{})",
                        self.name,
                        human_bytes(v.this_run),
                        human_bytes((v.this_run as f64 / secs) as u64),
                        kept(&v)
                    );
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

/// The bar: indicatif's own rate and ETA are not used (they count a resume's kept bytes as
/// this run's); the tally's go in the prefix.
fn bar() -> ProgressBar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {prefix}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}
