//! `objectEncoding` decoding (`docs/reference-provider.md` §2.5), applied last to a secret's bytes.
//!
//! The decoders follow Go's `encoding/base64` (`StdEncoding`) and `encoding/hex` exactly, because
//! the reference uses them: base64 is the standard alphabet with padding required, `\r` and `\n`
//! are skipped anywhere, any other byte outside the alphabet fails, and non-zero trailing bits
//! are accepted. Hex accepts both cases and reports a bad byte before an odd length. Error
//! offsets are Go's, so a user can compare them; the offending byte itself is never echoed
//! because it is part of a secret.

use crate::config::ObjectEncoding;

use super::ConvertError;

/// Applies `encoding` to `bytes`.
pub fn decode(encoding: ObjectEncoding, bytes: Vec<u8>) -> Result<Vec<u8>, ConvertError> {
    match encoding {
        ObjectEncoding::Utf8 => Ok(bytes),
        ObjectEncoding::Base64 => {
            go_base64_decode(&bytes).map_err(|offset| ConvertError::InvalidBase64 { offset })
        }
        ObjectEncoding::Hex => go_hex_decode(&bytes).map_err(|e| match e {
            HexError::InvalidByte(offset) => ConvertError::InvalidHexByte { offset },
            HexError::OddLength => ConvertError::OddLengthHex,
        }),
    }
}

const PAD: u8 = b'=';

fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn is_newline(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// Standard base64 with padding, as Go's `base64.StdEncoding.DecodeString`.
/// On failure returns Go's `CorruptInputError` offset.
pub(crate) fn go_base64_decode(src: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        // One quantum of up to four sextets.
        let mut buf = [0u8; 4];
        let mut j = 0;
        let mut dlen = 4;
        let mut trailing_garbage = None;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                // Padding is required: a short final quantum is corrupt.
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = sextet(c) {
                buf[j] = v;
                j += 1;
                continue;
            }
            if is_newline(c) {
                continue;
            }
            if c != PAD {
                return Err(si - 1);
            }
            // Padding starts at position j of the quantum.
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    // A second '=' must follow, possibly after newlines.
                    while si < src.len() && is_newline(src[si]) {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != PAD {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && is_newline(src[si]) {
                si += 1;
            }
            if si < src.len() {
                trailing_garbage = Some(si);
            }
            dlen = j;
            break;
        }
        let val = (u32::from(buf[0]) << 18)
            | (u32::from(buf[1]) << 12)
            | (u32::from(buf[2]) << 6)
            | u32::from(buf[3]);
        let bytes = [(val >> 16) as u8, (val >> 8) as u8, val as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if let Some(offset) = trailing_garbage {
            return Err(offset);
        }
        if dlen < 4 {
            return Ok(out);
        }
    }
}

enum HexError {
    InvalidByte(usize),
    OddLength,
}

fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Go's `hex.DecodeString`: an invalid byte is reported before an odd length.
fn go_hex_decode(src: &[u8]) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::with_capacity(src.len() / 2);
    let mut pairs = src.chunks_exact(2);
    for (i, pair) in pairs.by_ref().enumerate() {
        let hi = nibble(pair[0]).ok_or(HexError::InvalidByte(2 * i))?;
        let lo = nibble(pair[1]).ok_or(HexError::InvalidByte(2 * i + 1))?;
        out.push(hi << 4 | lo);
    }
    if let [last] = pairs.remainder() {
        return Err(match nibble(*last) {
            None => HexError::InvalidByte(src.len() - 1),
            Some(_) => HexError::OddLength,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Result<Vec<u8>, usize> {
        go_base64_decode(s.as_bytes())
    }

    // reference: docs/reference-provider.md §2.5 (unit-test vectors)
    #[test]
    fn reference_vectors() {
        let cases: [(&str, ObjectEncoding, &str); 4] = [
            ("abcdefg", ObjectEncoding::Utf8, "abcdefg"),
            ("TestSecret1", ObjectEncoding::Utf8, "TestSecret1"),
            (
                "QmFzZTY0RW5jb2RlZFN0cmluZw==",
                ObjectEncoding::Base64,
                "Base64EncodedString",
            ),
            (
                "486578456E636F646564537472696E67",
                ObjectEncoding::Hex,
                "HexEncodedString",
            ),
        ];
        for (input, enc, want) in cases {
            let got = decode(enc, input.as_bytes().to_vec()).unwrap();
            assert_eq!(got, want.as_bytes(), "{input} {enc:?}");
        }
    }

    // reference: docs/reference-provider.md §2.5 (standard alphabet, padding required)
    #[test]
    fn base64_matches_go_std_encoding() {
        assert_eq!(b64("").unwrap(), b"");
        assert_eq!(b64("QUJD").unwrap(), b"ABC");
        assert_eq!(b64("QUI=").unwrap(), b"AB");
        assert_eq!(b64("QQ==").unwrap(), b"A");
        // Go skips \r and \n anywhere, including inside the padding.
        assert_eq!(b64("QU\r\nJD\n").unwrap(), b"ABC");
        assert_eq!(b64("QQ=\n=").unwrap(), b"A");
        // Go's StdEncoding is not strict: non-zero trailing bits are accepted.
        assert_eq!(b64("QR==").unwrap(), b"A");
        // Offsets are Go's CorruptInputError values.
        assert_eq!(b64("!QUJD"), Err(0));
        assert_eq!(b64("QUJD QUJD"), Err(4));
        assert_eq!(b64("QUI"), Err(0), "missing padding");
        assert_eq!(b64("QUJDQQ"), Err(4), "missing padding");
        assert_eq!(b64("QQ="), Err(3), "half padding");
        assert_eq!(b64("Q==="), Err(1));
        assert_eq!(b64("QUI=QUJD"), Err(4), "data after padding");
        assert_eq!(b64("QQ=x"), Err(2));
        // URL-safe alphabet is not the standard one.
        assert_eq!(b64("-_8="), Err(0));
    }

    #[test]
    fn hex_matches_go() {
        assert_eq!(go_hex_decode(b"aBcD").ok(), Some(vec![0xab, 0xcd]));
        assert!(matches!(go_hex_decode(b"abc"), Err(HexError::OddLength)));
        // Go reports the bad byte before the odd length.
        assert!(matches!(
            go_hex_decode(b"abcg"),
            Err(HexError::InvalidByte(3))
        ));
        assert!(matches!(
            go_hex_decode(b"abg"),
            Err(HexError::InvalidByte(2))
        ));
    }

    #[test]
    fn errors_are_actionable_and_do_not_echo_the_value() {
        let e = decode(ObjectEncoding::Base64, b"s3cr3t!".to_vec()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "value is not valid base64 (illegal base64 data at input byte 6): \
             store it base64-encoded or remove objectEncoding"
        );
        let e = decode(ObjectEncoding::Hex, b"zz".to_vec()).unwrap_err();
        assert!(e.to_string().contains("input byte 0"), "{e}");
        assert!(!e.to_string().contains("zz"));
        let e = decode(ObjectEncoding::Hex, b"abc".to_vec()).unwrap_err();
        assert!(e.to_string().contains("odd length"), "{e}");
    }
}
