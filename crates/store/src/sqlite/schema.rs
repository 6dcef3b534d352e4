//! Numbered schema migrations, applied in order and recorded in `schema_migrations`.
//!
//! A migration, once released, is never edited: a change to the schema is a new entry at the
//! end of [`MIGRATIONS`].

use rusqlite::{Connection, TransactionBehavior};

use crate::{Result, StoreError};

use super::sql_error;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "account_api_key",
        sql: include_str!("migrations/0002_account_api_key.sql"),
    },
    Migration {
        version: 3,
        name: "users",
        sql: include_str!("migrations/0003_users.sql"),
    },
    Migration {
        version: 4,
        name: "account_documents",
        sql: include_str!("migrations/0004_account_documents.sql"),
    },
    Migration {
        version: 5,
        name: "device_state",
        sql: include_str!("migrations/0005_device_state.sql"),
    },
    Migration {
        version: 6,
        name: "webhooks",
        sql: include_str!("migrations/0006_webhooks.sql"),
    },
    Migration {
        version: 7,
        name: "api_key_scopes",
        sql: include_str!("migrations/0007_api_key_scopes.sql"),
    },
    Migration {
        version: 8,
        name: "monitoring_indexes",
        sql: include_str!("migrations/0008_monitoring_indexes.sql"),
    },
    Migration {
        version: 9,
        name: "account_access_lists",
        sql: include_str!("migrations/0009_account_access_lists.sql"),
    },
];

/// Applies every one of `migrations` not yet recorded, in order, all in one transaction
/// (taken with the write lock, so two processes opening a fresh database do not race).
/// Returns the versions applied. Refuses a database migrated by a newer build.
pub(crate) fn migrate(connection: &mut Connection, migrations: &[Migration]) -> Result<Vec<i64>> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error)?;
    transaction
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY NOT NULL,
                name       TEXT NOT NULL,
                applied_ms INTEGER NOT NULL
            )",
        )
        .map_err(sql_error)?;
    let done: Vec<i64> = {
        let mut statement = transaction
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .map_err(sql_error)?;
        statement
            .query_map([], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(sql_error)?
    };
    let current = done.last().copied().unwrap_or(0);
    let latest = migrations.last().map_or(0, |migration| migration.version);
    if current > latest {
        return Err(StoreError::Backend(format!(
            "database schema version {current} is newer than this build knows ({latest})"
        )));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        });
    let mut applied = Vec::new();
    // Every migration not yet recorded, not only those above the highest: versions may have
    // gaps (branches number theirs apart), and one merged later into a gap must still run.
    for migration in migrations
        .iter()
        .filter(|migration| !done.contains(&migration.version))
    {
        transaction.execute_batch(migration.sql).map_err(|error| {
            StoreError::Backend(format!(
                "migration {} ({}): {error}",
                migration.version, migration.name
            ))
        })?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![migration.version, migration.name, now_ms],
            )
            .map_err(sql_error)?;
        applied.push(migration.version);
    }
    transaction.commit().map_err(sql_error)?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied schema migrations");
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Migration = Migration {
        version: 1,
        name: "one",
        sql: "CREATE TABLE one (x INTEGER);",
    };
    const SECOND: Migration = Migration {
        version: 2,
        name: "two",
        sql: "CREATE TABLE two (y INTEGER);",
    };
    const THIRD: Migration = Migration {
        version: 3,
        name: "three",
        sql: "CREATE TABLE three (z INTEGER);",
    };
    const BROKEN: Migration = Migration {
        version: 3,
        name: "broken",
        sql: "CREATE TABLE one (x INTEGER);",
    };

    fn versions(connection: &Connection) -> Vec<i64> {
        let mut statement = connection
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .expect("prepare");
        statement
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn real_migrations_are_numbered_in_order() {
        assert_eq!(
            MIGRATIONS.first().map(|migration| migration.version),
            Some(1)
        );
        for pair in MIGRATIONS.windows(2) {
            assert!(
                pair[0].version < pair[1].version,
                "migration {} must come before {}",
                pair[0].version,
                pair[1].version
            );
        }
    }

    #[test]
    fn a_migration_merged_into_a_gap_still_runs() {
        let mut connection = Connection::open_in_memory().expect("open");
        assert_eq!(
            migrate(&mut connection, &[FIRST, THIRD]).expect("1 and 3"),
            vec![1, 3]
        );
        assert_eq!(
            migrate(&mut connection, &[FIRST, SECOND, THIRD]).expect("the gap"),
            vec![2]
        );
        assert_eq!(versions(&connection), vec![1, 2, 3]);
    }

    #[test]
    fn real_migrations_apply_to_an_empty_database() {
        let mut connection = Connection::open_in_memory().expect("open");
        let applied = migrate(&mut connection, MIGRATIONS).expect("migrate");
        assert_eq!(applied.len(), MIGRATIONS.len());
        assert!(
            migrate(&mut connection, MIGRATIONS)
                .expect("again")
                .is_empty()
        );
    }

    #[test]
    fn keys_stored_before_scopes_hold_every_scope() {
        let mut connection = Connection::open_in_memory().expect("open");
        let before: Vec<Migration> = MIGRATIONS
            .iter()
            .copied()
            .filter(|migration| migration.version < 7)
            .collect();
        migrate(&mut connection, &before).expect("before scopes");
        connection
            .execute(
                "INSERT INTO api_keys (id, account_id, name, key_hash, created_ms) \
                 VALUES ('k', 'a', 'bootstrap', 'h', 1)",
                [],
            )
            .expect("old key");
        let applied = migrate(&mut connection, MIGRATIONS).expect("scopes");
        assert_eq!(applied.first(), Some(&7));
        let sql = format!(
            "SELECT {} FROM api_keys WHERE id = 'k'",
            super::super::rows::API_KEY_COLUMNS
        );
        let key = connection
            .query_row(&sql, [], super::super::rows::api_key)
            .expect("read back");
        assert_eq!(key.scopes, vec![crate::ApiKey::EVERY_SCOPE.to_owned()]);
        assert_eq!(key.prefix, "");
    }

    #[test]
    fn applies_only_pending_migrations_in_order() {
        let mut connection = Connection::open_in_memory().expect("open");
        assert_eq!(migrate(&mut connection, &[FIRST]).expect("first"), vec![1]);
        assert_eq!(
            migrate(&mut connection, &[FIRST, SECOND]).expect("second"),
            vec![2]
        );
        assert!(
            migrate(&mut connection, &[FIRST, SECOND])
                .expect("nothing")
                .is_empty()
        );
        assert_eq!(versions(&connection), vec![1, 2]);
        connection
            .execute("INSERT INTO two (y) VALUES (1)", [])
            .expect("table two exists");
    }

    #[test]
    fn a_failing_migration_applies_nothing_of_its_run() {
        let mut connection = Connection::open_in_memory().expect("open");
        migrate(&mut connection, &[FIRST]).expect("first");
        let error = migrate(&mut connection, &[FIRST, SECOND, BROKEN]).expect_err("broken");
        assert!(
            matches!(&error, StoreError::Backend(message) if message.contains("migration 3")),
            "{error}"
        );
        assert_eq!(versions(&connection), vec![1]);
        assert!(
            connection
                .execute("INSERT INTO two (y) VALUES (1)", [])
                .is_err(),
            "two rolled back"
        );
    }

    #[test]
    fn refuses_a_database_from_a_newer_build() {
        let mut connection = Connection::open_in_memory().expect("open");
        migrate(&mut connection, &[FIRST, SECOND]).expect("both");
        let error = migrate(&mut connection, &[FIRST]).expect_err("newer");
        assert!(
            matches!(&error, StoreError::Backend(message) if message.contains("newer")),
            "{error}"
        );
    }
}
