//! The substring index: names are lower-cased once, on write, and cut into byte trigrams. A
//! query of three bytes or more reads the posting list of its rarest trigram (every match holds
//! all of the query's trigrams) instead of lower-casing and scanning every name. Trigrams are
//! taken over UTF-8 bytes: a substring of a valid UTF-8 string is a byte substring, so no match
//! is lost, and the Redis scripts (Lua strings are bytes) cut names the same way.

/// The form substring search compares: Unicode lower case.
pub fn lower(name: &str) -> String {
    name.to_lowercase()
}

/// Distinct byte trigrams of an already lower-cased string, sorted.
pub fn trigrams(lower: &str) -> Vec<[u8; 3]> {
    let mut grams: Vec<[u8; 3]> = lower
        .as_bytes()
        .windows(3)
        .map(|w| [w[0], w[1], w[2]])
        .collect();
    grams.sort_unstable();
    grams.dedup();
    grams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigrams_are_distinct_and_cover_multibyte_names() {
        assert_eq!(trigrams("aaaa"), vec![*b"aaa"]);
        assert!(trigrams("ab").is_empty());
        // "é" is two bytes: "xé" has one trigram, spanning both.
        assert_eq!(trigrams(&lower("XÉ")), vec![[b'x', 0xc3, 0xa9]]);
    }
}
