//! The state owner's client side: typed commands, and the published snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::commands::{Command, Reply};
use super::{AckReport, IngestReport, ManagedChange, Outcome, PendingDelta, Snapshot, StoreError};
use crate::columns::ColumnSet;
use crate::model::{HostCapabilities, Observation, Timestamp, VmKey};

/// Talks to the state owner. Cheap to clone; reads never wait for the owner.
#[derive(Clone)]
pub struct StateHandle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
}

impl StateHandle {
    pub(super) fn new(
        commands: mpsc::Sender<Command>,
        snapshot: watch::Receiver<Arc<Snapshot>>,
    ) -> StateHandle {
        StateHandle { commands, snapshot }
    }

    /// The state as of the last change (includes every change whose command answered).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    /// Returns once every event sender is gone and what they sent is stored (shutdown:
    /// the sink's last flush comes after this).
    pub async fn sources_done(&self) {
        let mut rx = self.snapshot.clone();
        // An error: the owner is gone, so nothing more will be stored either.
        let _ = rx.wait_for(|s| s.sources_done).await;
    }

    /// A command that can fail in the store.
    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        self.read(command).await?
    }

    /// A command whose answer is the value itself (reads of the live store).
    async fn read<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    pub async fn ingest(&self, batch: Vec<Observation>) -> Result<IngestReport, StoreError> {
        self.ask(|r| Command::Ingest(batch, r)).await
    }

    pub async fn next_batch(&self, limit: usize) -> Result<Vec<PendingDelta>, StoreError> {
        self.read(|r| Command::NextBatch(limit, r)).await
    }

    pub async fn ack(&self, outcomes: Vec<(VmKey, u64, Outcome)>) -> Result<AckReport, StoreError> {
        self.ask(|r| Command::Ack(outcomes, r)).await
    }

    pub async fn set_managed(
        &self,
        rows: HashMap<VmKey, String>,
        now: Timestamp,
    ) -> Result<ManagedChange, StoreError> {
        self.ask(|reply| Command::SetManaged { rows, now, reply })
            .await
    }

    pub async fn set_managed_of(
        &self,
        keys: Vec<VmKey>,
        rows: HashMap<VmKey, String>,
        prune: bool,
        now: Timestamp,
    ) -> Result<ManagedChange, StoreError> {
        self.ask(|reply| Command::SetManagedOf {
            keys,
            rows,
            prune,
            now,
            reply,
        })
        .await
    }

    pub async fn unchecked(&self, max: usize) -> Result<Vec<VmKey>, StoreError> {
        self.read(|r| Command::Unchecked(max, r)).await
    }

    pub async fn managed_record_keys(&self) -> Result<Vec<VmKey>, StoreError> {
        self.read(Command::ManagedRecordKeys).await
    }

    pub async fn enqueue_drift(
        &self,
        items: Vec<(VmKey, ColumnSet)>,
        now: Timestamp,
    ) -> Result<Vec<(VmKey, ColumnSet)>, StoreError> {
        self.ask(|reply| Command::EnqueueDrift { items, now, reply })
            .await
    }

    /// Operator action: put a parked delta back in line (the sink is woken).
    pub async fn retry_parked(&self, key: VmKey) -> Result<bool, StoreError> {
        self.ask(|r| Command::RetryParked(key, r)).await
    }

    /// Operator action: forget a pending or parked delta.
    pub async fn drop_outbox_entry(&self, key: VmKey) -> Result<bool, StoreError> {
        self.ask(|r| Command::DropOutboxEntry(key, r)).await
    }

    pub async fn put_capabilities(
        &self,
        caps: HostCapabilities,
    ) -> Result<(Arc<HostCapabilities>, bool), StoreError> {
        self.ask(|r| Command::PutCapabilities(Box::new(caps), r))
            .await
    }

    pub async fn capabilities_written(&self, fingerprint: String) -> Result<(), StoreError> {
        self.ask(|r| Command::CapabilitiesWritten(fingerprint, r))
            .await
    }

    pub async fn sync(&self) -> Result<bool, StoreError> {
        self.ask(Command::Sync).await
    }

    /// Syncs and closes the state file; the owner stops and later commands fail with
    /// `Closed` (the last snapshot stays readable).
    pub async fn close(&self) -> Result<(), StoreError> {
        match self.ask(Command::Close).await {
            Err(StoreError::Closed) => Ok(()),
            other => other,
        }
    }
}
