//! Warden's durable state. For now: the decision log, the agents' API key
//! hashes and the tool pins, in an embedded SQLite file.
//!
//! This crate owns how records are kept and read back; what a record says is
//! decided by the gateway that writes it. Writing is synchronous and durable
//! (the transaction is committed before `append` returns), because the
//! gateway refuses a call whose record could not be written.

mod keys;
mod pins;
mod record;
mod sqlite;

pub use keys::{ApiKey, KeyStore};
pub use pins::{PinState, PinStore, ToolPin};
pub use record::{DecisionRecord, RecordKind};
pub use sqlite::SqliteStore;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, created or migrated.
    #[error("cannot open the store `{path}`")]
    Open {
        /// The database path.
        path: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer Warden.
    #[error(
        "the store `{path}` has schema version {found}, newer than this warden knows ({known})"
    )]
    TooNew {
        /// The database path.
        path: String,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A record could not be written.
    #[error("cannot write the decision record: {0}")]
    Write(rusqlite::Error),
    /// Records could not be read.
    #[error("cannot read decision records: {0}")]
    Read(rusqlite::Error),
    /// The store path names a directory.
    #[error("cannot open the store `{0}`: it is a directory")]
    IsDirectory(String),
    /// A writer sharing the store failed in the middle of a write; nothing
    /// more is written through that handle.
    #[error("the store is unusable after a failed write in another task")]
    Poisoned,
}

/// The decision log: append-only records of decisions and their outcomes.
pub trait DecisionLog: Send {
    /// Writes `record` durably.
    fn append(&mut self, record: &DecisionRecord) -> Result<(), StoreError>;

    /// The newest `limit` records, oldest first.
    fn tail(&self, limit: usize) -> Result<Vec<DecisionRecord>, StoreError>;

    /// Records with a sequence number above `after`, oldest first.
    fn since(&self, after: i64, limit: usize) -> Result<Vec<DecisionRecord>, StoreError>;
}
