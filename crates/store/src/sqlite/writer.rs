//! The single writer thread and its group commit.
//!
//! Every write to the database goes through one thread owning one connection, so writers in
//! this process never contend for SQLite's write lock. Commit requests that queue up while a
//! transaction is being made durable are drained together (up to `max_batch`) into the next
//! transaction: one fsync acknowledges them all. This is what lets a REGISTER wait for
//! durability before its 200 OK without the fsync capping throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use rusqlite::{Connection, TransactionBehavior};
use switchboard_model::Change;
use tokio::sync::oneshot;

use crate::{Result, StoreError, StoreStats};

use super::{rows, sql_error};

/// Work for the writer thread.
pub(crate) enum Job {
    /// A batch of location/history changes, group-committed.
    Commit(CommitRequest),
    /// A directory write: runs alone, in its own transaction (the closure opens it).
    Write(Box<dyn FnOnce(&mut Connection) + Send>),
}

pub(crate) struct CommitRequest {
    pub changes: Vec<Change>,
    pub reply: oneshot::Sender<Result<Vec<i64>>>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commit_transactions: AtomicU64,
    pub committed_batches: AtomicU64,
    pub committed_changes: AtomicU64,
    pub failed_batches: AtomicU64,
    pub directory_writes: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> StoreStats {
        StoreStats {
            commit_transactions: self.commit_transactions.load(Ordering::Relaxed),
            committed_batches: self.committed_batches.load(Ordering::Relaxed),
            committed_changes: self.committed_changes.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            directory_writes: self.directory_writes.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, amount: usize) {
        counter.fetch_add(u64::try_from(amount).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// The writer thread's body: runs until every sender is dropped and the queue is empty.
pub(crate) fn run(
    mut connection: Connection,
    jobs: Receiver<Job>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    let max_batch = max_batch.max(1);
    let mut group: Vec<CommitRequest> = Vec::with_capacity(max_batch.min(4096));
    while let Ok(job) = jobs.recv() {
        let mut next = Some(job);
        while let Some(job) = next.take() {
            match job {
                Job::Write(write) => write(&mut connection),
                Job::Commit(request) => {
                    group.push(request);
                    while group.len() < max_batch {
                        match jobs.try_recv() {
                            Ok(Job::Commit(request)) => group.push(request),
                            // Keep the order: a directory write queued after these commits
                            // runs after them.
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    commit_group(&mut connection, &mut group, &counters);
                }
            }
        }
    }
    tracing::debug!("store writer stopped");
}

enum GroupFailure {
    /// One batch failed while being applied: the others may be fine.
    Batch(rusqlite::Error),
    /// The transaction itself failed (begin or commit): nothing in it is durable.
    Transaction(rusqlite::Error),
}

/// Commits `group` (draining it) and answers every request in it.
fn commit_group(connection: &mut Connection, group: &mut Vec<CommitRequest>, counters: &Counters) {
    let started = std::time::Instant::now();
    let outcome = match apply_together(connection, group) {
        Ok(ids) => ids.into_iter().map(Ok).collect(),
        Err(GroupFailure::Batch(error)) => {
            tracing::warn!(%error, batches = group.len(), "a batch failed; retrying the group batch by batch");
            match apply_isolated(connection, group) {
                Ok(results) => results,
                Err(error) => fail_all(group.len(), &error),
            }
        }
        Err(GroupFailure::Transaction(error)) => {
            tracing::error!(%error, batches = group.len(), "commit transaction failed");
            fail_all(group.len(), &error)
        }
    };
    // Count before answering, so a caller that saw its commit resolve sees it in the stats.
    let mut committed = 0;
    let mut changes = 0;
    let mut failed = 0;
    for (request, result) in group.iter().zip(&outcome) {
        if result.is_ok() {
            committed += 1;
            changes += request.changes.len();
        } else {
            failed += 1;
        }
    }
    if committed > 0 {
        counters.commit_transactions.fetch_add(1, Ordering::Relaxed);
        Counters::add(&counters.committed_batches, committed);
        Counters::add(&counters.committed_changes, changes);
    }
    Counters::add(&counters.failed_batches, failed);
    let elapsed = started.elapsed();
    if elapsed > std::time::Duration::from_millis(5) {
        tracing::debug!(batches = group.len(), ?elapsed, "slow group commit");
    }
    for (request, result) in group.drain(..).zip(outcome) {
        // The caller may have stopped waiting; the changes are committed all the same.
        let _ = request.reply.send(result);
    }
}

fn fail_all(count: usize, error: &rusqlite::Error) -> Vec<Result<Vec<i64>>> {
    let error = sql_error_ref(error);
    vec![Err(error); count]
}

fn sql_error_ref(error: &rusqlite::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

/// The fast path: every batch in one transaction, no savepoints.
fn apply_together(
    connection: &mut Connection,
    group: &[CommitRequest],
) -> std::result::Result<Vec<Vec<i64>>, GroupFailure> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(GroupFailure::Transaction)?;
    let mut ids = Vec::with_capacity(group.len());
    for request in group {
        ids.push(apply(&transaction, &request.changes).map_err(GroupFailure::Batch)?);
    }
    transaction.commit().map_err(GroupFailure::Transaction)?;
    Ok(ids)
}

/// The slow path after a batch failed: one transaction still, but each batch under its own
/// savepoint, so a bad batch is rolled back alone and its neighbours commit.
fn apply_isolated(
    connection: &mut Connection,
    group: &[CommitRequest],
) -> rusqlite::Result<Vec<Result<Vec<i64>>>> {
    let mut transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        let savepoint = transaction.savepoint()?;
        match apply(&savepoint, &request.changes) {
            Ok(ids) => {
                savepoint.commit()?;
                results.push(Ok(ids));
            }
            Err(error) => {
                // Dropping the savepoint rolls it back.
                drop(savepoint);
                results.push(Err(sql_error(error)));
            }
        }
    }
    transaction.commit()?;
    Ok(results)
}

/// Applies one batch; returns the ids of its appended events.
fn apply(connection: &Connection, changes: &[Change]) -> rusqlite::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for change in changes {
        match change {
            Change::UpsertBinding(binding) => rows::upsert_binding(connection, binding)?,
            Change::RemoveBinding { device_id, key } => {
                connection
                    .prepare_cached("DELETE FROM bindings WHERE device_id = ?1 AND key = ?2")?
                    .execute([device_id, key])?;
            }
            Change::RemoveDeviceBindings { device_id } => {
                connection
                    .prepare_cached("DELETE FROM bindings WHERE device_id = ?1")?
                    .execute([device_id])?;
            }
            Change::AppendEvent(event) => ids.push(rows::append_event(connection, event)?),
        }
    }
    Ok(ids)
}
