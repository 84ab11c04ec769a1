//! `POST /upload`: a multipart field `file`; the answer names what was stored.

use serde::{Deserialize, Serialize};

use super::Placed;
use crate::share::Digest;

/// The answer to an upload that was stored (201) or was already there (200).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Uploaded {
    pub name: String,
    pub size: u64,
    pub sha256: Digest,
    /// Absent from the answers of peers older than the word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Placed>,
}

impl Uploaded {
    /// Whether this answers the upload of `name` with `size` bytes; `Err` says what it answers
    /// instead.
    pub fn check(&self, name: &str, size: u64) -> Result<(), String> {
        if self.name == name && self.size == size {
            Ok(())
        } else {
            Err(format!(
                "{:?} ({} bytes, sha256 {}) instead of {name:?} ({size} bytes)",
                self.name, self.size, self.sha256
            ))
        }
    }

    /// The word shown for it ("uploaded" for an older peer that said none).
    pub(crate) fn word(&self) -> &'static str {
        self.status.map_or("uploaded", Placed::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_must_name_the_file_sent() {
        let json = r#"{"name":"a","size":3,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","status":"created"}"#;
        let up: Uploaded = serde_json::from_str(json).unwrap();
        assert_eq!(up.status, Some(Placed::Created));
        assert!(up.check("a", 3).is_ok());
        assert!(up.check("b", 3).is_err());
        assert!(up.check("a", 4).is_err());
        assert_eq!(serde_json::to_string(&up).unwrap(), json);
        let old: Uploaded =
            serde_json::from_str(&json.replace(r#","status":"created""#, "")).unwrap();
        assert_eq!(old.word(), "uploaded");
        // Upper case is not a digest: one identity has one spelling.
        assert!(serde_json::from_str::<Uploaded>(&json.replace("e3b0", "E3B0")).is_err());
    }
}
