//! Kazoo's per-client token bucket (`kz_buckets`): every request costs tokens from its client's
//! bucket — one for an ordinary request, more for a login (`api_auth_tokens` /
//! `user_auth_tokens`, 35 in Kazoo) so password and key guessing is slow — and the bucket refills
//! at a steady rate. An empty bucket answers 429 `too_many_requests`.
//!
//! Time is an argument, so the arithmetic is tested without sleeping. Memory is bounded: when
//! the table grows past its limit, buckets that have refilled completely (idle clients) are
//! dropped, since a full bucket is the same as no bucket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header::RETRY_AFTER};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, ApiState};

/// How the buckets behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleConfig {
    /// Tokens a bucket holds (the burst).
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
    /// What a login (`api_auth`, `user_auth`) costs.
    pub login_cost: f64,
}

impl Default for ThrottleConfig {
    /// Kazoo's defaults: buckets of 100 tokens refilled at 10 a second, logins cost 35.
    fn default() -> Self {
        ThrottleConfig {
            capacity: 100.0,
            refill_per_second: 10.0,
            login_cost: 35.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Tracks clients beyond which idle buckets are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// See the module documentation.
#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> ThrottleConfig {
        self.config
    }

    /// Takes `cost` tokens from `client`'s bucket at `now_ms`; `Err(seconds)` says how long
    /// until the request would be affordable (for `Retry-After`).
    pub fn take(&self, client: IpAddr, cost: f64, now_ms: i64) -> Result<(), u64> {
        let config = self.config;
        let refill = |bucket: &Bucket| {
            let elapsed = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
            (bucket.tokens + elapsed * config.refill_per_second).min(config.capacity)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| refill(bucket) < config.capacity);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: config.capacity,
            at_ms: now_ms,
        });
        let available = refill(bucket);
        if available >= cost {
            *bucket = Bucket {
                tokens: available - cost,
                at_ms: now_ms,
            };
            Ok(())
        } else {
            // The bucket is left as it was: a refused request costs nothing.
            let missing = cost.min(config.capacity) - available;
            let wait = if config.refill_per_second > 0.0 {
                (missing / config.refill_per_second).ceil().max(1.0) as u64
            } else {
                u64::MAX
            };
            Err(wait)
        }
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The middleware: charges the client (by peer address) before the request runs; a login
/// costs `login_cost`. Without a peer address (no `ConnectInfo`), nothing is charged.
pub(crate) async fn limit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(throttle) = state.throttle() else {
        return next.run(request).await;
    };
    let Some(client) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
    else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let login = request.method() == Method::PUT
        && (path.ends_with("/api_auth") || path.ends_with("/user_auth"));
    let cost = if login {
        throttle.config.login_cost
    } else {
        1.0
    };
    match throttle.take(client, cost, crate::now_ms()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let mut response = ApiError::TooManyRequests(wait).into_response();
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_burst_then_the_refill_rate() {
        let throttle = Throttle::new(ThrottleConfig {
            capacity: 5.0,
            refill_per_second: 2.0,
            login_cost: 3.0,
        });
        for _ in 0..5 {
            assert_eq!(throttle.take(ip(1), 1.0, 0), Ok(()));
        }
        assert_eq!(
            throttle.take(ip(1), 1.0, 0),
            Err(1),
            "empty after the burst"
        );
        assert_eq!(
            throttle.take(ip(2), 1.0, 0),
            Ok(()),
            "buckets are per client"
        );
        assert_eq!(
            throttle.take(ip(1), 1.0, 499),
            Err(1),
            "0.998 tokens are not one"
        );
        assert_eq!(throttle.take(ip(1), 1.0, 500), Ok(()), "2 tokens a second");
        // Refill never exceeds the capacity.
        assert_eq!(throttle.take(ip(1), 5.0, 3_600_000), Ok(()));
        assert_eq!(throttle.take(ip(1), 1.0, 3_600_000), Err(1));
    }

    #[test]
    fn logins_cost_more_and_say_when_to_retry() {
        let config = ThrottleConfig::default();
        let throttle = Throttle::new(config);
        assert_eq!(throttle.take(ip(1), config.login_cost, 0), Ok(()));
        assert_eq!(throttle.take(ip(1), config.login_cost, 0), Ok(()));
        // 30 tokens left: a third login needs 5 more, half a second at 10/s.
        assert_eq!(throttle.take(ip(1), config.login_cost, 0), Err(1));
        assert_eq!(throttle.take(ip(1), config.login_cost, 500), Ok(()));
        // A costlier request than the whole bucket waits for a full bucket, not forever.
        let small = Throttle::new(ThrottleConfig {
            capacity: 10.0,
            refill_per_second: 1.0,
            login_cost: 35.0,
        });
        assert_eq!(small.take(ip(1), 35.0, 0), Err(1));
    }

    #[test]
    fn idle_clients_are_forgotten_when_the_table_is_large() {
        let throttle = Throttle::new(ThrottleConfig::default());
        for index in 0..=PRUNE_ABOVE {
            let client = IpAddr::from(u32::try_from(index).expect("small").to_be_bytes());
            assert_eq!(throttle.take(client, 1.0, 0), Ok(()));
        }
        assert_eq!(throttle.tracked(), PRUNE_ABOVE + 1);
        // A second later every bucket is full again: the next request prunes them.
        assert_eq!(throttle.take(ip(9), 1.0, 1_000), Ok(()));
        assert_eq!(throttle.tracked(), 1);
    }
}
