//! PEM exactly as Go's `encoding/pem` writes and reads it (`docs/reference-provider.md` §2).
//!
//! Output: `-----BEGIN T-----\n`, headers only if the block has some, base64 wrapped at 64
//! columns, `-----END T-----\n`; no blank lines between blocks. Input is parsed as leniently as
//! Go's `pem.Decode`: text between blocks is skipped, `\r\n` line endings and blank or indented
//! base64 lines are accepted, and a block whose body is not base64 is skipped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::encoding::go_base64_decode;

/// Block type of a certificate.
pub const CERTIFICATE: &str = "CERTIFICATE";
/// Block type of a PKCS#8 private key.
pub const PRIVATE_KEY: &str = "PRIVATE KEY";
/// Block type of a SubjectPublicKeyInfo public key.
pub const PUBLIC_KEY: &str = "PUBLIC KEY";

/// One PEM block. Holds key material: never log it.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    /// The type after `BEGIN`, e.g. `CERTIFICATE`.
    pub kind: String,
    /// `Key: value` headers in input order (rare; RFC 1421 encrypted keys).
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({}, {} bytes)", self.kind, self.der.len())
    }
}

impl Block {
    /// A block without headers.
    pub fn new(kind: &str, der: Vec<u8>) -> Self {
        Block {
            kind: kind.to_owned(),
            headers: Vec::new(),
            der,
        }
    }
}

/// Appends one block to `out`, byte-identical to Go's `pem.EncodeToMemory`.
pub fn encode_into(out: &mut Vec<u8>, block: &Block) {
    out.extend_from_slice(b"-----BEGIN ");
    out.extend_from_slice(block.kind.as_bytes());
    out.extend_from_slice(b"-----\n");
    if !block.headers.is_empty() {
        // Go writes Proc-Type first, then the other headers sorted by key.
        let mut headers: Vec<&(String, String)> = block.headers.iter().collect();
        headers.sort_by(|a, b| (a.0 != "Proc-Type", &a.0).cmp(&(b.0 != "Proc-Type", &b.0)));
        for (k, v) in headers {
            out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
        }
        out.push(b'\n');
    }
    let body = STANDARD.encode(&block.der);
    for line in body.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END ");
    out.extend_from_slice(block.kind.as_bytes());
    out.extend_from_slice(b"-----\n");
}

/// One block as PEM text.
pub fn encode(kind: &str, der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, &Block::new(kind, der.to_vec()));
    out
}

/// Every block of `data` in order, as repeated Go `pem.Decode` calls find them.
pub fn decode_all(data: &[u8]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut rest = data;
    while let Some((block, after)) = decode_one(rest) {
        blocks.push(block);
        rest = after;
    }
    blocks
}

const BEGIN: &[u8] = b"-----BEGIN ";
const DASHES: &[u8] = b"-----";

/// The next line without its terminator and trailing spaces, tabs and `\r`, and the rest.
fn get_line(data: &[u8]) -> (&[u8], &[u8]) {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let end = line
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t' | b'\r'))
        .map_or(0, |i| i + 1);
    (&line[..end], rest)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Finds `-----BEGIN ` at the start of `data` or of a line.
fn find_begin(data: &[u8]) -> Option<usize> {
    if data.starts_with(BEGIN) {
        return Some(0);
    }
    find(data, b"\n-----BEGIN ").map(|i| i + 1)
}

fn decode_one(mut data: &[u8]) -> Option<(Block, &[u8])> {
    loop {
        let start = find_begin(data)?;
        let after_begin = &data[start + BEGIN.len()..];
        // Whatever happens next, a failed attempt resumes after this BEGIN.
        let resume = after_begin;
        let (type_line, mut rest) = get_line(after_begin);
        let Some(kind) = type_line.strip_suffix(DASHES) else {
            data = resume;
            continue;
        };
        let kind = String::from_utf8_lossy(kind).into_owned();

        // Headers: `Key: value` lines until the first line without a colon.
        let mut headers = Vec::new();
        loop {
            if rest.is_empty() {
                break;
            }
            let (line, next) = get_line(rest);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                break;
            };
            let key = String::from_utf8_lossy(line[..colon].trim_ascii()).into_owned();
            let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
            headers.push((key, value));
            rest = next;
        }

        // The END line, at the start of the body or of a line.
        let end_marker = [b"-----END ".as_slice(), kind.as_bytes(), DASHES].concat();
        let (body, after_end) = if headers.is_empty() && rest.starts_with(&end_marker) {
            (&rest[..0], &rest[end_marker.len()..])
        } else {
            let nl_end = [b"\n".as_slice(), &end_marker].concat();
            match find(rest, &nl_end) {
                Some(i) => (&rest[..i + 1], &rest[i + nl_end.len()..]),
                None => {
                    data = resume;
                    continue;
                }
            }
        };
        // The END line must end there (only trailing whitespace allowed).
        let (end_tail, after) = get_line(after_end);
        if !end_tail.is_empty() {
            data = resume;
            continue;
        }
        let cleaned: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'\t'))
            .collect();
        match go_base64_decode(&cleaned) {
            Ok(der) => return Some((Block { kind, headers, der }, after)),
            Err(_) => {
                data = resume;
                continue;
            }
        }
    }
}

/// Splits PEM text into (certificates, everything else), each block re-encoded, order kept.
/// The reference does this for its `.crt`/`.key` side files (`docs/reference-provider.md` §2.2).
pub fn split_cert_and_key(data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    for block in decode_all(data) {
        if block.kind == CERTIFICATE {
            encode_into(&mut certs, &block);
        } else {
            encode_into(&mut keys, &block);
        }
    }
    (certs, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: docs/reference-provider.md §2.4 (`cer` = "test")
    #[test]
    fn encodes_like_go() {
        assert_eq!(
            encode(CERTIFICATE, b"test"),
            b"-----BEGIN CERTIFICATE-----\ndGVzdA==\n-----END CERTIFICATE-----\n"
        );
        // 48 bytes make exactly one 64-column line, 49 spill into a second.
        let one = String::from_utf8(encode("X", &[0u8; 48])).unwrap();
        assert_eq!(one.lines().nth(1).unwrap().len(), 64);
        assert_eq!(one.lines().count(), 3);
        let two = String::from_utf8(encode("X", &[0u8; 49])).unwrap();
        assert_eq!(
            two.lines().map(str::len).collect::<Vec<_>>(),
            [17, 64, 4, 15]
        );
        assert_eq!(encode("X", b""), b"-----BEGIN X-----\n-----END X-----\n");
    }

    #[test]
    fn headers_like_go() {
        let block = Block {
            kind: "RSA PRIVATE KEY".into(),
            headers: vec![
                ("DEK-Info".into(), "AES-128-CBC,00".into()),
                ("Proc-Type".into(), "4,ENCRYPTED".into()),
            ],
            der: b"k".to_vec(),
        };
        let mut out = Vec::new();
        encode_into(&mut out, &block);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\naw==\n-----END RSA PRIVATE KEY-----\n"
        );
        let back = decode_all(&out);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].der, b"k");
        assert_eq!(back[0].headers.len(), 2);
    }

    #[test]
    fn decodes_leniently_like_go() {
        let text = "junk before\r\n-----BEGIN A-----\r\nYW\r\n  Jj\r\n-----END A-----\r\n\
                    between\n-----BEGIN B-----\n!!!!\n-----END B-----\n\
                    -----BEGIN C-----\n-----END C-----\n-----BEGIN D-----\nZA==\n-----END D-----";
        let blocks = decode_all(text.as_bytes());
        let got: Vec<(&str, &[u8])> = blocks
            .iter()
            .map(|b| (b.kind.as_str(), b.der.as_slice()))
            .collect();
        // B's body is not base64, so Go skips it.
        assert_eq!(got, [("A", b"abc".as_slice()), ("C", b""), ("D", b"d")]);
        assert!(decode_all(b"no pem here").is_empty());
        assert!(
            decode_all(b"-----BEGIN X-----\nZA==\n").is_empty(),
            "no END"
        );
    }
}
