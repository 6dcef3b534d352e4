use std::sync::Arc;

use switchboard_model::{Change, EventKind};

use super::*;
use crate::battery;

fn open(dir: &Path) -> Arc<SqliteStore> {
    SqliteStore::open(
        dir,
        SqliteOptions {
            synchronous: Synchronous::Normal,
            max_batch: 1024,
        },
    )
    .expect("open")
}

#[test]
fn group_commit_puts_many_batches_in_few_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
    let (account, device) = (battery::account("group"), new_device_id());
    let futures: Vec<CommitFuture> = (0..100)
        .map(|index| {
            store.commit(vec![
                Change::UpsertBinding(battery::binding(
                    &account.id,
                    &device,
                    &format!("c:sip:{index}@h"),
                    9_000,
                )),
                Change::AppendEvent(battery::event(
                    &account.id,
                    Some(&device),
                    EventKind::Registered,
                    index,
                )),
            ])
        })
        .collect();
    let mut last_id = 0;
    for future in futures {
        let ids = future.wait().expect("commit");
        assert!(ids[0] > last_id, "ids follow submission order");
        last_id = ids[0];
    }
    let stats = store.stats();
    assert_eq!(stats.committed_batches, 100);
    assert_eq!(stats.committed_changes, 200);
    assert!(
        stats.commit_transactions < 100,
        "batches were grouped: {stats:?}"
    );
    assert_eq!(store.device_bindings(&device).expect("read").len(), 100);
}

#[test]
fn max_batch_caps_a_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(
        dir.path(),
        SqliteOptions {
            synchronous: Synchronous::Normal,
            max_batch: 1,
        },
    )
    .expect("open");
    let futures: Vec<CommitFuture> = (0..20)
        .map(|index| {
            store.commit(vec![Change::AppendEvent(battery::event(
                "a",
                None,
                EventKind::Rejected,
                index,
            ))])
        })
        .collect();
    for future in futures {
        future.wait().expect("commit");
    }
    assert_eq!(store.stats().commit_transactions, 20);
}

/// Parks the writer thread inside a directory write until the returned sender is used, so
/// that everything committed meanwhile queues up.
fn hold_writer(store: &Arc<SqliteStore>) -> Sender<()> {
    let (release, gate) = mpsc::channel::<()>();
    let (started, running) = mpsc::channel::<()>();
    let store = Arc::clone(store);
    std::thread::spawn(move || {
        store
            .write(move |_| {
                let _ = started.send(());
                let _ = gate.recv();
                Ok(())
            })
            .expect("held write");
    });
    running.recv().expect("writer held");
    release
}

#[test]
fn batches_queued_behind_a_busy_writer_share_one_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let release = hold_writer(&store);
    let futures: Vec<CommitFuture> = (0..500)
        .map(|index| {
            store.commit(vec![Change::AppendEvent(battery::event(
                "held",
                None,
                EventKind::Refreshed,
                index,
            ))])
        })
        .collect();
    release.send(()).expect("release");
    for future in futures {
        future.wait().expect("commit");
    }
    assert_eq!(store.stats().commit_transactions, 1);
    assert_eq!(store.stats().directory_writes, 1);
}

fn new_device_id() -> String {
    switchboard_model::new_id()
}

#[test]
fn a_bad_batch_fails_alone_and_the_writer_lives_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let device = new_device_id();
    // With the writer held, all 30 batches queue up and land in one group.
    let release = hold_writer(&store);
    let futures: Vec<CommitFuture> = (0..30)
        .map(|index| {
            let mut changes = vec![Change::UpsertBinding(battery::binding(
                "a",
                &device,
                &format!("c:{index}"),
                1,
            ))];
            if index == 15 {
                // The empty device id breaks a CHECK constraint; the first change of this
                // batch must be rolled back with it.
                changes.push(Change::UpsertBinding(battery::binding("a", "", "c:bad", 1)));
            }
            store.commit(changes)
        })
        .collect();
    release.send(()).expect("release");
    let results: Vec<_> = futures.into_iter().map(CommitFuture::wait).collect();
    for (index, result) in results.iter().enumerate() {
        if index == 15 {
            assert!(
                matches!(result, Err(StoreError::Backend(message)) if message.contains("CHECK")),
                "{result:?}"
            );
        } else {
            assert_eq!(result, &Ok(Vec::new()), "batch {index}");
        }
    }
    let keys: Vec<String> = store
        .device_bindings(&device)
        .expect("read")
        .into_iter()
        .map(|b| b.key)
        .collect();
    assert_eq!(keys.len(), 29);
    assert!(
        !keys.contains(&"c:15".to_owned()),
        "the bad batch is atomic"
    );
    let stats = store.stats();
    assert_eq!((stats.committed_batches, stats.failed_batches), (29, 1));
    assert_eq!(
        stats.commit_transactions, 1,
        "the neighbours committed together"
    );
    store
        .commit(vec![Change::RemoveDeviceBindings {
            device_id: device.clone(),
        }])
        .wait()
        .expect("writer alive");
    assert!(store.device_bindings(&device).expect("read").is_empty());
}

#[test]
fn close_flushes_queued_work_then_refuses_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let futures: Vec<CommitFuture> = (0..50)
        .map(|index| {
            store.commit(vec![Change::AppendEvent(battery::event(
                "flush",
                None,
                EventKind::Expired,
                index,
            ))])
        })
        .collect();
    store.close();
    for future in futures {
        assert_eq!(
            future.wait().map(|ids| ids.len()),
            Ok(1),
            "queued before close, so committed"
        );
    }
    assert_eq!(store.commit(Vec::new()).wait(), Err(StoreError::Closed));
    assert_eq!(
        store.create_account(&battery::account("late")),
        Err(StoreError::Closed)
    );
    assert_eq!(store.bindings(), Err(StoreError::Closed));
    store.close();
    drop(store);

    let store = open(dir.path());
    let query = EventQuery {
        account_id: Some("flush".into()),
        limit: 1000,
        ..EventQuery::default()
    };
    assert_eq!(store.events(&query).expect("events").len(), 50);
}

#[test]
fn the_data_directory_is_created_private() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("nested").join("data");
    let store = open(&dir);
    assert_eq!(store.path(), dir.join(DATABASE_FILE));
    assert!(store.path().is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn malformed_rows_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let account = battery::account("malformed");
    store.create_account(&account).expect("account");
    let device = battery::device(&account.id, "m");
    store.create_device(&device).expect("device");
    let binding = battery::binding(&account.id, &device.id, "c:m", 5);
    store
        .commit(vec![Change::UpsertBinding(binding)])
        .wait()
        .expect("commit");
    store
        .commit(vec![Change::AppendEvent(battery::event(
            &account.id,
            None,
            EventKind::Registered,
            1,
        ))])
        .wait()
        .expect("commit");

    let raw = Connection::open(store.path()).expect("raw");
    raw.busy_timeout(BUSY_TIMEOUT).expect("timeout");
    let malformed = |sql: &str| {
        raw.execute(sql, []).expect("corrupt");
    };
    let is_backend = |result: Result<_>| matches!(result, Err(StoreError::Backend(message)) if message.contains("malformed"));

    malformed("UPDATE bindings SET transport = 'carrier-pigeon'");
    assert!(is_backend(store.bindings().map(drop)));
    malformed("UPDATE bindings SET transport = 'udp', received = 'nowhere'");
    assert!(is_backend(store.device_bindings(&device.id).map(drop)));
    malformed("UPDATE bindings SET received = '192.0.2.1:5060', cseq = -1");
    assert!(is_backend(store.expired_bindings(10).map(drop)));
    malformed("UPDATE devices SET document = 'not json'");
    assert!(is_backend(store.device(&device.id).map(drop)));
    malformed("UPDATE devices SET document = '{}', sip_method = 'telepathy'");
    assert!(is_backend(store.devices(&account.id).map(drop)));
    malformed("UPDATE events SET kind = 'exploded'");
    assert!(is_backend(store.events(&EventQuery::default()).map(drop)));
    // A value of the wrong SQLite type is an error too.
    malformed("UPDATE accounts SET created_ms = 'yesterday'");
    assert!(matches!(store.accounts(), Err(StoreError::Backend(_))));
}

#[test]
fn two_stores_on_one_file_both_write() {
    // The CLI writes the database while the server runs: two writers, two lock holders.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = open(dir.path());
    let cli = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("second open");
    let account = battery::account("two-writers");
    let server_thread = {
        let server = Arc::clone(&server);
        let account_id = account.id.clone();
        std::thread::spawn(move || {
            for index in 0..200 {
                server
                    .commit(vec![Change::UpsertBinding(battery::binding(
                        &account_id,
                        "d",
                        &format!("c:{index}"),
                        1,
                    ))])
                    .wait()
                    .expect("server commit");
            }
        })
    };
    cli.create_account(&account).expect("cli account");
    for index in 0..20 {
        cli.create_device(&battery::device(&account.id, &format!("user{index}")))
            .expect("cli device");
    }
    server_thread.join().expect("server thread");
    assert_eq!(
        server
            .devices(&account.id)
            .expect("server sees cli writes")
            .len(),
        20
    );
    assert_eq!(
        cli.device_bindings("d")
            .expect("cli sees server writes")
            .len(),
        200
    );
}

#[test]
fn reads_run_concurrently_from_many_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let account = battery::account("readers");
    store.create_account(&account).expect("account");
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            let account = account.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    assert_eq!(
                        store.account_by_realm(&account.realm).expect("read"),
                        Some(account.clone())
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("reader");
    }
    assert!(store.readers.lock().expect("pool").len() <= MAX_IDLE_READERS);
}
