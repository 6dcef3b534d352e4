//! REGISTER processing, RFC 3261 §10.3, as pure functions.
//!
//! The caller (the runtime) drives one REGISTER through four steps:
//! 1. [`Registrar::inspect`] checks the request and names the address-of-record;
//! 2. the caller looks up the account (by realm) and device (by username) and the device's
//!    current bindings — the only I/O, kept outside;
//! 3. [`Registrar::authenticate`] checks the credentials;
//! 4. [`Registrar::apply`] computes the new binding set, the store changes and the events.
//!
//! Every refusal is a [`Reply`]: the status, reason and the headers it needs, mapped in one
//! place ([`Refusal::reply`]).

use std::net::{IpAddr, SocketAddr};

use switchboard_model::{Binding, Change, Device, Event, EventKind, SipAuthMethod, Transport};
use switchboard_sip::{Contacts, HeaderName, Message, NameAddr};

use crate::digest::{
    self, Algorithm, CountCheck, HexDigest, NonceCheck, NonceManager, ResponseInput,
};

/// Which challenge the registrar sends (seed 004 uses 407).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeStyle {
    /// `401 Unauthorized` + `WWW-Authenticate` (RFC 3261 §22.2, what registrars send).
    #[default]
    Www,
    /// `407 Proxy Authentication Required` + `Proxy-Authenticate`.
    Proxy,
}

/// The registrar's rules. Defaults are the ones documented in the README.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub default_expires: u32,
    pub max_expires: u32,
    /// Bindings a device may hold; a new contact beyond it replaces the oldest binding.
    pub max_contacts: usize,
    pub challenge: ChallengeStyle,
    /// Challenges offered, most preferred first.
    pub algorithms: Vec<Algorithm>,
    /// Accept digest responses without `qop` (RFC 2069 style, old phones).
    pub allow_legacy_digest: bool,
    /// Longest Contact URI accepted (Kamailio `contact_max_size`).
    pub max_contact_len: usize,
    /// Most Contact values in one REGISTER.
    pub max_contacts_per_request: usize,
    /// Seconds between keepalives asked of an RFC 5626 outbound client (`Flow-Timer` in the
    /// 200); also how long an outbound binding whose connection closed is kept offline before
    /// it is removed.
    pub flow_timer: u32,
    /// Registration storm control: a granted expiry is shortened by 0 to this many percent
    /// (spread by a hash of the device, binding and time), never below `min_expires`, so
    /// phones that registered together refresh apart.
    pub expires_jitter_percent: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            default_expires: 3600,
            max_expires: 3600,
            max_contacts: 1,
            challenge: ChallengeStyle::Www,
            algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
            allow_legacy_digest: true,
            max_contact_len: 512,
            max_contacts_per_request: 32,
            flow_timer: 120,
            expires_jitter_percent: 10,
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub source: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
    pub connection_id: Option<u64>,
}

/// Why a REGISTER is refused. One variant per cause; [`Refusal::reply`] maps each to the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed or inconsistent request (400).
    BadRequest(&'static str),
    /// The To URI is not a SIP URI (RFC 3261 §10.3 step 3, RFC 4475 §3.3.4).
    BadAor,
    /// The Request-URI names neither a served realm nor this registrar.
    NotServed,
    /// The device is disabled (told only to a request whose credentials verify).
    Disabled,
    /// Credentials missing, wrong or stale: answer with a challenge.
    Challenge { stale: bool },
    /// Expires below the minimum (423 + Min-Expires).
    IntervalTooBrief { min_expires: u32 },
    /// Same Call-ID with a lower CSeq (RFC 3261 §10.3 step 7).
    OutOfOrder,
    /// RFC 5626 outbound was asked for through a proxy that keeps no flows (439).
    FirstHopLacksOutbound,
    /// The store failed.
    StorageFailure,
}

impl Refusal {
    /// The status and reason phrase for this refusal.
    pub fn status(&self, style: ChallengeStyle) -> (u16, &'static str) {
        match self {
            Refusal::BadRequest(reason) => (400, reason),
            Refusal::BadAor => (400, "Bad Request (To must be a SIP URI)"),
            Refusal::NotServed => (404, "Not Found (domain not served here)"),
            Refusal::Disabled => (403, "Forbidden (device disabled)"),
            Refusal::Challenge { .. } => match style {
                ChallengeStyle::Www => (401, "Unauthorized"),
                ChallengeStyle::Proxy => (407, "Proxy Authentication Required"),
            },
            Refusal::IntervalTooBrief { .. } => (423, "Interval Too Brief"),
            Refusal::OutOfOrder => (400, "Bad Request (CSeq out of order)"),
            Refusal::FirstHopLacksOutbound => (439, "First Hop Lacks Outbound Support"),
            Refusal::StorageFailure => (500, "Server Internal Error"),
        }
    }
}

/// The parts of a REGISTER the lookup step needs.
#[derive(Debug, Clone, Copy)]
pub struct Inspected<'a> {
    /// The To URI's user part (escapes unresolved), selects the device.
    pub user: &'a str,
    /// The To URI's host, selects the account by realm (compare case-insensitively).
    pub realm: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
}

/// The result of [`Registrar::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The device's bindings after the request, to list in the 200 and keep in memory.
    pub bindings: Vec<Binding>,
    /// What to commit before answering; empty for a fetch or a retransmission.
    pub changes: Vec<Change>,
}

/// Knows the rules and the nonce secret; holds no bindings and does no I/O.
pub struct Registrar {
    config: RegistrarConfig,
    nonces: NonceManager,
    gruus: crate::gruu::TempGruus,
    /// What an unknown user's response is checked against (derived from the nonce secret,
    /// never disclosed; the check fails whatever it gives).
    decoy_password: String,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("config", &self.config)
            .field("nonces", &self.nonces)
            .finish_non_exhaustive()
    }
}

/// A known user's credentials.
#[derive(Clone, Copy)]
struct Secret<'a> {
    username: &'a str,
    password: &'a str,
    precomputed: Option<&'a Ha1Cache>,
}

/// What [`Registrar::authenticate`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Authenticated,
    Refused {
        refusal: Refusal,
        /// Set when the request carried a wrong response: record an `auth_failed` event.
        failure: Option<&'static str>,
    },
}

impl Registrar {
    /// `nonce_secret` must be the same on every node; `nonce_slots` bounds replay memory.
    pub fn new(
        config: RegistrarConfig,
        nonce_secret: [u8; 32],
        nonce_lifetime_secs: u32,
        nonce_slots: usize,
        first_nonce_sequence: u32,
    ) -> Self {
        let decoy_password = digest::ha1(
            Algorithm::Sha256,
            "decoy",
            "switchboard",
            &hex_of(&nonce_secret),
        )
        .as_str()
        .to_owned();
        Registrar {
            config,
            gruus: crate::gruu::TempGruus::new(&nonce_secret),
            decoy_password,
            nonces: NonceManager::new(
                nonce_secret,
                nonce_lifetime_secs,
                nonce_slots,
                first_nonce_sequence,
            ),
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Mints RFC 5627 temporary GRUUs under the cluster's secret.
    pub fn gruus(&self) -> &crate::gruu::TempGruus {
        &self.gruus
    }

    /// Step 1: the request-level checks of RFC 3261 §10.3 steps 1–3 that need no lookup.
    /// `is_local` tells whether a Request-URI host/port names this registrar itself.
    pub fn inspect<'a>(
        &self,
        msg: &Message<'a>,
        is_local: impl Fn(&str, Option<u16>) -> bool,
    ) -> Result<Inspected<'a>, Refusal> {
        let request = msg.request().ok_or(Refusal::BadRequest("Bad Request"))?;
        let to = msg
            .to()
            .map_err(|_| Refusal::BadRequest("Bad Request (To)"))?;
        if !to.uri.is_sip() {
            return Err(Refusal::BadAor);
        }
        let user = match to.uri.user {
            Some(user) if !user.is_empty() => user,
            _ => return Err(Refusal::BadRequest("Bad Request (To has no user)")),
        };
        let realm = to.uri.host;
        let call_id = msg
            .call_id()
            .map_err(|_| Refusal::BadRequest("Bad Request (Call-ID)"))?;
        let cseq = msg
            .cseq()
            .map_err(|_| Refusal::BadRequest("Bad Request (CSeq)"))?
            .number;
        let request_uri = switchboard_sip::Uri::parse(request.uri)
            .map_err(|_| Refusal::BadRequest("Bad Request (Request-URI)"))?;
        if !request_uri.is_sip() {
            return Err(Refusal::BadRequest("Bad Request (Request-URI)"));
        }
        if request_uri.user.is_some_and(|u| !u.is_empty())
            && !request_uri.host.eq_ignore_ascii_case(realm)
        {
            // RFC 3261 §10.2: the Request-URI of a REGISTER has no user part; be liberal
            // and tolerate one only when the host is the realm.
            return Err(Refusal::BadRequest("Bad Request (Request-URI)"));
        }
        if !request_uri.host.eq_ignore_ascii_case(realm)
            && !is_local(request_uri.host, request_uri.port)
        {
            return Err(Refusal::NotServed);
        }
        Ok(Inspected {
            user,
            realm,
            call_id,
            cseq,
        })
    }

    /// Step 3: digest (or source-IP) authentication of the request for `device`, whose realm
    /// is `realm`. `ha1_md5`/`ha1_sha256` may be precomputed for the device's stored username.
    ///
    /// Whatever a scanner could learn from is answered as for an unknown user
    /// ([`Registrar::authenticate_unknown`]): a device without credentials, credentials of
    /// another user, an IP-authenticated device asked from elsewhere. A disabled device is
    /// told so (403) only once its credentials verify.
    pub fn authenticate(
        &self,
        msg: &Message<'_>,
        origin: &Origin,
        device: &Device,
        realm: &str,
        precomputed: Option<&Ha1Cache>,
        now_ms: i64,
    ) -> AuthOutcome {
        let verified = || {
            if device.enabled {
                AuthOutcome::Authenticated
            } else {
                AuthOutcome::Refused {
                    refusal: Refusal::Disabled,
                    failure: None,
                }
            }
        };
        if device.sip.method == SipAuthMethod::Ip {
            let allowed = device
                .sip
                .ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .is_some_and(|ip| ip == origin.source.ip());
            return if allowed {
                verified()
            } else {
                self.check_digest(msg, realm, None, now_ms, "source address not allowed")
            };
        }
        let (Some(username), Some(password)) = (
            device.sip.username.as_deref(),
            device.sip.password.as_deref(),
        ) else {
            return self.check_digest(msg, realm, None, now_ms, "device has no credentials");
        };
        let secret = Secret {
            username,
            password,
            precomputed,
        };
        match self.check_digest(
            msg,
            realm,
            Some(secret),
            now_ms,
            "credentials of another user",
        ) {
            AuthOutcome::Authenticated => verified(),
            refused => refused,
        }
    }

    /// Step 3 when the realm has no such user (or no account has the realm): the same
    /// answers, in the same order and with the same hashing, as a known user with a wrong
    /// password, so extension scanners learn nothing. Never `Authenticated`.
    pub fn authenticate_unknown(&self, msg: &Message<'_>, realm: &str, now_ms: i64) -> AuthOutcome {
        self.check_digest(msg, realm, None, now_ms, "unknown user")
    }

    /// The digest check shared by known and unknown users. Without a `secret` (or when the
    /// credentials name another user) the response is checked against a decoy secret and
    /// always fails with `decoy_failure`.
    fn check_digest(
        &self,
        msg: &Message<'_>,
        realm: &str,
        secret: Option<Secret<'_>>,
        now_ms: i64,
        decoy_failure: &'static str,
    ) -> AuthOutcome {
        let refused = |refusal, failure| AuthOutcome::Refused { refusal, failure };
        let proxy = self.config.challenge == ChallengeStyle::Proxy;
        // Take the first Digest credentials for our realm; phones sometimes also send
        // credentials for other realms (RFC 3261 §22.4).
        let Some(credentials) = msg
            .authorizations(proxy)
            .chain(msg.authorizations(!proxy))
            .filter_map(|c| c.digest())
            .find(|d| d.realm.eq_ignore_ascii_case(realm))
        else {
            return refused(Refusal::Challenge { stale: false }, None);
        };
        let Some(algorithm) = Algorithm::parse(credentials.algorithm) else {
            return refused(Refusal::Challenge { stale: false }, None);
        };
        if !self.config.algorithms.contains(&algorithm) && !self.offers_base_of(algorithm) {
            return refused(Refusal::Challenge { stale: false }, None);
        }
        let Some(request) = msg.request() else {
            return refused(Refusal::BadRequest("Bad Request"), None);
        };
        if credentials.uri != request.uri && !uri_equivalent(credentials.uri, request.uri) {
            // RFC 7616 §3.4.6: the digest-uri must name the Request-URI.
            return refused(
                Refusal::BadRequest("Bad Request (digest uri mismatch)"),
                None,
            );
        }
        let qop = match (credentials.qop, credentials.nc, credentials.cnonce) {
            (Some(qop), Some(nc), Some(cnonce)) if qop.eq_ignore_ascii_case("auth") => {
                Some((qop, nc, cnonce))
            }
            (None, _, _) if self.config.allow_legacy_digest => None,
            _ => return refused(Refusal::BadRequest("Bad Request (qop)"), None),
        };
        let nonce_state = self.nonces.check(credentials.nonce, realm, now_ms);
        if nonce_state == NonceCheck::Invalid {
            return refused(Refusal::Challenge { stale: false }, None);
        }
        // Credentials of another user may not bind contacts to this AOR (RFC 3261 §10.3 step
        // 3); they are checked against the decoy like an unknown user's, and fail the same.
        let secret = secret.filter(|s| credentials.username.eq_ignore_ascii_case(s.username));
        let ha1 = match &secret {
            Some(secret) => match secret.precomputed {
                Some(cache) if credentials.username == secret.username => {
                    // The work an unknown user's check does, so both take as long.
                    std::hint::black_box(digest::ha1(
                        algorithm,
                        credentials.username,
                        realm,
                        &self.decoy_password,
                    ));
                    cache.for_algorithm(algorithm)
                }
                _ => None,
            }
            .unwrap_or_else(|| {
                digest::ha1(algorithm, credentials.username, realm, secret.password)
            }),
            None => digest::ha1(algorithm, credentials.username, realm, &self.decoy_password),
        };
        let expected = digest::expected_response(
            &ha1,
            &ResponseInput {
                algorithm,
                method: request.method.as_str(),
                uri: credentials.uri,
                nonce: credentials.nonce,
                qop,
            },
        );
        let matches = digest::response_matches(&expected, credentials.response, algorithm);
        if secret.is_none() {
            return refused(Refusal::Challenge { stale: false }, Some(decoy_failure));
        }
        if !matches {
            return refused(Refusal::Challenge { stale: false }, Some("wrong password"));
        }
        let NonceCheck::Fresh { sequence } = nonce_state else {
            // Right password, old nonce: stale=true so the phone retries without prompting.
            return refused(Refusal::Challenge { stale: true }, None);
        };
        if let Some((_, nc, _)) = qop {
            let Some(count) = digest::parse_nonce_count(nc) else {
                return refused(Refusal::BadRequest("Bad Request (nc)"), None);
            };
            match self.nonces.record_count(sequence, count) {
                CountCheck::Accepted => {}
                CountCheck::Replayed | CountCheck::Evicted => {
                    return refused(Refusal::Challenge { stale: true }, None);
                }
            }
        }
        AuthOutcome::Authenticated
    }

    fn offers_base_of(&self, algorithm: Algorithm) -> bool {
        // Offering MD5 implies accepting MD5-sess from clients that choose it, likewise SHA-256.
        match algorithm {
            Algorithm::Md5Sess => self.config.algorithms.contains(&Algorithm::Md5),
            Algorithm::Sha256Sess => self.config.algorithms.contains(&Algorithm::Sha256),
            _ => false,
        }
    }

    /// The challenge header values for `realm`, most preferred algorithm first, and the header
    /// name they go in.
    pub fn challenges(&self, realm: &str, stale: bool, now_ms: i64) -> (&'static str, Vec<String>) {
        let name = match self.config.challenge {
            ChallengeStyle::Www => "WWW-Authenticate",
            ChallengeStyle::Proxy => "Proxy-Authenticate",
        };
        let values = self
            .config
            .algorithms
            .iter()
            .map(|&algorithm| {
                let nonce = self.nonces.issue(realm, now_ms);
                let mut value = String::with_capacity(128);
                digest::write_challenge(&mut value, realm, &nonce, algorithm, stale);
                value
            })
            .collect();
        (name, values)
    }

    /// The expires bounds for a device: its `sip.expire_seconds` narrows the maximum.
    fn bounds(&self, device: &Device) -> (u32, u32, u32) {
        let min = self.config.min_expires;
        let mut max = self.config.max_expires.max(min);
        if let Some(device_max) = device.sip.expire_seconds.filter(|&s| s > 0) {
            max = max.min(device_max.max(min));
        }
        let default = self.config.default_expires.clamp(min, max);
        (min, default, max)
    }

    /// Step 4: RFC 3261 §10.3 steps 5–8 for an authenticated request. `current` is the
    /// device's bindings as stored; the result is the whole new set plus what changed.
    pub fn apply(
        &self,
        msg: &Message<'_>,
        inspected: &Inspected<'_>,
        origin: &Origin,
        device: &Device,
        current: &[Binding],
        now_ms: i64,
    ) -> Result<Registration, Refusal> {
        let header_expires = msg
            .expires()
            .map_err(|_| Refusal::BadRequest("Bad Request (Expires)"))?;
        let contacts = msg
            .contacts()
            .map_err(|_| Refusal::BadRequest("Bad Request (Contact)"))?;
        let user_agent = msg.header(HeaderName::UserAgent).map(clean_text);
        let mut changes = Vec::new();
        let event = |kind: EventKind, binding: &Binding, reason: Option<&str>| Event {
            id: 0,
            at_ms: now_ms,
            kind,
            account_id: device.account_id.clone(),
            device_id: Some(device.id.clone()),
            binding_key: Some(binding.key.clone()),
            contact: Some(binding.contact.clone()),
            address: Some(origin.source.to_string()),
            transport: Some(origin.transport),
            user_agent: user_agent.clone(),
            reason: reason.map(str::to_owned),
        };
        // Removes a binding from the store and records why, in one commit.
        let retire = |changes: &mut Vec<Change>, binding: &Binding, kind, reason| {
            changes.push(Change::RemoveBinding {
                device_id: binding.device_id.clone(),
                key: binding.key.clone(),
            });
            changes.push(Change::AppendEvent(event(kind, binding, Some(reason))));
        };
        // Bindings that lapsed but were not swept yet are expired here, so the history and
        // the store stay exact whichever comes first.
        let mut next: Vec<Binding> = Vec::with_capacity(current.len() + 1);
        for binding in current {
            if binding.expires_at_ms > now_ms {
                next.push(binding.clone());
            } else {
                retire(&mut changes, binding, EventKind::Expired, "not refreshed");
                // An expiry is about the binding's own address, not this request's.
                if let Some(Change::AppendEvent(expired)) = changes.last_mut() {
                    expired.address = Some(binding.received.to_string());
                    expired.transport = Some(binding.transport);
                    expired.user_agent = binding.user_agent.clone();
                }
            }
        }

        let items = match contacts {
            Contacts::None => {
                // A query: list the bindings, change nothing (step 8).
                return Ok(Registration {
                    bindings: next,
                    changes,
                });
            }
            Contacts::Star => {
                if header_expires != Some(0) {
                    return Err(Refusal::BadRequest(
                        "Bad Request (Contact * needs Expires: 0)",
                    ));
                }
                let same_call = next
                    .iter()
                    .find(|b| b.call_id == inspected.call_id && inspected.cseq <= b.cseq);
                if let Some(binding) = same_call {
                    if inspected.cseq < binding.cseq {
                        return Err(Refusal::OutOfOrder);
                    }
                    // A retransmission that slipped past the transaction layer: no change.
                    return Ok(Registration {
                        bindings: next,
                        changes,
                    });
                }
                for binding in next.drain(..) {
                    retire(&mut changes, &binding, EventKind::Unregistered, "contact *");
                }
                return Ok(Registration {
                    bindings: next,
                    changes,
                });
            }
            Contacts::List(items) => items,
        };

        let (min, default, max) = self.bounds(device);
        let path = joined_path(msg);
        let mut seen = 0usize;
        // First pass: validate everything, so a bad contact changes nothing (step 6).
        let mut wanted: Vec<(NameAddr<'_>, u32)> = Vec::new();
        for item in items {
            let contact = item.map_err(|_| Refusal::BadRequest("Bad Request (Contact)"))?;
            seen += 1;
            if seen > self.config.max_contacts_per_request {
                return Err(Refusal::BadRequest("Bad Request (too many contacts)"));
            }
            if contact.uri_text.len() > self.config.max_contact_len {
                return Err(Refusal::BadRequest("Bad Request (contact too long)"));
            }
            let expires = match contact.param("expires") {
                Some(Some(value)) => parse_delta(value)
                    .ok_or(Refusal::BadRequest("Bad Request (contact expires)"))?,
                Some(None) => return Err(Refusal::BadRequest("Bad Request (contact expires)")),
                None => header_expires.unwrap_or(default),
            };
            if expires != 0 && expires < min {
                return Err(Refusal::IntervalTooBrief { min_expires: min });
            }
            wanted.push((contact, expires.min(max)));
        }
        // Step 7, against the bindings as they were before this request: a contact processed
        // earlier in it may evict one (max_contacts), which must not let an out-of-order
        // request through (found by the property test in tests/properties.rs).
        let mut keyed = Vec::with_capacity(wanted.len());
        for (contact, expires) in wanted {
            let instance = contact.param("+sip.instance").flatten().map(clean_instance);
            let reg_id = contact
                .param("reg-id")
                .flatten()
                .and_then(|v| v.parse::<u32>().ok());
            let key = match &instance {
                Some(instance) => format!("i:{instance}:{}", reg_id.unwrap_or(0)),
                None => format!("c:{}", contact.uri_text),
            };
            let mut retransmitted = false;
            if let Some(binding) = next.iter().find(|b| b.key == key)
                && binding.call_id == inspected.call_id
                && inspected.cseq <= binding.cseq
            {
                if inspected.cseq < binding.cseq {
                    return Err(Refusal::OutOfOrder);
                }
                retransmitted = true;
            }
            keyed.push((contact, expires, instance, reg_id, key, retransmitted));
        }

        for (contact, expires, instance, reg_id, key, retransmitted) in keyed {
            if retransmitted {
                // The same request again (it slipped past the transaction layer): no change.
                continue;
            }
            let existing = next.iter().position(|b| b.key == key);
            if expires == 0 {
                if let Some(index) = existing {
                    let binding = next.remove(index);
                    retire(&mut changes, &binding, EventKind::Unregistered, "expires=0");
                }
                continue;
            }
            let q_milli = contact.param("q").flatten().and_then(parse_q);
            let expires = self.jittered(expires, min, &device.id, &key, now_ms);
            let registered_at_ms = existing.map_or(now_ms, |i| next[i].registered_at_ms);
            let binding = Binding {
                account_id: device.account_id.clone(),
                device_id: device.id.clone(),
                key,
                aor: format!(
                    "{}@{}",
                    inspected.user.to_ascii_lowercase(),
                    inspected.realm.to_ascii_lowercase()
                ),
                contact: contact.uri_text.to_owned(),
                contact_params: other_params(contact.params),
                instance,
                reg_id,
                q_milli,
                expires_at_ms: now_ms + i64::from(expires) * 1000,
                registered_at_ms,
                updated_ms: now_ms,
                call_id: inspected.call_id.to_owned(),
                cseq: inspected.cseq,
                user_agent: user_agent.clone(),
                transport: origin.transport,
                received: origin.source,
                local: origin.local,
                connection_id: origin.connection_id,
                path: path.clone(),
                // A REGISTER is proof of life: the refreshed binding is reachable again; the
                // last keepalive measurement is kept.
                last_keepalive_ms: existing.and_then(|i| next[i].last_keepalive_ms),
                keepalive_rtt_ms: existing.and_then(|i| next[i].keepalive_rtt_ms),
                keepalive_failures: 0,
                reachable: true,
            };
            let kind = if let Some(index) = existing {
                if !next[index].reachable {
                    changes.push(Change::AppendEvent(event(
                        EventKind::Online,
                        &binding,
                        Some("re-registered"),
                    )));
                }
                next[index] = binding.clone();
                EventKind::Refreshed
            } else {
                if next.len() >= self.config.max_contacts.max(1) {
                    // Kazoo's overwrite: the oldest binding makes room, so a rebooted phone is
                    // never locked out by its own stale contact.
                    if let Some(oldest) = next
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, b)| (b.updated_ms, b.expires_at_ms))
                        .map(|(i, _)| i)
                    {
                        let evicted = next.remove(oldest);
                        retire(
                            &mut changes,
                            &evicted,
                            EventKind::Unregistered,
                            "replaced by a new contact",
                        );
                    }
                }
                next.push(binding.clone());
                EventKind::Registered
            };
            changes.push(Change::AppendEvent(event(kind, &binding, None)));
            changes.push(Change::UpsertBinding(binding));
        }
        Ok(Registration {
            bindings: next,
            changes,
        })
    }

    /// `expires` shortened by 0 to `expires_jitter_percent` %, never below `min`: the spread
    /// comes from a hash of the device, the binding and the time, so it differs per phone and
    /// per refresh but needs no randomness passed in.
    fn jittered(&self, expires: u32, min: u32, device_id: &str, key: &str, now_ms: i64) -> u32 {
        let percent = u64::from(self.config.expires_jitter_percent.min(100));
        if percent == 0 || expires <= min {
            return expires;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in device_id
            .bytes()
            .chain([0])
            .chain(key.bytes())
            .chain(now_ms.to_le_bytes())
        {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let fraction = (hash >> 32) % 1001;
        let cut = u64::from(expires) * percent * fraction / 100_000;
        let granted = u64::from(expires).saturating_sub(cut);
        u32::try_from(granted).unwrap_or(expires).max(min)
    }

    /// The event recorded for a refused request that names a known device.
    pub fn refusal_event(
        &self,
        kind: EventKind,
        device: &Device,
        origin: &Origin,
        msg: &Message<'_>,
        reason: &str,
        now_ms: i64,
    ) -> Event {
        Event {
            id: 0,
            at_ms: now_ms,
            kind,
            account_id: device.account_id.clone(),
            device_id: Some(device.id.clone()),
            binding_key: None,
            contact: None,
            address: Some(origin.source.to_string()),
            transport: Some(origin.transport),
            user_agent: msg.header(HeaderName::UserAgent).map(clean_text),
            reason: Some(reason.to_owned()),
        }
    }
}

/// HA1 values computed once per device (for its stored username and realm).
#[derive(Debug, Clone, Copy)]
pub struct Ha1Cache {
    pub md5: HexDigest,
    pub sha256: HexDigest,
}

impl Ha1Cache {
    pub fn new(username: &str, realm: &str, password: &str) -> Self {
        Ha1Cache {
            md5: digest::ha1(Algorithm::Md5, username, realm, password),
            sha256: digest::ha1(Algorithm::Sha256, username, realm, password),
        }
    }

    fn for_algorithm(&self, algorithm: Algorithm) -> Option<HexDigest> {
        Some(match algorithm {
            Algorithm::Md5 | Algorithm::Md5Sess => self.md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => self.sha256,
        })
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `delta-seconds`: values beyond 2^32-1 are taken as 2^32-1 (RFC 3261 §20.19 wants them
/// treated as large); the caller clamps to the maximum anyway.
fn parse_delta(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX)),
    )
}

/// `q` (RFC 3261 §20.10): 0 to 1 with up to three decimals, in thousandths.
fn parse_q(text: &str) -> Option<u16> {
    let value: f32 = text.trim().parse().ok()?;
    if !(0.0..=1.0).contains(&value) {
        return None;
    }
    Some((value * 1000.0).round() as u16)
}

/// The header params of a contact without `expires` and `q` (kept for the 200 and NOTIFY).
fn other_params(params: &str) -> String {
    let mut out = String::new();
    for param in params.split(';') {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let name = param.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("expires") || name.eq_ignore_ascii_case("q") {
            continue;
        }
        out.push(';');
        out.push_str(param);
    }
    out
}

fn clean_instance(value: &str) -> String {
    value.trim_matches('"').to_owned()
}

/// Header text for storage: folding collapsed, control characters dropped.
fn clean_text(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect()
}

fn joined_path(msg: &Message<'_>) -> String {
    let mut out = String::new();
    for value in msg.list_values(HeaderName::Path) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(value.trim());
    }
    out
}

/// Whether two SIP URIs are the same for digest purposes: equal ignoring case of scheme and
/// host and the order of parameters is too lenient for security; we accept only a difference
/// in the case of the scheme and host, which some phones introduce.
fn uri_equivalent(digest_uri: &str, request_uri: &str) -> bool {
    match (
        switchboard_sip::Uri::parse(digest_uri),
        switchboard_sip::Uri::parse(request_uri),
    ) {
        (Ok(a), Ok(b)) => {
            a.scheme.eq_ignore_ascii_case(b.scheme)
                && a.user == b.user
                && a.host.eq_ignore_ascii_case(b.host)
                && a.port == b.port
                && a.params == b.params
                && a.headers == b.headers
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
