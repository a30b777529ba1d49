//! Timing attempts: [`Backoff`], the pauses between failed attempts that back off, and
//! [`TimedOut`], the error of an attempt (or fallback) that ran past its node's `timeout()`.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// A capped exponential backoff, optionally with jitter: the pauses a node's
/// [`wait`](crate::Node::wait) hook returns for rate limits and overloaded services.
///
/// The pause after attempt `a` (0-based, as [`Ctx::attempt`](crate::Ctx::attempt) counts) is
/// `first × 2^a`, but never more than `cap`. Every retry that comes too soon adds to the load
/// that made the call fail, so each one backs off further; the cap keeps a long run of retries
/// from sleeping for hours.
///
/// With [`jitter`](Backoff::jitter), each pause is shortened by a random part of itself, so
/// that items or runs that failed together (a batch that hit a rate limit at once) retry
/// apart instead of in lockstep. The randomness comes from the standard library's
/// per-process random hash keys: no dependency, different in every call.
///
/// ```
/// use std::time::Duration;
/// use miniflow::Backoff;
///
/// let ms = Duration::from_millis;
/// let backoff = Backoff::new(ms(100), ms(1_000));
/// let pauses: Vec<_> = (0..6).map(|attempt| backoff.delay(attempt)).collect();
/// assert_eq!(pauses, [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]);
///
/// // With jitter 0.5, each pause lies between half and all of it.
/// let pause = backoff.jitter(0.5).delay(2);
/// assert!(ms(200) <= pause && pause <= ms(400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    jitter: f64,
}

impl Backoff {
    /// `first` after the first failed attempt, then twice as long after each further one, but
    /// never more than `cap` (which wins if it is the smaller of the two). No jitter.
    ///
    /// # Panics
    /// If `first` or `cap` is zero: doubling zero never makes a pause, and a zero cap caps every
    /// pause at zero, so either would not back off at all (return `Some(Duration::ZERO)` from
    /// `wait` to retry at once). In a `const`, this is a compile error.
    pub const fn new(first: Duration, cap: Duration) -> Backoff {
        assert!(
            !first.is_zero() && !cap.is_zero(),
            "Backoff::new(first, cap) with a zero `first` or `cap` never pauses: give it a first \
             pause and a cap (100 ms and 10 s, say), or retry at once with Some(Duration::ZERO)"
        );
        Backoff { first, cap, jitter: 0.0 }
    }

    /// This backoff with each pause `p` replaced by a pause drawn uniformly from
    /// `[p × (1 − fraction), p]`: 0 is no jitter, 0.5 keeps at least half of every pause, 1
    /// ("full jitter") may retry at once.
    ///
    /// # Panics
    /// If `fraction` is not between 0 and 1.
    #[must_use = "`jitter` returns the backoff with its jitter set"]
    pub fn jitter(self, fraction: f64) -> Backoff {
        assert!(
            (0.0..=1.0).contains(&fraction),
            "Backoff::jitter({fraction}): the fraction of each pause to randomize must be between 0 and 1"
        );
        Backoff { jitter: fraction, ..self }
    }

    /// The pause after attempt `attempt` failed (0-based): `first × 2^attempt`, capped, less
    /// its random part if the backoff has jitter.
    pub fn delay(&self, attempt: usize) -> Duration {
        // Doubling until the cap is reached takes fewer than 100 steps, however many attempts.
        let mut pause = self.first;
        for _ in 0..attempt {
            if pause >= self.cap {
                break;
            }
            pause = pause.saturating_mul(2);
        }
        let pause = pause.min(self.cap);
        if self.jitter == 0.0 {
            return pause;
        }
        // 53 random bits make a uniform float in [0, 1).
        let random = (RandomState::new().hash_one(attempt) >> 11) as f64 / (1u64 << 53) as f64;
        let cut = Duration::try_from_secs_f64(pause.as_secs_f64() * self.jitter * random);
        pause.saturating_sub(cut.unwrap_or(Duration::ZERO))
    }
}

/// The error of an attempt that ran longer than its node's
/// [`timeout()`](crate::Node::timeout), or of an `exec_fallback` that did.
///
/// A timeout is a failed attempt like any other: the node retries if it has attempts left,
/// then its `exec_fallback` gets this error (find it with `error.downcast_ref::<TimedOut>()`),
/// and if the fallback returns it, it is the `source()` of the run's
/// [`FlowError::NodeFailed`](crate::FlowError::NodeFailed). The fallback itself runs under the
/// same limit: one that runs past it fails the node with a `TimedOut` whose
/// [`fallback`](TimedOut::fallback) is true, so no phase that awaits can hang the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimedOut {
    /// The node's timeout, which the attempt ran past.
    pub after: Duration,
    /// Whether it was `exec_fallback` that ran out of time (the limit covers it too), rather
    /// than an attempt of `exec`.
    pub fallback: bool,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = if self.fallback { "exec_fallback" } else { "exec" };
        write!(f, "{phase} timed out after {:?}", self.after)
    }
}

impl std::error::Error for TimedOut {}
