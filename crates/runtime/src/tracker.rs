//! Counts requests in flight so shutdown can wait for them to be answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    in_flight: Arc<AtomicUsize>,
}

/// Held while one request is being handled.
#[derive(Debug)]
pub struct Guard {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tracker {
    pub fn enter(&self) -> Guard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Guard {
            in_flight: self.in_flight.clone(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight, at most `limit`.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}
