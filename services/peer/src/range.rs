//! `Range: bytes=...` for one range, as a pure function (fuzzed).

/// What to send for a request on a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReply {
    /// 200 with the whole body: no Range, or one we ignore (several ranges, bad syntax).
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: a well-formed range that lies outside the body.
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, len: u64) -> RangeReply {
    let Some(h) = header else {
        return RangeReply::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeReply::Full;
    };
    if spec.contains(',') {
        // Multipart/byteranges is not worth it for a file server of whole files.
        return RangeReply::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReply::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match num(b) {
            Some(0) => RangeReply::Unsatisfiable,
            Some(_) if len == 0 => RangeReply::Unsatisfiable,
            Some(n) => RangeReply::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeReply::Full,
        },
        // bytes=N-: from N to the end.
        (false, true) => match num(a) {
            Some(start) if start < len => RangeReply::Partial {
                start,
                end: len - 1,
            },
            Some(_) => RangeReply::Unsatisfiable,
            None => RangeReply::Full,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= len {
                    RangeReply::Unsatisfiable
                } else {
                    RangeReply::Partial {
                        start,
                        end: end.min(len - 1),
                    }
                }
            }
            _ => RangeReply::Full,
        },
        (true, true) => RangeReply::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::RangeReply::*;
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse(None, 10), Full);
        assert_eq!(parse(Some("bytes=0-3"), 10), Partial { start: 0, end: 3 });
        assert_eq!(parse(Some("bytes=4-"), 10), Partial { start: 4, end: 9 });
        assert_eq!(parse(Some("bytes=-3"), 10), Partial { start: 7, end: 9 });
        assert_eq!(parse(Some("bytes=-30"), 10), Partial { start: 0, end: 9 });
        assert_eq!(parse(Some("bytes=5-100"), 10), Partial { start: 5, end: 9 });
        assert_eq!(parse(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse(Some("bytes=3-1"), 10), Full);
        assert_eq!(parse(Some("items=0-1"), 10), Full);
        assert_eq!(parse(Some("bytes=+1-2"), 10), Full);
        assert_eq!(parse(Some("bytes=99999999999999999999999-"), 10), Full);
    }
}
