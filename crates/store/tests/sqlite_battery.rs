//! The shared behaviour battery against the SQLite backend.

use std::sync::Arc;

use switchboard_store::{SqliteOptions, SqliteStore, Store, Synchronous, battery};

fn options(synchronous: Synchronous) -> SqliteOptions {
    SqliteOptions {
        synchronous,
        ..SqliteOptions::default()
    }
}

#[test]
fn battery_synchronous_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path(), options(Synchronous::Full)).expect("open");
    battery::run_all(&*store);
}

#[test]
fn battery_synchronous_normal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path(), options(Synchronous::Normal)).expect("open");
    battery::run_all(&*store);
}

#[test]
fn battery_twice_on_one_database() {
    // Checks must not trip over what earlier runs left behind (a shared PostgreSQL database).
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path(), options(Synchronous::Normal)).expect("open");
    battery::run_all(&*store);
    battery::run_all(&*store);
}

#[test]
fn durable_after_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    battery::durable_after_reopen(&mut || -> Arc<dyn Store> {
        SqliteStore::open(&path, options(Synchronous::Full)).expect("open")
    });
}
