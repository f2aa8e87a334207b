//! Consumer-group membership (`core::membership`): one `meta` value per
//! group with members, `c/members/<topic>:<group>` → JSON (sealed like
//! every `c/` value, carried by metadata snapshots). Topic names exclude
//! `:`, so the first `:` separates topic and group.

use rocksdb::{Direction, IteratorMode, WriteBatch};

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
        let prefix = keys::cluster_key(PREFIX);
        let corrupt = |what: String| StorageError::Corrupt { what };
        let mut found = Vec::new();
        let iter = self
            .db()
            .iterator_cf(&self.cf(CF_META), IteratorMode::From(&prefix, Direction::Forward));
        for item in iter {
            let (key, stored) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let rest = std::str::from_utf8(&key[prefix.len()..]).map_err(|_| corrupt("membership key".into()))?;
            let (topic, group) = rest
                .split_once(':')
                .ok_or_else(|| corrupt(format!("membership key '{rest}'")))?;
            let membership = serde_json::from_slice(&self.open_meta_value(&key, &stored)?)
                .map_err(|e| corrupt(format!("membership of {topic}:{group}: {e}")))?;
            found.push((topic.to_owned(), group.to_owned(), membership));
        }
        Ok(found)
    }
}
