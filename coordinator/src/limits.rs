//! Rate limits: how often one member may ask the member API for writes (submissions,
//! proposals, ballots, cancels, clearings, dry runs), reads and uploads, whichever
//! adapter it comes through, and how often one connection may ask anything at all. A
//! flood from one member is refused early and told when to come back — HTTP 429 with
//! `Retry-After`, on QUIC a `rate_limited` refusal that says when — so it never takes the
//! room another member needs. Every refusal is counted in `/metrics`.
//!
//! Limits are generic cell rate algorithm buckets (`governor`): `per_second` sustained,
//! `burst` at once. A member's limits are charged only once its request is
//! authenticated, so nobody can spend another member's allowance; members are the only
//! keys, and keys not seen for a while are let go by [`Limits::forget_idle`].

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use icn_protocol::PublicKey;
use icn_protocol::wire::{ApiError, ClientRequest};
use serde::{Deserialize, Serialize};

/// One limit: requests a second sustained, and how many may come at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    /// The quota, or why the rate cannot be one.
    pub fn quota(&self, what: &str) -> Result<Quota, String> {
        let per_second = NonZeroU32::new(self.per_second)
            .ok_or_else(|| format!("{what}.per_second is 0; give at least 1 request a second"))?;
        let burst = NonZeroU32::new(self.burst)
            .ok_or_else(|| format!("{what}.burst is 0; give at least 1 (requests that may come at once)"))?;
        Ok(Quota::per_second(per_second).allow_burst(burst))
    }
}

/// The limits a coordinator keeps (`[limits]` in its config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Per member: submissions, dry runs, proposals, ballots, cancels, clearings (over
    /// HTTP, every POST).
    pub writes: Rate,
    /// Per member: statuses, lists, traces, outputs, logs, follows.
    pub reads: Rate,
    /// Per member: modules and inputs put (each at most its size limit).
    pub uploads: Rate,
    /// Per connection, QUIC session or HTTP connection: requests of any kind.
    pub connection: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            writes: Rate { per_second: 200, burst: 1_000 },
            reads: Rate { per_second: 500, burst: 1_000 },
            uploads: Rate { per_second: 50, burst: 200 },
            connection: Rate { per_second: 1_000, burst: 2_000 },
        }
    }
}

impl RateLimits {
    /// Limits high enough never to bind on one machine: for benchmarks of throughput.
    pub fn unbounded() -> RateLimits {
        let rate = Rate { per_second: 1_000_000, burst: 1_000_000 };
        RateLimits { writes: rate, reads: rate, uploads: rate, connection: rate }
    }

    /// Checks every rate, naming the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        self.writes.quota("limits.writes")?;
        self.reads.quota("limits.reads")?;
        self.uploads.quota("limits.uploads")?;
        self.connection.quota("limits.connection")?;
        Ok(())
    }
}

/// What a request spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Write,
    Read,
    Upload,
}

impl Class {
    pub fn of(request: &ClientRequest) -> Class {
        match request {
            ClientRequest::Submit(_)
            | ClientRequest::Plan(_)
            | ClientRequest::Propose(_)
            | ClientRequest::Vote(_)
            | ClientRequest::Cancel(_)
            | ClientRequest::Clear(_) => Class::Write,
            ClientRequest::PutModule(_) | ClientRequest::PutInput(_) => Class::Upload,
            _ => Class::Read,
        }
    }

    /// The class's name, in refusals and as the request label of their count.
    pub fn name(self) -> &'static str {
        match self {
            Class::Write => "writes",
            Class::Read => "reads",
            Class::Upload => "uploads",
        }
    }
}

/// A request over its limit, and how long until one more would pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
    pub error: ApiError,
}

impl Limited {
    /// Whole seconds for `Retry-After`, rounded up (at least 1).
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1_000).max(1) as u64
    }

    fn new(what: String, rate: Rate, retry_after: Duration) -> Limited {
        let ms = retry_after.as_millis().max(1);
        let error = ApiError::new(
            "rate_limited",
            format!(
                "{what} more often than this commons allows ({} a second, {} at once); try again in {ms} ms",
                rate.per_second, rate.burst
            ),
        );
        Limited { retry_after, error }
    }
}

/// HTTP connections' buckets kept before the idle ones are let go: a few times the
/// connections a listener serves at once.
const HTTP_CONNECTION_BUCKETS_MAX: usize = 4 * icn_transport::http::CONNECTIONS_MAX;

/// Members' buckets, and HTTP connections'.
pub struct Limits {
    config: RateLimits,
    writes: DefaultKeyedRateLimiter<PublicKey>,
    reads: DefaultKeyedRateLimiter<PublicKey>,
    uploads: DefaultKeyedRateLimiter<PublicKey>,
    /// By the listener's connection number.
    http_connections: DefaultKeyedRateLimiter<u64>,
}

impl Limits {
    /// Limits with `config`, which [`RateLimits::validate`] passed.
    pub fn new(config: RateLimits) -> Limits {
        let quota = |rate: Rate, what| rate.quota(what).expect("validated limits");
        Limits {
            config,
            writes: RateLimiter::keyed(quota(config.writes, "writes")),
            reads: RateLimiter::keyed(quota(config.reads, "reads")),
            uploads: RateLimiter::keyed(quota(config.uploads, "uploads")),
            http_connections: RateLimiter::keyed(quota(config.connection, "connection")),
        }
    }

    /// Spends one request of HTTP connection `id`, or says when it may ask again.
    pub fn check_http_connection(&self, id: u64) -> Result<(), Limited> {
        if self.http_connections.len() > HTTP_CONNECTION_BUCKETS_MAX {
            // Connections come and go; a bucket full again is as good as none.
            self.http_connections.retain_recent();
        }
        self.http_connections.check_key(&id).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Limited::new("this connection sent requests".into(), self.config.connection, wait)
        })
    }

    /// Spends one of `member`'s `class` requests, or says when it may ask again.
    pub fn check(&self, member: &PublicKey, class: Class) -> Result<(), Limited> {
        let (limiter, rate) = match class {
            Class::Write => (&self.writes, self.config.writes),
            Class::Read => (&self.reads, self.config.reads),
            Class::Upload => (&self.uploads, self.config.uploads),
        };
        limiter.check_key(member).map_err(|not_until| {
            let what = format!("member {} sent {}", member.short(), class.name());
            Limited::new(what, rate, not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// A bucket for one connection.
    pub fn connection(&self) -> ConnectionLimit {
        let rate = self.config.connection;
        ConnectionLimit {
            rate,
            limiter: RateLimiter::direct(rate.quota("connection").expect("validated limits")),
        }
    }

    /// Lets go of the buckets of members who have not asked for a while (full again, so
    /// nothing is lost by it); returns how many members' buckets are kept.
    pub fn forget_idle(&self) -> usize {
        self.writes.retain_recent();
        self.reads.retain_recent();
        self.uploads.retain_recent();
        self.writes.len() + self.reads.len() + self.uploads.len()
    }
}

/// One connection's bucket.
pub struct ConnectionLimit {
    rate: Rate,
    limiter: DefaultDirectRateLimiter,
}

impl ConnectionLimit {
    pub fn check(&self) -> Result<(), Limited> {
        self.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Limited::new("this connection sent requests".into(), self.rate, wait)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PublicKey {
        icn_protocol::Keypair::from_seed([i; 32]).public()
    }

    #[test]
    fn a_member_past_its_burst_is_told_when_to_return_and_others_are_not_touched() {
        let config = RateLimits { writes: Rate { per_second: 2, burst: 3 }, ..RateLimits::default() };
        let limits = Limits::new(config);
        for _ in 0..3 {
            limits.check(&key(1), Class::Write).unwrap();
        }
        let limited = limits.check(&key(1), Class::Write).unwrap_err();
        assert_eq!(limited.error.code, "rate_limited");
        // At 2 a second, the next one is due within half a second.
        assert!(limited.retry_after > Duration::ZERO && limited.retry_after <= Duration::from_millis(500));
        assert_eq!(limited.retry_after_seconds(), 1);
        assert!(limited.error.message.contains("2 a second, 3 at once"), "{}", limited.error.message);
        // Another member, and another class of the same member, have their own buckets.
        limits.check(&key(2), Class::Write).unwrap();
        limits.check(&key(1), Class::Read).unwrap();
    }

    #[test]
    fn a_zero_rate_is_refused_by_name() {
        let config = RateLimits { uploads: Rate { per_second: 0, burst: 5 }, ..RateLimits::default() };
        assert_eq!(
            config.validate().unwrap_err(),
            "limits.uploads.per_second is 0; give at least 1 request a second"
        );
        let config = RateLimits { connection: Rate { per_second: 5, burst: 0 }, ..RateLimits::default() };
        assert!(config.validate().unwrap_err().starts_with("limits.connection.burst is 0"));
    }

    #[test]
    fn a_connection_past_its_burst_is_limited() {
        let limits =
            Limits::new(RateLimits { connection: Rate { per_second: 1, burst: 2 }, ..RateLimits::default() });
        let connection = limits.connection();
        connection.check().unwrap();
        connection.check().unwrap();
        assert_eq!(connection.check().unwrap_err().error.code, "rate_limited");
        // A new connection has its own bucket.
        limits.connection().check().unwrap();
    }
}
