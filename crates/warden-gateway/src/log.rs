//! The decision log as the gateway shares it between sessions, counting
//! what it records for the metrics.
//!
//! The store itself is synchronous and durable: a record is committed before
//! `append` returns, and the relay forwards nothing whose record failed.

use std::sync::{Arc, Mutex};

use warden_store::{DecisionLog, DecisionRecord, StoreError};

use crate::metrics::Metrics;

/// One decision log shared by every session of the gateway.
#[derive(Clone)]
pub struct SharedLog {
    inner: Arc<Mutex<Box<dyn DecisionLog>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog").finish_non_exhaustive()
    }
}

impl SharedLog {
    /// Shares `log`, counting into `metrics`.
    pub fn new(log: Box<dyn DecisionLog>, metrics: Arc<Metrics>) -> Self {
        SharedLog {
            inner: Arc::new(Mutex::new(log)),
            metrics,
        }
    }

    fn locked<T>(
        &self,
        f: impl FnOnce(&mut Box<dyn DecisionLog>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.inner.lock() {
            Ok(mut log) => f(&mut log),
            // A writer panicked mid-write: refuse rather than guess what the
            // store holds.
            Err(_) => Err(StoreError::Poisoned),
        }
    }
}

impl DecisionLog for SharedLog {
    fn append(&mut self, record: &DecisionRecord) -> Result<(), StoreError> {
        let written = self.locked(|log| log.append(record));
        match &written {
            Ok(()) => self.metrics.record(record),
            Err(_) => self.metrics.record_failed(),
        }
        written
    }

    fn tail(&self, limit: usize) -> Result<Vec<DecisionRecord>, StoreError> {
        self.locked(|log| log.tail(limit))
    }

    fn since(&self, after: i64, limit: usize) -> Result<Vec<DecisionRecord>, StoreError> {
        self.locked(|log| log.since(after, limit))
    }
}
