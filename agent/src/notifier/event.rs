//! What a notification says: [`ChangeEvent`], the summary posted to `--on-change-http` and
//! put in the environment of `--on-change-exec`. Metadata only (ids, versions, paths), never a
//! value nor a digest of one (docs/threat-model.md rule 9).

use std::path::PathBuf;

use serde::Serialize;

use crate::report::ObjectStatus;

/// What changed, as posted to `--on-change-http` and summarised for the other notifiers.
/// Carries metadata only.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Always `published`.
    pub event: &'static str,
    /// Vault name.
    pub vault: String,
    /// The target directory.
    pub dir: PathBuf,
    /// The new `..data` target.
    pub data_dir: String,
    /// Ids of objects whose version or contents changed since the previous set.
    pub changed: Vec<String>,
    /// The whole mounted set.
    pub objects: Vec<NotifiedObject>,
}

/// One mounted object as a notification names it: which object, which version, where.
/// Deliberately no digest of the contents: a notification may leave the pod, and a digest
/// of a low-entropy secret can be reversed offline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotifiedObject {
    /// Reference object id (`secret/name` or `secret/name/0`).
    pub id: String,
    /// Key Vault version.
    pub version: String,
    /// Output path relative to the target dir.
    pub path: String,
}

impl From<&ObjectStatus> for NotifiedObject {
    fn from(o: &ObjectStatus) -> Self {
        Self {
            id: o.id.clone(),
            version: o.version.clone(),
            path: o.path.clone(),
        }
    }
}

/// A published event with no objects, whose `..data` target is `..{n}` (the notifiers' tests).
#[cfg(test)]
pub(super) fn sample(n: usize) -> ChangeEvent {
    ChangeEvent {
        event: "published",
        vault: "demo".into(),
        dir: "/x".into(),
        data_dir: format!("..{n}"),
        changed: vec![],
        objects: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: docs/threat-model.md rule 9 (issue 9 item 8: no digests leave the pod)
    #[test]
    fn the_posted_summary_names_objects_and_versions_but_carries_no_digest() {
        let status = ObjectStatus {
            id: "secret/db-password".into(),
            version: "0000000000000000000000000000000c".into(),
            path: "db-password".into(),
            digest: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8".into(),
            fetched_at: 1_700_000_000,
            not_after: None,
            expires: None,
            validation: None,
        };
        let mut e = sample(1);
        e.objects = vec![(&status).into()];
        let json = serde_json::to_value(&e).unwrap();
        let text = json.to_string();
        assert_eq!(json["objects"][0]["id"], "secret/db-password");
        assert_eq!(
            json["objects"][0]["version"],
            "0000000000000000000000000000000c"
        );
        assert!(
            !text.contains(&status.digest),
            "digest in the payload: {text}"
        );
        assert!(!text.contains("sha256"), "{text}");
    }
}
