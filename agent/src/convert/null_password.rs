//! Reads PFX files protected by the *absent* password, the convention of Windows/.NET exports
//! (and of the Windows-CSP PFX in the reference's own tests, §2.6 PFX case 1).
//!
//! An empty password can enter the PKCS#12 KDF two ways: as the BMPString terminator
//! `00 00` (OpenSSL, `p12-keystore`) or as no bytes at all (Windows). Go's `x/crypto/pkcs12`,
//! which the reference uses, tries the first and then the second; `p12-keystore` only knows the
//! first, so this module covers the second for what Go reads: a SHA-1 MAC and
//! PBE-SHA1-3DES or PBE-SHA1-RC2-40 safes and key bags. It is only consulted after
//! `p12-keystore` has failed, and only if the MAC verifies with no password bytes.
//!
//! The ASN.1 is read with a minimal DER reader (definite lengths; constructed OCTET STRINGs
//! are joined), enough for the few fixed PKCS#12 structures.

use cbc::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use der::{Encode, asn1::ObjectIdentifier};
use hmac::{KeyInit, Mac};
use pkcs12::kdf::{Pkcs12KeyType, derive_key};

use super::pkcs12::{
    Contents, OID_CERT_BAG, OID_DATA, OID_ENCRYPTED_DATA, OID_PBE_SHA1_3DES, OID_SHA1,
    OID_SHROUDED_KEY_BAG, OID_X509_CERTIFICATE, tlv,
};

/// No password bytes at all.
const NO_PASSWORD: &[u8] = &[];

// Only the reader needs these; the OIDs shared with the writer live in `pkcs12`.
const OID_PBE_SHA1_RC2_40: &str = "1.2.840.113549.1.12.1.6";
const OID_KEY_BAG: &str = "1.2.840.113549.1.12.10.1.1";

/// Refuse absurd iteration counts before running the KDF (as `p12-keystore` does).
const MAX_ITERATIONS: u64 = 1_000_000;

/// Why the null-password reading failed; only used to decide and for tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Not the structure we expect.
    Malformed,
    /// No MAC, or it does not verify with the null password.
    Mac,
    /// A cipher or digest Go's reader does not support either.
    Unsupported,
    /// Decryption failed (bad padding).
    Decrypt,
}

type Result<T> = std::result::Result<T, Error>;

/// One DER element.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
}

/// Reads one element from the front of `data`.
fn read(data: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = data.split_first().ok_or(Error::Malformed)?;
    if tag & 0x1f == 0x1f {
        return Err(Error::Malformed); // high tag numbers do not occur in PKCS#12
    }
    let (&first, rest) = rest.split_first().ok_or(Error::Malformed)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(Error::Malformed); // indefinite or oversized length
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(Error::Malformed);
    }
    Ok((
        Tlv {
            tag,
            content: &rest[..len],
        },
        &rest[len..],
    ))
}

/// All elements of a constructed value's content.
fn children(content: &[u8]) -> Result<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (t, r) = read(rest)?;
        out.push(t);
        rest = r;
    }
    Ok(out)
}

fn expect(t: Tlv<'_>, tag: u8) -> Result<&[u8]> {
    if t.tag == tag {
        Ok(t.content)
    } else {
        Err(Error::Malformed)
    }
}

fn seq(t: Tlv<'_>) -> Result<Vec<Tlv<'_>>> {
    children(expect(t, 0x30)?)
}

fn is_oid(t: Tlv<'_>, dotted: &str) -> bool {
    let want = ObjectIdentifier::new_unwrap(dotted)
        .to_der()
        .expect("static OID encodes");
    t.tag == 0x06 && want[2..] == *t.content
}

/// An OCTET STRING's bytes, primitive or constructed (`tag` is the primitive form's tag).
fn octets(t: Tlv<'_>, tag: u8) -> Result<Vec<u8>> {
    if t.tag == tag {
        return Ok(t.content.to_vec());
    }
    if t.tag == tag | 0x20 {
        let mut out = Vec::new();
        for c in children(t.content)? {
            out.extend(octets(c, 0x04)?);
        }
        return Ok(out);
    }
    Err(Error::Malformed)
}

fn uint(t: Tlv<'_>) -> Result<u64> {
    let c = expect(t, 0x02)?;
    if c.is_empty() || c.len() > 8 || c[0] & 0x80 != 0 {
        return Err(Error::Malformed);
    }
    Ok(c.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn iterations(t: Tlv<'_>) -> Result<i32> {
    let n = uint(t)?;
    if n == 0 || n > MAX_ITERATIONS {
        return Err(Error::Unsupported);
    }
    Ok(n as i32)
}

/// `[0] EXPLICIT` wrapper's single element.
fn explicit0(t: Tlv<'_>) -> Result<Tlv<'_>> {
    let (inner, rest) = read(expect(t, 0xa0)?)?;
    if !rest.is_empty() {
        return Err(Error::Malformed);
    }
    Ok(inner)
}

/// Decodes `pfx` with the null password.
pub fn decode(pfx: &[u8]) -> Result<Contents> {
    decode_with(pfx, NO_PASSWORD)
}

/// Decodes `pfx` with the KDF password bytes `password` (a BMPString, or nothing).
pub(super) fn decode_with(pfx: &[u8], password: &[u8]) -> Result<Contents> {
    let (top, _) = read(pfx)?;
    let pfx = seq(top)?;
    let [version, auth_safe, mac_data, ..] = pfx[..] else {
        return Err(Error::Mac); // Go requires a MAC as well
    };
    if uint(version)? != 3 {
        return Err(Error::Malformed);
    }
    let auth_safe = seq(auth_safe)?;
    let [content_type, content] = auth_safe[..] else {
        return Err(Error::Malformed);
    };
    if !is_oid(content_type, OID_DATA) {
        return Err(Error::Unsupported);
    }
    let auth_safe_bytes = octets(explicit0(content)?, 0x04)?;
    verify_mac(mac_data, &auth_safe_bytes, password)?;

    let mut contents = Contents {
        keys: Vec::new(),
        certs: Vec::new(),
    };
    let (safes, _) = read(&auth_safe_bytes)?;
    for ci in seq(safes)? {
        let ci = seq(ci)?;
        let [content_type, content] = ci[..] else {
            return Err(Error::Malformed);
        };
        let safe_contents = if is_oid(content_type, OID_DATA) {
            octets(explicit0(content)?, 0x04)?
        } else if is_oid(content_type, OID_ENCRYPTED_DATA) {
            let encrypted_data = seq(explicit0(content)?)?;
            let [_version, eci, ..] = encrypted_data[..] else {
                return Err(Error::Malformed);
            };
            let eci = seq(eci)?;
            let [_data, alg, encrypted] = eci[..] else {
                return Err(Error::Malformed);
            };
            pbe_decrypt(alg, &octets(encrypted, 0x80)?, password)?
        } else {
            return Err(Error::Unsupported);
        };
        let (bags, _) = read(&safe_contents)?;
        for bag in seq(bags)? {
            read_bag(bag, &mut contents, password)?;
        }
    }
    Ok(contents)
}

fn read_bag(bag: Tlv<'_>, contents: &mut Contents, password: &[u8]) -> Result<()> {
    let bag = seq(bag)?;
    let [bag_id, value, ..] = bag[..] else {
        return Err(Error::Malformed);
    };
    let value = explicit0(value)?;
    if is_oid(bag_id, OID_CERT_BAG) {
        let cert_bag = seq(value)?;
        let [cert_id, cert] = cert_bag[..] else {
            return Err(Error::Malformed);
        };
        if !is_oid(cert_id, OID_X509_CERTIFICATE) {
            return Err(Error::Unsupported);
        }
        contents.certs.push(octets(explicit0(cert)?, 0x04)?);
    } else if is_oid(bag_id, OID_SHROUDED_KEY_BAG) {
        let epki = seq(value)?;
        let [alg, data] = epki[..] else {
            return Err(Error::Malformed);
        };
        contents
            .keys
            .push(pbe_decrypt(alg, &octets(data, 0x04)?, password)?);
    } else if is_oid(bag_id, OID_KEY_BAG) {
        // An unencrypted PKCS#8 key: the SEQUENCE as it was.
        contents.keys.push(tlv(value.tag, value.content));
    }
    // Other bags (CRLs, secrets) carry nothing we write.
    Ok(())
}

fn verify_mac(mac_data: Tlv<'_>, data: &[u8], password: &[u8]) -> Result<()> {
    let mac_data = seq(mac_data)?;
    let (digest_info, salt, iters) = match mac_data[..] {
        [d, s] => (d, s, 1),
        [d, s, i] => (d, s, iterations(i)?),
        _ => return Err(Error::Malformed),
    };
    let salt = expect(salt, 0x04)?;
    let digest_info = seq(digest_info)?;
    let [alg, digest] = digest_info[..] else {
        return Err(Error::Malformed);
    };
    let digest = expect(digest, 0x04)?;
    let alg = seq(alg)?;
    let alg_oid = *alg.first().ok_or(Error::Malformed)?;
    let ok = if is_oid(alg_oid, OID_SHA1) {
        let key = derive_key::<sha1_pkcs12::Sha1>(password, salt, Pkcs12KeyType::Mac, iters, 20);
        let mut mac = hmac::Hmac::<sha1_pkcs12::Sha1>::new_from_slice(&key)
            .expect("HMAC accepts any key length");
        mac.update(data);
        mac.verify_slice(digest).is_ok()
    } else {
        return Err(Error::Unsupported);
    };
    if ok { Ok(()) } else { Err(Error::Mac) }
}

fn pbe_decrypt(alg: Tlv<'_>, data: &[u8], password: &[u8]) -> Result<Vec<u8>> {
    let alg = seq(alg)?;
    let [oid, params] = alg[..] else {
        return Err(Error::Malformed);
    };
    let params = seq(params)?;
    let [salt, iters] = params[..] else {
        return Err(Error::Malformed);
    };
    let salt = expect(salt, 0x04)?;
    let iters = iterations(iters)?;
    let derive = |id, len| derive_key::<sha1_pkcs12::Sha1>(password, salt, id, iters, len);
    let iv = derive(Pkcs12KeyType::Iv, 8);
    if is_oid(oid, OID_PBE_SHA1_3DES) {
        let key = derive(Pkcs12KeyType::EncryptionKey, 24);
        cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
            .map_err(|_| Error::Decrypt)?
            .decrypt_padded_vec::<Pkcs7>(data)
            .map_err(|_| Error::Decrypt)
    } else if is_oid(oid, OID_PBE_SHA1_RC2_40) {
        let key = derive(Pkcs12KeyType::EncryptionKey, 5);
        cbc::Decryptor::<rc2::Rc2>::new_from_slices(&key, &iv)
            .map_err(|_| Error::Decrypt)?
            .decrypt_padded_vec::<Pkcs7>(data)
            .map_err(|_| Error::Decrypt)
    } else {
        Err(Error::Unsupported)
    }
}
