//! First-start chores: the nonce secret and the bootstrap admin account with its API key.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context, bail};
use switchboard_model::{Account, new_id};
use switchboard_store::{ApiKey, Store};

/// The realm of the bootstrap admin account; `.invalid` (RFC 2606) so no phone ever uses it.
pub const ADMIN_REALM: &str = "admin.switchboard.invalid";
const KEY_FILE: &str = "bootstrap-api-key";
const SECRET_FILE: &str = "nonce-secret";

/// Writes `contents` to a new file only its owner can read.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// The secret that seals digest nonces, created on first start. Every node of a cluster must
/// use the same file.
pub fn nonce_secret(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join(SECRET_FILE);
    if !path.exists() {
        let secret: [u8; 32] = rand::random();
        write_private(&path, &hex::encode(secret))?;
    }
    let metadata = std::fs::metadata(&path)?;
    if metadata.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is readable by others; run: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(&path)?;
    let bytes = hex::decode(text.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .with_context(|| format!("{} must hold 64 hex digits", path.display()))?;
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&bytes);
    Ok(secret)
}

/// When there is no admin account yet (first start, even if accounts were created with the
/// CLI before it), creates it and its API key: printed once on standard output, saved to
/// `bootstrap-api-key` (mode 0600); `SWITCHBOARD_BOOTSTRAP_API_KEY` presets it.
pub fn ensure_admin(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    if let Some(admin) = store.account_by_realm(ADMIN_REALM)? {
        return adopt_top_level_accounts(store, &admin.id);
    }
    let key = match std::env::var("SWITCHBOARD_BOOTSTRAP_API_KEY") {
        Ok(key) if key.trim().len() >= 32 => key.trim().to_owned(),
        Ok(_) => bail!("SWITCHBOARD_BOOTSTRAP_API_KEY must be at least 32 characters"),
        Err(_) => hex::encode(rand::random::<[u8; 32]>()),
    };
    let now = switchboard_runtime::clock::now_ms();
    let account = Account {
        id: new_id(),
        name: "admin".to_owned(),
        realm: ADMIN_REALM.to_owned(),
        parent_id: None,
        created_ms: now,
        modified_ms: now,
    };
    store.create_account(&account)?;
    store.create_api_key(&ApiKey {
        id: new_id(),
        account_id: account.id.clone(),
        name: "bootstrap".to_owned(),
        key_hash: ApiKey::hash(&key),
        created_ms: now,
        scopes: vec![ApiKey::EVERY_SCOPE.to_owned()],
        prefix: String::new(),
    })?;
    let path = data_dir.join(KEY_FILE);
    let _ = std::fs::remove_file(&path);
    write_private(&path, &format!("{key}\n"))?;
    adopt_top_level_accounts(store, &account.id)?;
    // Printed once, on purpose, outside the log stream.
    println!(
        "Created the admin account {} and its API key (saved to {}):\n  {key}",
        account.id,
        path.display()
    );
    Ok(())
}

/// Makes every top-level account (created with the CLI before the first start) a child of the
/// admin account, the root of the tree, so the admin's key reaches every tenant.
fn adopt_top_level_accounts(store: &dyn Store, admin_id: &str) -> anyhow::Result<()> {
    for mut account in store.accounts()? {
        if account.parent_id.is_none() && account.id != admin_id {
            account.parent_id = Some(admin_id.to_owned());
            store.update_account(&account)?;
        }
    }
    Ok(())
}
