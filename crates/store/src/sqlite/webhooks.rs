//! [`Webhooks`] on SQLite: hooks, the outbox (`webhook_deliveries`), attempts and the fan-out
//! cursor. Every write runs on the writer thread in its own transaction (`SqliteStore::write`),
//! so a fan-out (deliveries + cursor) and an attempt (attempt row + delivery + hook streak)
//! are each all-or-nothing.

use rusqlite::types::Type;
use rusqlite::{Connection, Row, Transaction, params};
use switchboard_model::UnixMillis;

use crate::{
    Attempt, AttemptOutcome, AttemptRecorded, Delivery, DeliveryState, NewDelivery, Result,
    StoreError, Webhook, Webhooks,
};

use super::{SqliteStore, require_changed, rows};

const WEBHOOK_COLUMNS: &str = "id, account_id, document, enabled, disabled_reason, secret, \
     failure_streak, created_ms, modified_ms";

const DELIVERY_COLUMNS: &str = "id, hook_id, account_id, event_id, event_name, payload, state, \
     attempts, next_attempt_ms, last_error, created_ms, delivered_ms";

const ATTEMPT_COLUMNS: &str = "id, hook_id, account_id, delivery_id, event_id, event_name, \
     at_ms, http_status, error, duration_ms, result";

fn json_column(row: &Row<'_>, column: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(error))
    })
}

fn webhook(row: &Row<'_>) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: row.get(0)?,
        account_id: row.get(1)?,
        document: json_column(row, 2)?,
        enabled: row.get(3)?,
        disabled_reason: row.get(4)?,
        secret: row.get(5)?,
        failure_streak: row.get(6)?,
        created_ms: row.get(7)?,
        modified_ms: row.get(8)?,
    })
}

fn delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = row.get(6)?;
    let state = DeliveryState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            Type::Text,
            format!("malformed row: delivery state {state:?}").into(),
        )
    })?;
    Ok(Delivery {
        id: row.get(0)?,
        hook_id: row.get(1)?,
        account_id: row.get(2)?,
        event_id: row.get(3)?,
        event_name: row.get(4)?,
        payload: json_column(row, 5)?,
        state,
        attempts: row.get(7)?,
        next_attempt_ms: row.get(8)?,
        last_error: row.get(9)?,
        created_ms: row.get(10)?,
        delivered_ms: row.get(11)?,
    })
}

fn attempt(row: &Row<'_>) -> rusqlite::Result<Attempt> {
    let result: String = row.get(10)?;
    Ok(Attempt {
        id: row.get(0)?,
        hook_id: row.get(1)?,
        account_id: row.get(2)?,
        delivery_id: row.get(3)?,
        event_id: row.get(4)?,
        event_name: row.get(5)?,
        at_ms: row.get(6)?,
        http_status: row.get(7)?,
        error: row.get(8)?,
        duration_ms: row.get(9)?,
        success: result == "success",
    })
}

fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn cursor(connection: &Connection) -> rusqlite::Result<Option<i64>> {
    rows::first(
        connection,
        "SELECT last_event_id FROM webhook_cursor WHERE singleton = 1",
        [],
        |row| row.get(0),
    )
}

/// The reason a hook is disabled with after `streak` failed attempts.
fn disable_reason(streak: u32, last_error: Option<&str>) -> String {
    format!(
        "{streak} consecutive failed attempts; last: {}",
        last_error.unwrap_or("unknown error")
    )
}

fn record(
    transaction: &Transaction<'_>,
    outcome: &AttemptOutcome,
) -> rusqlite::Result<AttemptRecorded> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1");
    let Some(found) = rows::first(transaction, &sql, [outcome.delivery_id], delivery)? else {
        return Err(rusqlite::Error::QueryReturnedNoRows);
    };
    transaction
        .prepare_cached(
            "INSERT INTO webhook_attempts (hook_id, account_id, delivery_id, event_id, event_name,
                 at_ms, http_status, error, duration_ms, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            found.hook_id,
            found.account_id,
            found.id,
            found.event_id,
            found.event_name,
            outcome.at_ms,
            outcome.http_status,
            outcome.error,
            outcome.duration_ms,
            if outcome.success {
                "success"
            } else {
                "failure"
            },
        ])?;
    let state = match (outcome.success, outcome.retry_at_ms) {
        (true, _) => DeliveryState::Delivered,
        (false, Some(_)) => DeliveryState::Pending,
        (false, None) => DeliveryState::Failed,
    };
    transaction
        .prepare_cached(
            "UPDATE webhook_deliveries SET state = ?2, attempts = attempts + 1,
                 next_attempt_ms = COALESCE(?3, next_attempt_ms), last_error = ?4,
                 delivered_ms = ?5
             WHERE id = ?1",
        )?
        .execute(params![
            found.id,
            state.as_str(),
            outcome.retry_at_ms,
            outcome.error,
            outcome.success.then_some(outcome.at_ms),
        ])?;
    let streak: Option<u32> = if outcome.success {
        transaction
            .prepare_cached("UPDATE webhooks SET failure_streak = 0 WHERE id = ?1")?
            .execute([&found.hook_id])?;
        Some(0)
    } else {
        rows::first(
            transaction,
            "UPDATE webhooks SET failure_streak = failure_streak + 1 WHERE id = ?1
             RETURNING failure_streak",
            [&found.hook_id],
            |row| row.get(0),
        )?
    };
    let failure_streak = streak.unwrap_or_default();
    let mut disabled = None;
    if !outcome.success
        && outcome.disable_after_failures > 0
        && failure_streak >= outcome.disable_after_failures
    {
        let reason = disable_reason(failure_streak, outcome.error.as_deref());
        let changed = transaction
            .prepare_cached(
                "UPDATE webhooks SET enabled = 0, disabled_reason = ?2 WHERE id = ?1 AND enabled = 1",
            )?
            .execute(params![found.hook_id, reason])?;
        if changed > 0 {
            disabled = Some(reason);
        }
    }
    Ok(AttemptRecorded {
        state,
        failure_streak,
        disabled,
    })
}

impl Webhooks for SqliteStore {
    fn create_webhook(&self, hook: &Webhook) -> Result<()> {
        let hook = hook.clone();
        let document = hook.document.to_string();
        self.write(move |transaction| {
            let account_exists = transaction
                .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                .exists([&hook.account_id])?;
            require_changed(usize::from(account_exists))?;
            transaction
                .prepare_cached(
                    "INSERT INTO webhooks (id, account_id, document, enabled, disabled_reason,
                         secret, failure_streak, created_ms, modified_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    hook.id,
                    hook.account_id,
                    document,
                    hook.enabled,
                    hook.disabled_reason,
                    hook.secret,
                    hook.failure_streak,
                    hook.created_ms,
                    hook.modified_ms,
                ])?;
            Ok(())
        })
    }

    fn update_webhook(&self, hook: &Webhook) -> Result<()> {
        let hook = hook.clone();
        let document = hook.document.to_string();
        self.write(move |transaction| {
            require_changed(
                transaction
                    .prepare_cached(
                        "UPDATE webhooks SET document = ?2,
                             failure_streak = CASE WHEN ?3 AND NOT enabled THEN 0
                                 ELSE failure_streak END,
                             enabled = ?3, disabled_reason = ?4, secret = ?5, modified_ms = ?6
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        hook.id,
                        document,
                        hook.enabled,
                        hook.disabled_reason,
                        hook.secret,
                        hook.modified_ms,
                    ])?,
            )
        })
    }

    fn delete_webhook(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |transaction| {
            require_changed(transaction.execute("DELETE FROM webhooks WHERE id = ?1", [&id])?)?;
            transaction.execute("DELETE FROM webhook_deliveries WHERE hook_id = ?1", [&id])?;
            transaction.execute("DELETE FROM webhook_attempts WHERE hook_id = ?1", [&id])?;
            Ok(())
        })
    }

    fn webhook(&self, id: &str) -> Result<Option<Webhook>> {
        self.read(|connection| {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1");
            rows::first(connection, &sql, [id], webhook)
        })
    }

    fn webhooks(&self, account_id: &str) -> Result<Vec<Webhook>> {
        self.read(|connection| {
            let sql =
                format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE account_id = ?1 ORDER BY id");
            rows::collect(connection, &sql, [account_id], webhook)
        })
    }

    fn enabled_webhooks(&self) -> Result<Vec<Webhook>> {
        self.read(|connection| {
            let sql =
                format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE enabled = 1 ORDER BY id");
            rows::collect(connection, &sql, [], webhook)
        })
    }

    fn webhook_cursor(&self) -> Result<Option<i64>> {
        self.read(cursor)
    }

    fn fan_out(
        &self,
        expected: Option<i64>,
        new_cursor: i64,
        deliveries: &[NewDelivery],
    ) -> Result<()> {
        let mut prepared = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            prepared.push((delivery.clone(), delivery.payload.to_string()));
        }
        let moved = self.write(move |transaction| {
            if cursor(transaction)? != expected {
                return Ok(false);
            }
            transaction
                .prepare_cached(
                    "INSERT INTO webhook_cursor (singleton, last_event_id) VALUES (1, ?1)
                     ON CONFLICT (singleton) DO UPDATE SET last_event_id = excluded.last_event_id",
                )?
                .execute([new_cursor])?;
            let mut insert = transaction.prepare_cached(
                "INSERT OR IGNORE INTO webhook_deliveries (hook_id, account_id, event_id,
                     event_name, payload, state, attempts, next_attempt_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
            )?;
            for (delivery, payload) in &prepared {
                insert.execute(params![
                    delivery.hook_id,
                    delivery.account_id,
                    delivery.event_id,
                    delivery.event_name,
                    payload,
                    delivery.created_ms,
                ])?;
            }
            Ok(true)
        })?;
        if moved {
            Ok(())
        } else {
            Err(StoreError::Conflict("cursor".to_owned()))
        }
    }

    fn due_deliveries(
        &self,
        now_ms: UnixMillis,
        per_hook: usize,
        limit_all: usize,
    ) -> Result<Vec<Delivery>> {
        self.read(|connection| {
            let columns = DELIVERY_COLUMNS
                .split(", ")
                .map(|column| format!("d.{column}"))
                .collect::<Vec<_>>()
                .join(", ");
            // Ranked per hook, so one hook with a deep backlog cannot fill the whole batch.
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM (
                     SELECT {columns}, ROW_NUMBER() OVER (
                         PARTITION BY d.hook_id ORDER BY d.next_attempt_ms, d.id) AS rank
                     FROM webhook_deliveries d JOIN webhooks h ON h.id = d.hook_id
                     WHERE d.state = 'pending' AND d.next_attempt_ms <= ?1 AND h.enabled = 1)
                 WHERE rank <= ?2 ORDER BY next_attempt_ms, id LIMIT ?3"
            );
            rows::collect(
                connection,
                &sql,
                params![now_ms, limit(per_hook), limit(limit_all)],
                delivery,
            )
        })
    }

    fn delivery(&self, id: i64) -> Result<Option<Delivery>> {
        self.read(|connection| {
            let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?1");
            rows::first(connection, &sql, [id], delivery)
        })
    }

    fn record_attempt(&self, outcome: &AttemptOutcome) -> Result<AttemptRecorded> {
        let outcome = outcome.clone();
        self.write(move |transaction| record(transaction, &outcome))
    }

    fn webhook_attempts(
        &self,
        account_id: &str,
        hook_id: Option<&str>,
        limit_rows: usize,
    ) -> Result<Vec<Attempt>> {
        self.read(|connection| match hook_id {
            Some(hook_id) => {
                let sql = format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts
                     WHERE account_id = ?1 AND hook_id = ?2 ORDER BY id DESC LIMIT ?3"
                );
                rows::collect(
                    connection,
                    &sql,
                    params![account_id, hook_id, limit(limit_rows)],
                    attempt,
                )
            }
            None => {
                let sql = format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts
                     WHERE account_id = ?1 ORDER BY id DESC LIMIT ?2"
                );
                rows::collect(
                    connection,
                    &sql,
                    params![account_id, limit(limit_rows)],
                    attempt,
                )
            }
        })
    }

    fn prune_webhooks(&self, before_ms: UnixMillis) -> Result<usize> {
        self.write(move |transaction| {
            let deliveries = transaction.execute(
                "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_ms < ?1",
                [before_ms],
            )?;
            let attempts = transaction
                .execute("DELETE FROM webhook_attempts WHERE at_ms < ?1", [before_ms])?;
            Ok(deliveries + attempts)
        })
    }
}
