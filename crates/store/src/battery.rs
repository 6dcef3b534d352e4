//! The behaviour every backend must show, as one battery of checks.
//!
//! A backend is done when [`run_all`] and [`durable_after_reopen`] pass against it. Each check
//! is also public, so a backend's test file can name them one by one. The checks panic on the
//! first broken expectation (they are tests) and create their own accounts, devices and
//! bindings under fresh random ids, so they can share one database with each other and with
//! earlier runs (a PostgreSQL test database is not wiped between runs).

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;
use switchboard_model::{
    AccessLists, Account, Binding, Change, Device, DeviceSip, Event, EventKind, SipAuthMethod,
    Transport, UnixMillis, User, new_id,
};

use crate::{
    ApiKey, AttemptOutcome, CredentialHash, Delivery, DeliveryState, EventQuery, NewDelivery,
    StateSample, Store, StoreError, Webhook,
};

/// Runs every check that needs only one open store.
pub fn run_all(store: &dyn Store) {
    accounts_round_trip(store);
    account_realms_are_case_insensitive_and_unique(store);
    missing_accounts_are_not_found(store);
    devices_round_trip(store);
    devices_come_in_pages(store);
    device_update_replaces_the_whole_device(store);
    device_usernames_are_case_insensitive_and_unique_per_account(store);
    devices_need_an_existing_account(store);
    devices_are_found_by_ip_and_modification_time(store);
    deleting_a_device_removes_its_bindings(store);
    deleting_an_account_removes_what_it_owns(store);
    api_keys_round_trip(store);
    account_api_keys_are_readable_and_unique(store);
    account_documents_round_trip(store);
    access_lists_round_trip(store);
    upsert_replaces_a_binding(store);
    bindings_are_removed_one_by_one_or_per_device(store);
    expired_bindings_are_found(store);
    event_ids_are_monotonic_and_returned_in_order(store);
    events_are_filtered_and_paged(store);
    users_round_trip(store);
    user_updates_need_the_current_revision(store);
    user_usernames_are_case_insensitive_and_unique_per_account(store);
    users_are_found_by_credentials(store);
    users_need_an_existing_account_and_go_with_it(store);
    device_outcomes_follow_the_history(store);
    state_samples_round_trip(store);
    webhooks_round_trip(store);
    fan_out_moves_the_cursor_with_the_deliveries(store);
    attempts_retry_deliver_fail_and_disable_hooks(store);
    attempts_are_listed_newest_first_and_pruned(store);
}

/// Commits through `open()`, drops the store, opens it again and finds everything.
/// `open` must return the only handle to the backend (dropping it closes it).
pub fn durable_after_reopen(open: &mut dyn FnMut() -> Arc<dyn Store>) {
    let account = account("durable");
    let device = device(&account.id, "durable-user");
    let first = binding(&account.id, &device.id, "c:sip:a@192.0.2.1", 10_000);
    let second = binding(&account.id, &device.id, "c:sip:b@192.0.2.2", 20_000);
    let event_ids;
    {
        let store = open();
        store.create_account(&account).expect("create account");
        store.create_device(&device).expect("create device");
        event_ids = store
            .commit(vec![
                Change::UpsertBinding(first.clone()),
                Change::UpsertBinding(second.clone()),
                Change::AppendEvent(event(
                    &account.id,
                    Some(&device.id),
                    EventKind::Registered,
                    1,
                )),
            ])
            .wait()
            .expect("commit");
        assert_eq!(event_ids.len(), 1);
    }
    let store = open();
    assert_eq!(
        store.account(&account.id).expect("read"),
        Some(account.clone())
    );
    assert_eq!(
        store.device(&device.id).expect("read"),
        Some(device.clone())
    );
    assert_eq!(
        store.device_bindings(&device.id).expect("read"),
        vec![first, second]
    );
    let events = store.events(&account_events(&account.id)).expect("events");
    assert_eq!(ids(&events), event_ids);
    let later = store
        .commit(vec![Change::AppendEvent(event(
            &account.id,
            None,
            EventKind::Expired,
            2,
        ))])
        .wait()
        .expect("commit after reopen");
    assert!(later[0] > event_ids[0], "ids keep growing across a reopen");
}

// ---- fixtures ----------------------------------------------------------------------------

/// A new account with a unique realm built from `label`.
pub fn account(label: &str) -> Account {
    let id = new_id();
    Account {
        realm: format!("{label}-{}.battery.example", &id[..12]),
        id,
        name: format!("Battery {label}"),
        parent_id: None,
        created_ms: 1_700_000_000_000,
        modified_ms: 1_700_000_000_000,
    }
}

/// A new password device of `account_id`.
pub fn device(account_id: &str, username: &str) -> Device {
    let id = new_id();
    Device {
        document: json!({
            "id": id,
            "name": format!("Device {username}"),
            "device_type": "sip_device",
            "sip": {"method": "password", "username": username, "password": "secret-1234"},
            "custom_key": {"kept": true},
        }),
        id,
        account_id: account_id.to_owned(),
        name: format!("Device {username}"),
        enabled: true,
        device_type: "sip_device".to_owned(),
        owner_id: None,
        sip: DeviceSip {
            method: SipAuthMethod::Password,
            username: Some(username.to_owned()),
            password: Some("secret-1234".to_owned()),
            ip: None,
            expire_seconds: None,
        },
        created_ms: 1_700_000_000_000,
        modified_ms: 1_700_000_000_000,
    }
}

/// A binding of the device under `key`, expiring at `expires_at_ms`.
pub fn binding(account_id: &str, device_id: &str, key: &str, expires_at_ms: UnixMillis) -> Binding {
    let received: SocketAddr = "192.0.2.10:5060"
        .parse()
        .unwrap_or_else(|_| unreachable!("literal address"));
    let local: SocketAddr = "[2001:db8::1]:5061"
        .parse()
        .unwrap_or_else(|_| unreachable!("literal address"));
    Binding {
        account_id: account_id.to_owned(),
        device_id: device_id.to_owned(),
        key: key.to_owned(),
        aor: "user@battery.example".to_owned(),
        contact: "sip:user@192.0.2.10:5060;transport=tcp".to_owned(),
        contact_params:
            ";+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\";reg-id=1".to_owned(),
        instance: Some("<urn:uuid:00000000-0000-0000-0000-000000000001>".to_owned()),
        reg_id: Some(1),
        q_milli: Some(500),
        expires_at_ms,
        registered_at_ms: expires_at_ms - 3_600_000,
        updated_ms: expires_at_ms - 3_600_000,
        call_id: format!("{}@battery", new_id()),
        cseq: u32::MAX,
        user_agent: Some("Battery/1.0".to_owned()),
        transport: Transport::Tcp,
        received,
        local,
        connection_id: Some(u64::MAX - 7),
        path: "<sip:edge1.example;lr>,<sip:edge2.example;lr>".to_owned(),
        last_keepalive_ms: None,
        keepalive_rtt_ms: None,
        keepalive_failures: 0,
        reachable: true,
    }
}

/// An event of the account (and device), id 0 until appended.
pub fn event(
    account_id: &str,
    device_id: Option<&str>,
    kind: EventKind,
    at_ms: UnixMillis,
) -> Event {
    Event {
        id: 0,
        at_ms,
        kind,
        account_id: account_id.to_owned(),
        device_id: device_id.map(str::to_owned),
        binding_key: Some("c:sip:user@192.0.2.10".to_owned()),
        contact: Some("sip:user@192.0.2.10".to_owned()),
        address: Some("192.0.2.10:5060".to_owned()),
        transport: Some(Transport::Udp),
        user_agent: Some("Battery/1.0".to_owned()),
        reason: Some(kind.as_str().to_owned()),
    }
}

fn account_events(account_id: &str) -> EventQuery {
    EventQuery {
        account_id: Some(account_id.to_owned()),
        limit: 1000,
        ..EventQuery::default()
    }
}

fn ids(events: &[Event]) -> Vec<i64> {
    events.iter().map(|event| event.id).collect()
}

fn commit(store: &dyn Store, changes: Vec<Change>) -> Vec<i64> {
    store.commit(changes).wait().expect("commit")
}

fn setup(store: &dyn Store, label: &str) -> (Account, Device) {
    let account = account(label);
    store.create_account(&account).expect("create account");
    let device = device(&account.id, &format!("{label}-user"));
    store.create_device(&device).expect("create device");
    (account, device)
}

fn conflict(field: &str) -> StoreError {
    StoreError::Conflict(field.to_owned())
}

// ---- directory ---------------------------------------------------------------------------

pub fn accounts_round_trip(store: &dyn Store) {
    let parent = account("parent");
    let mut child = account("child");
    child.parent_id = Some(parent.id.clone());
    store.create_account(&parent).expect("create parent");
    store.create_account(&child).expect("create child");
    assert_eq!(store.account(&child.id).expect("read"), Some(child.clone()));
    let all = store.accounts().expect("list");
    assert!(all.contains(&parent) && all.contains(&child));
    assert!(
        all.windows(2).all(|pair| pair[0].id < pair[1].id),
        "accounts sorted by id"
    );

    let mut renamed = child.clone();
    renamed.name = "Renamed".to_owned();
    renamed.parent_id = None;
    renamed.modified_ms += 1;
    store.update_account(&renamed).expect("update");
    assert_eq!(store.account(&child.id).expect("read"), Some(renamed));

    store.delete_account(&child.id).expect("delete");
    assert_eq!(store.account(&child.id).expect("read"), None);
    assert_eq!(
        store.account(&parent.id).expect("parent stays"),
        Some(parent)
    );
}

pub fn account_realms_are_case_insensitive_and_unique(store: &dyn Store) {
    let first = account("realm");
    store.create_account(&first).expect("create");
    let shouted = first.realm.to_uppercase();
    assert_eq!(
        store.account_by_realm(&shouted).expect("lookup"),
        Some(first.clone())
    );
    assert_eq!(
        store
            .account_by_realm("absent.battery.example")
            .expect("lookup"),
        None
    );

    let mut clash = account("realm");
    clash.realm = shouted;
    assert_eq!(store.create_account(&clash), Err(conflict("realm")));
    let mut same_id = account("same-id");
    same_id.id = first.id.clone();
    assert_eq!(store.create_account(&same_id), Err(conflict("id")));

    let second = account("realm-other");
    store.create_account(&second).expect("create second");
    let mut moved = second.clone();
    moved.realm = first.realm.clone();
    assert_eq!(store.update_account(&moved), Err(conflict("realm")));
    assert_eq!(
        store.account(&second.id).expect("read"),
        Some(second.clone()),
        "failed update changed nothing"
    );

    // The realm is free again once its account is gone.
    store.delete_account(&first.id).expect("delete");
    store.update_account(&moved).expect("realm reusable");
    assert_eq!(
        store.account_by_realm(&first.realm).expect("lookup"),
        Some(moved)
    );
}

pub fn missing_accounts_are_not_found(store: &dyn Store) {
    let ghost = account("ghost");
    assert_eq!(store.account(&ghost.id).expect("read"), None);
    assert_eq!(store.update_account(&ghost), Err(StoreError::NotFound));
    assert_eq!(store.delete_account(&ghost.id), Err(StoreError::NotFound));
}

pub fn devices_round_trip(store: &dyn Store) {
    let account = account("devices");
    store.create_account(&account).expect("create account");
    let mut created = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut device = device(&account.id, name);
        device.owner_id = Some(new_id());
        device.sip.expire_seconds = Some(u32::MAX);
        store.create_device(&device).expect("create");
        created.push(device);
    }
    created.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        store.device(&created[0].id).expect("read"),
        Some(created[0].clone())
    );
    assert_eq!(store.devices(&account.id).expect("list"), created);
    assert_eq!(store.devices(&new_id()).expect("list"), Vec::new());
    let mut same_id = device(&account.id, "dave");
    same_id.id = created[1].id.clone();
    assert_eq!(store.create_device(&same_id), Err(conflict("id")));

    store.delete_device(&created[1].id).expect("delete");
    assert_eq!(store.device(&created[1].id).expect("read"), None);
    assert_eq!(
        store.delete_device(&created[1].id),
        Err(StoreError::NotFound)
    );
    assert_eq!(store.update_device(&created[1]), Err(StoreError::NotFound));
    assert_eq!(store.devices(&account.id).expect("list").len(), 2);
}

pub fn devices_come_in_pages(store: &dyn Store) {
    let owner = account("pages");
    store.create_account(&owner).expect("create account");
    let mut ids = Vec::new();
    for index in 0..7 {
        let created = device(&owner.id, &format!("pager{index}"));
        store.create_device(&created).expect("create device");
        ids.push(created.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let page = store
            .devices_page(&owner.id, after.as_deref(), 3)
            .expect("page");
        assert!(page.len() <= 3, "a page holds at most the limit");
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        seen.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(seen, ids, "pages cover every device once, in id order");
    assert!(
        store
            .devices_page(&new_id(), None, 10)
            .expect("page of an unknown account")
            .is_empty()
    );
}

pub fn device_update_replaces_the_whole_device(store: &dyn Store) {
    let (_, original) = setup(store, "replace");
    let mut replaced = original.clone();
    replaced.name = "Replaced".to_owned();
    replaced.enabled = false;
    replaced.device_type = "softphone".to_owned();
    replaced.owner_id = Some(new_id());
    replaced.sip = DeviceSip {
        method: SipAuthMethod::Ip,
        username: None,
        password: None,
        ip: Some("198.51.100.7".to_owned()),
        expire_seconds: Some(300),
    };
    // Keys absent from the new document are gone, not merged.
    replaced.document = json!({"id": original.id, "name": "Replaced", "sip": {"method": "ip", "ip": "198.51.100.7"}});
    replaced.modified_ms += 1_000;
    store.update_device(&replaced).expect("update");
    assert_eq!(
        store.device(&original.id).expect("read"),
        Some(replaced.clone())
    );
    assert_eq!(
        store
            .device_by_username(
                &original.account_id,
                original.sip.username.as_deref().unwrap_or_default()
            )
            .expect("lookup"),
        None,
        "the old username no longer finds it"
    );
}

pub fn device_usernames_are_case_insensitive_and_unique_per_account(store: &dyn Store) {
    let account = account("usernames");
    store.create_account(&account).expect("create account");
    let alice = device(&account.id, "Alice.Smith");
    store.create_device(&alice).expect("create");
    assert_eq!(
        store
            .device_by_username(&account.id, "alice.smith")
            .expect("lookup"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .device_by_username(&account.id, "ALICE.SMITH")
            .expect("lookup"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .device_by_username(&account.id, "bob")
            .expect("lookup"),
        None
    );

    let twin = device(&account.id, "ALICE.smith");
    assert_eq!(store.create_device(&twin), Err(conflict("sip.username")));

    // Another account may use the same username.
    let other_account = self::account("usernames-other");
    store
        .create_account(&other_account)
        .expect("create other account");
    let elsewhere = device(&other_account.id, "alice.smith");
    store
        .create_device(&elsewhere)
        .expect("same username, other account");
    assert_eq!(
        store
            .device_by_username(&account.id, "alice.smith")
            .expect("lookup"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .device_by_username(&other_account.id, "alice.smith")
            .expect("lookup"),
        Some(elsewhere)
    );

    // An IP-authenticated device does not hold a digest username: no conflict.
    let mut by_ip = device(&account.id, "alice.smith");
    by_ip.sip.method = SipAuthMethod::Ip;
    by_ip.sip.ip = Some("203.0.113.9".to_owned());
    store
        .create_device(&by_ip)
        .expect("ip device may share the username");
    assert_eq!(
        store
            .device_by_username(&account.id, "Alice.Smith")
            .expect("lookup"),
        Some(alice.clone()),
        "the password device wins the lookup"
    );

    // Renaming into a taken username conflicts; renaming to a free one frees the old name.
    let bob = device(&account.id, "bob");
    store.create_device(&bob).expect("create bob");
    let mut bob_as_alice = bob.clone();
    bob_as_alice.sip.username = Some("ALICE.SMITH".to_owned());
    assert_eq!(
        store.update_device(&bob_as_alice),
        Err(conflict("sip.username"))
    );
    assert_eq!(
        store.device(&bob.id).expect("read"),
        Some(bob.clone()),
        "failed update changed nothing"
    );
    let mut alice_renamed = alice.clone();
    alice_renamed.sip.username = Some("alice2".to_owned());
    store.update_device(&alice_renamed).expect("rename");
    store.update_device(&bob_as_alice).expect("old name free");
    assert_eq!(
        store
            .device_by_username(&account.id, "alice.smith")
            .expect("lookup"),
        Some(bob_as_alice)
    );
}

pub fn devices_need_an_existing_account(store: &dyn Store) {
    let orphan = device(&new_id(), "orphan");
    assert_eq!(store.create_device(&orphan), Err(StoreError::NotFound));
    assert_eq!(store.device(&orphan.id).expect("read"), None);
}

pub fn devices_are_found_by_ip_and_modification_time(store: &dyn Store) {
    let account = account("by-ip");
    store.create_account(&account).expect("create account");
    let ip = format!(
        "10.{}.{}.{}",
        u8::from_str_radix(&new_id()[..2], 16).unwrap_or(1),
        7,
        9
    );
    let base = 1_800_000_000_000 + i64::from(u16::from_str_radix(&new_id()[..4], 16).unwrap_or(1));
    let mut made = Vec::new();
    for (index, name) in ["trunk-a", "trunk-b", "phone"].into_iter().enumerate() {
        let mut device = device(&account.id, name);
        if name.starts_with("trunk") {
            device.sip.method = SipAuthMethod::Ip;
            device.sip.ip = Some(ip.clone());
        }
        device.modified_ms = base + i64::try_from(index).unwrap_or(0);
        store.create_device(&device).expect("create");
        made.push(device);
    }
    let mut trunks: Vec<Device> = made[..2].to_vec();
    trunks.sort_by(|a, b| a.id.cmp(&b.id));
    let found: Vec<Device> = store
        .devices_by_ip(&ip)
        .expect("by ip")
        .into_iter()
        .filter(|device| device.account_id == account.id)
        .collect();
    assert_eq!(found, trunks);

    let ours = |since| -> Vec<String> {
        let devices = store.devices_modified_since(since).expect("since");
        assert!(
            devices.windows(2).all(|pair| pair[0].id < pair[1].id),
            "sorted by id"
        );
        let mut ids: Vec<String> = devices
            .into_iter()
            .filter(|device| device.account_id == account.id)
            .map(|device| device.id)
            .collect();
        ids.sort();
        ids
    };
    let mut expected: Vec<String> = made[1..].iter().map(|device| device.id.clone()).collect();
    expected.sort();
    assert_eq!(ours(base + 1), expected, "inclusive of since_ms");
    assert_eq!(ours(base + 3), Vec::<String>::new());
}

pub fn deleting_a_device_removes_its_bindings(store: &dyn Store) {
    let (account, device) = setup(store, "delete-device");
    let (_, neighbour) = setup(store, "delete-device-neighbour");
    let kept = binding(
        &neighbour.account_id,
        &neighbour.id,
        "c:sip:kept@192.0.2.1",
        50_000,
    );
    commit(
        store,
        vec![
            Change::UpsertBinding(binding(
                &account.id,
                &device.id,
                "c:sip:gone@192.0.2.1",
                50_000,
            )),
            Change::UpsertBinding(kept.clone()),
        ],
    );
    store.delete_device(&device.id).expect("delete");
    assert_eq!(store.device_bindings(&device.id).expect("read"), Vec::new());
    assert_eq!(
        store.device_bindings(&neighbour.id).expect("read"),
        vec![kept]
    );
}

pub fn deleting_an_account_removes_what_it_owns(store: &dyn Store) {
    let (account, device) = setup(store, "delete-account");
    let (other, other_device) = setup(store, "delete-account-other");
    let key = api_key(&account.id);
    store.create_api_key(&key).expect("key");
    let hook = webhook(&account.id);
    store.create_webhook(&hook).expect("hook");
    let other_hook = webhook(&other.id);
    store.create_webhook(&other_hook).expect("other hook");
    commit(
        store,
        vec![
            Change::UpsertBinding(binding(
                &account.id,
                &device.id,
                "c:sip:x@192.0.2.1",
                50_000,
            )),
            Change::UpsertBinding(binding(
                &other.id,
                &other_device.id,
                "c:sip:y@192.0.2.1",
                50_000,
            )),
            Change::AppendEvent(event(
                &account.id,
                Some(&device.id),
                EventKind::Registered,
                5,
            )),
        ],
    );
    store.delete_account(&account.id).expect("delete");
    assert_eq!(store.account(&account.id).expect("read"), None);
    assert_eq!(store.device(&device.id).expect("read"), None);
    assert_eq!(store.devices(&account.id).expect("read"), Vec::new());
    assert_eq!(store.device_bindings(&device.id).expect("read"), Vec::new());
    assert_eq!(store.api_key_by_hash(&key.key_hash).expect("read"), None);
    assert_eq!(store.webhook(&hook.id).expect("read"), None);
    assert_eq!(store.webhooks(&account.id).expect("read"), Vec::new());
    assert!(store.webhook(&other_hook.id).expect("read").is_some());
    assert_eq!(
        store
            .events(&account_events(&account.id))
            .expect("history stays")
            .len(),
        1
    );
    assert_eq!(
        store
            .device_bindings(&other_device.id)
            .expect("other account untouched")
            .len(),
        1
    );
}

fn api_key(account_id: &str) -> ApiKey {
    ApiKey {
        id: new_id(),
        account_id: account_id.to_owned(),
        name: "battery".to_owned(),
        key_hash: ApiKey::hash(&new_id()),
        created_ms: 1_700_000_000_000,
        scopes: vec!["devices:read".to_owned(), "pbx:phones:read".to_owned()],
        prefix: "sbk_battery".to_owned(),
    }
}

pub fn api_keys_round_trip(store: &dyn Store) {
    let account = account("keys");
    store.create_account(&account).expect("create account");
    let mut keys = vec![api_key(&account.id), api_key(&account.id)];
    for key in &keys {
        store.create_api_key(key).expect("create");
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        store.api_key_by_hash(&keys[0].key_hash).expect("lookup"),
        Some(keys[0].clone())
    );
    assert_eq!(
        store
            .api_key_by_hash(&ApiKey::hash("never issued"))
            .expect("lookup"),
        None
    );
    assert_eq!(store.api_keys(&account.id).expect("list"), keys);
    assert_eq!(
        store.api_key(&keys[1].id).expect("by id"),
        Some(keys[1].clone())
    );
    assert_eq!(store.api_key("no such key").expect("by id"), None);
    let mut every = api_key(&account.id);
    every.scopes = vec![ApiKey::EVERY_SCOPE.to_owned()];
    every.prefix = String::new();
    store.create_api_key(&every).expect("create");
    assert_eq!(
        store.api_key(&every.id).expect("by id"),
        Some(every.clone())
    );
    store.delete_api_key(&every.id).expect("delete");

    let mut same_hash = api_key(&account.id);
    same_hash.key_hash = keys[0].key_hash.clone();
    assert_eq!(store.create_api_key(&same_hash), Err(conflict("api_key")));
    let mut same_id = api_key(&account.id);
    same_id.id = keys[0].id.clone();
    assert_eq!(store.create_api_key(&same_id), Err(conflict("id")));

    store.delete_api_key(&keys[0].id).expect("delete");
    assert_eq!(
        store.api_key_by_hash(&keys[0].key_hash).expect("lookup"),
        None
    );
    assert_eq!(store.delete_api_key(&keys[0].id), Err(StoreError::NotFound));
    assert_eq!(store.api_key(&keys[0].id).expect("by id"), None);
    assert_eq!(
        store.api_keys(&account.id).expect("list"),
        vec![keys[1].clone()]
    );
}

// ---- location ----------------------------------------------------------------------------

pub fn account_api_keys_are_readable_and_unique(store: &dyn Store) {
    let first = account("own-key");
    let second = account("own-key-other");
    store.create_account(&first).expect("create");
    store.create_account(&second).expect("create");
    assert_eq!(store.account_api_key(&first.id).expect("read"), None);
    let key = new_id() + &new_id();
    store.set_account_api_key(&first.id, &key).expect("set");
    assert_eq!(
        store.account_api_key(&first.id).expect("read"),
        Some(key.clone())
    );
    assert_eq!(
        store.account_by_api_key(&key).expect("lookup"),
        Some(first.clone())
    );
    assert_eq!(
        store.account_by_api_key("never issued").expect("lookup"),
        None
    );
    assert_eq!(
        store.set_account_api_key(&second.id, &key),
        Err(conflict("api_key"))
    );
    assert_eq!(
        store.set_account_api_key(&account("ghost").id, "other"),
        Err(StoreError::NotFound)
    );
    // Updating the account keeps its key; a new key replaces the old one.
    let mut renamed = first.clone();
    renamed.name = "Renamed".to_owned();
    store.update_account(&renamed).expect("update");
    assert_eq!(
        store.account_api_key(&first.id).expect("read"),
        Some(key.clone())
    );
    let replacement = new_id() + &new_id();
    store
        .set_account_api_key(&first.id, &replacement)
        .expect("replace");
    assert_eq!(store.account_by_api_key(&key).expect("lookup"), None);
    store.delete_account(&first.id).expect("delete");
    assert_eq!(
        store.account_by_api_key(&replacement).expect("lookup"),
        None
    );
}

pub fn upsert_replaces_a_binding(store: &dyn Store) {
    let (account, device) = setup(store, "upsert");
    let original = binding(&account.id, &device.id, "c:sip:u@192.0.2.1", 100_000);
    assert_eq!(
        commit(store, vec![Change::UpsertBinding(original.clone())]),
        Vec::<i64>::new()
    );
    assert_eq!(
        store.device_bindings(&device.id).expect("read"),
        vec![original.clone()]
    );

    // Every field is replaced, including ones going back to None.
    let refreshed = Binding {
        contact: "sip:u@192.0.2.99:5070".to_owned(),
        contact_params: String::new(),
        instance: None,
        reg_id: None,
        q_milli: None,
        expires_at_ms: 200_000,
        updated_ms: 150_000,
        cseq: 2,
        user_agent: None,
        transport: Transport::Wss,
        received: "[2001:db8::99]:443"
            .parse()
            .unwrap_or_else(|_| unreachable!("literal address")),
        connection_id: None,
        path: String::new(),
        ..original.clone()
    };
    commit(store, vec![Change::UpsertBinding(refreshed.clone())]);
    assert_eq!(
        store.device_bindings(&device.id).expect("read"),
        vec![refreshed.clone()]
    );
    let all: Vec<Binding> = store
        .bindings()
        .expect("all")
        .into_iter()
        .filter(|binding| binding.device_id == device.id)
        .collect();
    assert_eq!(all, vec![refreshed]);
}

pub fn bindings_are_removed_one_by_one_or_per_device(store: &dyn Store) {
    let (account, device) = setup(store, "remove");
    let (_, other) = setup(store, "remove-other");
    let keys = ["c:sip:1@192.0.2.1", "c:sip:2@192.0.2.1", "i:<urn:uuid:x>:1"];
    let mut changes: Vec<Change> = keys
        .iter()
        .map(|key| Change::UpsertBinding(binding(&account.id, &device.id, key, 100_000)))
        .collect();
    let survivor = binding(&account.id, &other.id, keys[0], 100_000);
    changes.push(Change::UpsertBinding(survivor.clone()));
    commit(store, changes);
    let mut found: Vec<String> = store
        .device_bindings(&device.id)
        .expect("read")
        .into_iter()
        .map(|binding| binding.key)
        .collect();
    found.sort();
    let mut expected: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
    expected.sort();
    assert_eq!(found, expected, "sorted by key");

    commit(
        store,
        vec![
            Change::RemoveBinding {
                device_id: device.id.clone(),
                key: keys[1].to_owned(),
            },
            Change::RemoveBinding {
                device_id: device.id.clone(),
                key: "c:sip:never@192.0.2.1".to_owned(),
            },
        ],
    );
    let left: Vec<String> = store
        .device_bindings(&device.id)
        .expect("read")
        .into_iter()
        .map(|binding| binding.key)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&keys[1].to_owned()));

    commit(
        store,
        vec![Change::RemoveDeviceBindings {
            device_id: device.id.clone(),
        }],
    );
    assert_eq!(store.device_bindings(&device.id).expect("read"), Vec::new());
    assert_eq!(
        store.device_bindings(&other.id).expect("read"),
        vec![survivor],
        "other device untouched"
    );
}

pub fn expired_bindings_are_found(store: &dyn Store) {
    let (account, device) = setup(store, "expired");
    let early = binding(&account.id, &device.id, "c:sip:early@192.0.2.1", 1_000);
    let edge = binding(&account.id, &device.id, "c:sip:edge@192.0.2.1", 2_000);
    let live = binding(&account.id, &device.id, "c:sip:live@192.0.2.1", 3_000);
    commit(
        store,
        vec![
            Change::UpsertBinding(live.clone()),
            Change::UpsertBinding(edge.clone()),
            Change::UpsertBinding(early.clone()),
        ],
    );
    let ours = |now| -> Vec<Binding> {
        let expired = store.expired_bindings(now).expect("expired");
        assert!(expired.iter().all(|binding| binding.expires_at_ms <= now));
        assert!(
            expired
                .windows(2)
                .all(|pair| pair[0].expires_at_ms <= pair[1].expires_at_ms),
            "soonest first"
        );
        expired
            .into_iter()
            .filter(|binding| binding.device_id == device.id)
            .collect()
    };
    assert_eq!(ours(999), Vec::new());
    assert_eq!(
        ours(2_000),
        vec![early.clone(), edge.clone()],
        "expires_at_ms == now counts as expired"
    );
    // The sweep removes them through commit, with an Expired event each.
    commit(
        store,
        vec![
            Change::RemoveBinding {
                device_id: device.id.clone(),
                key: early.key.clone(),
            },
            Change::AppendEvent(event(
                &account.id,
                Some(&device.id),
                EventKind::Expired,
                2_000,
            )),
        ],
    );
    assert_eq!(ours(2_000), vec![edge]);
    assert_eq!(store.device_bindings(&device.id).expect("read").len(), 2);
    assert!(ours(10_000).contains(&live));
}

// ---- history -----------------------------------------------------------------------------

pub fn event_ids_are_monotonic_and_returned_in_order(store: &dyn Store) {
    let (account, device) = setup(store, "event-ids");
    let kinds = [
        EventKind::Registered,
        EventKind::Refreshed,
        EventKind::Unregistered,
    ];
    let first = commit(
        store,
        vec![
            Change::AppendEvent(event(&account.id, Some(&device.id), kinds[0], 10)),
            Change::UpsertBinding(binding(
                &account.id,
                &device.id,
                "c:sip:e@192.0.2.1",
                100_000,
            )),
            Change::AppendEvent(event(&account.id, Some(&device.id), kinds[1], 11)),
        ],
    );
    let second = commit(
        store,
        vec![Change::AppendEvent(event(
            &account.id,
            Some(&device.id),
            kinds[2],
            12,
        ))],
    );
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 1);
    let all: Vec<i64> = first.iter().chain(&second).copied().collect();
    assert!(
        all.windows(2).all(|pair| pair[0] < pair[1]),
        "ids strictly increase: {all:?}"
    );
    assert!(all.iter().all(|id| *id > 0));

    let stored = store.events(&account_events(&account.id)).expect("events");
    assert_eq!(ids(&stored), all);
    for (stored, kind) in stored.iter().zip(kinds) {
        let mut expected = event(&account.id, Some(&device.id), kind, stored.at_ms);
        expected.id = stored.id;
        assert_eq!(*stored, expected);
    }

    // Many concurrent committers still get distinct, increasing ids per batch.
    let futures: Vec<_> = (0..50)
        .map(|index| {
            store.commit(vec![
                Change::AppendEvent(event(&account.id, None, EventKind::AuthFailed, 100 + index)),
                Change::AppendEvent(event(&account.id, None, EventKind::Rejected, 100 + index)),
            ])
        })
        .collect();
    let mut seen: Vec<i64> = Vec::new();
    for future in futures {
        let ids = future.wait().expect("commit");
        assert_eq!(ids.len(), 2);
        assert!(ids[0] < ids[1]);
        seen.extend(ids);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no id given twice");
    assert!(sorted[0] > all[2]);
}

pub fn events_are_filtered_and_paged(store: &dyn Store) {
    let (account, device) = setup(store, "event-query");
    let (_, other_device) = setup(store, "event-query-other");
    let changes = vec![
        Change::AppendEvent(event(
            &account.id,
            Some(&device.id),
            EventKind::Registered,
            1_000,
        )),
        Change::AppendEvent(event(
            &account.id,
            Some(&other_device.id),
            EventKind::AuthFailed,
            2_000,
        )),
        Change::AppendEvent(event(&account.id, None, EventKind::Rejected, 3_000)),
        Change::AppendEvent(event(
            &account.id,
            Some(&device.id),
            EventKind::Expired,
            4_000,
        )),
        Change::AppendEvent(event(
            &account.id,
            Some(&device.id),
            EventKind::Registered,
            5_000,
        )),
    ];
    let id = commit(store, changes);
    let query = |change: &dyn Fn(&mut EventQuery)| -> Vec<i64> {
        let mut query = account_events(&account.id);
        change(&mut query);
        ids(&store.events(&query).expect("events"))
    };
    assert_eq!(query(&|_| {}), id);
    assert_eq!(
        query(&|q| q.device_id = Some(device.id.clone())),
        vec![id[0], id[3], id[4]]
    );
    assert_eq!(
        query(&|q| q.kinds = vec![EventKind::Registered]),
        vec![id[0], id[4]]
    );
    assert_eq!(
        query(&|q| q.kinds = vec![EventKind::AuthFailed, EventKind::Rejected]),
        vec![id[1], id[2]]
    );
    assert_eq!(query(&|q| q.after_id = Some(id[2])), vec![id[3], id[4]]);
    assert_eq!(query(&|q| q.before_id = Some(id[2])), vec![id[0], id[1]]);
    assert_eq!(query(&|q| q.limit = 2), vec![id[0], id[1]]);
    assert_eq!(query(&|q| q.limit = 0), Vec::<i64>::new());
    assert_eq!(
        query(&|q| {
            q.newest_first = true;
            q.limit = 2;
        }),
        vec![id[4], id[3]]
    );
    assert_eq!(
        query(&|q| {
            q.newest_first = true;
            q.before_id = Some(id[3]);
        }),
        vec![id[2], id[1], id[0]],
        "paging backwards"
    );
    assert_eq!(
        query(&|q| {
            q.since_ms = Some(2_000);
            q.until_ms = Some(4_000);
        }),
        vec![id[1], id[2]]
    );
    assert_eq!(
        query(&|q| {
            q.device_id = Some(device.id.clone());
            q.kinds = vec![EventKind::Registered];
            q.after_id = Some(id[0]);
        }),
        vec![id[4]]
    );
    let by_device = EventQuery {
        device_id: Some(other_device.id.clone()),
        limit: 10,
        ..EventQuery::default()
    };
    assert_eq!(
        ids(&store.events(&by_device).expect("events")),
        vec![id[1]],
        "device filter alone"
    );
}

// ---- users -------------------------------------------------------------------------------

/// A new user of `account_id` (revision 1) with made-up credential hashes derived from
/// `username`.
pub fn user(account_id: &str, username: &str) -> User {
    let id = new_id();
    User {
        document: json!({
            "id": id,
            "username": username,
            "first_name": "Ada",
            "last_name": username,
            "enabled": true,
            "priv_level": "user",
            "custom_key": {"kept": true},
        }),
        id,
        account_id: account_id.to_owned(),
        username: Some(username.to_owned()),
        first_name: "Ada".to_owned(),
        last_name: username.to_owned(),
        enabled: true,
        md5_auth: Some(format!("md5-{username}")),
        sha1_auth: Some(format!("sha1-{username}")),
        created_ms: 1_700_000_000_000,
        modified_ms: 1_700_000_000_000,
        revision: 1,
    }
}

pub fn users_round_trip(store: &dyn Store) {
    let account = account("users");
    store.create_account(&account).expect("create account");
    let first = user(&account.id, "ada");
    let mut second = user(&account.id, "grace");
    second.username = None;
    second.md5_auth = None;
    second.sha1_auth = None;
    second.enabled = false;
    store.create_user(&first).expect("create user");
    store
        .create_user(&second)
        .expect("create user without username");
    assert_eq!(store.user(&first.id).expect("read"), Some(first.clone()));
    assert_eq!(store.user(&second.id).expect("read"), Some(second.clone()));
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(store.users(&account.id).expect("list"), expected);
    assert_eq!(
        store.user_by_username(&account.id, "ADA").expect("by name"),
        Some(first.clone()),
        "case-insensitive"
    );
    assert_eq!(
        store
            .user_by_username(&account.id, "nobody")
            .expect("by name"),
        None
    );
    let mut changed = first.clone();
    changed.username = Some("Ada.Lovelace".to_owned());
    changed.document = json!({"id": first.id, "username": "Ada.Lovelace", "first_name": "Ada"});
    changed.modified_ms += 1;
    changed.revision = 2;
    store.update_user(&changed).expect("update");
    assert_eq!(store.user(&first.id).expect("read"), Some(changed.clone()));
    assert_eq!(
        store.user_by_username(&account.id, "ada").expect("by name"),
        None,
        "the old username is free"
    );
    assert_eq!(
        store
            .user_by_username(&account.id, "ada.lovelace")
            .expect("by name"),
        Some(changed.clone())
    );
    store.delete_user(&first.id).expect("delete");
    assert_eq!(store.user(&first.id).expect("read"), None);
    assert_eq!(store.delete_user(&first.id), Err(StoreError::NotFound));
    assert_eq!(store.users(&account.id).expect("list"), vec![second]);
    let mut missing = user(&account.id, "ghost");
    missing.revision = 2;
    assert_eq!(store.update_user(&missing), Err(StoreError::NotFound));
}

pub fn user_updates_need_the_current_revision(store: &dyn Store) {
    let account = account("user-revisions");
    store.create_account(&account).expect("create account");
    let original = user(&account.id, "rev");
    store.create_user(&original).expect("create");
    let mut next = original.clone();
    next.first_name = "Next".to_owned();
    next.revision = 2;
    store.update_user(&next).expect("revision 1 -> 2");
    let mut stale = original.clone();
    stale.first_name = "Stale".to_owned();
    stale.revision = 2;
    assert_eq!(
        store.update_user(&stale),
        Err(conflict("revision")),
        "written from revision 1, but 2 is stored"
    );
    let mut skipping = original.clone();
    skipping.revision = 4;
    assert_eq!(store.update_user(&skipping), Err(conflict("revision")));
    assert_eq!(store.user(&original.id).expect("read"), Some(next));
}

pub fn user_usernames_are_case_insensitive_and_unique_per_account(store: &dyn Store) {
    let other_account = account("user-names-other");
    let account = account("user-names");
    store.create_account(&account).expect("create account");
    store
        .create_account(&other_account)
        .expect("create account");
    let first = user(&account.id, "Same.Name");
    store.create_user(&first).expect("create");
    assert_eq!(
        store.create_user(&user(&account.id, "same.NAME")),
        Err(conflict("username"))
    );
    store
        .create_user(&user(&other_account.id, "same.name"))
        .expect("another account may reuse it");
    let second = user(&account.id, "second");
    store.create_user(&second).expect("create");
    let mut clash = second.clone();
    clash.username = Some("SAME.name".to_owned());
    clash.revision = 2;
    assert_eq!(store.update_user(&clash), Err(conflict("username")));
    assert_eq!(
        store.create_user(&User {
            username: Some("fresh".to_owned()),
            ..first.clone()
        }),
        Err(conflict("id"))
    );
}

pub fn users_are_found_by_credentials(store: &dyn Store) {
    let other_account = account("user-creds-other");
    let account = account("user-creds");
    store.create_account(&account).expect("create account");
    store
        .create_account(&other_account)
        .expect("create account");
    let ada = user(&account.id, "ada");
    store.create_user(&ada).expect("create");
    store
        .create_user(&user(&other_account.id, "ada"))
        .expect("same hashes elsewhere");
    assert_eq!(
        store
            .users_by_credentials(&account.id, CredentialHash::Md5, "md5-ada")
            .expect("md5"),
        vec![ada.clone()]
    );
    assert_eq!(
        store
            .users_by_credentials(&account.id, CredentialHash::Sha1, "sha1-ada")
            .expect("sha1"),
        vec![ada.clone()]
    );
    assert!(
        store
            .users_by_credentials(&account.id, CredentialHash::Md5, "sha1-ada")
            .expect("md5")
            .is_empty(),
        "a sha1 hash is not an md5 hash"
    );
    assert!(
        store
            .users_by_credentials(&account.id, CredentialHash::Sha1, "nope")
            .expect("sha1")
            .is_empty()
    );
}

pub fn users_need_an_existing_account_and_go_with_it(store: &dyn Store) {
    assert_eq!(
        store.create_user(&user(&new_id(), "orphan")),
        Err(StoreError::NotFound)
    );
    let account = account("user-delete");
    store.create_account(&account).expect("create account");
    let ada = user(&account.id, "ada");
    store.create_user(&ada).expect("create");
    store.delete_account(&account.id).expect("delete account");
    assert_eq!(store.user(&ada.id).expect("read"), None);
    assert!(store.users(&account.id).expect("list").is_empty());
}

pub fn account_documents_round_trip(store: &dyn Store) {
    let owner = account("documents");
    store.create_account(&owner).expect("create");
    assert_eq!(
        store.account_document(&owner.id).expect("read"),
        Some(json!({})),
        "an account without a document has an empty one"
    );
    let document =
        json!({"name": owner.name, "timezone": "Europe/Paris", "custom": {"kept": [1, 2]}});
    store
        .set_account_document(&owner.id, &document)
        .expect("store the document");
    assert_eq!(
        store.account_document(&owner.id).expect("read"),
        Some(document.clone())
    );
    // Updating the typed fields keeps the document.
    let mut renamed = owner.clone();
    renamed.name = "Renamed documents".to_owned();
    store.update_account(&renamed).expect("update");
    assert_eq!(
        store.account_document(&owner.id).expect("read"),
        Some(document)
    );
    assert_eq!(store.account_document(&new_id()).expect("read"), None);
    assert_eq!(
        store.set_account_document(&new_id(), &json!({})),
        Err(StoreError::NotFound)
    );
}

pub fn access_lists_round_trip(store: &dyn Store) {
    let owner = account("access-lists");
    store.create_account(&owner).expect("create");
    let other = account("access-lists-other");
    store.create_account(&other).expect("create other");
    assert_eq!(store.access_lists(&owner.id).expect("read"), None);
    let allow = vec!["10.0.0.0/8".to_owned(), "2001:db8::/32".to_owned()];
    let deny = vec!["192.0.2.7".to_owned()];
    let first = store
        .set_access_lists(&owner.id, &allow, &deny, 1_000)
        .expect("set");
    assert_eq!(
        first,
        AccessLists {
            account_id: owner.id.clone(),
            allow: allow.clone(),
            deny: deny.clone(),
            revision: 1,
            modified_ms: 1_000,
        }
    );
    assert_eq!(store.access_lists(&owner.id).expect("read"), Some(first));
    // Clearing keeps a row with empty lists and a higher revision.
    let cleared = store
        .set_access_lists(&owner.id, &[], &[], 2_000)
        .expect("clear");
    assert_eq!((cleared.revision, cleared.is_empty()), (2, true));
    let again = store
        .set_access_lists(&owner.id, &[], &deny, 3_000)
        .expect("set again");
    assert_eq!(again.revision, 3);
    store
        .set_access_lists(&other.id, &allow, &[], 3_000)
        .expect("other");
    let all: Vec<AccessLists> = store
        .access_lists_modified_since(UnixMillis::MIN)
        .expect("all")
        .into_iter()
        .filter(|lists| lists.account_id == owner.id || lists.account_id == other.id)
        .collect();
    assert_eq!(all.len(), 2);
    assert!(
        all.windows(2)
            .all(|pair| pair[0].account_id < pair[1].account_id)
    );
    let recent = store.access_lists_modified_since(3_000).expect("recent");
    assert!(recent.iter().any(|lists| lists.account_id == owner.id));
    assert!(
        store
            .access_lists_modified_since(3_001)
            .expect("none newer")
            .iter()
            .all(|lists| lists.account_id != owner.id && lists.account_id != other.id)
    );
    assert_eq!(
        store.set_access_lists(&new_id(), &allow, &deny, 1),
        Err(StoreError::NotFound)
    );
    assert_eq!(store.access_lists(&new_id()).expect("read"), None);
    // They go with their account.
    store.delete_account(&other.id).expect("delete");
    assert_eq!(store.access_lists(&other.id).expect("read"), None);
    assert!(store.access_lists(&owner.id).expect("read").is_some());
}

// ---- monitoring --------------------------------------------------------------------------

pub fn device_outcomes_follow_the_history(store: &dyn Store) {
    let (account, watched) = setup(store, "outcome");
    let quiet = device(&account.id, "outcome-quiet");
    let device = watched;
    store.create_device(&quiet).expect("create quiet device");
    assert_eq!(store.device_outcome(&device.id).expect("outcome"), None);
    let append = |kind, at_ms| {
        commit(
            store,
            vec![Change::AppendEvent(event(
                &account.id,
                Some(&device.id),
                kind,
                at_ms,
            ))],
        )
    };
    append(EventKind::Registered, 1_000);
    // Refreshes and reachability are not outcomes: the registration stays the last one.
    append(EventKind::Refreshed, 2_000);
    append(EventKind::Offline, 2_500);
    let outcome = store
        .device_outcome(&device.id)
        .expect("outcome")
        .expect("recorded");
    assert_eq!(outcome.kind, EventKind::Registered);
    assert_eq!(outcome.at_ms, 1_000);
    assert_eq!(outcome.last_registered_ms, Some(1_000));
    append(EventKind::AuthFailed, 3_000);
    let outcome = store
        .device_outcome(&device.id)
        .expect("outcome")
        .expect("recorded");
    assert_eq!(outcome.kind, EventKind::AuthFailed);
    assert_eq!(outcome.reason.as_deref(), Some("auth_failed"));
    assert_eq!(
        outcome.last_registered_ms,
        Some(1_000),
        "the last registration time is kept"
    );

    let summaries = store.device_summaries(&account.id).expect("summaries");
    assert_eq!(summaries.len(), 2);
    let mut ids = vec![device.id.clone(), quiet.id.clone()];
    ids.sort();
    assert_eq!(
        summaries.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        ids
    );
    for summary in &summaries {
        assert_eq!(summary.account_id, account.id);
        if summary.id == device.id {
            assert_eq!(
                summary.outcome.as_ref().map(|o| o.kind),
                Some(EventKind::AuthFailed)
            );
            assert_eq!(summary.username.as_deref(), Some("outcome-user"));
        } else {
            assert_eq!(summary.outcome, None);
        }
    }

    // A deleted device leaves no outcome behind, even when events about it arrive later.
    store.delete_device(&device.id).expect("delete device");
    append(EventKind::Unregistered, 4_000);
    assert_eq!(store.device_outcome(&device.id).expect("outcome"), None);
    assert!(store.last_event_id().expect("last id") > 0);
}

pub fn state_samples_round_trip(store: &dyn Store) {
    let (account, _) = setup(store, "samples");
    let other = account_named(store, "samples-other");
    store
        .record_samples(&[
            StateSample {
                account_id: &account.id,
                at_ms: 1_000,
                counts: [1, 2, 3, 4, 5, 6],
            },
            StateSample {
                account_id: &account.id,
                at_ms: 2_000,
                counts: [2, 0, 0, 0, 0, 0],
            },
            StateSample {
                account_id: &other.id,
                at_ms: 1_500,
                counts: [9, 9, 9, 9, 9, 9],
            },
        ])
        .expect("record");
    // The same account and time replaces.
    store
        .record_samples(&[StateSample {
            account_id: &account.id,
            at_ms: 2_000,
            counts: [3, 0, 0, 0, 0, 0],
        }])
        .expect("record again");
    let samples = store.samples(&account.id, 0, 10_000).expect("samples");
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].at_ms, 1_000);
    assert_eq!(samples[0].counts, [1, 2, 3, 4, 5, 6]);
    assert_eq!(samples[0].total(), 21);
    assert_eq!(samples[1].counts, [3, 0, 0, 0, 0, 0]);
    assert_eq!(
        store.samples(&account.id, 1_001, 2_000).expect("window"),
        []
    );
    assert!(store.prune_samples(1_600).expect("prune") >= 2);
    assert_eq!(
        store
            .samples(&account.id, 0, 10_000)
            .expect("after prune")
            .len(),
        1
    );
    assert_eq!(store.samples(&other.id, 0, 10_000).expect("other").len(), 0);
}

fn account_named(store: &dyn Store, label: &str) -> Account {
    let account = account(label);
    store.create_account(&account).expect("create account");
    account
}

// ---- webhooks ----------------------------------------------------------------------------

/// A new enabled hook of `account_id`.
pub fn webhook(account_id: &str) -> Webhook {
    let id = new_id();
    Webhook {
        document: json!({"id": id, "url": "https://hooks.example/in", "events": ["*"]}),
        id,
        account_id: account_id.to_owned(),
        enabled: true,
        disabled_reason: None,
        secret: new_id(),
        failure_streak: 0,
        created_ms: 1_700_000_000_000,
        modified_ms: 1_700_000_000_000,
    }
}

fn new_delivery(hook: &Webhook, event_id: i64, created_ms: UnixMillis) -> NewDelivery {
    NewDelivery {
        hook_id: hook.id.clone(),
        account_id: hook.account_id.clone(),
        event_id,
        event_name: "device.registered".to_owned(),
        payload: json!({"event": "device.registered", "eventId": format!("evt_{event_id}")}),
        created_ms,
    }
}

/// Fans `deliveries` out at the current cursor, moving it to `cursor` (at least where it is).
fn fan_out(store: &dyn Store, cursor: i64, deliveries: &[NewDelivery]) {
    let current = store.webhook_cursor().expect("cursor");
    store
        .fan_out(current, cursor.max(current.unwrap_or(0)), deliveries)
        .expect("fan out");
}

fn hook_deliveries(store: &dyn Store, hook: &Webhook, now_ms: UnixMillis) -> Vec<Delivery> {
    let mut due = store.due_deliveries(now_ms, 1000, 100_000).expect("due");
    due.retain(|delivery| delivery.hook_id == hook.id);
    due
}

fn failure(delivery_id: i64, at_ms: UnixMillis, retry_at_ms: Option<UnixMillis>) -> AttemptOutcome {
    AttemptOutcome {
        delivery_id,
        at_ms,
        http_status: Some(500),
        error: Some("HTTP 500".to_owned()),
        duration_ms: 3,
        success: false,
        retry_at_ms,
        disable_after_failures: 3,
    }
}

pub fn webhooks_round_trip(store: &dyn Store) {
    let (account, _) = setup(store, "hooks");
    let mut hook = webhook(&account.id);
    assert_eq!(
        store.create_webhook(&webhook("no-such-account")),
        Err(StoreError::NotFound)
    );
    store.create_webhook(&hook).expect("create");
    assert_eq!(store.create_webhook(&hook), Err(conflict("id")));
    assert_eq!(store.webhook(&hook.id).expect("read"), Some(hook.clone()));
    let second = webhook(&account.id);
    store.create_webhook(&second).expect("second");
    let mut expected = vec![hook.clone(), second.clone()];
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(store.webhooks(&account.id).expect("list"), expected);

    hook.document = json!({"url": "https://hooks.example/other", "events": ["device.expired"]});
    hook.enabled = false;
    hook.disabled_reason = Some("operator".to_owned());
    hook.modified_ms += 1;
    store.update_webhook(&hook).expect("update");
    assert_eq!(store.webhook(&hook.id).expect("read"), Some(hook.clone()));
    let enabled = store.enabled_webhooks().expect("enabled");
    assert!(enabled.iter().any(|found| found.id == second.id));
    assert!(!enabled.iter().any(|found| found.id == hook.id));
    assert_eq!(
        store.update_webhook(&webhook(&account.id)),
        Err(StoreError::NotFound)
    );

    store.delete_webhook(&hook.id).expect("delete");
    assert_eq!(store.webhook(&hook.id).expect("read"), None);
    assert_eq!(store.delete_webhook(&hook.id), Err(StoreError::NotFound));
    assert_eq!(store.webhooks(&account.id).expect("list"), vec![second]);
}

pub fn fan_out_moves_the_cursor_with_the_deliveries(store: &dyn Store) {
    let (account, device) = setup(store, "fan-out");
    let hook = webhook(&account.id);
    store.create_webhook(&hook).expect("hook");
    let ids = commit(
        store,
        vec![
            Change::AppendEvent(event(
                &account.id,
                Some(&device.id),
                EventKind::Registered,
                1,
            )),
            Change::AppendEvent(event(&account.id, Some(&device.id), EventKind::Expired, 2)),
        ],
    );
    let before = store.webhook_cursor().expect("cursor");
    let deliveries = [
        new_delivery(&hook, ids[0], 10),
        new_delivery(&hook, ids[1], 10),
    ];
    store.fan_out(before, ids[1], &deliveries).expect("fan out");
    assert_eq!(store.webhook_cursor().expect("cursor"), Some(ids[1]));
    // A second fan-out from the old cursor (another process got there first) writes nothing.
    assert_eq!(
        store.fan_out(
            before,
            ids[1] + 100,
            &[new_delivery(&hook, ids[1] + 50, 10)]
        ),
        Err(conflict("cursor"))
    );
    assert_eq!(store.webhook_cursor().expect("cursor"), Some(ids[1]));
    // The same event for the same hook is queued once.
    fan_out(store, ids[1], &[new_delivery(&hook, ids[0], 10)]);
    let due = hook_deliveries(store, &hook, 10);
    assert_eq!(
        due.iter()
            .map(|delivery| delivery.event_id)
            .collect::<Vec<_>>(),
        vec![ids[0], ids[1]]
    );
    let first = &due[0];
    assert_eq!(first.state, DeliveryState::Pending);
    assert_eq!(first.attempts, 0);
    assert_eq!(first.account_id, account.id);
    assert_eq!(first.payload, deliveries[0].payload);
    assert_eq!(
        store.delivery(first.id).expect("read").as_ref(),
        Some(first)
    );
    assert!(hook_deliveries(store, &hook, 9).is_empty(), "not due yet");
}

pub fn attempts_retry_deliver_fail_and_disable_hooks(store: &dyn Store) {
    let (account, device) = setup(store, "attempts");
    let hook = webhook(&account.id);
    store.create_webhook(&hook).expect("hook");
    let ids = commit(
        store,
        (0..4)
            .map(|at| {
                Change::AppendEvent(event(
                    &account.id,
                    Some(&device.id),
                    EventKind::Registered,
                    at,
                ))
            })
            .collect(),
    );
    let deliveries: Vec<NewDelivery> = ids.iter().map(|&id| new_delivery(&hook, id, 100)).collect();
    fan_out(store, ids[3], &deliveries);
    let due = hook_deliveries(store, &hook, 100);
    assert_eq!(due.len(), 4);
    assert_eq!(
        store
            .due_deliveries(100, 1, 100_000)
            .expect("due")
            .iter()
            .filter(|delivery| delivery.hook_id == hook.id)
            .count(),
        1,
        "at most per_hook of one hook"
    );

    // A failure with a retry: pending again, later.
    let recorded = store
        .record_attempt(&failure(due[0].id, 110, Some(500)))
        .expect("record");
    assert_eq!(recorded.state, DeliveryState::Pending);
    assert_eq!(recorded.failure_streak, 1);
    assert_eq!(recorded.disabled, None);
    let retried = store.delivery(due[0].id).expect("read").expect("exists");
    assert_eq!((retried.attempts, retried.next_attempt_ms), (1, 500));
    assert_eq!(retried.last_error.as_deref(), Some("HTTP 500"));
    assert!(
        !hook_deliveries(store, &hook, 499)
            .iter()
            .any(|d| d.id == due[0].id)
    );
    assert!(
        hook_deliveries(store, &hook, 500)
            .iter()
            .any(|d| d.id == due[0].id)
    );

    // A success delivers it and resets the streak.
    let recorded = store
        .record_attempt(&AttemptOutcome {
            http_status: Some(204),
            error: None,
            success: true,
            retry_at_ms: None,
            ..failure(due[0].id, 510, None)
        })
        .expect("record");
    assert_eq!(recorded.state, DeliveryState::Delivered);
    assert_eq!(recorded.failure_streak, 0);
    let delivered = store.delivery(due[0].id).expect("read").expect("exists");
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert_eq!(delivered.delivered_ms, Some(510));

    // No retry left: failed for good.
    let recorded = store
        .record_attempt(&failure(due[1].id, 520, None))
        .expect("record");
    assert_eq!(recorded.state, DeliveryState::Failed);
    assert_eq!(recorded.failure_streak, 1);
    // The third failure in a row disables the hook, and its deliveries stop.
    store
        .record_attempt(&failure(due[2].id, 530, Some(600)))
        .expect("record");
    let recorded = store
        .record_attempt(&failure(due[3].id, 540, Some(600)))
        .expect("record");
    assert_eq!(recorded.failure_streak, 3);
    let reason = recorded.disabled.expect("disabled");
    assert!(
        reason.contains("3 consecutive failed attempts") && reason.contains("HTTP 500"),
        "{reason}"
    );
    let disabled = store.webhook(&hook.id).expect("read").expect("exists");
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some(reason.as_str()));
    assert!(hook_deliveries(store, &hook, 10_000).is_empty());

    // Re-enabling clears the streak; the pending deliveries resume.
    store
        .update_webhook(&Webhook {
            enabled: true,
            disabled_reason: None,
            ..disabled
        })
        .expect("re-enable");
    let enabled = store.webhook(&hook.id).expect("read").expect("exists");
    assert_eq!((enabled.enabled, enabled.failure_streak), (true, 0));
    assert_eq!(hook_deliveries(store, &hook, 10_000).len(), 2);
    assert_eq!(
        store.record_attempt(&failure(i64::MAX, 1, None)),
        Err(StoreError::NotFound)
    );

    // Deleting the hook takes its outbox with it.
    store.delete_webhook(&hook.id).expect("delete");
    assert_eq!(store.delivery(due[2].id).expect("read"), None);
    assert!(
        store
            .webhook_attempts(&account.id, None, 100)
            .expect("attempts")
            .is_empty()
    );
}

pub fn attempts_are_listed_newest_first_and_pruned(store: &dyn Store) {
    let (account, device) = setup(store, "attempt-list");
    let (first, second) = (webhook(&account.id), webhook(&account.id));
    store.create_webhook(&first).expect("hook");
    store.create_webhook(&second).expect("hook");
    let ids = commit(
        store,
        vec![
            Change::AppendEvent(event(
                &account.id,
                Some(&device.id),
                EventKind::Registered,
                1,
            )),
            Change::AppendEvent(event(
                &account.id,
                Some(&device.id),
                EventKind::Refreshed,
                2,
            )),
        ],
    );
    fan_out(
        store,
        ids[1],
        &[
            new_delivery(&first, ids[0], 1_000),
            new_delivery(&second, ids[1], 5_000),
        ],
    );
    let old = hook_deliveries(store, &first, 1_000).remove(0);
    let new = hook_deliveries(store, &second, 5_000).remove(0);
    store
        .record_attempt(&failure(old.id, 1_000, None))
        .expect("old attempt");
    store
        .record_attempt(&failure(new.id, 5_000, Some(9_000)))
        .expect("new attempt");

    let all = store.webhook_attempts(&account.id, None, 10).expect("all");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].delivery_id, new.id, "newest first");
    assert_eq!(all[0].hook_id, second.id);
    assert_eq!(all[0].event_id, ids[1]);
    assert_eq!(all[0].http_status, Some(500));
    assert!(!all[0].success);
    assert_eq!(
        store
            .webhook_attempts(&account.id, None, 1)
            .expect("limit")
            .len(),
        1
    );
    let one = store
        .webhook_attempts(&account.id, Some(&first.id), 10)
        .expect("one hook");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].delivery_id, old.id);
    assert!(
        store
            .webhook_attempts("someone-else", None, 10)
            .expect("other")
            .is_empty()
    );

    // Before 2,000: the old failed delivery and its attempt go; the pending one stays.
    assert!(store.prune_webhooks(2_000).expect("prune") >= 2);
    assert_eq!(store.delivery(old.id).expect("read"), None);
    assert!(store.delivery(new.id).expect("read").is_some());
    let left = store.webhook_attempts(&account.id, None, 10).expect("left");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].delivery_id, new.id);
}
