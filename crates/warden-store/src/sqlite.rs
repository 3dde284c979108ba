//! The embedded SQLite store.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{DecisionLog, DecisionRecord, RecordKind, StoreError};

/// Schema migrations, applied in order; `PRAGMA user_version` records how
/// many have run.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE decision_records (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        decision_id    TEXT NOT NULL,
        kind           TEXT NOT NULL,
        time           TEXT NOT NULL,
        principal      TEXT NOT NULL,
        acting_for     TEXT,
        method         TEXT NOT NULL,
        server         TEXT NOT NULL,
        tool           TEXT,
        args_digest    TEXT,
        args_redacted  TEXT,
        decision       TEXT,
        reason         TEXT NOT NULL,
        message        TEXT NOT NULL,
        policy_ids     TEXT NOT NULL,
        errors         TEXT NOT NULL,
        policy_version TEXT,
        latency_us     INTEGER,
        outcome        TEXT NOT NULL,
        instance       TEXT NOT NULL
    );
    CREATE INDEX decision_records_decision_id ON decision_records (decision_id);",
    "CREATE TABLE api_keys (
        key_id      TEXT PRIMARY KEY,
        key_hash    TEXT NOT NULL UNIQUE,
        principal_type TEXT NOT NULL,
        principal_id   TEXT NOT NULL,
        acting_for  TEXT,
        label       TEXT,
        created     TEXT NOT NULL,
        revoked     TEXT
    );",
    "CREATE TABLE tool_pins (
        server      TEXT NOT NULL,
        tool        TEXT NOT NULL,
        hash        TEXT NOT NULL,
        definition  TEXT NOT NULL,
        state       TEXT NOT NULL,
        first_seen  TEXT NOT NULL,
        decided     TEXT,
        PRIMARY KEY (server, tool, hash)
    );",
];

/// A decision log in one SQLite file (WAL mode).
///
/// Decision records are flushed to disk before `append` returns
/// (`synchronous = FULL`): the call they allow is forwarded only after.
/// Outcome records decide nothing; they are committed before `append`
/// returns, which a crash of the process cannot undo, and reach the disk
/// with the next decision record's flush (one WAL file, synced whole) or the
/// next checkpoint, so a call costs one disk flush rather than two. A power
/// loss can lose the outcomes written since the last decision.
#[derive(Debug)]
pub struct SqliteStore {
    pub(crate) conn: Connection,
    /// Whether commits are flushed now (`synchronous = FULL`).
    flushing: bool,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        if path.is_dir() {
            return Err(StoreError::IsDirectory(name));
        }
        // Several proxies often start at once on one store (an MCP client
        // starts all its servers together). Switching to WAL and migrating
        // can meet a lock the busy handler does not wait for, so opening is
        // retried for a while before it fails.
        let deadline = std::time::Instant::now() + OPEN_PATIENCE;
        loop {
            match open_once(path, &name) {
                Err(StoreError::Open { source, .. })
                    if is_busy(&source) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                result => return result,
            }
        }
    }

    fn query(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<DecisionRecord>, StoreError> {
        let mut statement = self.conn.prepare(sql).map_err(StoreError::Read)?;
        let rows = statement
            .query_map(params, from_row)
            .map_err(StoreError::Read)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::Read)
    }
}

/// How long opening waits for other processes holding the store's lock.
const OPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

fn open_once(path: &Path, name: &str) -> Result<SqliteStore, StoreError> {
    let open_err = |source| StoreError::Open {
        path: name.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    migrate(&mut conn, name)?;
    Ok(SqliteStore {
        conn,
        flushing: true,
    })
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn migrate(conn: &mut Connection, name: &str) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        path: name.to_owned(),
        source,
    };
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let version = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA user_version", [], |row| row.get(0))
    };
    // Up to date: nothing to write, so nothing to lock.
    if version(conn).map_err(open_err)? == known {
        return Ok(());
    }
    // IMMEDIATE takes the write lock up front (waiting for it), so two
    // processes never both read an old version and then both migrate.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(open_err)?;
    let current: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .optional()
        .map_err(open_err)?
        .unwrap_or(0);
    if current > known {
        return Err(StoreError::TooNew {
            path: name.to_owned(),
            found: current,
            known,
        });
    }
    for migration in MIGRATIONS
        .iter()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(migration).map_err(open_err)?;
    }
    tx.pragma_update(None, "user_version", known)
        .map_err(open_err)?;
    tx.commit().map_err(open_err)
}

const COLUMNS: &str = "seq, decision_id, kind, time, principal, acting_for, method, server, \
    tool, args_digest, args_redacted, decision, reason, message, policy_ids, errors, \
    policy_version, latency_us, outcome, instance";

// LIMITATION: one synced write per decision record (no group commit), and
// no hash chain or signatures yet.
impl DecisionLog for SqliteStore {
    fn append(&mut self, r: &DecisionRecord) -> Result<(), StoreError> {
        let flush = r.kind != RecordKind::Outcome;
        if flush != self.flushing {
            let mode = if flush { "FULL" } else { "NORMAL" };
            self.conn
                .pragma_update(None, "synchronous", mode)
                .map_err(StoreError::Write)?;
            self.flushing = flush;
        }
        let json = |v: &dyn erased::Json| v.to_json();
        // One statement, parsed once per connection and reused.
        self.conn
            .prepare_cached(
                "INSERT INTO decision_records (decision_id, kind, time, principal, acting_for, \
                 method, server, tool, args_digest, args_redacted, decision, reason, message, \
                 policy_ids, errors, policy_version, latency_us, outcome, instance) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                 ?17, ?18, ?19)",
            )
            .map_err(StoreError::Write)?
            .execute(params![
                r.decision_id,
                r.kind.as_str(),
                r.time,
                r.principal,
                r.acting_for,
                r.method,
                r.server,
                r.tool,
                r.args_digest,
                r.args_redacted.as_ref().map(|v| json(v)),
                r.decision,
                r.reason,
                r.message,
                json(&r.policy_ids),
                json(&r.errors),
                r.policy_version,
                r.latency_us.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
                r.outcome,
                r.instance,
            ])
            .map_err(StoreError::Write)?;
        Ok(())
    }

    fn tail(&self, limit: usize) -> Result<Vec<DecisionRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {COLUMNS} FROM (SELECT * FROM decision_records ORDER BY seq DESC LIMIT ?1) \
             ORDER BY seq"
        );
        self.query(&sql, params![limit])
    }

    fn since(&self, after: i64, limit: usize) -> Result<Vec<DecisionRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql =
            format!("SELECT {COLUMNS} FROM decision_records WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        self.query(&sql, params![after, limit])
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<DecisionRecord> {
    let list = |index: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = row.get(index)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    let redacted: Option<String> = row.get(10)?;
    let latency: Option<i64> = row.get(17)?;
    let kind: String = row.get(2)?;
    Ok(DecisionRecord {
        seq: row.get(0)?,
        decision_id: row.get(1)?,
        kind: RecordKind::parse(&kind),
        time: row.get(3)?,
        principal: row.get(4)?,
        acting_for: row.get(5)?,
        method: row.get(6)?,
        server: row.get(7)?,
        tool: row.get(8)?,
        args_digest: row.get(9)?,
        args_redacted: redacted.and_then(|t| serde_json::from_str(&t).ok()),
        decision: row.get(11)?,
        reason: row.get(12)?,
        message: row.get(13)?,
        policy_ids: list(14)?,
        errors: list(15)?,
        policy_version: row.get(16)?,
        latency_us: latency.and_then(|l| u64::try_from(l).ok()),
        outcome: row.get(18)?,
        instance: row.get(19)?,
    })
}

mod erased {
    /// Serialises a value that is always representable as JSON.
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "null".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(decision_id: &str) -> DecisionRecord {
        DecisionRecord {
            seq: 0,
            decision_id: decision_id.into(),
            kind: RecordKind::Decision,
            time: "2026-12-03T00:00:00Z".into(),
            principal: "Agent::\"a\"".into(),
            acting_for: Some("alice".into()),
            method: "tools/call".into(),
            server: "fs".into(),
            tool: Some("read_file".into()),
            args_digest: Some("sha256:00".into()),
            args_redacted: Some(serde_json::json!({"path": "<string:5>"})),
            decision: Some("deny".into()),
            reason: "forbidden".into(),
            message: "forbidden by policy `x`".into(),
            policy_ids: vec!["x".into()],
            errors: vec![],
            policy_version: Some("sha256:ab".into()),
            latency_us: Some(42),
            outcome: "denied".into(),
            instance: "test".into(),
        }
    }

    fn synchronous(store: &SqliteStore) -> i64 {
        store
            .conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn decisions_are_flushed_on_commit_and_outcomes_with_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut store = SqliteStore::open(&path).unwrap();
        // 2 is FULL (a flush per commit), 1 is NORMAL.
        assert_eq!(synchronous(&store), 2);
        let outcome = DecisionRecord {
            kind: RecordKind::Outcome,
            ..record("o")
        };
        store.append(&outcome).unwrap();
        assert_eq!(synchronous(&store), 1);
        store.append(&record("d")).unwrap();
        assert_eq!(synchronous(&store), 2);
        // Both are committed: another connection reads them at once.
        let other = SqliteStore::open(&path).unwrap();
        let ids: Vec<String> = other
            .tail(10)
            .unwrap()
            .into_iter()
            .map(|r| r.decision_id)
            .collect();
        assert_eq!(ids, ["o", "d"]);
    }

    #[test]
    fn records_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("w.db")).unwrap();
        for id in ["a", "b", "c"] {
            store.append(&record(id)).unwrap();
        }
        let tail = store.tail(2).unwrap();
        assert_eq!(
            tail.iter()
                .map(|r| r.decision_id.as_str())
                .collect::<Vec<_>>(),
            ["b", "c"]
        );
        let mut expected = record("c");
        expected.seq = 3;
        assert_eq!(tail[1], expected);
        assert_eq!(store.since(1, 10).unwrap().len(), 2);
    }

    #[test]
    fn many_writers_opening_a_new_store_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let writers: Vec<_> = (0..8)
            .map(|n| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut store = SqliteStore::open(&path)?;
                    store.append(&record(&format!("w{n}")))
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap().unwrap();
        }
        assert_eq!(
            SqliteStore::open(&path).unwrap().tail(100).unwrap().len(),
            8
        );
    }

    #[test]
    fn reopening_keeps_records_and_does_not_remigrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        SqliteStore::open(&path)
            .unwrap()
            .append(&record("a"))
            .unwrap();
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.tail(10).unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_store_from_a_newer_warden() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn refuses_a_file_that_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        std::fs::write(
            &path,
            b"this is not sqlite, just text that is long enough....",
        )
        .unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot open the store"),
            "{err}"
        );
    }

    #[test]
    fn a_read_only_store_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut store = SqliteStore::open(&path).unwrap();
        store.conn.execute_batch("PRAGMA query_only = ON;").unwrap();
        assert!(matches!(
            store.append(&record("a")),
            Err(StoreError::Write(_))
        ));
    }
}
