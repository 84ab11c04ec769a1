//! The lease secret on disk, owner-only, so that a restarted peer can take its id back at once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const LEASE_FILE: &str = "lease.json";

/// The lease secret, kept so that a restarted peer can take its id back at once.
#[derive(Serialize, Deserialize)]
struct SavedLease {
    peer_id: String,
    secret: String,
}

/// The state directory holds the lease secret: owner-only, fixed at start-up for files written
/// by older versions with the default umask.
#[cfg(unix)]
pub(crate) fn protect_state(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [(dir.to_path_buf(), 0o700), (dir.join(LEASE_FILE), 0o600)] {
        match std::fs::metadata(&path) {
            Ok(m) if m.permissions().mode() & 0o777 != mode => {
                if let Err(e) =
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot restrict permissions");
                }
            }
            _ => {}
        }
    }
}

#[cfg(not(unix))]
pub(crate) fn protect_state(_: &Path) {}

/// Writes the lease file owner-only from the first byte (a temporary file renamed into place).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The secret saved for `peer_id` in the state directory `dir` (empty when none is, or it is
/// another id's), after fixing the directory's permissions ([`protect_state`]).
pub(super) async fn load_secret(dir: PathBuf, peer_id: &str) -> String {
    let _ = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || protect_state(&dir)
    })
    .await;
    match tokio::fs::read(dir.join(LEASE_FILE)).await {
        Ok(bytes) => serde_json::from_slice::<SavedLease>(&bytes)
            .ok()
            .filter(|l| l.peer_id == peer_id)
            .map(|l| l.secret)
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Saves `secret` as `peer_id`'s lease in the state directory `dir`; a failure is only logged.
pub(super) async fn save_secret(dir: &Path, peer_id: &str, secret: &str) {
    let path = dir.join(LEASE_FILE);
    let lease = SavedLease {
        peer_id: peer_id.to_owned(),
        secret: secret.to_owned(),
    };
    let result = match serde_json::to_vec(&lease) {
        Ok(bytes) => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || write_private(&p, &bytes))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        }
        Err(e) => Err(std::io::Error::other(e)),
    };
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot save lease");
    }
}
