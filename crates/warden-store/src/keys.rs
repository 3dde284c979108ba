//! Agent API keys: only a hash of each key is kept, never the key.
//!
//! Minting keys and checking presented ones belong to the gateway; this
//! module keeps the hashes, who each key speaks for, and revocations.

use rusqlite::{params, OptionalExtension, Row};

use crate::sqlite::SqliteStore;
use crate::StoreError;

/// One API key as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's public id (shown in listings, used to revoke it).
    pub key_id: String,
    /// The SHA-256 of the whole key, hex.
    pub key_hash: String,
    /// The principal's entity type (`Agent`, `ServiceAccount`, `Human`).
    pub principal_type: String,
    /// The principal's id.
    pub principal_id: String,
    /// The human the principal acts for, when the key is bound to one.
    pub acting_for: Option<String>,
    /// A note for people (`ci runner`).
    pub label: Option<String>,
    /// When the key was created (RFC 3339, UTC).
    pub created: String,
    /// When the key was revoked, if it was.
    pub revoked: Option<String>,
}

/// Where API key hashes are kept.
pub trait KeyStore: Send {
    /// Adds a new key.
    fn add_key(&mut self, key: &ApiKey) -> Result<(), StoreError>;

    /// The key with this hash, revoked or not.
    fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// Every key, oldest first.
    fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError>;

    /// Marks a key revoked at `when`; `false` when no unrevoked key has
    /// that id.
    fn revoke_key(&mut self, key_id: &str, when: &str) -> Result<bool, StoreError>;
}

const KEY_COLUMNS: &str =
    "key_id, key_hash, principal_type, principal_id, acting_for, label, created, revoked";

impl KeyStore for SqliteStore {
    fn add_key(&mut self, key: &ApiKey) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO api_keys (key_id, key_hash, principal_type, principal_id, \
                 acting_for, label, created, revoked) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    key.key_id,
                    key.key_hash,
                    key.principal_type,
                    key.principal_id,
                    key.acting_for,
                    key.label,
                    key.created,
                    key.revoked,
                ],
            )
            .map_err(StoreError::Write)?;
        Ok(())
    }

    fn find_key(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1");
        // Asked on every request: parsed once per connection and reused.
        self.conn
            .prepare_cached(&sql)
            .map_err(StoreError::Read)?
            .query_row(params![key_hash], key_from_row)
            .optional()
            .map_err(StoreError::Read)
    }

    fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created, key_id");
        let mut statement = self.conn.prepare(&sql).map_err(StoreError::Read)?;
        let rows = statement
            .query_map([], key_from_row)
            .map_err(StoreError::Read)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::Read)
    }

    fn revoke_key(&mut self, key_id: &str, when: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE api_keys SET revoked = ?2 WHERE key_id = ?1 AND revoked IS NULL",
                params![key_id, when],
            )
            .map_err(StoreError::Write)?;
        Ok(changed > 0)
    }
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        key_id: row.get(0)?,
        key_hash: row.get(1)?,
        principal_type: row.get(2)?,
        principal_id: row.get(3)?,
        acting_for: row.get(4)?,
        label: row.get(5)?,
        created: row.get(6)?,
        revoked: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, hash: &str) -> ApiKey {
        ApiKey {
            key_id: id.to_owned(),
            key_hash: hash.to_owned(),
            principal_type: "Agent".to_owned(),
            principal_id: "claude".to_owned(),
            acting_for: Some("alice".to_owned()),
            label: None,
            created: "2026-12-04T00:00:00Z".to_owned(),
            revoked: None,
        }
    }

    #[test]
    fn keys_are_found_by_hash_and_revoked_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store.add_key(&key("k1", "h1")).unwrap();
        assert_eq!(store.find_key("h1").unwrap(), Some(key("k1", "h1")));
        assert_eq!(store.find_key("h2").unwrap(), None);

        assert!(store.revoke_key("k1", "2026-12-05T00:00:00Z").unwrap());
        assert!(!store.revoke_key("k1", "2026-12-06T00:00:00Z").unwrap());
        let found = store.find_key("h1").unwrap().unwrap();
        assert_eq!(found.revoked.as_deref(), Some("2026-12-05T00:00:00Z"));
        assert_eq!(store.list_keys().unwrap().len(), 1);
    }

    #[test]
    fn a_second_key_with_the_same_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store.add_key(&key("k1", "h1")).unwrap();
        assert!(store.add_key(&key("k2", "h1")).is_err());
    }
}
