//! Abuse defence policy: failed-authentication counters, bans, per-username slowing, per-source
//! token buckets and allow/deny lists. Pure: no clock, no sockets, no tokio. Every call takes
//! `now` (Unix milliseconds); the service holds one [`Defence`] behind a mutex and turns its
//! verdicts into SIP answers and history events.
//!
//! The rules:
//! - Only a wrong digest response is a failure ([`Defence::failure`]); a challenge never is.
//! - `ip_failures` failures from one address within `ip_window_ms` ban that address for
//!   `ban_ms`, doubled for each earlier ban still remembered (`max_ban_ms` caps it, and an
//!   address is forgotten once it stayed clean that long).
//! - `username_failures` failures for one username within `username_window_ms` slow that
//!   username for `username_slowdown_ms`: attempts for it from an address that failed recently
//!   are refused whatever their credentials ([`Defence::slowed`]). An address that has not
//!   failed is never slowed, so an attacker elsewhere cannot lock a phone out.
//! - Allow-listed addresses are never banned, slowed nor rate-limited; deny-listed ones are
//!   always refused.
//! - Memory is bounded: at most `max_tracked` addresses and usernames are tracked in each
//!   table; the one tracked longest is forgotten first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;

/// What a banned or denied address gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BanAction {
    /// `403 Forbidden`.
    #[default]
    Forbid,
    /// Nothing at all.
    Drop,
}

pub use switchboard_model::access::{Cidr, canonical};

/// The policy's knobs; [`Default`] holds the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DefenceConfig {
    /// Failures from one address that ban it (0: never).
    pub ip_failures: u32,
    pub ip_window_ms: i64,
    /// Failures for one username that slow it (0: never).
    pub username_failures: u32,
    pub username_window_ms: i64,
    pub username_slowdown_ms: i64,
    /// The first ban's length; each repeat doubles it up to `max_ban_ms`.
    pub ban_ms: i64,
    pub max_ban_ms: i64,
    pub ban_action: BanAction,
    /// Requests per second one address may send on average (0: no limit).
    pub rate_per_second: u32,
    /// Requests one address may send at once.
    pub rate_burst: u32,
    /// Addresses (and, separately, usernames) tracked at most.
    pub max_tracked: usize,
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Default for DefenceConfig {
    fn default() -> Self {
        DefenceConfig {
            ip_failures: 10,
            ip_window_ms: 60_000,
            username_failures: 20,
            username_window_ms: 3_600_000,
            username_slowdown_ms: 900_000,
            ban_ms: 300_000,
            max_ban_ms: 86_400_000,
            ban_action: BanAction::Forbid,
            rate_per_second: 50,
            rate_burst: 100,
            max_tracked: 65_536,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// What to do with a message from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// The address is banned (or deny-listed).
    Refuse(BanAction),
    /// Its token bucket is empty: `503` with this `Retry-After`.
    RateLimited {
        retry_after_secs: u32,
    },
}

/// A current ban of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub address: IpAddr,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Failures that led to it.
    pub failures: u32,
    /// 1 for a first ban, 2 for the next one remembered, ...
    pub offence: u32,
    /// The account of the last failure that named a known realm (for the history).
    pub account_id: Option<String>,
}

impl Ban {
    pub fn reason(&self) -> String {
        format!(
            "{} failed authentications; banned for {} s (offence {})",
            self.failures,
            (self.until_ms - self.since_ms) / 1000,
            self.offence
        )
    }
}

/// A username currently slowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slowdown {
    pub username: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub failures: u32,
}

/// Failures counted in the current window of one address or username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount<K> {
    pub key: K,
    pub failures: u32,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Everything [`Defence::counters`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    pub addresses: Vec<FailureCount<IpAddr>>,
    pub usernames: Vec<FailureCount<String>>,
}

/// A map that holds at most `capacity` entries and forgets the oldest inserted first.
#[derive(Debug)]
struct Bounded<K, V> {
    entries: HashMap<K, (u64, V)>,
    order: VecDeque<(K, u64)>,
    next: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(_, value)| value)
    }

    fn get_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V {
        if !self.entries.contains_key(key) {
            while self.entries.len() >= self.capacity {
                let Some((old, generation)) = self.order.pop_front() else {
                    break;
                };
                if self
                    .entries
                    .get(&old)
                    .is_some_and(|(g, _)| *g == generation)
                {
                    self.entries.remove(&old);
                }
            }
            if self.order.len() >= 2 * self.capacity {
                // Removed keys leave stale order entries; drop them now and then.
                let entries = &self.entries;
                self.order
                    .retain(|(k, g)| entries.get(k).is_some_and(|(current, _)| current == g));
            }
            self.next += 1;
            self.order.push_back((key.clone(), self.next));
        }
        let generation = self.next;
        &mut self
            .entries
            .entry(key.clone())
            .or_insert_with(|| (generation, make()))
            .1
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(_, value)| value)
    }

    fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain(|key, (_, value)| keep(key, value));
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(key, (_, value))| (key, value))
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Timestamps of the failures inside a window, at most `limit` kept.
#[derive(Debug, Default)]
struct Window {
    failures: VecDeque<i64>,
}

impl Window {
    /// Records a failure at `now`; the count inside the window afterwards.
    fn record(&mut self, now: i64, window_ms: i64, limit: u32) -> u32 {
        self.prune(now, window_ms);
        self.failures.push_back(now);
        while self.failures.len() > limit.max(1) as usize {
            self.failures.pop_front();
        }
        self.failures.len() as u32
    }

    fn prune(&mut self, now: i64, window_ms: i64) {
        while self
            .failures
            .front()
            .is_some_and(|&at| now - at >= window_ms)
        {
            self.failures.pop_front();
        }
    }

    fn count(&self, now: i64, window_ms: i64) -> u32 {
        self.failures
            .iter()
            .filter(|&&at| now - at < window_ms)
            .count() as u32
    }
}

#[derive(Debug, Default)]
struct AddressRecord {
    window: Window,
    account_id: Option<String>,
}

#[derive(Debug, Default)]
struct UsernameRecord {
    window: Window,
    /// Addresses that failed for this username lately (bounded).
    failed_from: VecDeque<IpAddr>,
    slowed: Option<(i64, i64)>,
}

/// Earlier bans of an address, for the growth of the next one.
#[derive(Debug, Clone, Copy)]
struct Offences {
    count: u32,
    last_until_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Addresses kept per slowed username.
const FAILED_FROM_LIMIT: usize = 256;

/// See the module documentation.
#[derive(Debug)]
pub struct Defence {
    config: DefenceConfig,
    addresses: Bounded<IpAddr, AddressRecord>,
    usernames: Bounded<String, UsernameRecord>,
    offences: Bounded<IpAddr, Offences>,
    buckets: Bounded<IpAddr, Bucket>,
    bans: HashMap<IpAddr, Ban>,
}

impl Defence {
    pub fn new(config: DefenceConfig) -> Self {
        let capacity = config.max_tracked;
        Defence {
            addresses: Bounded::new(capacity),
            usernames: Bounded::new(capacity),
            offences: Bounded::new(capacity),
            buckets: Bounded::new(capacity),
            bans: HashMap::new(),
            config,
        }
    }

    pub fn config(&self) -> &DefenceConfig {
        &self.config
    }

    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.config.allow.iter().any(|cidr| cidr.contains(ip))
    }

    fn is_denied(&self, ip: IpAddr) -> bool {
        self.config.deny.iter().any(|cidr| cidr.contains(ip))
    }

    /// Whether `ip` is banned or deny-listed now (and not allow-listed).
    pub fn is_refused(&self, ip: IpAddr, now: i64) -> bool {
        let ip = canonical(ip);
        !self.is_allowed(ip)
            && (self.is_denied(ip) || self.bans.get(&ip).is_some_and(|ban| ban.until_ms > now))
    }

    /// The verdict on a message from `ip`. Only requests spend tokens: responses answer
    /// requests of ours.
    pub fn admit(&mut self, ip: IpAddr, is_request: bool, now: i64) -> Admission {
        let ip = canonical(ip);
        if self.is_allowed(ip) {
            return Admission::Admit;
        }
        if self.is_refused(ip, now) {
            return Admission::Refuse(self.config.ban_action);
        }
        if !is_request || self.config.rate_per_second == 0 {
            return Admission::Admit;
        }
        let rate = f64::from(self.config.rate_per_second) / 1000.0;
        let burst = f64::from(self.config.rate_burst.max(1));
        let bucket = self.buckets.get_or_insert_with(&ip, || Bucket {
            tokens: burst,
            at_ms: now,
        });
        let elapsed = (now - bucket.at_ms).max(0) as f64;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at_ms = bucket.at_ms.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Admission::Admit;
        }
        let wait_ms = (1.0 - bucket.tokens) / rate;
        Admission::RateLimited {
            retry_after_secs: ((wait_ms / 1000.0).ceil() as u32).max(1),
        }
    }

    /// A wrong digest response from `ip` for `username` (`user@realm`, lower-case), against
    /// `account_id` when the realm is known. Returns the ban it caused, if any.
    pub fn failure(
        &mut self,
        ip: IpAddr,
        username: Option<&str>,
        account_id: Option<&str>,
        now: i64,
    ) -> Option<Ban> {
        let ip = canonical(ip);
        if let Some(username) = username
            && self.config.username_failures > 0
        {
            let config = &self.config;
            let record = self
                .usernames
                .get_or_insert_with(&username.to_owned(), UsernameRecord::default);
            let count =
                record
                    .window
                    .record(now, config.username_window_ms, config.username_failures);
            if !record.failed_from.contains(&ip) {
                record.failed_from.push_back(ip);
                if record.failed_from.len() > FAILED_FROM_LIMIT {
                    record.failed_from.pop_front();
                }
            }
            if count >= config.username_failures {
                let since = record.slowed.map_or(now, |(since, _)| since);
                record.slowed = Some((since, now + config.username_slowdown_ms));
            }
        }
        if self.is_allowed(ip) || self.config.ip_failures == 0 {
            return None;
        }
        let config = &self.config;
        let record = self
            .addresses
            .get_or_insert_with(&ip, AddressRecord::default);
        if account_id.is_some() {
            record.account_id = account_id.map(str::to_owned);
        }
        let count = record
            .window
            .record(now, config.ip_window_ms, config.ip_failures);
        if count < config.ip_failures || self.bans.get(&ip).is_some_and(|b| b.until_ms > now) {
            return None;
        }
        let account_id = record.account_id.clone();
        record.window = Window::default();
        let max_ban = config.max_ban_ms.max(config.ban_ms);
        let offences = self.offences.get_or_insert_with(&ip, || Offences {
            count: 0,
            last_until_ms: now,
        });
        if now - offences.last_until_ms > max_ban {
            // Clean for a whole maximum ban: a first offence again.
            offences.count = 0;
        }
        offences.count += 1;
        let doubling = offences.count.saturating_sub(1).min(20);
        let length = config.ban_ms.saturating_mul(1_i64 << doubling).min(max_ban);
        offences.last_until_ms = now + length;
        let ban = Ban {
            address: ip,
            since_ms: now,
            until_ms: now + length,
            failures: count,
            offence: offences.count,
            account_id,
        };
        self.bans.insert(ip, ban.clone());
        Some(ban)
    }

    /// Whether an attempt for `username` from `ip` must be refused whatever its credentials:
    /// the username is slowed and this address failed for it (or failed at all) lately.
    pub fn slowed(&self, ip: IpAddr, username: &str, now: i64) -> bool {
        let ip = canonical(ip);
        if self.is_allowed(ip) {
            return false;
        }
        let Some(record) = self.usernames.get(&username.to_owned()) else {
            return false;
        };
        if record.slowed.is_none_or(|(_, until)| until <= now) {
            return false;
        }
        record.failed_from.contains(&ip)
            || self
                .addresses
                .get(&ip)
                .is_some_and(|address| address.window.count(now, self.config.ip_window_ms) > 0)
    }

    /// Lifts the bans that ran out and forgets what is too old to matter; returns the lifted
    /// bans (each is an `unbanned` event).
    pub fn expire(&mut self, now: i64) -> Vec<Ban> {
        let lifted: Vec<IpAddr> = self
            .bans
            .iter()
            .filter(|(_, ban)| ban.until_ms <= now)
            .map(|(ip, _)| *ip)
            .collect();
        let lifted = lifted
            .into_iter()
            .filter_map(|ip| self.bans.remove(&ip))
            .collect();
        let config = &self.config;
        self.addresses.retain(|_, record| {
            record.window.prune(now, config.ip_window_ms);
            !record.window.failures.is_empty()
        });
        self.usernames.retain(|_, record| {
            record.window.prune(now, config.username_window_ms);
            if record.slowed.is_some_and(|(_, until)| until <= now) {
                record.slowed = None;
            }
            !record.window.failures.is_empty() || record.slowed.is_some()
        });
        let forget_after = config.max_ban_ms.max(config.ban_ms);
        self.offences
            .retain(|_, offences| now - offences.last_until_ms <= forget_after);
        let burst = f64::from(config.rate_burst.max(1));
        let rate = f64::from(config.rate_per_second) / 1000.0;
        self.buckets.retain(|_, bucket| {
            // A full bucket is the same as none.
            bucket.tokens + (now - bucket.at_ms).max(0) as f64 * rate < burst
        });
        lifted
    }

    /// Lifts the ban of `ip` now (the operator's unban); the ban that was lifted. Its failure
    /// window starts afresh; the offence count is kept, so a relapse is banned longer.
    pub fn unban(&mut self, ip: IpAddr) -> Option<Ban> {
        let ip = canonical(ip);
        self.addresses.remove(&ip);
        self.bans.remove(&ip)
    }

    /// Ends the slowdown of `username` now; whether it was slowed.
    pub fn lift_slowdown(&mut self, username: &str, now: i64) -> bool {
        self.usernames
            .remove(&username.to_owned())
            .is_some_and(|record| record.slowed.is_some_and(|(_, until)| until > now))
    }

    /// Current bans, longest-running first.
    pub fn bans(&self, now: i64) -> Vec<Ban> {
        let mut bans: Vec<Ban> = self
            .bans
            .values()
            .filter(|ban| ban.until_ms > now)
            .cloned()
            .collect();
        bans.sort_by_key(|ban| (ban.since_ms, ban.address));
        bans
    }

    /// Usernames currently slowed.
    pub fn slowdowns(&self, now: i64) -> Vec<Slowdown> {
        let mut list: Vec<Slowdown> = self
            .usernames
            .iter()
            .filter_map(|(username, record)| {
                let (since, until) = record.slowed.filter(|(_, until)| *until > now)?;
                Some(Slowdown {
                    username: username.clone(),
                    since_ms: since,
                    until_ms: until,
                    failures: record.window.count(now, self.config.username_window_ms),
                })
            })
            .collect();
        list.sort_by(|a, b| (a.since_ms, &a.username).cmp(&(b.since_ms, &b.username)));
        list
    }

    /// Failures inside the current windows, most first.
    pub fn counters(&self, now: i64) -> Counters {
        fn count<K: Clone>(
            key: &K,
            window: &Window,
            now: i64,
            window_ms: i64,
        ) -> Option<FailureCount<K>> {
            let inside: Vec<i64> = window
                .failures
                .iter()
                .copied()
                .filter(|&at| now - at < window_ms)
                .collect();
            Some(FailureCount {
                key: key.clone(),
                failures: inside.len() as u32,
                first_ms: *inside.first()?,
                last_ms: *inside.last()?,
            })
        }
        let mut addresses: Vec<_> = self
            .addresses
            .iter()
            .filter_map(|(ip, r)| count(ip, &r.window, now, self.config.ip_window_ms))
            .collect();
        addresses.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.key.cmp(&b.key)));
        let mut usernames: Vec<_> = self
            .usernames
            .iter()
            .filter_map(|(u, r)| count(u, &r.window, now, self.config.username_window_ms))
            .collect();
        usernames.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.key.cmp(&b.key)));
        Counters {
            addresses,
            usernames,
        }
    }

    /// Entries held in each table: addresses, usernames, buckets, bans (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize, usize, usize) {
        (
            self.addresses.len(),
            self.usernames.len(),
            self.buckets.len(),
            self.bans.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKER: &str = "203.0.113.7";
    const PHONE: &str = "198.51.100.20";
    const USER: &str = "alice@acme.test";

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip literal")
    }

    fn defence() -> Defence {
        Defence::new(DefenceConfig::default())
    }

    /// `n` failures from `from` for `user`, one second apart from `start`; the last ban made.
    fn fail(d: &mut Defence, from: &str, user: &str, n: u32, start: i64) -> Option<Ban> {
        let mut ban = None;
        for i in 0..n {
            if let Some(made) = d.failure(
                ip(from),
                Some(user),
                Some("acc"),
                start + i64::from(i) * 1000,
            ) {
                ban = Some(made);
            }
        }
        ban
    }

    #[test]
    fn ten_failures_in_a_minute_ban_the_address_for_five_minutes() {
        let mut d = defence();
        assert_eq!(fail(&mut d, ATTACKER, USER, 9, 0), None);
        assert_eq!(d.admit(ip(ATTACKER), true, 9_000), Admission::Admit);
        let ban = d
            .failure(ip(ATTACKER), Some(USER), Some("acc"), 9_500)
            .expect("the tenth failure bans");
        assert_eq!(ban.failures, 10);
        assert_eq!(ban.offence, 1);
        assert_eq!(ban.until_ms - ban.since_ms, 300_000);
        assert_eq!(ban.account_id.as_deref(), Some("acc"));
        assert_eq!(
            d.admit(ip(ATTACKER), true, 10_000),
            Admission::Refuse(BanAction::Forbid)
        );
        // Another address is untouched.
        assert_eq!(d.admit(ip(PHONE), true, 10_000), Admission::Admit);
        assert_eq!(d.bans(10_000), vec![ban.clone()]);
        // Still banned just before the end, lifted at it (one unban event).
        assert!(d.expire(309_499).is_empty());
        assert_eq!(d.expire(309_500), vec![ban]);
        assert_eq!(d.admit(ip(ATTACKER), true, 309_500), Admission::Admit);
        assert!(d.bans(309_500).is_empty());
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_ban() {
        let mut d = defence();
        for i in 0..100 {
            // One failure every 7 s: never 10 within 60 s.
            assert_eq!(
                d.failure(ip(ATTACKER), None, None, i * 7_000),
                None,
                "failure {i}"
            );
        }
    }

    #[test]
    fn repeat_offenders_are_banned_twice_as_long_up_to_a_day() {
        let mut d = defence();
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..12 {
            let ban = fail(&mut d, ATTACKER, USER, 10, now).expect("banned");
            lengths.push((ban.until_ms - ban.since_ms) / 1000);
            now = ban.until_ms;
            d.expire(now);
        }
        assert_eq!(
            lengths,
            vec![
                300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 76800, 86400, 86400, 86400
            ]
        );
        // A day clean after the last ban: the next one is a first offence again.
        now += 86_400_001;
        d.expire(now);
        let ban = fail(&mut d, ATTACKER, USER, 10, now).expect("banned");
        assert_eq!(ban.offence, 1);
        assert_eq!(ban.until_ms - ban.since_ms, 300_000);
    }

    #[test]
    fn operator_unban_lifts_at_once_and_keeps_the_offence_count() {
        let mut d = defence();
        let ban = fail(&mut d, ATTACKER, USER, 10, 0).expect("banned");
        assert_eq!(d.unban(ip(ATTACKER)), Some(ban));
        assert_eq!(d.unban(ip(ATTACKER)), None);
        assert_eq!(d.admit(ip(ATTACKER), true, 10_000), Admission::Admit);
        let again = fail(&mut d, ATTACKER, USER, 10, 20_000).expect("banned again");
        assert_eq!(again.offence, 2);
        assert_eq!(again.until_ms - again.since_ms, 600_000);
    }

    #[test]
    fn a_slowed_username_refuses_failing_addresses_but_never_a_clean_one() {
        let mut d = defence();
        // A distributed attack: 20 addresses, one failure each, against one username.
        for i in 0..20u8 {
            let from = format!("203.0.113.{i}");
            assert_eq!(
                d.failure(ip(&from), Some(USER), None, i64::from(i) * 1000),
                None
            );
        }
        let now = 30_000;
        assert!(d.slowed(ip("203.0.113.3"), USER, now));
        // The phone's address never failed: it is not slowed.
        assert!(!d.slowed(ip(PHONE), USER, now));
        // Another username is not slowed.
        assert!(!d.slowed(ip("203.0.113.3"), "bob@acme.test", now));
        let slowdowns = d.slowdowns(now);
        assert_eq!(slowdowns.len(), 1);
        assert_eq!(slowdowns[0].username, USER);
        assert_eq!(slowdowns[0].until_ms, 19_000 + 900_000);
        // Over after the slowdown period.
        assert!(!d.slowed(ip("203.0.113.3"), USER, 19_000 + 900_000));
        // And the operator can lift it early.
        assert!(d.lift_slowdown(USER, now));
        assert!(!d.slowed(ip("203.0.113.3"), USER, now));
    }

    #[test]
    fn allow_listed_addresses_are_never_banned_slowed_or_limited_and_deny_lists_refuse() {
        let mut d = Defence::new(DefenceConfig {
            allow: vec!["10.0.0.0/8".parse().expect("cidr")],
            deny: vec!["192.0.2.0/24".parse().expect("cidr")],
            ban_action: BanAction::Drop,
            ..DefenceConfig::default()
        });
        assert_eq!(fail(&mut d, "10.1.2.3", USER, 50, 0), None);
        assert_eq!(d.admit(ip("10.1.2.3"), true, 1), Admission::Admit);
        assert!(!d.slowed(ip("10.1.2.3"), USER, 60_000));
        for _ in 0..1000 {
            assert_eq!(d.admit(ip("10.1.2.3"), true, 1), Admission::Admit);
        }
        assert_eq!(
            d.admit(ip("192.0.2.200"), true, 1),
            Admission::Refuse(BanAction::Drop)
        );
        assert_eq!(
            d.admit(ip("::ffff:192.0.2.1"), true, 1),
            Admission::Refuse(BanAction::Drop)
        );
        assert_eq!(d.admit(ip("192.0.3.1"), true, 1), Admission::Admit);
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate_and_names_the_wait() {
        let mut d = Defence::new(DefenceConfig {
            rate_per_second: 10,
            rate_burst: 20,
            ..DefenceConfig::default()
        });
        for i in 0..20 {
            assert_eq!(d.admit(ip(ATTACKER), true, 0), Admission::Admit, "{i}");
        }
        assert_eq!(
            d.admit(ip(ATTACKER), true, 0),
            Admission::RateLimited {
                retry_after_secs: 1
            }
        );
        // Responses never spend tokens.
        assert_eq!(d.admit(ip(ATTACKER), false, 0), Admission::Admit);
        // Another address has its own bucket.
        assert_eq!(d.admit(ip(PHONE), true, 0), Admission::Admit);
        // 10/s: one token per 100 ms.
        assert_eq!(d.admit(ip(ATTACKER), true, 100), Admission::Admit);
        assert!(matches!(
            d.admit(ip(ATTACKER), true, 150),
            Admission::RateLimited { .. }
        ));
        // After two seconds the burst is back.
        for _ in 0..20 {
            assert_eq!(d.admit(ip(ATTACKER), true, 2_200), Admission::Admit);
        }
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_is_forgotten_first() {
        let mut d = Defence::new(DefenceConfig {
            max_tracked: 100,
            ..DefenceConfig::default()
        });
        for i in 0..10_000u32 {
            let from = IpAddr::from(i.to_be_bytes());
            d.failure(from, Some(&format!("user{i}@acme.test")), None, 0);
            d.admit(from, true, 0);
        }
        let (addresses, usernames, buckets, _) = d.tracked();
        assert!(addresses <= 100 && usernames <= 100 && buckets <= 100);
        let counters = d.counters(0);
        assert!(counters.addresses.iter().all(|c| {
            let IpAddr::V4(v4) = c.key else { return false };
            u32::from(v4) >= 9_900
        }));
    }

    #[test]
    fn counters_report_failures_in_the_window_most_first() {
        let mut d = defence();
        fail(&mut d, ATTACKER, USER, 5, 0);
        fail(&mut d, PHONE, "bob@acme.test", 2, 0);
        let counters = d.counters(10_000);
        assert_eq!(counters.addresses.len(), 2);
        assert_eq!(counters.addresses[0].key, ip(ATTACKER));
        assert_eq!(counters.addresses[0].failures, 5);
        assert_eq!(counters.addresses[0].first_ms, 0);
        assert_eq!(counters.addresses[0].last_ms, 4_000);
        assert_eq!(counters.usernames[0].key, USER);
        // A minute later the address windows are empty; the username hour is not.
        let later = d.counters(70_000);
        assert!(later.addresses.is_empty());
        assert_eq!(later.usernames.len(), 2);
        d.expire(70_000);
        assert_eq!(d.tracked().0, 0);
    }
}
