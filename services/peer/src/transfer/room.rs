//! What downloads may take of their process and of the disk: `transfer.max_concurrent_downloads`
//! and `transfer.min_free_space`. One rule ([`Room::rule`]) decides, before a download starts
//! ([`Room::admit`], [`Room::check`]) and again when its data file is allocated
//! ([`Slot::grow`]): a download may take the bytes of its file that are not on disk yet only
//! while the reserve stays free.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::limit::{fmt_bytes, parse_bytes};
use crate::share::Digest;

/// `transfer.min_free_space`: bytes ("1GiB") or a share of the file system's size ("5%") that
/// downloads leave free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeSpace {
    Bytes(u64),
    /// Whole percent, 0 to 100.
    Percent(u8),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad free space {0:?}: expected bytes with an optional unit (B, KB, KiB, MB, MiB, GB, GiB, \
     TB, TiB), e.g. \"1GiB\", or a whole percentage of the file system, e.g. \"5%\""
)]
pub struct BadFreeSpace(pub String);

impl FromStr for FreeSpace {
    type Err = BadFreeSpace;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadFreeSpace(s.chars().take(40).collect());
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: u8 = p.trim().parse().map_err(|_| bad())?;
            return if p <= 100 {
                Ok(FreeSpace::Percent(p))
            } else {
                Err(bad())
            };
        }
        parse_bytes(t).map(FreeSpace::Bytes).ok_or_else(bad)
    }
}

impl fmt::Display for FreeSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FreeSpace::Percent(p) => write!(f, "{p}%"),
            FreeSpace::Bytes(n) => fmt_bytes(n, f),
        }
    }
}

impl Serialize for FreeSpace {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FreeSpace {
    /// Strings as documented; a bare integer is taken as bytes too.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FreeSpace;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"1GiB\" or a percentage such as \"5%\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FreeSpace, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FreeSpace, E> {
                Ok(FreeSpace::Bytes(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FreeSpace, E> {
                u64::try_from(v)
                    .map(FreeSpace::Bytes)
                    .map_err(|_| E::custom(BadFreeSpace(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a download may not start or grow; its message names the configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key that refused it, as its metric label: `max_concurrent_downloads` or
    /// `min_free_space`.
    pub reason: &'static str,
    pub message: String,
}

/// What the file system holding a download's directory has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Disk {
    /// Bytes an unprivileged writer may still allocate.
    pub free: u64,
    pub total: u64,
    /// The file system (`st_dev`), so that downloads elsewhere are not counted against it.
    pub dev: u64,
}

impl Disk {
    /// The file system of `dir`, or of its nearest existing ancestor (`.partial/` may not exist
    /// yet). Blocking.
    pub(crate) fn of(dir: &Path) -> std::io::Result<Disk> {
        let mut missing = None;
        for at in dir.ancestors() {
            let at = if at.as_os_str().is_empty() {
                Path::new(".")
            } else {
                at
            };
            match std::fs::metadata(at) {
                Ok(meta) => {
                    let s = rustix::fs::statvfs(at)?;
                    return Ok(Disk {
                        free: s.f_bavail.saturating_mul(s.f_frsize),
                        total: s.f_blocks.saturating_mul(s.f_frsize),
                        dev: meta.dev(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(missing.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()))
    }
}

/// Whether `bytes` more fit in `dir`'s file system with `reserve` kept free (what an upload
/// is held to, as a download is); the message names the key. A file system that cannot be
/// asked refuses nothing: writing will tell. Blocking.
pub(crate) fn check_upload(dir: &Path, bytes: u64, reserve: FreeSpace) -> Result<(), String> {
    let Ok(disk) = Disk::of(dir) else {
        return Ok(());
    };
    let keep = match reserve {
        FreeSpace::Bytes(n) => n,
        FreeSpace::Percent(p) => (u128::from(disk.total) * u128::from(p) / 100) as u64,
    };
    if bytes.saturating_add(keep) > disk.free {
        return Err(format!(
            "not enough free space for an upload of {bytes} bytes: {} bytes are free and transfer.min_free_space ({reserve}) keeps {keep} bytes free",
            disk.free
        ));
    }
    Ok(())
}

/// One download that holds a place: its file and what of it is not allocated yet.
#[derive(Debug)]
struct Running {
    id: u64,
    dir: PathBuf,
    sha256: Digest,
    size: u64,
    dev: Option<u64>,
}

impl Running {
    /// Bytes of the file still to be allocated: a preallocated data file (or a finished copy)
    /// has them all; a sparse one, or none yet, owes the rest. Blocking.
    fn owed(&self) -> u64 {
        owed(&self.dir, &self.sha256, self.size)
    }
}

/// Bytes of a `size`-byte download of `sha256` in `dir` that are not on disk yet. Blocking.
fn owed(dir: &Path, sha256: &Digest, size: u64) -> u64 {
    let present = ["data", "done"]
        .iter()
        .filter_map(|ext| std::fs::symlink_metadata(dir.join(format!("{sha256}.{ext}"))).ok())
        .filter(|m| m.is_file())
        // Allocated blocks, not the length: a sparse file of the full length holds nothing yet.
        .map(|m| m.blocks().saturating_mul(512))
        .max()
        .unwrap_or(0);
    size.saturating_sub(present)
}

#[derive(Debug, Default)]
struct State {
    running: Vec<Running>,
    next_id: u64,
}

/// The downloads of one process and what they may take; shared by every download of the
/// process (one per [`crate::swarm::Swarm`]).
#[derive(Debug)]
pub struct Room {
    max_downloads: usize,
    reserve: FreeSpace,
    state: Mutex<State>,
}

impl Room {
    pub fn new(section: &super::TransferSection) -> Arc<Self> {
        Arc::new(Room {
            max_downloads: section.max_concurrent_downloads,
            reserve: section.min_free_space,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a download of `size` bytes of `sha256` into `dir` may start now, without taking
    /// a place (the daemon asks before it answers, so that a refusal is its HTTP status).
    /// Blocking.
    pub(crate) fn check(&self, dir: &Path, sha256: &Digest, size: u64) -> Result<(), Refusal> {
        let state = self.state();
        self.rule(&state, None, dir, sha256, size, &Disk::of(dir))
    }

    /// Takes a place for a download of `size` bytes of `sha256` into `dir`, or refuses it.
    /// Blocking.
    pub(crate) fn admit(
        self: &Arc<Self>,
        dir: &Path,
        sha256: &Digest,
        size: u64,
    ) -> Result<Slot, Refusal> {
        let mut state = self.state();
        let disk = Disk::of(dir);
        self.rule(&state, None, dir, sha256, size, &disk)?;
        let id = state.next_id;
        state.next_id += 1;
        state.running.push(Running {
            id,
            dir: dir.to_path_buf(),
            sha256: *sha256,
            size,
            dev: disk.as_ref().ok().map(|d| d.dev),
        });
        Ok(Slot {
            room: Arc::clone(self),
            id,
        })
    }

    /// The one rule. A new download (`me` is `None`) needs a free place among
    /// `max_concurrent_downloads`; every download needs the bytes of its file that are not on
    /// disk yet, plus those the other downloads on the same file system still owe, plus the
    /// reserve, to be free. A file system that cannot be asked refuses nothing: writing will
    /// tell.
    fn rule(
        &self,
        state: &State,
        me: Option<u64>,
        dir: &Path,
        sha256: &Digest,
        size: u64,
        disk: &std::io::Result<Disk>,
    ) -> Result<(), Refusal> {
        if me.is_none() && state.running.len() >= self.max_downloads {
            return Err(Refusal {
                reason: "max_concurrent_downloads",
                message: format!(
                    "{} downloads are running, the most transfer.max_concurrent_downloads allows; try again when one ends",
                    state.running.len()
                ),
            });
        }
        let disk = match disk {
            Ok(d) => *d,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the free space; not checked");
                return Ok(());
            }
        };
        let need = owed(dir, sha256, size);
        let others: u64 = state
            .running
            .iter()
            // A second download of the same file into the same place (waiting for the first's
            // lock) writes the same file: counted once, as `need`.
            .filter(|r| Some(r.id) != me && r.dev == Some(disk.dev))
            .filter(|r| !(r.dir == dir && &r.sha256 == sha256))
            .map(Running::owed)
            .sum();
        let reserve = match self.reserve {
            FreeSpace::Bytes(n) => n,
            FreeSpace::Percent(p) => (u128::from(disk.total) * u128::from(p) / 100) as u64,
        };
        let wanted = need.saturating_add(others).saturating_add(reserve);
        if wanted > disk.free {
            return Err(Refusal {
                reason: "min_free_space",
                message: format!(
                    "not enough free space in {}: this download needs {need} more bytes{}, {} bytes are free and transfer.min_free_space ({}) keeps {reserve} bytes free",
                    dir.display(),
                    if others > 0 {
                        format!(" and running downloads {others}")
                    } else {
                        String::new()
                    },
                    disk.free,
                    self.reserve,
                ),
            });
        }
        Ok(())
    }
}

/// A download's place among the running ones; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    room: Arc<Room>,
    id: u64,
}

impl Slot {
    /// Runs `allocate` (which gives the download's file its size on disk) if the rule lets the
    /// download grow to `size` bytes now; the place then counts that size. Allocations of one
    /// process take turns, so each sees the space the ones before it took. Blocking.
    pub(crate) fn grow<T>(&self, size: u64, allocate: impl FnOnce() -> T) -> Result<T, Refusal> {
        let mut state = self.room.state();
        let Some(me) = state.running.iter_mut().find(|r| r.id == self.id) else {
            return Ok(allocate());
        };
        me.size = size;
        let (dir, sha256) = (me.dir.clone(), me.sha256);
        let disk = Disk::of(&dir);
        self.room
            .rule(&state, Some(self.id), &dir, &sha256, size, &disk)?;
        Ok(allocate())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.room.state().running.retain(|r| r.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::digest::sha256;
    use crate::transfer::TransferSection;

    fn room(max: usize, reserve: &str) -> Arc<Room> {
        Room::new(&TransferSection {
            max_concurrent_downloads: max,
            min_free_space: reserve.parse().unwrap(),
            ..TransferSection::default()
        })
    }

    #[test]
    fn free_space_parses_sizes_and_percentages() {
        assert_eq!("1GiB".parse(), Ok(FreeSpace::Bytes(1 << 30)));
        assert_eq!(" 500 MB ".parse(), Ok(FreeSpace::Bytes(500_000_000)));
        assert_eq!("0".parse(), Ok(FreeSpace::Bytes(0)));
        assert_eq!("5%".parse(), Ok(FreeSpace::Percent(5)));
        assert_eq!("100%".parse(), Ok(FreeSpace::Percent(100)));
        for bad in ["101%", "-1%", "1.5%", "GiB", "1 GiBs", "", "99999999999TiB"] {
            assert!(bad.parse::<FreeSpace>().is_err(), "{bad:?}");
        }
        for s in ["1GiB", "5%", "0", "1000", "3TiB"] {
            let v: FreeSpace = s.parse().unwrap();
            assert_eq!(v.to_string().parse::<FreeSpace>(), Ok(v));
        }
        let v: FreeSpace = serde_json::from_str("1048576").unwrap();
        assert_eq!(v, FreeSpace::Bytes(1 << 20));
    }

    #[test]
    fn places_are_counted_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let r = room(2, "0");
        let (a, b) = (sha256(b"a"), sha256(b"b"));
        let first = r.admit(dir.path(), &a, 10).unwrap();
        let _second = r.admit(dir.path(), &b, 10).unwrap();
        let e = r.admit(dir.path(), &a, 10).unwrap_err();
        assert_eq!(e.reason, "max_concurrent_downloads");
        assert!(
            e.message.contains("transfer.max_concurrent_downloads"),
            "{e:?}"
        );
        assert_eq!(r.check(dir.path(), &a, 10).unwrap_err(), e);
        drop(first);
        assert!(r.check(dir.path(), &a, 10).is_ok());
        // A running download may still grow: it has its place.
        assert!(_second.grow(10, || ()).is_ok());
        // Growing past what the disk has is refused, and the place counts the new size.
        let free = Disk::of(dir.path()).unwrap().free;
        let e = _second.grow(free + 1, || ()).unwrap_err();
        assert_eq!(e.reason, "min_free_space");
        assert!(r.check(dir.path(), &a, free).is_err());
    }

    #[test]
    fn the_reserve_counts_what_is_not_on_disk_yet() {
        let dir = tempfile::tempdir().unwrap();
        let free = Disk::of(dir.path()).unwrap().free;
        let d = sha256(b"x");
        // All of the disk kept free: nothing may be downloaded, not even an empty file.
        let e = room(4, "100%").check(dir.path(), &d, 1).unwrap_err();
        assert_eq!(e.reason, "min_free_space");
        assert!(
            e.message.contains("transfer.min_free_space (100%)"),
            "{e:?}"
        );
        // More than is free.
        let e = room(4, "0").check(dir.path(), &d, free * 2).unwrap_err();
        assert_eq!(e.reason, "min_free_space");
        assert!(room(4, "0").check(dir.path(), &d, 4096).is_ok());
        // A data file already allocated is not asked for again: a resume needs no more room.
        let data = dir.path().join(format!("{d}.data"));
        let f = std::fs::File::create(&data).unwrap();
        f.set_len(1 << 20).unwrap();
        assert_eq!(
            owed(dir.path(), &d, 1 << 20),
            1 << 20,
            "sparse: nothing allocated"
        );
        std::fs::write(&data, vec![1u8; 1 << 20]).unwrap();
        assert_eq!(owed(dir.path(), &d, 1 << 20), 0);
        // A directory that does not exist yet is judged by its nearest ancestor.
        let deeper = dir.path().join("no/such/.partial");
        assert!(room(4, "0").check(&deeper, &d, 4096).is_ok());
    }

    #[test]
    fn what_running_downloads_still_owe_is_not_free() {
        let dir = tempfile::tempdir().unwrap();
        let free = Disk::of(dir.path()).unwrap().free;
        let r = room(4, "0");
        // Admitted, not allocated yet: it owes most of the free space.
        let big = r.admit(dir.path(), &sha256(b"big"), free / 4 * 3).unwrap();
        let e = r
            .admit(dir.path(), &sha256(b"other"), free / 2)
            .unwrap_err();
        assert_eq!(e.reason, "min_free_space");
        assert!(e.message.contains("running downloads"), "{e:?}");
        // The same file into the same place is one file, not two.
        assert!(r.admit(dir.path(), &sha256(b"big"), free / 4 * 3).is_ok());
        drop(big);
        assert!(r.admit(dir.path(), &sha256(b"other"), free / 2).is_ok());
    }
}
