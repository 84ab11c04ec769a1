//! The Lua scripts, one per rule that must be atomic (`lua/common.lua`, prepended to each,
//! holds the key layout and the index upkeep they share), with how their arguments are sent
//! and their answers read. Digests go to the scripts as hex, as every tracker version sends
//! them: replicas of different versions share one store during an upgrade.

use std::sync::LazyLock;

use p2p_common::Digest;
use redis::Script;

use crate::store::names::lower;
use crate::store::{FileEntry, PartialEntry, StoreError};

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/common.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

pub(super) static REGISTER: LazyLock<Script> = script!("register.lua");
pub(super) static RENEW: LazyLock<Script> = script!("renew.lua");
pub(super) static ANNOUNCE: LazyLock<Script> = script!("announce.lua");
pub(super) static LEAVE: LazyLock<Script> = script!("leave.lua");
pub(super) static EXPIRE: LazyLock<Script> = script!("expire.lua");

/// The scripts' answers: "ok", "ok:N", or why nothing was written.
pub(super) fn outcome(id: &str, answer: &str) -> Result<Option<u64>, StoreError> {
    let (word, n) = match answer.split_once(':') {
        Some((w, n)) => (
            w,
            Some(
                n.parse::<u64>()
                    .map_err(|_| StoreError::Corrupt(format!("script answered {answer:?}")))?,
            ),
        ),
        None => (answer, None),
    };
    match (word, n) {
        ("ok", n) => Ok(n),
        ("unknown", None) => Err(StoreError::UnknownPeer(id.to_owned())),
        ("wrong", None) => Err(StoreError::WrongSecret(id.to_owned())),
        ("taken", Some(left)) => Err(StoreError::IdTaken {
            id: id.to_owned(),
            remaining_ms: left,
        }),
        _ => Err(StoreError::Corrupt(format!("script answered {answer:?}"))),
    }
}

/// Script arguments of several shapes, pushed in order.
pub(super) trait ArgList: Sync {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>);
}

impl ArgList for &str {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(*self);
    }
}

impl ArgList for u64 {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(*self);
    }
}

impl ArgList for usize {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(*self);
    }
}

/// Per file: name, size, sha256, lower-cased name, pieces_root ("" for none).
impl ArgList for Vec<FileEntry> {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for f in self {
            inv.arg(&f.name)
                .arg(f.size)
                .arg(f.sha256.to_hex())
                .arg(lower(&f.name))
                .arg(Digest::hex_or_empty(f.pieces_root.as_ref()));
        }
    }
}

/// Per holding: sha256, size, pieces_root.
impl ArgList for Vec<PartialEntry> {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for p in self {
            inv.arg(p.sha256.to_hex())
                .arg(p.size)
                .arg(Digest::hex_or_empty(p.pieces_root.as_ref()));
        }
    }
}

impl ArgList for Vec<String> {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for s in self {
            inv.arg(s);
        }
    }
}

impl ArgList for Vec<Digest> {
    fn push_args(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for d in self {
            inv.arg(d.to_hex());
        }
    }
}
