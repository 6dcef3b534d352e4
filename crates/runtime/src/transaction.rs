//! Non-INVITE server transactions (RFC 3261 §17.2.2), reduced to what a registrar needs: a
//! retransmitted request is absorbed while the original is being processed and answered with
//! the same response afterwards, for Timer J (64·T1 = 32 s) on unreliable transports. The
//! request is never processed twice.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use switchboard_model::UnixMillis;
use switchboard_sip::Message;

const SHARDS: usize = 16;

/// How long an unanswered transaction is remembered before it is forgotten (64·T1).
const PROCEEDING_LIMIT_MS: i64 = 32_000;

#[derive(Debug)]
enum Entry {
    Proceeding {
        since_ms: UnixMillis,
    },
    /// `response` is kept for the rare non-200 finals; a 200 is rebuilt from the binding table
    /// (it lists the current bindings anyway), which keeps Timer J's memory at a few dozen
    /// bytes per transaction instead of a whole response.
    Completed {
        response: Option<Arc<[u8]>>,
        at_ms: UnixMillis,
    },
}

/// What [`Transactions::begin`] found.
#[derive(Debug)]
pub enum Begin {
    /// A new transaction: process the request.
    New,
    /// A retransmission of a request still being processed: absorb it.
    InProgress,
    /// A retransmission of an answered request: send this response again, or, for `None`
    /// (a 200), list the current bindings again without processing the request.
    Answered(Option<Arc<[u8]>>),
}

/// See the module documentation.
pub struct Transactions {
    shards: Box<[Mutex<HashMap<u64, Entry>>]>,
    hasher: RandomState,
    linger_ms: i64,
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions")
            .field("linger_ms", &self.linger_ms)
            .finish_non_exhaustive()
    }
}

impl Transactions {
    /// `linger_ms` is Timer J for unreliable transports.
    pub fn new(linger_ms: i64) -> Self {
        Transactions {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            linger_ms,
        }
    }

    /// The transaction key of a request (RFC 3261 §17.2.3): the branch with the magic cookie,
    /// sent-by and method; for RFC 2543 peers, Call-ID, CSeq, From tag and sent-by.
    pub fn key(&self, msg: &Message<'_>) -> Option<u64> {
        let via = msg.top_via().ok()?;
        let cseq = msg.cseq().ok()?;
        let mut hasher = self.hasher.build_hasher();
        via.host.to_ascii_lowercase().hash(&mut hasher);
        via.port.hash(&mut hasher);
        cseq.method.as_str().hash(&mut hasher);
        // Call-ID and CSeq too: a retransmission repeats them exactly, and a broken client
        // that reuses a branch for a new request must not get the old request's answer.
        msg.call_id().ok()?.hash(&mut hasher);
        cseq.number.hash(&mut hasher);
        match via.branch() {
            Some(branch) if branch.starts_with("z9hG4bK") && branch.len() > 7 => {
                branch.hash(&mut hasher);
            }
            _ => msg.from().ok().and_then(|f| f.tag()).hash(&mut hasher),
        }
        Some(hasher.finish())
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, Entry>> {
        &self.shards[key as usize % self.shards.len()]
    }

    pub fn begin(&self, key: u64, now_ms: UnixMillis) -> Begin {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match shard.get(&key) {
            Some(Entry::Proceeding { .. }) => Begin::InProgress,
            Some(Entry::Completed { response, .. }) => Begin::Answered(response.clone()),
            None => {
                shard.insert(key, Entry::Proceeding { since_ms: now_ms });
                Begin::New
            }
        }
    }

    /// Records the final response; on reliable transports the transaction ends at once
    /// (Timer J is zero).
    pub fn complete(&self, key: u64, response: &[u8], reliable: bool, now_ms: UnixMillis) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if reliable || self.linger_ms == 0 {
            shard.remove(&key);
        } else {
            let response = if response.starts_with(b"SIP/2.0 200 ") {
                None
            } else {
                Some(Arc::from(response))
            };
            shard.insert(
                key,
                Entry::Completed {
                    response,
                    at_ms: now_ms,
                },
            );
        }
    }

    /// Forgets a transaction that produced no response.
    pub fn abandon(&self, key: u64) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        shard.remove(&key);
    }

    /// Drops transactions whose timers ran out.
    pub fn sweep(&self, now_ms: UnixMillis) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.retain(|_, entry| match entry {
                Entry::Proceeding { since_ms } => now_ms - *since_ms < PROCEEDING_LIMIT_MS,
                Entry::Completed { at_ms, .. } => now_ms - *at_ms < self.linger_ms,
            });
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_are_absorbed_then_answered_then_forgotten() {
        let transactions = Transactions::new(32_000);
        assert!(matches!(transactions.begin(7, 0), Begin::New));
        assert!(matches!(transactions.begin(7, 10), Begin::InProgress));
        transactions.complete(7, b"SIP/2.0 423 Interval Too Brief\r\n\r\n", false, 20);
        match transactions.begin(7, 30) {
            Begin::Answered(Some(response)) => {
                assert_eq!(&response[..], b"SIP/2.0 423 Interval Too Brief\r\n\r\n");
            }
            other => panic!("expected the stored answer, got {other:?}"),
        }
        transactions.complete(8, b"SIP/2.0 200 OK\r\n\r\n", false, 20);
        assert!(matches!(transactions.begin(8, 30), Begin::Answered(None)));
        transactions.sweep(20 + 31_999);
        assert_eq!(transactions.len(), 2);
        transactions.sweep(20 + 32_000);
        assert!(transactions.is_empty());
        assert!(matches!(transactions.begin(7, 40_000), Begin::New));
    }

    #[test]
    fn reliable_transports_do_not_linger() {
        let transactions = Transactions::new(32_000);
        assert!(matches!(transactions.begin(1, 0), Begin::New));
        transactions.complete(1, b"x", true, 1);
        assert!(transactions.is_empty());
    }

    #[test]
    fn stuck_transactions_are_forgotten() {
        let transactions = Transactions::new(32_000);
        assert!(matches!(transactions.begin(1, 0), Begin::New));
        transactions.sweep(PROCEEDING_LIMIT_MS);
        assert!(transactions.is_empty());
    }
}
