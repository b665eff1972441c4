//! Exact file names. A Linux file name is up to 255 arbitrary bytes (anything but `/` and NUL),
//! which the UTF-8 text of `Upload-Metadata` cannot carry: `filename-bytes` carries the bytes
//! percent-encoded, beside a lossy `filename` for display. Pure functions, like the parsers.

/// Most bytes in a file name (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("'%' at {0} is not followed by two hex digits")]
    BadEscape(usize),
    #[error("byte {byte:#04x} at {at} must be percent-encoded")]
    NotEncoded { at: usize, byte: u8 },
}

/// RFC 3986 unreserved characters: the only bytes sent as themselves.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Every byte but the unreserved ASCII characters as `%XX`, upper-case hex.
pub fn percent_encode_name(name: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(name.len() * 3);
    for &b in name {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

/// The bytes of [`percent_encode_name`]'s form. Strict: a `%` without two hex digits, or any
/// byte other than an unreserved character or an escape, is an error. Hex digits of either case
/// are accepted (RFC 3986 holds them equivalent).
pub fn percent_decode_name(encoded: &str) -> Result<Vec<u8>, NameError> {
    let s = encoded.as_bytes();
    let hex = |i: usize| s.get(i).and_then(|&c| char::from(c).to_digit(16));
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                // Two hex digits make at most 255.
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                }
                _ => return Err(NameError::BadEscape(i)),
            },
            b if unreserved(b) => {
                out.push(b);
                i += 1;
            }
            byte => return Err(NameError::NotEncoded { at: i, byte }),
        }
    }
    Ok(out)
}

/// A name for people to read, sent as `filename` beside the exact bytes: invalid UTF-8 becomes
/// U+FFFD, as do the characters a server refuses in a display name (control characters, `/`
/// and `\`, which Linux allows), and the result is cut at a character boundary to at most
/// [`NAME_MAX`] bytes.
pub fn display_name(name: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(name);
    let mut out = String::with_capacity(lossy.len().min(NAME_MAX));
    for c in lossy.chars() {
        let c = if c.is_control() || c == '/' || c == '\\' {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        };
        if out.len() + c.len_utf8() > NAME_MAX {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift64*): the crate has no property-test library.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    fn canonical(encoded: &str) -> bool {
        let s = encoded.as_bytes();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'%' {
                let upper_hex = |c: &u8| c.is_ascii_digit() || (b'A'..=b'F').contains(c);
                match s.get(i + 1..i + 3) {
                    Some(d) if d.iter().all(upper_hex) => i += 3,
                    _ => return false,
                }
            } else if unreserved(s[i]) {
                i += 1;
            } else {
                return false;
            }
        }
        true
    }

    #[test]
    fn arbitrary_bytes_round_trip() {
        for b in 0..=255u8 {
            let e = percent_encode_name(&[b]);
            assert_eq!(e.len(), if unreserved(b) { 1 } else { 3 }, "{b:#04x}");
            assert_eq!(percent_decode_name(&e).unwrap(), [b]);
        }
        for seed in 0..2000u64 {
            let bytes = noise(seed, (seed % 256) as usize);
            let e = percent_encode_name(&bytes);
            assert!(canonical(&e), "{e}");
            assert_eq!(percent_decode_name(&e).unwrap(), bytes, "seed {seed}");
        }
        assert_eq!(percent_encode_name(b""), "");
        assert_eq!(
            percent_encode_name(b"IMG_01-a.b~c d/%\xff\x00"),
            "IMG_01-a.b~c%20d%2F%25%FF%00"
        );
    }

    #[test]
    fn decoding_is_strict() {
        for bad in ["%", "%4", "a%2", "%G0", "%4g", "%%41", "abc%"] {
            assert!(
                matches!(percent_decode_name(bad), Err(NameError::BadEscape(_))),
                "{bad}"
            );
        }
        for bad in ["a b", "a/b", "é", "a+b", "a%20b c", "\0"] {
            assert!(
                matches!(percent_decode_name(bad), Err(NameError::NotEncoded { .. })),
                "{bad}"
            );
        }
        assert_eq!(percent_decode_name("%ff%41").unwrap(), b"\xffA");
        assert_eq!(percent_decode_name("").unwrap(), b"");
    }

    #[test]
    fn display_names_are_lossy_short_and_plain() {
        assert_eq!(display_name("été.jpg".as_bytes()), "été.jpg");
        assert_eq!(display_name(b"a\nb\\c\x7f"), "a\u{fffd}b\u{fffd}c\u{fffd}");
        // 124 bytes that are not UTF-8 grow to three bytes each: cut at a character.
        let raw: Vec<u8> = (0x80..=0xfb).collect();
        assert_eq!(raw.len(), 124);
        let shown = display_name(&raw);
        assert_eq!(shown.len(), 255);
        assert!(shown.chars().all(|c| c == '\u{fffd}'));
        // Two-byte characters: 127 of them fit, not half of the 128th.
        let long = "é".repeat(200);
        assert_eq!(display_name(long.as_bytes()), "é".repeat(127));
        assert_eq!(display_name(&[b'a'; 300]).len(), 255);
    }
}
