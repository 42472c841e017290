//! Certificate validation before the swap (issue 11 item 6): what a converted certificate
//! object or PEM/PFX secret must satisfy to be published.
//!
//! - The private key matches the leaf (the first certificate of a PEM; the chain's leaf of a
//!   PFX). A server with such a pair fails every handshake: always refused.
//! - The chain is ordered: each certificate is issued by the next (its signature verifies
//!   with the next one's key; where `ring` cannot verify the algorithm, the issuer name
//!   equals the next one's subject). Clients read a PEM chain in order, so certificates that
//!   do form one chain but are stored out of order are always refused. Certificates that form
//!   no chain in any order (a missing intermediate, an unrelated extra certificate) are what
//!   the Azure provider publishes with its "chain is not complete" warning
//!   (`docs/reference-provider.md` §2.6 step 5): refused or warned per `--validate`, like a
//!   certificate outside its validity period.
//! - Every certificate is within its validity period: an expired or not-yet-valid one is
//!   refused or published with a warning per `--validate` ([`crate::config::ValidateMode`]).
//!
//! Pure: the caller passes the time and decides what a finding does. Messages name the
//! certificate by position and subject (public), never key material.

use x509_parser::prelude::{FromDer, X509Certificate, X509Error};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::convert::Material;
use crate::convert::chain::{self, Ordered};
use crate::convert::key::PrivateKey;

/// What is wrong (a bounded metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The private key belongs to another certificate.
    KeyMismatch,
    /// A certificate is not issued by the next one, and another order would form a chain.
    ChainOrder,
    /// A certificate is not issued by the next one, and no order forms one chain.
    ChainIncomplete,
    /// A certificate does not parse.
    Unparseable,
    /// Past a certificate's notAfter.
    Expired,
    /// Before a certificate's notBefore.
    NotYetValid,
}

impl Reason {
    /// The metrics label and `/status` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::KeyMismatch => "key_mismatch",
            Reason::ChainOrder => "chain_order",
            Reason::ChainIncomplete => "chain_incomplete",
            Reason::Unparseable => "unparseable",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
        }
    }

    /// Refused whatever `--validate` says: no client can use such a set.
    pub fn always_refused(self) -> bool {
        !matches!(
            self,
            Reason::Expired | Reason::NotYetValid | Reason::ChainIncomplete
        )
    }
}

/// One finding: why, and a one-line message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The class.
    pub reason: Reason,
    /// What is wrong and how to fix it (no key material).
    pub message: String,
}

fn problem(reason: Reason, message: String) -> Problem {
    Problem { reason, message }
}

/// `certificate 2 (CN=Demo CA)`.
fn name(i: usize, cert: &X509Certificate<'_>) -> String {
    format!("certificate {} ({})", i.saturating_add(1), cert.subject())
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {t}"))
}

/// Whether `child` is issued by `parent`: the signature verifies with the parent's key; when
/// the algorithm cannot be verified here, the names link.
fn issued_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    match child.verify_signature(Some(parent.public_key())) {
        Ok(()) => true,
        Err(X509Error::SignatureUnsupportedAlgorithm) => {
            child.issuer().as_raw() == parent.subject().as_raw()
        }
        Err(_) => false,
    }
}

/// Most certificates an order is searched for ([`orderable`] is quadratic in signature
/// checks); a longer list that is out of order counts as not orderable.
const MAX_ORDERED_SEARCH: usize = 32;

/// Whether some order of `certs` has each certificate issued by the next: from the one
/// certificate that issues none of the others, follow issuers until all are used.
fn orderable(certs: &[X509Certificate<'_>]) -> bool {
    let n = certs.len();
    if n > MAX_ORDERED_SEARCH {
        return false;
    }
    let issues = |a: usize, b: usize| a != b && issued_by(&certs[b], &certs[a]);
    let leaves: Vec<usize> = (0..n).filter(|&i| !(0..n).any(|j| issues(i, j))).collect();
    let [mut at] = leaves[..] else {
        return false;
    };
    let mut used = vec![false; n];
    used[at] = true;
    for _ in 1..n {
        match (0..n).find(|&j| !used[j] && issues(j, at)) {
            Some(j) => {
                used[j] = true;
                at = j;
            }
            None => return false,
        }
    }
    true
}

/// The public key bits of an SPKI (the algorithm's encoding of parameters varies; the key
/// does not).
fn key_bits(spki_der: &[u8]) -> Option<Vec<u8>> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    Some(spki.subject_public_key.data.to_vec())
}

/// Every problem of `m` at Unix time `now`. `check_validity: false` skips the validity
/// periods (older versions of a history object are kept for rollover and may be expired).
pub fn check(m: &Material, now: i64, check_validity: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    if m.certs.is_empty() {
        return out;
    }
    // A PFX's bags have no order: put its chain leaf first as the PEM conversion does.
    let mut ders: Vec<&[u8]> = m.certs.iter().map(Vec::as_slice).collect();
    if !m.ordered
        && let Ok(Ordered::Chain(idx)) = chain::order(&m.certs)
    {
        ders = idx
            .into_iter()
            .filter_map(|i| m.certs.get(i).map(Vec::as_slice))
            .collect();
    }
    let mut certs = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        match X509Certificate::from_der(der) {
            Ok((_, c)) => certs.push(c),
            Err(e) => {
                out.push(problem(
                    Reason::Unparseable,
                    format!(
                        "certificate {} does not parse ({e}): store a valid x.509 certificate",
                        i.saturating_add(1)
                    ),
                ));
                return out;
            }
        }
    }
    let Some(leaf) = certs.first() else {
        return out;
    };

    // The key of the leaf. Keys whose public half cannot be derived here (e.g. Ed25519)
    // are not compared.
    let publics: Vec<Vec<u8>> = m
        .keys
        .iter()
        .filter_map(|k| PrivateKey::parse(k.expose()).ok()?.public_spki())
        .filter_map(|spki| key_bits(&spki))
        .collect();
    let leaf_bits = leaf.public_key().subject_public_key.data.to_vec();
    if !publics.is_empty() && !publics.contains(&leaf_bits) {
        out.push(problem(
            Reason::KeyMismatch,
            format!(
                "the private key does not match the leaf, {}: store the certificate together with its own key, leaf first",
                name(0, leaf)
            ),
        ));
    }

    for (i, pair) in certs.windows(2).enumerate() {
        if !issued_by(&pair[0], &pair[1]) {
            let (a, b) = (name(i, &pair[0]), name(i.saturating_add(1), &pair[1]));
            out.push(if orderable(&certs) {
                problem(
                    Reason::ChainOrder,
                    format!(
                        "the chain is not in order: {a} is not issued by the next, {b}: store the leaf first, each certificate followed by its issuer"
                    ),
                )
            } else {
                problem(
                    Reason::ChainIncomplete,
                    format!(
                        "the chain is incomplete: {a} is not issued by the next, {b}, and no order of the certificates forms one chain: add the missing intermediate or remove the unrelated certificate"
                    ),
                )
            });
            break;
        }
    }

    if check_validity {
        for (i, c) in certs.iter().enumerate() {
            let v = c.validity();
            let (from, until) = (v.not_before.timestamp(), v.not_after.timestamp());
            if now > until {
                out.push(problem(
                    Reason::Expired,
                    format!(
                        "{} expired at {}: renew it in key vault",
                        name(i, c),
                        rfc3339(until)
                    ),
                ));
                break;
            }
            if now < from {
                out.push(problem(
                    Reason::NotYetValid,
                    format!(
                        "{} is not valid before {}: check the issuer's clock or wait",
                        name(i, c),
                        rfc3339(from)
                    ),
                ));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretBytes;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/convert/");
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    fn pem(parts: &[&str]) -> Material {
        let mut data = Vec::new();
        for p in parts {
            data.extend(fixture(p));
        }
        Material::from_pem(&data)
    }

    fn reasons(p: &[Problem]) -> Vec<Reason> {
        p.iter().map(|p| p.reason).collect()
    }

    fn not_after(name: &str) -> i64 {
        let der = &crate::convert::pem::decode_all(&fixture(name))[0].der;
        X509Certificate::from_der(der)
            .unwrap()
            .1
            .validity()
            .not_after
            .timestamp()
    }

    // reference: issue 11 item 6 (key matches leaf, chain ordered, validity period)
    #[test]
    fn an_ordered_chain_with_its_key_passes() {
        let now = not_after("foo-leaf.pem") - 86400;
        let m = pem(&["foo.key", "foo-leaf.pem", "foo-int.pem", "foo-root.pem"]);
        assert_eq!(check(&m, now, true), vec![]);
        // A certificate alone (a cert object: the leaf only) passes too.
        assert_eq!(check(&pem(&["foo-leaf.pem"]), now, true), vec![]);
        // The EC fixtures: ECDSA signatures verify as well.
        let m = pem(&["ec-leaf.pem", "ec-int.pem", "ec-root.pem"]);
        let now = not_after("ec-leaf.pem") - 86400;
        assert_eq!(check(&m, now, true), vec![]);
    }

    // reference: issue 11 item 6 (a disordered chain is always an error)
    #[test]
    fn a_disordered_or_broken_chain_is_a_chain_order_problem() {
        let now = not_after("foo-leaf.pem") - 86400;
        let m = pem(&["foo.key", "foo-leaf.pem", "foo-root.pem", "foo-int.pem"]);
        let p = check(&m, now, true);
        assert_eq!(reasons(&p), vec![Reason::ChainOrder]);
        assert!(p[0].message.contains("certificate 2"), "{}", p[0].message);
        assert!(Reason::ChainOrder.always_refused());
        // A missing intermediate: the root does not issue the leaf, in any order. That is
        // what the reference publishes with a warning: refused only with --validate strict.
        let m = pem(&["foo-leaf.pem", "foo-root.pem"]);
        let p = check(&m, now, true);
        assert_eq!(reasons(&p), vec![Reason::ChainIncomplete]);
        assert!(!Reason::ChainIncomplete.always_refused());
        assert!(
            p[0].message.contains("missing intermediate"),
            "{}",
            p[0].message
        );
        // An unrelated extra certificate: incomplete too.
        let m = pem(&["foo-leaf.pem", "foo-int.pem", "foo-root.pem", "ec-root.pem"]);
        assert_eq!(
            reasons(&check(&m, now, true)),
            vec![Reason::ChainIncomplete]
        );
        // A PFX's bags have no order: the same certificates out of order pass.
        let mut m = pem(&["foo.key", "foo-root.pem", "foo-leaf.pem", "foo-int.pem"]);
        m.ordered = false;
        assert_eq!(check(&m, now, true), vec![]);
    }

    // reference: issue 11 item 6 (a key/leaf mismatch is always an error)
    #[test]
    fn a_key_of_another_certificate_is_a_key_mismatch() {
        let now = not_after("foo-leaf.pem") - 86400;
        let m = pem(&["demo.key", "foo-leaf.pem", "foo-int.pem", "foo-root.pem"]);
        let p = check(&m, now, true);
        assert_eq!(reasons(&p), vec![Reason::KeyMismatch]);
        assert!(p[0].message.contains("does not match the leaf"));
        assert!(Reason::KeyMismatch.always_refused());
        // The message names the certificate, never the key.
        let key_text = String::from_utf8(fixture("demo.key")).unwrap();
        let body: String = key_text.lines().nth(1).unwrap().to_owned();
        assert!(!p[0].message.contains(&body));
    }

    // reference: issue 11 item 6 (expired or not yet valid: refused or warned per --validate)
    #[test]
    fn validity_periods_are_checked_unless_asked_not_to() {
        let until = not_after("foo-leaf.pem");
        let m = pem(&["foo.key", "foo-leaf.pem", "foo-int.pem", "foo-root.pem"]);
        let p = check(&m, until + 1, true);
        assert_eq!(reasons(&p), vec![Reason::Expired]);
        assert!(p[0].message.contains("expired at"), "{}", p[0].message);
        assert!(!Reason::Expired.always_refused());
        assert_eq!(check(&m, until + 1, false), vec![]);
        let p = check(&m, 0, true);
        assert_eq!(reasons(&p), vec![Reason::NotYetValid]);
        assert!(!Reason::NotYetValid.always_refused());
    }

    #[test]
    fn garbage_certificates_and_no_certificates() {
        let m = Material {
            keys: vec![SecretBytes::new(b"k".to_vec())],
            certs: vec![b"not der".to_vec()],
            ordered: true,
        };
        assert_eq!(reasons(&check(&m, 0, true)), vec![Reason::Unparseable]);
        assert_eq!(check(&pem(&["foo.key"]), 0, true), vec![]);
        assert!(format!("{m:?}").contains("1 keys"));
    }
}
