//! `switchboard serve` itself: the bootstrap admin key, secrets on disk, clean shutdown.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::Switchboard;
use switchboard_store::{ApiKey, Directory};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_bootstrap_key_is_printed_once_and_kept_private() {
    let mut board = Switchboard::prepare(&[]);
    board.start();
    assert!(board.terminate(), "clean exit on SIGTERM:\n{}", board.log());
    let printed = board.stdout();
    let key_line = printed
        .lines()
        .map(str::trim)
        .find(|line| line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("a 64-hex-digit key is printed:\n{printed}"))
        .to_owned();
    let key_file = board.data_dir().join("bootstrap-api-key");
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key file").trim(),
        key_line
    );
    assert_eq!(mode(&key_file), 0o600, "only the owner reads the key");
    assert_eq!(mode(&board.data_dir().join("nonce-secret")), 0o600);
    assert!(
        !board.log().contains(&key_line),
        "the key never goes to the log"
    );
    let store = board.store();
    let stored = store
        .api_key_by_hash(&ApiKey::hash(&key_line))
        .expect("lookup")
        .expect("the key is stored (hashed)");
    let admin = store
        .account(&stored.account_id)
        .expect("read")
        .expect("admin account");
    // The account the CLI created before the first start now hangs under the admin.
    let acme = store
        .account(&board.account_id)
        .expect("read")
        .expect("acme");
    store.close();
    assert_eq!(admin.name, "admin");
    assert_eq!(acme.parent_id.as_deref(), Some(admin.id.as_str()));

    // A second start creates nothing and prints nothing.
    board.start();
    assert!(board.terminate());
    assert_eq!(
        board.stdout().matches(&key_line).count(),
        1,
        "printed once, ever"
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key file").trim(),
        key_line
    );
}

#[test]
fn the_bootstrap_key_can_be_preset() {
    let preset = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut board = Switchboard::prepare(&[("SWITCHBOARD_BOOTSTRAP_API_KEY", preset)]);
    board.start();
    assert!(board.terminate());
    let key_file = board.data_dir().join("bootstrap-api-key");
    assert_eq!(
        std::fs::read_to_string(key_file).expect("key file").trim(),
        preset
    );
    let store = board.store();
    assert!(
        store
            .api_key_by_hash(&ApiKey::hash(preset))
            .expect("lookup")
            .is_some()
    );
    store.close();
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let board = Switchboard::prepare(&[]);
    let output = std::process::Command::new(common::binary())
        .args(["serve", "--data-dir"])
        .arg(board.data_dir())
        .env("SWITCHBOARD_REGISTRAR_MIN_EXPIRE", "30")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SWITCHBOARD_REGISTRAR_MIN_EXPIRE"),
        "{stderr}"
    );
    let output = std::process::Command::new(common::binary())
        .args(["serve", "--sip-listen", "sctp:127.0.0.1:5060", "--data-dir"])
        .arg(board.data_dir())
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("sctp"));
}
