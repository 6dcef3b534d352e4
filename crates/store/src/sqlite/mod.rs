//! The SQLite backend: one database file in WAL mode, one writer thread, a pool of readers.
//!
//! Another process (the CLI) may write the same file while the server runs: every connection
//! waits up to [`BUSY_TIMEOUT`] for SQLite's write lock instead of failing at once.

mod rows;
mod schema;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
    params_from_iter,
};
use switchboard_model::{
    AccessLists, Account, Binding, Change, Device, DeviceOutcome, Event, UnixMillis, User,
};
use tokio::sync::oneshot;

use crate::{
    ApiKey, CommitFuture, CredentialHash, DeviceSummary, Directory, EventQuery, History, Location,
    Result, Sample, StateSample, StoreError, StoreStats,
};

use rows::fold;
use writer::{CommitRequest, Counters, Job};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "switchboard.db";

/// How long any connection waits for a lock another connection or process holds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle read connections kept open; more are opened under load and closed after use.
const MAX_IDLE_READERS: usize = 8;

/// How hard a commit presses the data to disk (SQLite `PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged commit survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: an acknowledged commit survives a crash or `kill -9` of the
    /// process, but the last commits may be lost on power loss or an OS crash.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Options of [`SqliteStore::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// At most this many commit batches share one transaction.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            max_batch: 1024,
        }
    }
}

/// The embedded backend. See the crate documentation.
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    jobs: RwLock<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    closed: AtomicBool,
    counters: Arc<Counters>,
    /// Stops (by dropping the sender) and joins the checkpoint thread.
    checkpoints: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Maps a SQLite error to the store's: unique violations name the field, a missing row is
/// `NotFound`, anything else is the backend's fault.
pub(crate) fn sql_error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        rusqlite::Error::SqliteFailure(failure, message)
            if failure.code == ErrorCode::ConstraintViolation
                && matches!(
                    failure.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
        {
            let message = message.as_deref().unwrap_or_default();
            let field = if message.contains("realm_key") {
                "realm"
            } else if message.contains("sip_username")
                || message.contains("devices_username_unique")
            {
                "sip.username"
            } else if message.contains("users.username_key") {
                "username"
            } else if message.contains("key_hash") || message.contains("accounts.api_key") {
                "api_key"
            } else if message.contains(".id") {
                "id"
            } else {
                return StoreError::Conflict(message.to_owned());
            };
            StoreError::Conflict(field.to_owned())
        }
        _ => StoreError::Backend(error.to_string()),
    }
}

fn configure(connection: &Connection, synchronous: Synchronous) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.set_prepared_statement_cache_capacity(64);
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "SQLite refused WAL journal mode");
    }
    connection.pragma_update(None, "synchronous", synchronous.pragma())?;
    Ok(())
}

/// The writer's connection: no checkpoints on the commit path (the checkpoint thread does
/// them), and an 8 MiB page cache. Measured at 10k registrations/s: 64 MiB cost more CPU, not
/// less, because SQLite walks the cache's hash table when a commit ends (`pcache1Truncate`).
fn tune_writer(connection: &Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "cache_size", -8_192)?;
    connection.pragma_update(None, "temp_store", "memory")?;
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    // After a restart, a WAL file larger than this is truncated back to it.
    connection.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(())
}

/// WAL size (frames of one page) beyond which the checkpointer restarts the log.
const RESTART_FRAMES: i64 = 4096;

/// How often the WAL is copied back into the database, off the commit path.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Copies committed WAL frames into the database without blocking the writer (PASSIVE), until
/// the store closes; then a final TRUNCATE checkpoint leaves a small WAL behind.
fn checkpoint_loop(connection: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_INTERVAL) {
        // PASSIVE copies frames without stopping the writer; but under a steady stream of
        // commits it never catches up, and the WAL can only restart from its beginning once
        // fully copied. So when the log grows past RESTART_FRAMES, a RESTART checkpoint holds the
        // writer for the little that is left and lets the log start over.
        let passive = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(1)
        });
        match passive {
            Ok(frames) if frames > RESTART_FRAMES => {
                if let Err(error) =
                    connection.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                {
                    tracing::warn!(%error, "WAL restart checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
        }
    }
    if let Err(error) = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::debug!(%error, "final WAL checkpoint failed");
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0700) the data directory and `switchboard.db` inside
    /// it, applies pending migrations and starts the writer thread.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<Arc<SqliteStore>> {
        create_private_dir(dir).map_err(|error| {
            StoreError::Backend(format!(
                "creating data directory {}: {error}",
                dir.display()
            ))
        })?;
        let path = dir.join(DATABASE_FILE);
        let mut connection = Connection::open(&path).map_err(sql_error)?;
        configure(&connection, options.synchronous).map_err(sql_error)?;
        schema::migrate(&mut connection, schema::MIGRATIONS)?;
        tune_writer(&connection).map_err(sql_error)?;
        let (stop_checkpoints, checkpoint_stop) = mpsc::channel::<()>();
        let checkpointer = Connection::open(&path).map_err(sql_error)?;
        configure(&checkpointer, options.synchronous).map_err(sql_error)?;
        let checkpoints = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, checkpoint_stop))
            .map_err(|error| {
                StoreError::Backend(format!("starting the checkpoint thread: {error}"))
            })?;

        let counters = Arc::new(Counters::default());
        let (sender, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let counters = Arc::clone(&counters);
                move || writer::run(connection, receiver, options.max_batch, counters)
            })
            .map_err(|error| StoreError::Backend(format!("starting the writer thread: {error}")))?;
        Ok(Arc::new(SqliteStore {
            path,
            options,
            jobs: RwLock::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            checkpoints: Mutex::new(Some((stop_checkpoints, checkpoints))),
            readers: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            counters,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }

    /// Finishes every queued write, stops the writer thread and closes the connections.
    /// Later calls fail with [`StoreError::Closed`]. Idempotent; dropping the store does it too.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Dropping the only sender lets the writer drain the queue and stop.
        drop(
            self.jobs
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
        let checkpoints = self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((stop, thread)) = checkpoints {
            drop(stop);
            if thread.join().is_err() {
                tracing::error!("store checkpoint thread panicked");
            }
        }
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn send(&self, job: Job) -> std::result::Result<(), Job> {
        let jobs = self.jobs.read().unwrap_or_else(PoisonError::into_inner);
        match jobs.as_ref() {
            Some(sender) => sender.send(job).map_err(|error| error.0),
            None => Err(job),
        }
    }

    /// Runs a directory write on the writer thread in its own transaction and waits for it.
    fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let counters = Arc::clone(&self.counters);
        let job = Job::Write(Box::new(move |connection: &mut Connection| {
            let result = (|| {
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = work(&transaction)?;
                transaction.commit()?;
                Ok(value)
            })();
            if result.is_ok() {
                counters.directory_writes.fetch_add(1, Ordering::Relaxed);
            }
            let _ = reply.send(result.map_err(sql_error));
        }));
        self.send(job).map_err(|_| StoreError::Closed)?;
        answer.recv().map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on a pooled connection.
    fn read<T>(&self, work: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => self.open_reader().map_err(sql_error)?,
        };
        let result = work(&connection).map_err(sql_error);
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < MAX_IDLE_READERS && !self.closed.load(Ordering::SeqCst) {
            readers.push(connection);
        }
        result
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open(&self.path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.set_prepared_statement_cache_capacity(64);
        connection.pragma_update(None, "query_only", true)?;
        Ok(connection)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn require_changed(changed: usize) -> rusqlite::Result<()> {
    if changed == 0 {
        Err(rusqlite::Error::QueryReturnedNoRows)
    } else {
        Ok(())
    }
}

impl Directory for SqliteStore {
    fn create_account(&self, account: &Account) -> Result<()> {
        let account = account.clone();
        self.write(move |transaction| rows::insert_account(transaction, &account))
    }

    fn update_account(&self, account: &Account) -> Result<()> {
        let account = account.clone();
        self.write(move |transaction| require_changed(rows::update_account(transaction, &account)?))
    }

    fn delete_account(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |transaction| {
            require_changed(transaction.execute("DELETE FROM accounts WHERE id = ?1", [&id])?)?;
            transaction.execute("DELETE FROM devices WHERE account_id = ?1", [&id])?;
            transaction.execute("DELETE FROM bindings WHERE account_id = ?1", [&id])?;
            transaction.execute("DELETE FROM api_keys WHERE account_id = ?1", [&id])?;
            transaction.execute("DELETE FROM users WHERE account_id = ?1", [&id])?;
            transaction.execute("DELETE FROM device_state WHERE account_id = ?1", [&id])?;
            transaction.execute("DELETE FROM state_samples WHERE account_id = ?1", [&id])?;
            transaction.execute("DELETE FROM webhooks WHERE account_id = ?1", [&id])?;
            transaction.execute(
                "DELETE FROM webhook_deliveries WHERE account_id = ?1",
                [&id],
            )?;
            transaction.execute("DELETE FROM webhook_attempts WHERE account_id = ?1", [&id])?;
            transaction.execute(
                "DELETE FROM account_access_lists WHERE account_id = ?1",
                [&id],
            )?;
            Ok(())
        })
    }

    fn account(&self, id: &str) -> Result<Option<Account>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM accounts WHERE id = ?1",
                rows::ACCOUNT_COLUMNS
            );
            rows::first(connection, &sql, [id], rows::account)
        })
    }

    fn account_by_realm(&self, realm: &str) -> Result<Option<Account>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM accounts WHERE realm_key = ?1",
                rows::ACCOUNT_COLUMNS
            );
            rows::first(connection, &sql, [fold(realm)], rows::account)
        })
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        self.read(|connection| {
            let sql = format!("SELECT {} FROM accounts ORDER BY id", rows::ACCOUNT_COLUMNS);
            rows::collect(connection, &sql, [], rows::account)
        })
    }

    fn create_device(&self, device: &Device) -> Result<()> {
        let device = device.clone();
        self.write(move |transaction| {
            let account_exists = transaction
                .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                .exists([&device.account_id])?;
            require_changed(usize::from(account_exists))?;
            rows::write_device(transaction, &device, false)?;
            Ok(())
        })
    }

    fn update_device(&self, device: &Device) -> Result<()> {
        let device = device.clone();
        self.write(move |transaction| {
            require_changed(rows::write_device(transaction, &device, true)?)
        })
    }

    fn delete_device(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |transaction| {
            require_changed(transaction.execute("DELETE FROM devices WHERE id = ?1", [&id])?)?;
            transaction.execute("DELETE FROM bindings WHERE device_id = ?1", [&id])?;
            transaction.execute("DELETE FROM device_state WHERE device_id = ?1", [&id])?;
            Ok(())
        })
    }

    fn device(&self, id: &str) -> Result<Option<Device>> {
        self.read(|connection| {
            let sql = format!("SELECT {} FROM devices WHERE id = ?1", rows::DEVICE_COLUMNS);
            rows::first(connection, &sql, [id], rows::device)
        })
    }

    fn device_by_username(&self, account_id: &str, username: &str) -> Result<Option<Device>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM devices WHERE account_id = ?1 AND sip_username_key = ?2
                 ORDER BY sip_method = 'password' DESC, id LIMIT 1",
                rows::DEVICE_COLUMNS
            );
            rows::first(
                connection,
                &sql,
                params![account_id, fold(username)],
                rows::device,
            )
        })
    }

    fn devices_by_ip(&self, ip: &str) -> Result<Vec<Device>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM devices WHERE sip_ip = ?1 ORDER BY id",
                rows::DEVICE_COLUMNS
            );
            rows::collect(connection, &sql, [ip], rows::device)
        })
    }

    fn devices(&self, account_id: &str) -> Result<Vec<Device>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM devices WHERE account_id = ?1 ORDER BY id",
                rows::DEVICE_COLUMNS
            );
            rows::collect(connection, &sql, [account_id], rows::device)
        })
    }

    fn devices_page(
        &self,
        account_id: &str,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Device>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM devices WHERE account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                rows::DEVICE_COLUMNS
            );
            rows::collect(
                connection,
                &sql,
                params![account_id, after_id.unwrap_or(""), limit],
                rows::device,
            )
        })
    }

    fn devices_modified_since(&self, since_ms: UnixMillis) -> Result<Vec<Device>> {
        self.read(|connection| {
            // The modification-time index, not a walk of the whole table in id order (which
            // SQLite would pick to skip the sort): a refresh every 2 s must cost what changed.
            let sql = format!(
                "SELECT {} FROM devices INDEXED BY devices_modified WHERE modified_ms >= ?1",
                rows::DEVICE_COLUMNS
            );
            let mut devices = rows::collect(connection, &sql, [since_ms], rows::device)?;
            devices.sort_unstable_by(|a, b| a.id.cmp(&b.id));
            Ok(devices)
        })
    }

    fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        let key = key.clone();
        let scopes = serde_json::to_string(&key.scopes)
            .map_err(|error| StoreError::Backend(error.to_string()))?;
        self.write(move |transaction| {
            transaction
                .prepare_cached(
                    "INSERT INTO api_keys (id, account_id, name, key_hash, created_ms, scopes, prefix) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    key.id,
                    key.account_id,
                    key.name,
                    key.key_hash,
                    key.created_ms,
                    scopes,
                    key.prefix
                ])?;
            Ok(())
        })
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM api_keys WHERE id = ?1",
                rows::API_KEY_COLUMNS
            );
            rows::first(connection, &sql, [id], rows::api_key)
        })
    }

    fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM api_keys WHERE key_hash = ?1",
                rows::API_KEY_COLUMNS
            );
            rows::first(connection, &sql, [key_hash], rows::api_key)
        })
    }

    fn api_keys(&self, account_id: &str) -> Result<Vec<ApiKey>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM api_keys WHERE account_id = ?1 ORDER BY id",
                rows::API_KEY_COLUMNS
            );
            rows::collect(connection, &sql, [account_id], rows::api_key)
        })
    }

    fn delete_api_key(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |transaction| {
            require_changed(transaction.execute("DELETE FROM api_keys WHERE id = ?1", [&id])?)
        })
    }

    fn set_account_api_key(&self, account_id: &str, key: &str) -> Result<()> {
        let (account_id, key) = (account_id.to_owned(), key.to_owned());
        self.write(move |transaction| {
            require_changed(transaction.execute(
                "UPDATE accounts SET api_key = ?2 WHERE id = ?1",
                params![account_id, key],
            )?)
        })
    }

    fn account_api_key(&self, account_id: &str) -> Result<Option<String>> {
        self.read(|connection| {
            rows::first(
                connection,
                "SELECT api_key FROM accounts WHERE id = ?1",
                [account_id],
                |row| row.get::<_, Option<String>>(0),
            )
        })
        .map(Option::flatten)
    }

    fn account_document(&self, account_id: &str) -> Result<Option<serde_json::Value>> {
        let text = self.read(|connection| {
            rows::first(
                connection,
                "SELECT document FROM accounts WHERE id = ?1",
                [account_id],
                |row| row.get::<_, String>(0),
            )
        })?;
        match text {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|error| {
                StoreError::Backend(format!("malformed row: account document: {error}"))
            }),
        }
    }

    fn set_account_document(&self, account_id: &str, document: &serde_json::Value) -> Result<()> {
        let account_id = account_id.to_owned();
        let text = document.to_string();
        self.write(move |transaction| {
            require_changed(transaction.execute(
                "UPDATE accounts SET document = ?2 WHERE id = ?1",
                params![account_id, text],
            )?)
        })
    }

    fn access_lists(&self, account_id: &str) -> Result<Option<AccessLists>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM account_access_lists WHERE account_id = ?1",
                rows::ACCESS_LIST_COLUMNS
            );
            rows::first(connection, &sql, [account_id], rows::access_lists)
        })
    }

    fn set_access_lists(
        &self,
        account_id: &str,
        allow: &[String],
        deny: &[String],
        now_ms: UnixMillis,
    ) -> Result<AccessLists> {
        let account_id = account_id.to_owned();
        let allow_text = serde_json::Value::from(allow.to_vec()).to_string();
        let deny_text = serde_json::Value::from(deny.to_vec()).to_string();
        self.write(move |transaction| {
            let account_exists = transaction
                .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                .exists([&account_id])?;
            require_changed(usize::from(account_exists))?;
            transaction
                .prepare_cached(
                    "INSERT INTO account_access_lists (account_id, allow, deny, revision, modified_ms)
                     VALUES (?1, ?2, ?3, 1, ?4)
                     ON CONFLICT (account_id) DO UPDATE SET
                         allow = excluded.allow,
                         deny = excluded.deny,
                         revision = account_access_lists.revision + 1,
                         modified_ms = excluded.modified_ms",
                )?
                .execute(params![account_id, allow_text, deny_text, now_ms])?;
            let sql = format!(
                "SELECT {} FROM account_access_lists WHERE account_id = ?1",
                rows::ACCESS_LIST_COLUMNS
            );
            rows::first(transaction, &sql, [&account_id], rows::access_lists)?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
    }

    fn access_lists_modified_since(&self, since_ms: UnixMillis) -> Result<Vec<AccessLists>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM account_access_lists WHERE modified_ms >= ?1 ORDER BY account_id",
                rows::ACCESS_LIST_COLUMNS
            );
            rows::collect(connection, &sql, [since_ms], rows::access_lists)
        })
    }

    fn account_by_api_key(&self, key: &str) -> Result<Option<Account>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM accounts WHERE api_key = ?1",
                rows::ACCOUNT_COLUMNS
            );
            rows::first(connection, &sql, [key], rows::account)
        })
    }

    fn create_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.write(move |transaction| {
            let account_exists = transaction
                .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                .exists([&user.account_id])?;
            require_changed(usize::from(account_exists))?;
            rows::write_user(transaction, &user, false)?;
            Ok(())
        })
    }

    fn update_user(&self, user: &User) -> Result<()> {
        let user = user.clone();
        let result = self.write(move |transaction| {
            if rows::write_user(transaction, &user, true)? == 1 {
                return Ok(true);
            }
            let exists = transaction
                .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
                .exists([&user.id])?;
            require_changed(usize::from(exists))?;
            Ok(false)
        })?;
        if result {
            Ok(())
        } else {
            Err(StoreError::Conflict("revision".to_owned()))
        }
    }

    fn delete_user(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |transaction| {
            require_changed(transaction.execute("DELETE FROM users WHERE id = ?1", [&id])?)
        })
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        self.read(|connection| {
            let sql = format!("SELECT {} FROM users WHERE id = ?1", rows::USER_COLUMNS);
            rows::first(connection, &sql, [id], rows::user)
        })
    }

    fn users(&self, account_id: &str) -> Result<Vec<User>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM users WHERE account_id = ?1 ORDER BY id",
                rows::USER_COLUMNS
            );
            rows::collect(connection, &sql, [account_id], rows::user)
        })
    }

    fn user_by_username(&self, account_id: &str, username: &str) -> Result<Option<User>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM users WHERE account_id = ?1 AND username_key = ?2",
                rows::USER_COLUMNS
            );
            rows::first(
                connection,
                &sql,
                params![account_id, fold(username)],
                rows::user,
            )
        })
    }

    fn users_by_credentials(
        &self,
        account_id: &str,
        method: CredentialHash,
        hash: &str,
    ) -> Result<Vec<User>> {
        let column = match method {
            CredentialHash::Md5 => "md5_auth",
            CredentialHash::Sha1 => "sha1_auth",
        };
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM users WHERE account_id = ?1 AND {column} = ?2 ORDER BY id",
                rows::USER_COLUMNS
            );
            rows::collect(connection, &sql, params![account_id, hash], rows::user)
        })
    }
}

impl Location for SqliteStore {
    fn commit(&self, changes: Vec<Change>) -> CommitFuture {
        let (reply, receiver) = oneshot::channel();
        match self.send(Job::Commit(CommitRequest { changes, reply })) {
            Ok(()) => CommitFuture::from_receiver(receiver),
            Err(_) => CommitFuture::ready(Err(StoreError::Closed)),
        }
    }

    fn bindings(&self) -> Result<Vec<Binding>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM bindings ORDER BY device_id, key",
                rows::BINDING_COLUMNS
            );
            rows::collect(connection, &sql, [], rows::binding)
        })
    }

    fn device_bindings(&self, device_id: &str) -> Result<Vec<Binding>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM bindings WHERE device_id = ?1 ORDER BY key",
                rows::BINDING_COLUMNS
            );
            rows::collect(connection, &sql, [device_id], rows::binding)
        })
    }

    fn expired_bindings(&self, now_ms: UnixMillis) -> Result<Vec<Binding>> {
        self.read(|connection| {
            let sql = format!(
                "SELECT {} FROM bindings WHERE expires_at_ms <= ?1 ORDER BY expires_at_ms, device_id, key",
                rows::BINDING_COLUMNS
            );
            rows::collect(connection, &sql, [now_ms], rows::binding)
        })
    }
}

impl History for SqliteStore {
    fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut condition = |sql: &str, value: Value| {
            values.push(value);
            conditions.push(format!("{sql} ?{}", values.len()));
        };
        if let Some(account_id) = &query.account_id {
            condition("account_id =", Value::Text(account_id.clone()));
        }
        if let Some(device_id) = &query.device_id {
            condition("device_id =", Value::Text(device_id.clone()));
        }
        if let Some(after_id) = query.after_id {
            condition("id >", Value::Integer(after_id));
        }
        if let Some(before_id) = query.before_id {
            condition("id <", Value::Integer(before_id));
        }
        if let Some(since_ms) = query.since_ms {
            condition("at_ms >=", Value::Integer(since_ms));
        }
        if let Some(until_ms) = query.until_ms {
            condition("at_ms <", Value::Integer(until_ms));
        }
        if !query.kinds.is_empty() {
            let first = values.len() + 1;
            let placeholders: Vec<String> = (first..first + query.kinds.len())
                .map(|index| format!("?{index}"))
                .collect();
            values.extend(
                query
                    .kinds
                    .iter()
                    .map(|kind| Value::Text(kind.as_str().to_owned())),
            );
            conditions.push(format!("kind IN ({})", placeholders.join(", ")));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = if query.newest_first { "DESC" } else { "ASC" };
        values.push(Value::Integer(
            i64::try_from(query.limit).unwrap_or(i64::MAX),
        ));
        let sql = format!(
            "SELECT {} FROM events {filter} ORDER BY id {order} LIMIT ?{}",
            rows::EVENT_COLUMNS,
            values.len()
        );
        self.read(|connection| {
            rows::collect(connection, &sql, params_from_iter(values), rows::event)
        })
    }

    fn last_event_id(&self) -> Result<i64> {
        self.read(|connection| {
            connection
                .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
                .query_row([], |row| row.get(0))
        })
    }

    fn device_outcome(&self, device_id: &str) -> Result<Option<DeviceOutcome>> {
        self.read(|connection| {
            connection
                .prepare_cached(
                    "SELECT last_kind, last_at_ms, last_reason, last_registered_ms
                       FROM device_state WHERE device_id = ?1",
                )?
                .query_row([device_id], |row| rows::outcome(row, 0))
                .optional()
        })
        .map(Option::flatten)
    }

    fn device_summaries(&self, account_id: &str) -> Result<Vec<DeviceSummary>> {
        // Two ordered scans of covering indexes merged by device id: no per-device seek.
        self.read(|connection| {
            let mut summaries = rows::collect(
                connection,
                "SELECT id, account_id, name, enabled, device_type, owner_id, sip_username,
                        sip_expire_seconds, created_ms, NULL, NULL, NULL, NULL
                   FROM devices INDEXED BY devices_summary
                  WHERE account_id = ?1
                  ORDER BY id",
                [account_id],
                rows::device_summary,
            )?;
            let mut statement = connection.prepare_cached(
                "SELECT device_id, last_kind, last_at_ms, last_reason, last_registered_ms
                   FROM device_state INDEXED BY device_state_account
                  WHERE account_id = ?1
                  ORDER BY device_id",
            )?;
            let mut outcomes = statement.query([account_id])?;
            let mut index = 0;
            while let Some(row) = outcomes.next()? {
                let device_id: String = row.get(0)?;
                while index < summaries.len() && summaries[index].id < device_id {
                    index += 1;
                }
                match summaries.get_mut(index) {
                    Some(summary) if summary.id == device_id => {
                        summary.outcome = rows::outcome(row, 1)?;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            Ok(summaries)
        })
    }

    fn record_samples(&self, samples: &[StateSample<'_>]) -> Result<()> {
        let samples: Vec<(String, i64, [u32; 6])> = samples
            .iter()
            .map(|sample| (sample.account_id.to_owned(), sample.at_ms, sample.counts))
            .collect();
        self.write(move |transaction| {
            let mut insert = transaction.prepare_cached(
                "INSERT OR REPLACE INTO state_samples (account_id, at_ms, total, registered,
                     offline, expired, unregistered, invalid, provisioning)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for (account_id, at_ms, counts) in &samples {
                let total: u32 = counts.iter().sum();
                insert.execute(params![
                    account_id, at_ms, total, counts[0], counts[1], counts[2], counts[3],
                    counts[4], counts[5],
                ])?;
            }
            Ok(())
        })
    }

    fn samples(
        &self,
        account_id: &str,
        since_ms: UnixMillis,
        until_ms: UnixMillis,
    ) -> Result<Vec<Sample>> {
        self.read(|connection| {
            rows::collect(
                connection,
                "SELECT at_ms, registered, offline, expired, unregistered, invalid, provisioning
                   FROM state_samples
                  WHERE account_id = ?1 AND at_ms >= ?2 AND at_ms < ?3
                  ORDER BY at_ms",
                params![account_id, since_ms, until_ms],
                |row| {
                    let mut counts = [0_u32; 6];
                    for (index, count) in counts.iter_mut().enumerate() {
                        *count = row.get(index + 1)?;
                    }
                    Ok(Sample {
                        at_ms: row.get(0)?,
                        counts,
                    })
                },
            )
        })
    }

    fn prune_samples(&self, before_ms: UnixMillis) -> Result<usize> {
        self.write(move |transaction| {
            transaction.execute("DELETE FROM state_samples WHERE at_ms < ?1", [before_ms])
        })
    }
}

#[cfg(test)]
mod tests;
