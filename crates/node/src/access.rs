//! Who may call what, and how often: signed requests, key-package checks and rate limits.
//!
//! **Signed requests.** A call carries its installation's signature (see
//! [`ferry_identity::request_auth`]). The node checks the signature over the method, the
//! timestamp, the nonce and the request body, that the timestamp is within
//! [`MAX_CLOCK_SKEW_NS`] of its clock, that the installation is in an inbox's identity log
//! and not revoked, and that the nonce is new ([`NodeStorage::remember_request`], so every
//! replica sharing a database refuses a replay). What each method requires:
//!
//! | method | caller |
//! |---|---|
//! | `PublishIdentityUpdate`, `GetIdentityLogs` | anyone (updates are signed by their keys; logs are public) |
//! | `SendGroupMessages`, `QueryGroupMessages`, `SubscribeGroupMessages`, `SendWelcomes`, `FetchKeyPackages` | an active installation |
//! | `UploadKeyPackage`, `QueryWelcomes`, `SubscribeWelcomes` | the installation named in the request |
//!
//! **Key packages** are parsed and verified (openmls) before they are stored: the package's
//! signature, and that its leaf's signature key is the installation key.
//!
//! **Rate limits** are token buckets per installation (writes count each message or welcome,
//! reads each call) and per IP address for calls without a signature. A call over its limit is
//! answered `RESOURCE_EXHAUSTED` with a `retry-after-ms` hint, which Ferry's transport honours.
//! Buckets live in the node process: with several replicas, each enforces its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_identity::request_auth::{
    self, HEADER_INSTALLATION, HEADER_NONCE, HEADER_RETRY_AFTER_MS, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, MAX_CLOCK_SKEW_NS, NONCE_LEN,
};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::storage::NodeStorage;

/// Who may call the node and how often. The default requires signed requests and applies
/// [`RateLimits::default`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccessPolicy {
    /// Require signed requests from active installations (see the module docs) and verify
    /// key packages. Turning this off serves anyone, as nodes before signed requests did:
    /// for tests of storage and ordering and for a benchmark's baseline, never for a
    /// deployment.
    pub authenticate: bool,
    /// Rate limits; [`RateLimits::unlimited`] turns them off.
    pub limits: RateLimits,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            authenticate: true,
            limits: RateLimits::default(),
        }
    }
}

impl AccessPolicy {
    /// No authentication and no limits: the node as it was before access control.
    pub fn open() -> Self {
        AccessPolicy {
            authenticate: false,
            limits: RateLimits::unlimited(),
        }
    }
}

/// Token-bucket limits: a steady rate per second and a burst. A rate of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Group messages and welcomes an installation may store per second.
    pub writes_per_second: u32,
    /// How many of those it may store at once after a quiet time.
    pub write_burst: u32,
    /// Other calls an installation may make per second (queries, subscriptions, key packages).
    pub reads_per_second: u32,
    /// How many of those at once.
    pub read_burst: u32,
    /// Calls without a signature (identity updates and logs) per IP address per second.
    pub anonymous_per_second: u32,
    /// How many of those at once.
    pub anonymous_burst: u32,
}

impl Default for RateLimits {
    /// Far above what a person's app does (a busy chat is a few messages a second; a new
    /// installation catching up on a hundred conversations makes a few hundred queries), far
    /// below what floods a conversation.
    fn default() -> Self {
        RateLimits {
            writes_per_second: 100,
            write_burst: 1000,
            reads_per_second: 1000,
            read_burst: 5000,
            anonymous_per_second: 100,
            anonymous_burst: 500,
        }
    }
}

impl RateLimits {
    /// No limits.
    pub fn unlimited() -> Self {
        RateLimits {
            writes_per_second: 0,
            write_burst: 0,
            reads_per_second: 0,
            read_burst: 0,
            anonymous_per_second: 0,
            anonymous_burst: 0,
        }
    }
}

/// What a method asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Anyone; a signature, when there is one, must still be valid and new.
    Anyone,
    /// An active installation.
    Installation,
    /// This installation itself.
    Itself,
}

/// Which bucket a call takes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Write,
    Read,
}

/// Who made a call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    /// The installation whose signature the call carried, checked.
    pub installation: Option<[u8; 32]>,
    /// The peer's address, when the connection has one.
    pub addr: Option<IpAddr>,
}

/// A request's signature headers, parsed.
pub(crate) struct SignedHeaders {
    installation: [u8; 32],
    timestamp_ns: i64,
    nonce: [u8; NONCE_LEN],
    signature: Vec<u8>,
}

fn unauthenticated(what: impl Into<String>) -> Status {
    Status::unauthenticated(what.into())
}

/// The signature headers of a request: `None` when it carries none, an error when they are
/// partial or malformed.
pub(crate) fn signed_headers(metadata: &MetadataMap) -> Result<Option<SignedHeaders>, Status> {
    let Some(installation) = metadata.get_bin(HEADER_INSTALLATION) else {
        return Ok(None);
    };
    let bytes = |key: &str| -> Result<Vec<u8>, Status> {
        metadata
            .get_bin(key)
            .ok_or_else(|| unauthenticated(format!("signed request without {key}")))?
            .to_bytes()
            .map(|b| b.to_vec())
            .map_err(|_| unauthenticated(format!("{key} is not base64")))
    };
    let installation: [u8; 32] = installation
        .to_bytes()
        .ok()
        .and_then(|b| b.as_ref().try_into().ok())
        .ok_or_else(|| unauthenticated("the installation header is not a 32-byte key"))?;
    let timestamp_ns = metadata
        .get(HEADER_TIMESTAMP)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| unauthenticated("signed request without a valid timestamp"))?;
    let nonce: [u8; NONCE_LEN] = bytes(HEADER_NONCE)?
        .try_into()
        .map_err(|_| unauthenticated(format!("the nonce is not {NONCE_LEN} bytes")))?;
    let signature = bytes(HEADER_SIGNATURE)?;
    Ok(Some(SignedHeaders {
        installation,
        timestamp_ns,
        nonce,
        signature,
    }))
}

/// Checks a signed request against the clock, its signature, the installation index and
/// the nonces seen (storage calls: run on the blocking pool). Returns the installation.
pub(crate) fn check_signed(
    storage: &dyn NodeStorage,
    headers: &SignedHeaders,
    method: &str,
    body: &[u8],
    now_ns: i64,
) -> Result<Check, Status> {
    let skew = headers.timestamp_ns.saturating_sub(now_ns);
    if skew.abs() > MAX_CLOCK_SKEW_NS {
        return Err(unauthenticated(format!(
            "the request was signed {} s {} the node's clock (at most {} s apart); check the \
             device's clock",
            skew.abs() / 1_000_000_000,
            if skew < 0 { "behind" } else { "ahead of" },
            MAX_CLOCK_SKEW_NS / 1_000_000_000
        )));
    }
    let payload = request_auth::signing_payload(method, headers.timestamp_ns, &headers.nonce, body);
    if !request_auth::verify_request(&headers.installation, &payload, &headers.signature) {
        return Err(unauthenticated(
            "the request signature does not verify for this installation, method and body",
        ));
    }
    let record = storage
        .installation(&headers.installation)
        .map_err(crate::service::storage_status)?;
    match record {
        None => return Ok(Check::Unknown),
        Some(r) if r.revoked => return Ok(Check::Revoked),
        Some(_) => {}
    }
    let fresh = storage
        .remember_request(
            &headers.installation,
            &headers.nonce,
            now_ns,
            now_ns - 2 * MAX_CLOCK_SKEW_NS,
        )
        .map_err(crate::service::storage_status)?;
    if !fresh {
        return Err(unauthenticated(
            "replayed request: this installation already used this nonce",
        ));
    }
    Ok(Check::Active(headers.installation))
}

/// What [`check_signed`] found.
pub(crate) enum Check {
    /// A valid, new request of an active installation.
    Active([u8; 32]),
    /// A valid signature by a key that is no installation (yet): one that is registering.
    Unknown,
    /// A valid signature by a revoked installation.
    Revoked,
}

/// Turns a check into the caller a method with `need` accepts.
pub(crate) fn admit(
    check: Option<Check>,
    need: Need,
    named: Option<&[u8]>,
) -> Result<Option<[u8; 32]>, Status> {
    let installation = match (check, need) {
        (None | Some(Check::Unknown | Check::Revoked), Need::Anyone) => return Ok(None),
        (Some(Check::Active(id)), Need::Anyone) => return Ok(Some(id)),
        (None, _) => {
            return Err(unauthenticated(
                "this call needs a request signed by an active installation",
            ))
        }
        (Some(Check::Unknown), _) => {
            return Err(unauthenticated(
                "the signing key is not an installation in any inbox's identity log",
            ))
        }
        (Some(Check::Revoked), _) => return Err(Status::permission_denied(request_auth::REVOKED)),
        (Some(Check::Active(id)), _) => id,
    };
    if need == Need::Itself && named != Some(installation.as_slice()) {
        return Err(Status::permission_denied(
            "only the installation itself may make this call",
        ));
    }
    Ok(Some(installation))
}

/// Parses and verifies a key package for `installation_id` (a TLS-serialized `MLSMessage`
/// holding a `KeyPackage`): its signature, and that its leaf's signature key is the
/// installation key.
pub(crate) fn verify_key_package(bytes: &[u8], installation_id: &[u8]) -> Result<(), Status> {
    use openmls::prelude::tls_codec::Deserialize as _;
    use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn, ProtocolVersion};
    let invalid = |what: String| Status::invalid_argument(format!("key package refused: {what}"));
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| invalid(format!("not an MLS message ({e})")))?;
    let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else {
        return Err(invalid("the MLS message is not a key package".into()));
    };
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let key_package = key_package
        .validate(&crypto, ProtocolVersion::Mls10)
        .map_err(|e| invalid(format!("it does not verify ({e})")))?;
    if key_package.leaf_node().signature_key().as_slice() != installation_id {
        return Err(invalid(
            "its signature key is not the installation's key".into(),
        ));
    }
    Ok(())
}

/// Token buckets, per installation and class, and per address for anonymous calls.
pub(crate) struct Limiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum BucketKey {
    Installation([u8; 32], bool),
    Address(IpAddr),
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Its class's rate and burst (buckets of several classes share the map).
    rate: f64,
    burst: f64,
}

impl Bucket {
    /// Its tokens at `now`, refilled at its rate up to its burst.
    fn refilled(&self, now: Instant) -> f64 {
        (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst)
    }
}

/// Buckets kept before full (idle) ones are dropped.
const MAX_BUCKETS: usize = 100_000;

impl Limiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        Limiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens for the caller's call of `class`, or answers `RESOURCE_EXHAUSTED`
    /// with how long to wait. A call with neither an installation nor an address is not
    /// limited (there is nothing to count it by).
    pub(crate) fn take(&self, caller: &Caller, class: Class, cost: usize) -> Result<(), Status> {
        let l = &self.limits;
        let (key, rate, burst) = match (caller.installation, caller.addr) {
            (Some(id), _) => match class {
                Class::Write => (
                    BucketKey::Installation(id, true),
                    l.writes_per_second,
                    l.write_burst,
                ),
                Class::Read => (
                    BucketKey::Installation(id, false),
                    l.reads_per_second,
                    l.read_burst,
                ),
            },
            (None, Some(addr)) => (
                BucketKey::Address(addr),
                l.anonymous_per_second,
                l.anonymous_burst,
            ),
            (None, None) => return Ok(()),
        };
        if rate == 0 {
            return Ok(());
        }
        let burst = burst.max(1);
        let cost = cost.max(1);
        if cost > burst as usize {
            return Err(Status::invalid_argument(format!(
                "a batch of {cost} is larger than the node allows at once ({burst}); send \
                 smaller batches"
            )));
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // Idle buckets are full again; forgetting them changes nothing.
            buckets.retain(|_, b| b.refilled(now) < b.burst);
        }
        let (rate, burst) = (f64::from(rate), f64::from(burst));
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
            rate,
            burst,
        });
        bucket.tokens = bucket.refilled(now);
        bucket.at = now;
        let cost = cost as f64;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((cost - bucket.tokens) / rate);
        drop(buckets);
        Err(throttled(wait))
    }
}

/// `RESOURCE_EXHAUSTED` with a `retry-after-ms` hint.
fn throttled(wait: Duration) -> Status {
    let ms = wait.as_millis().max(1) as u64;
    let mut metadata = MetadataMap::new();
    metadata.insert(HEADER_RETRY_AFTER_MS, ms.into());
    Status::with_metadata(
        Code::ResourceExhausted,
        format!("rate limit reached; retry in {ms} ms"),
        metadata,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(id: u8) -> Caller {
        Caller {
            installation: Some([id; 32]),
            addr: None,
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait() {
        let limiter = Limiter::new(RateLimits {
            writes_per_second: 10,
            write_burst: 5,
            ..RateLimits::default()
        });
        limiter.take(&caller(1), Class::Write, 5).unwrap();
        let refused = limiter.take(&caller(1), Class::Write, 1).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let ms: u64 = refused
            .metadata()
            .get(HEADER_RETRY_AFTER_MS)
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=100).contains(&ms), "{ms}");
        // Another installation, and the same one's reads, have buckets of their own.
        limiter.take(&caller(2), Class::Write, 5).unwrap();
        limiter.take(&caller(1), Class::Read, 1).unwrap();
        std::thread::sleep(Duration::from_millis(ms + 20));
        limiter.take(&caller(1), Class::Write, 1).unwrap();
        // A batch larger than the burst can never pass: refused as invalid, not throttled.
        let too_big = limiter.take(&caller(3), Class::Write, 6).unwrap_err();
        assert_eq!(too_big.code(), Code::InvalidArgument);
    }

    #[test]
    fn unlimited_never_refuses() {
        let limiter = Limiter::new(RateLimits::unlimited());
        for _ in 0..10_000 {
            limiter.take(&caller(1), Class::Write, 100).unwrap();
        }
    }
}
