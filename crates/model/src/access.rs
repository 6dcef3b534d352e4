//! Source-address rules: [`Cidr`] networks and an account's own allow/deny lists
//! ([`AccessLists`] as stored, [`AccessRules`] parsed for matching). Pure: no I/O.
//!
//! One parser serves the global `[security] allow/deny` configuration, the API's validation of
//! an account's lists and the registrar's matching, so the three can never disagree on what
//! an entry means.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// An IPv4 or IPv6 network, `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a /32 or /128).
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is the IPv4 address, both as an entry and
/// as a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("'{text}' is not an address or CIDR network"))?;
        let network = canonical(network);
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= width)
                .ok_or_else(|| format!("'{text}': prefix must be 0 to {width}"))?,
            None => width,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address (a dual-stack socket reports them so).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// An account's own allow and deny lists as stored: the entries as the API accepted them
/// (each one parses as a [`Cidr`]). `revision` grows by one with every write, so a copy read
/// earlier can be told from a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccessLists {
    pub account_id: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub revision: u64,
    pub modified_ms: UnixMillis,
}

impl AccessLists {
    /// Neither list has an entry: every address is admitted.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Why [`AccessRules::check`] refused an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessRefusal {
    /// An entry of the deny list matches it.
    Denied,
    /// The allow list is not empty and no entry of it matches.
    NotAllowed,
}

impl AccessRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessRefusal::Denied => "source address on the account's deny list",
            AccessRefusal::NotAllowed => "source address not on the account's allow list",
        }
    }
}

/// An account's lists, parsed for matching: the deny list wins; a non-empty allow list admits
/// only what it matches; empty lists admit everything. Checking allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessRules {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
    /// The [`AccessLists::revision`] these were parsed from.
    pub revision: u64,
}

impl AccessRules {
    /// Parses stored lists. An entry that does not parse (the API never stores one) is
    /// skipped in the deny list, and in the allow list stands for no address at all, so a
    /// damaged allow list never opens the account to everyone.
    pub fn from_lists(lists: &AccessLists) -> AccessRules {
        let parse = |entries: &[String]| -> Vec<Cidr> {
            entries
                .iter()
                .filter_map(|entry| entry.parse().ok())
                .collect()
        };
        let mut allow = parse(&lists.allow);
        if allow.is_empty() && !lists.allow.is_empty() {
            // Only unparseable entries: admit nobody rather than everybody.
            allow.push(Cidr {
                network: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                prefix: 128,
            });
        }
        AccessRules {
            allow,
            deny: parse(&lists.deny),
            revision: lists.revision,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether a request from `ip` may go on, and if not, why.
    pub fn check(&self, ip: IpAddr) -> Result<(), AccessRefusal> {
        let ip = canonical(ip);
        if self.deny.iter().any(|cidr| cidr.contains(ip)) {
            return Err(AccessRefusal::Denied);
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|cidr| cidr.contains(ip)) {
            return Err(AccessRefusal::NotAllowed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn rules(allow: &[&str], deny: &[&str]) -> AccessRules {
        AccessRules::from_lists(&AccessLists {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            deny: deny.iter().map(|s| (*s).to_owned()).collect(),
            revision: 3,
            ..AccessLists::default()
        })
    }

    #[test]
    fn cidrs_parse_and_match() {
        let net: Cidr = "192.0.2.0/24".parse().expect("cidr");
        assert!(net.contains(ip("192.0.2.255")));
        assert!(!net.contains(ip("192.0.3.0")));
        assert!(!net.contains(ip("2001:db8::1")));
        let host: Cidr = "127.0.0.2".parse().expect("bare address");
        assert!(host.contains(ip("127.0.0.2")));
        assert!(!host.contains(ip("127.0.0.1")));
        let v6: Cidr = "2001:db8::/32".parse().expect("cidr");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("8.8.8.8")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0.0/x",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_address() {
        // An entry written mapped is the IPv4 address (its prefix then counts IPv4 bits)...
        let entry: Cidr = "::ffff:192.0.2.1".parse().expect("mapped address");
        assert_eq!(entry.to_string(), "192.0.2.1/32");
        assert!(entry.contains(ip("192.0.2.1")));
        assert!("::ffff:10.1.0.0/112".parse::<Cidr>().is_err());
        // ...and a mapped source matches an IPv4 entry.
        let v4: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(v4.contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn empty_lists_admit_everyone() {
        let rules = rules(&[], &[]);
        assert!(rules.is_empty());
        assert_eq!(rules.check(ip("203.0.113.9")), Ok(()));
        assert_eq!(rules.check(ip("2001:db8::1")), Ok(()));
    }

    #[test]
    fn the_deny_list_refuses_what_it_matches() {
        let rules = rules(&[], &["127.0.0.3", "192.0.2.0/24"]);
        assert_eq!(rules.check(ip("127.0.0.3")), Err(AccessRefusal::Denied));
        assert_eq!(rules.check(ip("192.0.2.77")), Err(AccessRefusal::Denied));
        assert_eq!(
            rules.check(ip("::ffff:192.0.2.1")),
            Err(AccessRefusal::Denied)
        );
        assert_eq!(rules.check(ip("127.0.0.2")), Ok(()));
        assert_eq!(rules.check(ip("2001:db8::1")), Ok(()));
    }

    #[test]
    fn a_non_empty_allow_list_admits_only_what_it_matches() {
        let rules = rules(&["127.0.0.2/32", "2001:db8::/32"], &[]);
        assert_eq!(rules.check(ip("127.0.0.2")), Ok(()));
        assert_eq!(rules.check(ip("2001:db8:1::5")), Ok(()));
        assert_eq!(rules.check(ip("127.0.0.4")), Err(AccessRefusal::NotAllowed));
        assert_eq!(
            rules.check(ip("2001:db9::1")),
            Err(AccessRefusal::NotAllowed)
        );
    }

    #[test]
    fn the_deny_list_wins_over_the_allow_list() {
        let rules = rules(&["10.0.0.0/8"], &["10.6.6.0/24"]);
        assert_eq!(rules.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(rules.check(ip("10.6.6.6")), Err(AccessRefusal::Denied));
        assert_eq!(rules.check(ip("11.0.0.1")), Err(AccessRefusal::NotAllowed));
        assert_eq!(rules.revision, 3);
    }

    #[test]
    fn a_damaged_allow_list_admits_nobody() {
        let rules = rules(&["not-an-address"], &["also bad"]);
        assert!(rules.deny.is_empty());
        assert_eq!(rules.check(ip("127.0.0.1")), Err(AccessRefusal::NotAllowed));
        assert_eq!(rules.check(ip("::1")), Err(AccessRefusal::NotAllowed));
    }
}
