//! Consumer-group membership (`core::membership`): one `meta` value per
//! group with members, `c/members/<topic>:<group>` → JSON (sealed like
//! every `c/` value, carried by metadata snapshots). Topic names exclude
//! `:`, so the first `:` separates topic and group.

use rocksdb::WriteBatch;

use super::{CF_META, StorageError, Store, keys};
use crate::core::membership::Membership;

const PREFIX: &str = "members/";

fn name(topic: &str, group: &str) -> String {
    format!("{PREFIX}{topic}:{group}")
}

impl Store {
    pub fn put_membership(
        &self,
        batch: &mut WriteBatch,
        topic: &str,
        group: &str,
        membership: &Membership,
    ) -> Result<(), StorageError> {
        // Strings and numbers: serialising cannot fail.
        let json = serde_json::to_vec(membership).unwrap_or_default();
        self.put_cluster_value(batch, &name(topic, group), &json)
    }

    pub fn delete_membership(&self, batch: &mut WriteBatch, topic: &str, group: &str) {
        batch.delete_cf(&self.cf(CF_META), keys::cluster_key(&name(topic, group)));
    }

    /// Every stored membership: `(topic, group, membership)`.
    pub fn memberships(&self) -> Result<Vec<(String, String, Membership)>, StorageError> {
        let corrupt = |what: String| StorageError::Corrupt { what };
        self.cluster_values(PREFIX)?
            .into_iter()
            .map(|(name, value)| {
                let (topic, group) = name
                    .split_once(':')
                    .ok_or_else(|| corrupt(format!("membership key '{name}'")))?;
                let membership = serde_json::from_slice(&value)
                    .map_err(|e| corrupt(format!("membership of {topic}:{group}: {e}")))?;
                Ok((topic.to_owned(), group.to_owned(), membership))
            })
            .collect()
    }
}
