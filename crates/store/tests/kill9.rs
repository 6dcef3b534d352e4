//! Acknowledged commits survive `kill -9` of the process that made them.
//!
//! The test re-runs its own binary as a child (selected by an environment variable). The
//! child commits bindings from many threads and prints `ack <device> <key>` after each commit
//! future resolves; the parent SIGKILLs it mid-stream, reopens the database and must find
//! every binding that was acknowledged.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use switchboard_model::Change;
use switchboard_store::{Location, SqliteOptions, SqliteStore, Synchronous, battery};

const CHILD_DIR: &str = "SWITCHBOARD_STORE_KILL9_DIR";
const CHILD_SYNCHRONOUS: &str = "SWITCHBOARD_STORE_KILL9_SYNCHRONOUS";
const CHILD_TEST: &str = "child_commits_until_killed";
/// Acknowledgements to see before the kill.
const ACKS_BEFORE_KILL: usize = 300;

fn synchronous_from(text: &str) -> Synchronous {
    if text == "normal" {
        Synchronous::Normal
    } else {
        Synchronous::Full
    }
}

/// The child's body; a no-op when run as an ordinary test.
#[test]
fn child_commits_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let synchronous = synchronous_from(&std::env::var(CHILD_SYNCHRONOUS).unwrap_or_default());
    let store = SqliteStore::open(
        Path::new(&dir),
        SqliteOptions {
            synchronous,
            ..SqliteOptions::default()
        },
    )
    .expect("child open");
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                let device = format!("device-{thread}");
                for index in 0.. {
                    let key = format!("c:sip:{index}@192.0.2.1");
                    let binding = battery::binding("kill9", &device, &key, 1_000);
                    store
                        .commit(vec![Change::UpsertBinding(binding)])
                        .wait()
                        .expect("child commit");
                    // One write per line, so lines from threads do not interleave.
                    let line = format!("ack {device} {key}\n");
                    let mut stdout = std::io::stdout().lock();
                    if stdout
                        .write_all(line.as_bytes())
                        .and_then(|()| stdout.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

fn acknowledged_bindings_survive_sigkill(synchronous: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_SYNCHRONOUS, synchronous)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        let mut words = line.split(' ');
        if words.next() == Some("ack") {
            let device = words.next().expect("device").to_owned();
            let key = words.next().expect("key").to_owned();
            acknowledged.push((device, key));
            if acknowledged.len() == ACKS_BEFORE_KILL {
                // Child::kill sends SIGKILL on Unix: no destructor, no flush, no close.
                child.kill().expect("kill child");
                break;
            }
        }
    }
    let status = child.wait().expect("reap child");
    assert_eq!(
        acknowledged.len(),
        ACKS_BEFORE_KILL,
        "child ended early: {status:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "child was killed by SIGKILL");
    }

    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("reopen");
    let stored: std::collections::HashSet<(String, String)> = store
        .bindings()
        .expect("bindings")
        .into_iter()
        .map(|binding| (binding.device_id, binding.key))
        .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|ack| !stored.contains(*ack))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged bindings lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    assert!(stored.len() >= acknowledged.len());
}

#[test]
fn acknowledged_bindings_survive_sigkill_synchronous_full() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    acknowledged_bindings_survive_sigkill("full");
}

#[test]
fn acknowledged_bindings_survive_sigkill_synchronous_normal() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    acknowledged_bindings_survive_sigkill("normal");
}
