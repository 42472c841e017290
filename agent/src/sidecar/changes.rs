//! What changed between two published sets, for the change notification (`changed` ids)
//! and the refresh log line (`changed_list`, bounded).

use crate::report::ObjectStatus;

/// Ids whose version or contents differ between two reports (new ids included).
pub(super) fn changed_ids(before: &[ObjectStatus], after: &[ObjectStatus]) -> Vec<String> {
    // A set, not a scan per object: at thousands of objects a nested scan is millions of
    // string comparisons per refresh.
    let known: std::collections::HashSet<(&str, &str, &str, &str)> = before
        .iter()
        .map(|b| {
            (
                b.id.as_str(),
                b.path.as_str(),
                b.version.as_str(),
                b.digest.as_str(),
            )
        })
        .collect();
    after
        .iter()
        .filter(|a| {
            !known.contains(&(
                a.id.as_str(),
                a.path.as_str(),
                a.version.as_str(),
                a.digest.as_str(),
            ))
        })
        .map(|a| a.id.clone())
        .collect()
}

/// How many changed objects a change log line names before `and N more`.
const CHANGED_NAMES: usize = 10;

/// The objects that changed between two reports, with their new versions, for the log:
/// `secret/db@3f2a..., cert/tls@9c1e...` (at most [`CHANGED_NAMES`], then `and N more`).
pub(super) fn describe_changes(before: &[ObjectStatus], after: &[ObjectStatus]) -> String {
    let changed: Vec<String> = after
        .iter()
        .filter(|a| {
            !before.iter().any(|b| {
                b.id == a.id && b.path == a.path && b.version == a.version && b.digest == a.digest
            })
        })
        .map(|a| format!("{}@{}", a.id, a.version))
        .collect();
    crate::report::name_list(&changed, CHANGED_NAMES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::harness::obj;

    #[test]
    // reference: issue 12 item 4 (change log lines name objects and versions, bounded)
    fn change_lines_name_objects_and_versions_bounded() {
        let before = vec![obj("secret/a", "v1", "x"), obj("secret/b", "v1", "y")];
        let after = vec![obj("secret/a", "v2", "z"), obj("secret/b", "v1", "y")];
        assert_eq!(describe_changes(&before, &after), "secret/a@v2");
        let many: Vec<ObjectStatus> = (0..25)
            .map(|i| obj(&format!("secret/s{i}"), "v9", "d"))
            .collect();
        let line = describe_changes(&[], &many);
        assert!(line.starts_with("secret/s0@v9, secret/s1@v9, "), "{line}");
        assert!(line.ends_with("secret/s9@v9 and 15 more"), "{line}");
        assert_eq!(line.matches('@').count(), 10, "{line}");
    }

    // reference: issue 12 item 4 (a change names the objects whose version or contents changed)
    #[test]
    fn changed_ids_name_new_and_modified_objects_only() {
        let before = vec![obj("secret/a", "1", "x"), obj("secret/b", "1", "y")];
        let after = vec![
            obj("secret/a", "1", "x"),
            obj("secret/b", "2", "z"),
            obj("secret/c", "1", "w"),
        ];
        assert_eq!(changed_ids(&before, &after), vec!["secret/b", "secret/c"]);
        assert!(changed_ids(&after, &after).is_empty());
    }
}
