//! The directory cache: accounts by realm and devices by username, in memory, so the REGISTER
//! path does no database read for known devices.
//!
//! The store stays the truth. A miss is looked up in the store (a device created a moment ago
//! by `switchboard device create` in another process registers at once), and a refresh task
//! picks up devices modified elsewhere. HA1 values are computed once per device.
//!
//! Misses are where user enumeration would show: a name the cache lacks costs a store read
//! that a known name does not. So the REGISTER path never waits for one on an unauthenticated
//! request: [`DirectoryCache::miss`] starts (or joins) one background read per name and the
//! request is answered from memory, like a wrong password; a read that finds nothing is
//! remembered ([`ABSENT_TTL_MS`], forgotten as soon as the name is cached), so guesses repeat
//! without store reads. An authenticated request waits for the read (a phone whose device was
//! just created or changed must not be refused as a wrong password).
//!
//! Each account's own allow/deny lists ([`AccessRules`]) are held here too, parsed once per
//! revision: loaded at start, with an account read on a miss, re-read by every refresh, and
//! put at once by the API after a write ([`DirectoryCache::put_access`]). A copy with a lower
//! revision than the one held never replaces it, so the order in which a refresh and the API
//! deliver them does not matter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use switchboard_model::{AccessLists, AccessRefusal, AccessRules, Account, Device, UnixMillis};
use switchboard_registrar::Ha1Cache;
use switchboard_store::{Store, StoreError};

/// A device ready for authentication.
#[derive(Debug)]
pub struct CachedDevice {
    pub device: Device,
    pub account: Arc<Account>,
    pub ha1: Option<Ha1Cache>,
}

#[derive(Default)]
struct Maps {
    /// realm (lower-case) → account.
    accounts: HashMap<String, Arc<Account>>,
    /// account id → its realm key in `accounts`, to move an account whose realm changed.
    realm_keys: HashMap<String, String>,
    /// (account id, username lower-case) → device.
    devices: HashMap<(String, String), Arc<CachedDevice>>,
    /// device id → its key in `devices`, to move a device whose username changed.
    device_keys: HashMap<String, (String, String)>,
    /// account id → its own access lists, parsed (also when empty: the revision is kept).
    access: HashMap<String, AccessRules>,
    /// device id → when it was forgotten. A copy modified no later than that was read before
    /// the forget (by a refresh or a miss racing the API's write) and is not cached again.
    forgotten: HashMap<String, UnixMillis>,
}

/// How long a forgotten device's tombstone is kept: far longer than one store read.
const FORGET_WINDOW_MS: UnixMillis = 60_000;

/// How long a name the store did not have is answered from memory. A device created
/// meanwhile by this process, or seen by the refresh, ends it at once.
pub const ABSENT_TTL_MS: UnixMillis = 300_000;

/// Names remembered as missing or being read, at most; beyond, further misses are answered
/// from memory without a read until entries age out (an enumeration flood).
const MAX_MISSES: usize = 65_536;

/// A name the cache does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MissKey {
    /// A realm (lower-case).
    Realm(String),
    /// An account id and a username (lower-case).
    Device(String, String),
}

/// One background store read for a [`MissKey`].
#[derive(Debug, Default)]
pub struct PendingRead {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

impl PendingRead {
    /// Waits until the read is over (at once if it is).
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.done.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

#[derive(Debug)]
enum MissState {
    Reading(Arc<PendingRead>),
    Absent(UnixMillis),
}

/// What to do about a miss.
#[derive(Debug)]
pub enum Miss {
    /// The store did not have it lately (or reads are saturated): it is unknown.
    Absent,
    /// A read is under way: wait for it, or answer without it.
    Reading(Arc<PendingRead>),
    /// Start the read (then call [`DirectoryCache::miss_done`]).
    Read(Arc<PendingRead>),
}

/// See the module documentation.
pub struct DirectoryCache {
    store: Arc<dyn Store>,
    maps: RwLock<Maps>,
    misses: Mutex<HashMap<MissKey, MissState>>,
}

impl std::fmt::Debug for DirectoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryCache").finish_non_exhaustive()
    }
}

impl DirectoryCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        DirectoryCache {
            store,
            maps: RwLock::new(Maps::default()),
            misses: Mutex::default(),
        }
    }

    /// Looks up (and registers) a miss at `now`; see [`Miss`].
    pub fn miss(&self, key: &MissKey, now: UnixMillis) -> Miss {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        match misses.get(key) {
            Some(MissState::Absent(at)) if now - at < ABSENT_TTL_MS => return Miss::Absent,
            Some(MissState::Reading(pending)) => return Miss::Reading(pending.clone()),
            _ => {}
        }
        if misses.len() >= MAX_MISSES {
            misses.retain(|_, state| match state {
                MissState::Absent(at) => now - *at < ABSENT_TTL_MS,
                MissState::Reading(_) => true,
            });
            if misses.len() >= MAX_MISSES {
                return Miss::Absent;
            }
        }
        let pending = Arc::new(PendingRead::default());
        misses.insert(key.clone(), MissState::Reading(pending.clone()));
        Miss::Read(pending)
    }

    /// The read for `key` is over: the store did not have it (`absent`: remembered), or it
    /// did (now cached) or the read failed (the next miss reads again).
    pub fn miss_done(&self, key: &MissKey, absent: bool, now: UnixMillis) {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        let state = if absent {
            misses.insert(key.clone(), MissState::Absent(now))
        } else {
            misses.remove(key)
        };
        if let Some(MissState::Reading(pending)) = state {
            pending.finish();
        }
    }

    /// A name is cached: it is no longer absent (a read under way finishes by itself).
    fn known(&self, key: MissKey) {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(MissState::Absent(_)) = misses.get(&key) {
            misses.remove(&key);
        }
    }

    /// Loads every account and device (at start).
    pub fn load_all(&self) -> Result<usize, StoreError> {
        let read_started = crate::clock::now_ms();
        self.load_access_lists(UnixMillis::MIN)?;
        let accounts = self.store.accounts()?;
        let mut count = 0;
        // Page through each account: holding 100,000 full device documents at once would
        // set the process's memory high-water mark for the rest of its life.
        const PAGE: usize = 1000;
        for account in accounts {
            let account = Arc::new(account);
            self.put_account(account.clone());
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .store
                    .devices_page(&account.id, after.as_deref(), PAGE)?;
                let full = page.len() == PAGE;
                after = page.last().map(|d| d.id.clone());
                for device in page {
                    self.put_device(device, account.clone(), read_started);
                    count += 1;
                }
                if !full {
                    break;
                }
            }
        }
        Ok(count)
    }

    fn put_account(&self, account: Arc<Account>) {
        let realm = account.realm.to_ascii_lowercase();
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old_realm) = maps.realm_keys.insert(account.id.clone(), realm.clone())
            && old_realm != realm
        {
            maps.accounts.remove(&old_realm);
        }
        maps.accounts.insert(realm.clone(), account);
        drop(maps);
        self.known(MissKey::Realm(realm));
    }

    /// Holds `lists` as the account's access rules, unless a newer revision is held already.
    pub fn put_access(&self, lists: &AccessLists) {
        {
            let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
            if maps
                .access
                .get(&lists.account_id)
                .is_some_and(|held| held.revision >= lists.revision)
            {
                return;
            }
        }
        // Parsed outside the lock; checked again under it (another writer may have been first).
        let rules = AccessRules::from_lists(lists);
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        match maps.access.get(&lists.account_id) {
            Some(held) if held.revision >= rules.revision => {}
            _ => {
                maps.access.insert(lists.account_id.clone(), rules);
            }
        }
    }

    /// The access lists written since `since_ms` (all of them at start); only revisions newer
    /// than the one held are parsed. Returns the newest modification time seen.
    fn load_access_lists(&self, since_ms: UnixMillis) -> Result<UnixMillis, StoreError> {
        let mut newest = since_ms;
        for lists in self.store.access_lists_modified_since(since_ms)? {
            newest = newest.max(lists.modified_ms);
            self.put_access(&lists);
        }
        Ok(newest)
    }

    /// Whether the account's own lists admit a request from `ip` (no lists: yes). In memory,
    /// allocation-free; the read lock is held only for the match.
    pub fn check_access(&self, account_id: &str, ip: IpAddr) -> Result<(), AccessRefusal> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        match maps.access.get(account_id) {
            Some(rules) if !rules.is_empty() => rules.check(ip),
            _ => Ok(()),
        }
    }

    /// The account's access rules as held (for tests and diagnostics).
    pub fn access_rules(&self, account_id: &str) -> Option<AccessRules> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.access.get(account_id).cloned()
    }

    /// Caches `device`, read from the store by a read that started at `read_started`.
    fn put_device(
        &self,
        mut device: Device,
        account: Arc<Account>,
        read_started: UnixMillis,
    ) -> Arc<CachedDevice> {
        // The registrar needs the typed fields only; the whole document stays in the store.
        device.document = serde_json::Value::Null;
        let ha1 = match (&device.sip.username, &device.sip.password) {
            (Some(user), Some(password)) => Some(Ha1Cache::new(user, &account.realm, password)),
            _ => None,
        };
        let key = (
            device.account_id.clone(),
            device
                .sip
                .username
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase(),
        );
        let id = device.id.clone();
        let cached = Arc::new(CachedDevice {
            device,
            account,
            ha1,
        });
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&forgotten_at) = maps.forgotten.get(&id) {
            // A read that started before the forget may have seen the copy before the
            // change; one that started after it saw the change (it was committed first).
            if read_started <= forgotten_at {
                return cached;
            }
            maps.forgotten.remove(&id);
        }
        if let Some(old_key) = maps.device_keys.insert(id, key.clone())
            && old_key != key
        {
            maps.devices.remove(&old_key);
        }
        maps.devices.insert(key.clone(), cached.clone());
        drop(maps);
        self.known(MissKey::Device(key.0, key.1));
        cached
    }

    /// Forgets a device (deleted, or changed by the API, after the change is committed): its
    /// next REGISTER reads the store, and a copy from a read that started before now (a
    /// refresh in flight) is not cached again.
    pub fn remove_device(&self, device_id: &str) {
        let now = crate::clock::now_ms();
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = maps.device_keys.remove(device_id) {
            maps.devices.remove(&key);
        }
        maps.forgotten
            .retain(|_, &mut forgotten_at| now - forgotten_at < FORGET_WINDOW_MS);
        maps.forgotten.insert(device_id.to_owned(), now);
    }

    /// The account serving `realm`, from memory.
    /// The oldest top-level account (the operator's): where events about no particular
    /// account are recorded.
    pub fn top_level_account_id(&self) -> Option<String> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.accounts
            .values()
            .filter(|account| account.parent_id.is_none())
            .min_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)))
            .map(|account| account.id.clone())
    }

    pub fn cached_account(&self, realm: &str) -> Option<Arc<Account>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        if let Some(account) = maps.accounts.get(realm) {
            return Some(account.clone());
        }
        if realm.bytes().any(|b| b.is_ascii_uppercase()) {
            return maps.accounts.get(&realm.to_ascii_lowercase()).cloned();
        }
        None
    }

    /// The device with `username` in `account`, from memory.
    pub fn cached_device(&self, account_id: &str, username: &str) -> Option<Arc<CachedDevice>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        // Avoid allocating for the common all-lower-case username.
        let key = (account_id.to_owned(), username.to_ascii_lowercase());
        maps.devices.get(&key).cloned()
    }

    /// The account for `realm`, reading the store on a miss. Blocking: call from
    /// `spawn_blocking` on a miss path.
    pub fn load_account(&self, realm: &str) -> Result<Option<Arc<Account>>, StoreError> {
        match self.store.account_by_realm(realm)? {
            Some(account) => {
                // Its lists first: the account must never be served without them.
                if let Some(lists) = self.store.access_lists(&account.id)? {
                    self.put_access(&lists);
                }
                let account = Arc::new(account);
                self.put_account(account.clone());
                Ok(Some(account))
            }
            None => Ok(None),
        }
    }

    /// The device for `username` in `account`, reading the store on a miss. Blocking.
    pub fn load_device(
        &self,
        account: &Arc<Account>,
        username: &str,
    ) -> Result<Option<Arc<CachedDevice>>, StoreError> {
        let read_started = crate::clock::now_ms();
        match self.store.device_by_username(&account.id, username)? {
            Some(device) => Ok(Some(self.put_device(device, account.clone(), read_started))),
            None => Ok(None),
        }
    }

    /// Picks up accounts and devices changed in the store since `since_ms` (by this or another
    /// process), and the access lists written since then. Blocking. Returns the newest modification
    /// time seen.
    pub fn refresh(&self, since_ms: UnixMillis) -> Result<UnixMillis, StoreError> {
        let read_started = crate::clock::now_ms();
        let mut newest = self.load_access_lists(since_ms)?;
        for account in self.store.accounts()? {
            newest = newest.max(account.modified_ms);
            self.put_account(Arc::new(account));
        }
        for device in self.store.devices_modified_since(since_ms)? {
            newest = newest.max(device.modified_ms);
            let account = {
                let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
                let unchanged = maps
                    .device_keys
                    .get(&device.id)
                    .and_then(|key| maps.devices.get(key))
                    .is_some_and(|cached| cached.device.modified_ms == device.modified_ms);
                if unchanged {
                    // Re-read by the look-back window: nothing to redo (no HA1 hashing).
                    continue;
                }
                maps.realm_keys
                    .get(&device.account_id)
                    .and_then(|realm| maps.accounts.get(realm))
                    .cloned()
            };
            if let Some(account) = account {
                self.put_device(device, account, read_started);
            }
        }
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::{Directory, SqliteOptions, SqliteStore, battery};

    fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).expect("open");
        (dir, store)
    }

    #[test]
    fn accounts_and_devices_move_when_their_keys_change() {
        let (_dir, store) = store();
        let mut account = battery::account("cache");
        store.create_account(&account).expect("account");
        let mut device = battery::device(&account.id, "Alice");
        store.create_device(&device).expect("device");
        let cache = DirectoryCache::new(store.clone());
        assert_eq!(cache.load_all().expect("load"), 1);
        assert!(cache.cached_account(&account.realm).is_some());
        assert!(
            cache.cached_device(&account.id, "ALICE").is_some(),
            "case-insensitive"
        );

        account.realm = format!("moved-{}", account.realm);
        store.update_account(&account).expect("update account");
        device.sip.username = Some("bob".into());
        device.modified_ms += 10;
        store.update_device(&device).expect("update device");
        cache.refresh(0).expect("refresh");
        assert!(cache.cached_account(&account.realm).is_some());
        assert!(
            cache
                .cached_account(account.realm.trim_start_matches("moved-"))
                .is_none(),
            "the old realm no longer selects the account"
        );
        assert!(cache.cached_device(&account.id, "alice").is_none());
        let bob = cache.cached_device(&account.id, "bob").expect("moved");
        assert!(bob.ha1.is_some(), "HA1 computed once per device");
        assert_eq!(
            bob.device.document,
            serde_json::Value::Null,
            "documents stay in the store"
        );

        cache.remove_device(&device.id);
        assert!(cache.cached_device(&account.id, "bob").is_none());
    }

    #[test]
    fn a_copy_read_before_a_forget_is_not_cached_again() {
        let (_dir, store) = store();
        let account = battery::account("forget");
        store.create_account(&account).expect("account");
        let mut device = battery::device(&account.id, "carol");
        device.modified_ms = crate::clock::now_ms() - 1_000;
        store.create_device(&device).expect("device");
        let cache = DirectoryCache::new(store.clone());
        cache.load_all().expect("load");
        // The API disables the device after a refresh read the old copy...
        let stale_read = crate::clock::now_ms();
        let stale = store.device(&device.id).expect("read").expect("found");
        device.enabled = false;
        device.modified_ms = crate::clock::now_ms();
        store.update_device(&device).expect("update");
        cache.remove_device(&device.id);
        let cached_account = cache.cached_account(&account.realm).expect("account");
        cache.put_device(stale, cached_account.clone(), stale_read);
        // ...so the stale copy is not served; the next lookup reads the store.
        assert!(cache.cached_device(&account.id, "carol").is_none());
        let found = cache
            .load_device(&cached_account, "carol")
            .expect("read")
            .expect("found");
        assert!(!found.device.enabled);
        // A read that started after the forget saw the change: it is cached (and the next
        // REGISTER reads no store), although the change was written before the forget.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let found = cache
            .load_device(&cached_account, "carol")
            .expect("read")
            .expect("found");
        assert!(!found.device.enabled);
        let cached = cache.cached_device(&account.id, "carol").expect("cached");
        assert!(!cached.device.enabled);
    }

    #[tokio::test]
    async fn a_miss_is_read_once_in_the_background_and_an_absent_name_is_remembered() {
        let (_dir, store) = store();
        let account = battery::account("misses");
        store.create_account(&account).expect("account");
        let cache = Arc::new(DirectoryCache::new(store.clone()));
        cache.load_all().expect("load");
        let key = MissKey::Device(account.id.clone(), "zelda".to_owned());
        let now = crate::clock::now_ms();
        let Miss::Read(pending) = cache.miss(&key, now) else {
            panic!("the first miss reads");
        };
        // A second request for the name joins the read under way.
        let Miss::Reading(joined) = cache.miss(&key, now) else {
            panic!("joins");
        };
        let waiter = tokio::spawn(async move { joined.wait().await });
        let found = cache
            .load_device(&cache.cached_account(&account.realm).expect("a"), "zelda")
            .expect("read")
            .is_some();
        assert!(!found);
        cache.miss_done(&key, true, now);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is woken")
            .expect("join");
        pending.wait().await;
        // Answered from memory for a while, without reads.
        assert!(matches!(cache.miss(&key, now + 1_000), Miss::Absent));
        assert!(matches!(
            cache.miss(&key, now + ABSENT_TTL_MS),
            Miss::Read(_)
        ));
        cache.miss_done(&key, true, now + ABSENT_TTL_MS);
        // The device appears (another process): the refresh caches it and ends the absence.
        let device = battery::device(&account.id, "Zelda");
        store.create_device(&device).expect("device");
        cache.refresh(0).expect("refresh");
        assert!(cache.cached_device(&account.id, "zelda").is_some());
        assert!(matches!(
            cache.miss(&key, now + ABSENT_TTL_MS + 1),
            Miss::Read(_)
        ));
    }

    #[test]
    fn a_refresh_skips_devices_it_already_has() {
        let (_dir, store) = store();
        let account = battery::account("skip");
        store.create_account(&account).expect("account");
        let device = battery::device(&account.id, "carol");
        store.create_device(&device).expect("device");
        let cache = DirectoryCache::new(store.clone());
        cache.load_all().expect("load");
        let before = cache.cached_device(&account.id, "carol").expect("cached");
        cache.refresh(0).expect("refresh");
        let after = cache.cached_device(&account.id, "carol").expect("cached");
        assert!(
            Arc::ptr_eq(&before, &after),
            "an unchanged device is not rebuilt"
        );
    }

    #[test]
    fn access_lists_are_loaded_refreshed_and_never_replaced_by_an_older_copy() {
        let (_dir, store) = store();
        let account = battery::account("acl");
        store.create_account(&account).expect("account");
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let first = store
            .set_access_lists(&account.id, &[], &["127.0.0.3".to_owned()], 1)
            .expect("set");
        let cache = DirectoryCache::new(store.clone());
        cache.load_all().expect("load");
        assert_eq!(
            cache.check_access(&account.id, ip("127.0.0.3")),
            Err(AccessRefusal::Denied)
        );
        assert_eq!(cache.check_access(&account.id, ip("127.0.0.2")), Ok(()));
        assert_eq!(
            cache.check_access("no-such-account", ip("127.0.0.3")),
            Ok(())
        );

        // Written elsewhere (another node, or the API of this one): a refresh picks it up.
        let second = store
            .set_access_lists(&account.id, &["127.0.0.2/32".to_owned()], &[], 2)
            .expect("set");
        cache.refresh(0).expect("refresh");
        assert_eq!(
            cache.check_access(&account.id, ip("127.0.0.3")),
            Err(AccessRefusal::NotAllowed)
        );
        assert_eq!(cache.check_access(&account.id, ip("127.0.0.2")), Ok(()));
        // A stale copy (read before the write by a refresh in flight) changes nothing.
        cache.put_access(&first);
        assert_eq!(
            cache.access_rules(&account.id).expect("held").revision,
            second.revision
        );
        // Cleared: everyone is admitted again.
        let cleared = store
            .set_access_lists(&account.id, &[], &[], 3)
            .expect("clear");
        cache.put_access(&cleared);
        assert_eq!(cache.check_access(&account.id, ip("127.0.0.4")), Ok(()));
        cache.put_access(&second);
        assert_eq!(cache.check_access(&account.id, ip("127.0.0.4")), Ok(()));
    }

    #[test]
    fn an_account_read_on_a_miss_comes_with_its_access_lists() {
        let (_dir, store) = store();
        let cache = DirectoryCache::new(store.clone());
        cache.load_all().expect("load");
        let account = battery::account("acl-miss");
        store.create_account(&account).expect("account");
        store
            .set_access_lists(&account.id, &[], &["192.0.2.0/24".to_owned()], 1)
            .expect("set");
        cache
            .load_account(&account.realm)
            .expect("read")
            .expect("found");
        assert_eq!(
            cache.check_access(&account.id, "192.0.2.9".parse().expect("ip")),
            Err(AccessRefusal::Denied)
        );
    }

    #[test]
    fn misses_are_read_from_the_store() {
        let (_dir, store) = store();
        let account = battery::account("miss");
        store.create_account(&account).expect("account");
        let cache = DirectoryCache::new(store.clone());
        cache.load_all().expect("load");
        // Written by "another process" after the load.
        let device = battery::device(&account.id, "late");
        store.create_device(&device).expect("device");
        assert!(cache.cached_device(&account.id, "late").is_none());
        let cached_account = cache.cached_account(&account.realm).expect("account");
        let found = cache
            .load_device(&cached_account, "LATE")
            .expect("read")
            .expect("found in the store");
        assert_eq!(found.device.id, device.id);
        assert!(
            cache.cached_device(&account.id, "late").is_some(),
            "and cached"
        );
    }
}
