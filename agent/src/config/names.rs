//! The names a SecretProviderClass may use, in one place, and did-you-mean suggestions for
//! the ones it should not.
//!
//! Parameters are listed in [`PARAMETERS`]; add a new one there. Object keys are not listed:
//! `objects` reads them off the fields of its `RawObject` with [`struct_fields`] (serde's own
//! field list), so a field added there is known without a second edit.

use serde::de::{self, Deserializer, Visitor};

/// The parameter holding templates, one `SRC:DEST[:MODE]` per line (`#` starts a comment
/// line); keyvault-agent's, which the CSI provider ignores like every key it does not know.
pub const TEMPLATES: &str = "templates";

/// Parameters the agent reads: the reference's, plus `keyvaultURL` and `templates` (ours).
pub(crate) const PARAMETERS: &[&str] = &[
    "keyvaultName",
    "keyvaultURL",
    "tenantID",
    "tenantId",
    "objects",
    "cloudName",
    "cloudEnvFileName",
    "usePodIdentity",
    "useVMManagedIdentity",
    "userAssignedIdentityID",
    "clientID",
    "useAzureTokenProxy",
    TEMPLATES,
];

/// Parameters the reference accepts and ignores without a word.
pub(crate) const IGNORED_PARAMETERS: &[&str] =
    &["resourceGroup", "subscriptionId", "secretProviderClass"];

/// The known name closest to `name`, when it is close enough to be a slip: the same but
/// for case, or within a small edit distance (two edits, fewer for short names).
pub(crate) fn did_you_mean(name: &str, known: &[&'static str]) -> Option<&'static str> {
    if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return Some(k);
    }
    let lower = name.to_ascii_lowercase();
    let limit = (name.chars().count() / 4).clamp(1, 2);
    known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The field names serde's derive gives a struct, read by asking it to deserialize from a
/// deserializer that only records them.
pub(crate) fn struct_fields<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference: issue 12 item 4 (unknown parameters and object keys get a did-you-mean)
    #[test]
    fn slips_get_the_known_name() {
        assert_eq!(
            did_you_mean("keyVaultName", PARAMETERS),
            Some("keyvaultName")
        );
        assert_eq!(
            did_you_mean("keyvaultNmae", PARAMETERS),
            Some("keyvaultName")
        );
        assert_eq!(did_you_mean("tenantid", PARAMETERS), Some("tenantID"));
        assert_eq!(did_you_mean("objcts", PARAMETERS), Some("objects"));
        assert_eq!(did_you_mean("somethingElse", PARAMETERS), None);
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Object {
            #[serde(rename = "objectName")]
            name: String,
            #[serde(rename = "objectType")]
            object_type: String,
            #[serde(rename = "objectAlias")]
            alias: String,
        }
        let keys = struct_fields::<Object>();
        assert_eq!(keys, ["objectName", "objectType", "objectAlias"]);
        assert_eq!(did_you_mean("objectname", keys), Some("objectName"));
        assert_eq!(did_you_mean("objectTyp", keys), Some("objectType"));
        assert_eq!(did_you_mean("objectAlais", keys), Some("objectAlias"));
        assert_eq!(did_you_mean("color", keys), None);
    }
}
