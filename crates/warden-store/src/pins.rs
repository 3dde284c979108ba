//! Tool pins: every definition of a tool Warden has seen, and whether it
//! may be used.
//!
//! What a definition is and when one is held belongs to the relay; this
//! module keeps the definitions, their hashes and the reviewers' verdicts.

use rusqlite::{params, OptionalExtension as _, Row};

use crate::sqlite::SqliteStore;
use crate::StoreError;

/// Whether a definition may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinState {
    /// Usable: seen first on a server with no pins yet, or accepted by a
    /// reviewer.
    Accepted,
    /// Held until a reviewer accepts or rejects it.
    Pending,
    /// Refused by a reviewer.
    Rejected,
}

impl PinState {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            PinState::Accepted => "accepted",
            PinState::Pending => "pending",
            PinState::Rejected => "rejected",
        }
    }

    fn parse(text: &str) -> PinState {
        match text {
            "accepted" => PinState::Accepted,
            "rejected" => PinState::Rejected,
            // INVARIANT: anything unknown is held, never usable.
            _ => PinState::Pending,
        }
    }
}

/// One definition of one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPin {
    /// The server's configured name.
    pub server: String,
    /// The tool's name.
    pub tool: String,
    /// `sha256:` and the hex digest of the canonical definition.
    pub hash: String,
    /// The canonical definition (JSON, keys sorted).
    pub definition: String,
    /// Whether it may be used.
    pub state: PinState,
    /// When Warden first saw it (RFC 3339, UTC).
    pub first_seen: String,
    /// When a reviewer decided, if one did.
    pub decided: Option<String>,
}

/// Where tool pins are kept.
pub trait PinStore: Send {
    /// Every definition seen of `server`'s tools, oldest first.
    fn server_pins(&self, server: &str) -> Result<Vec<ToolPin>, StoreError>;

    /// Every definition of every server, by server, tool, then age.
    fn all_pins(&self) -> Result<Vec<ToolPin>, StoreError>;

    /// Records a definition seen for the first time; `false` when it was
    /// known already (its state is then left as it is).
    fn add_pin(&mut self, pin: &ToolPin) -> Result<bool, StoreError>;

    /// Records a reviewer's verdict on one definition; `false` when there is
    /// no such definition.
    fn decide_pin(
        &mut self,
        server: &str,
        tool: &str,
        hash: &str,
        state: PinState,
        when: &str,
    ) -> Result<bool, StoreError>;
}

const PIN_COLUMNS: &str = "server, tool, hash, definition, state, first_seen, decided";

impl PinStore for SqliteStore {
    fn server_pins(&self, server: &str) -> Result<Vec<ToolPin>, StoreError> {
        let sql = format!(
            "SELECT {PIN_COLUMNS} FROM tool_pins WHERE server = ?1 ORDER BY first_seen, rowid"
        );
        let mut statement = self.conn.prepare_cached(&sql).map_err(StoreError::Read)?;
        let rows = statement
            .query_map(params![server], pin_from_row)
            .map_err(StoreError::Read)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::Read)
    }

    fn all_pins(&self) -> Result<Vec<ToolPin>, StoreError> {
        let sql =
            format!("SELECT {PIN_COLUMNS} FROM tool_pins ORDER BY server, tool, first_seen, rowid");
        let mut statement = self.conn.prepare(&sql).map_err(StoreError::Read)?;
        let rows = statement
            .query_map([], pin_from_row)
            .map_err(StoreError::Read)?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::Read)
    }

    fn add_pin(&mut self, pin: &ToolPin) -> Result<bool, StoreError> {
        let added = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO tool_pins (server, tool, hash, definition, state, \
                 first_seen, decided) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(StoreError::Write)?
            .execute(params![
                pin.server,
                pin.tool,
                pin.hash,
                pin.definition,
                pin.state.as_str(),
                pin.first_seen,
                pin.decided,
            ])
            .map_err(StoreError::Write)?;
        Ok(added > 0)
    }

    fn decide_pin(
        &mut self,
        server: &str,
        tool: &str,
        hash: &str,
        state: PinState,
        when: &str,
    ) -> Result<bool, StoreError> {
        let known: Option<String> = self
            .conn
            .query_row(
                "SELECT state FROM tool_pins WHERE server = ?1 AND tool = ?2 AND hash = ?3",
                params![server, tool, hash],
                |row| row.get(0),
            )
            .optional()
            .map_err(StoreError::Read)?;
        if known.is_none() {
            return Ok(false);
        }
        self.conn
            .execute(
                "UPDATE tool_pins SET state = ?4, decided = ?5 \
                 WHERE server = ?1 AND tool = ?2 AND hash = ?3",
                params![server, tool, hash, state.as_str(), when],
            )
            .map_err(StoreError::Write)?;
        Ok(true)
    }
}

fn pin_from_row(row: &Row<'_>) -> rusqlite::Result<ToolPin> {
    let state: String = row.get(4)?;
    Ok(ToolPin {
        server: row.get(0)?,
        tool: row.get(1)?,
        hash: row.get(2)?,
        definition: row.get(3)?,
        state: PinState::parse(&state),
        first_seen: row.get(5)?,
        decided: row.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(tool: &str, hash: &str, state: PinState) -> ToolPin {
        ToolPin {
            server: "fs".into(),
            tool: tool.into(),
            hash: hash.into(),
            definition: format!("{{\"name\":\"{tool}\"}}"),
            state,
            first_seen: "2026-12-04T00:00:00Z".into(),
            decided: None,
        }
    }

    #[test]
    fn a_definition_is_recorded_once_and_keeps_its_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        assert!(store.server_pins("fs").unwrap().is_empty());
        assert!(store
            .add_pin(&pin("read", "sha256:a", PinState::Accepted))
            .unwrap());
        assert!(store
            .add_pin(&pin("read", "sha256:b", PinState::Pending))
            .unwrap());
        // Seen again: nothing changes, a held definition stays held.
        assert!(!store
            .add_pin(&pin("read", "sha256:b", PinState::Accepted))
            .unwrap());
        let states: Vec<PinState> = store
            .server_pins("fs")
            .unwrap()
            .iter()
            .map(|p| p.state)
            .collect();
        assert_eq!(states, [PinState::Accepted, PinState::Pending]);

        assert!(store
            .decide_pin(
                "fs",
                "read",
                "sha256:b",
                PinState::Accepted,
                "2026-12-04T01:00:00Z"
            )
            .unwrap());
        assert!(!store
            .decide_pin("fs", "read", "sha256:zz", PinState::Accepted, "now")
            .unwrap());
        let pins = store.all_pins().unwrap();
        assert_eq!(pins[1].state, PinState::Accepted);
        assert_eq!(pins[1].decided.as_deref(), Some("2026-12-04T01:00:00Z"));
        assert!(store.server_pins("other").unwrap().is_empty());
    }
}
