//! Timing attempts: [`Wait`], the pause between a failed attempt and the next, and
//! [`TimedOut`], the error of an attempt (or fallback) that ran past its node's `timeout()`.

use std::fmt;
use std::time::Duration;

/// How long a node pauses after a failed attempt before the next one: its
/// [`wait()`](crate::Node::wait).
///
/// - [`Wait::NONE`] (the default): retry at once. Right when failures are not about load —
///   a model's answer that did not parse, a flaky check — where waiting only adds latency.
/// - [`Wait::fixed`]: the same pause every time. Right for a resource that recovers on a
///   known schedule, or when a few retries must finish within a predictable time.
/// - [`Wait::exponential`]: the pause doubles after every failed attempt, up to a cap. Right
///   for rate limits and overloaded services (HTTP 429 or 503): every retry that comes too
///   soon adds to the load that made the call fail, so back off further each time. The cap
///   keeps a long run of retries from sleeping for hours.
///
/// The timer works under any executor (smol's `async-io` timer). A [`Duration`] converts into
/// a fixed wait, so `fn wait(&self) -> Wait { Duration::from_millis(100).into() }` works too.
///
/// ```
/// use std::time::Duration;
/// use miniflow::Wait;
///
/// let ms = Duration::from_millis;
/// let backoff = Wait::exponential(ms(100), ms(1_000));
/// let pauses: Vec<_> = (0..6).map(|attempt| backoff.delay(attempt)).collect();
/// assert_eq!(pauses, [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]);
///
/// assert_eq!(Wait::fixed(ms(50)).delay(7), ms(50));
/// assert_eq!(Wait::NONE.delay(0), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Wait {
    // One formula serves both kinds: the pause is `first × 2^attempt`, capped at `cap`; a
    // fixed wait is one whose cap is its first pause.
    first: Duration,
    cap: Duration,
}

impl Wait {
    /// No pause: the next attempt starts as soon as one fails.
    pub const NONE: Wait = Wait::fixed(Duration::ZERO);

    /// The same pause after every failed attempt.
    pub const fn fixed(pause: Duration) -> Wait {
        Wait { first: pause, cap: pause }
    }

    /// `first` after the first failed attempt, then twice as long after each further one, but
    /// never more than `cap` (which wins if it is the smaller of the two).
    ///
    /// # Panics
    /// If `first` or `cap` is zero: doubling zero never makes a pause, and a zero cap caps every
    /// pause at zero, so either would not back off at all (use [`Wait::NONE`] for no pause).
    /// In a `const`, this is a compile error.
    pub const fn exponential(first: Duration, cap: Duration) -> Wait {
        assert!(
            !first.is_zero() && !cap.is_zero(),
            "Wait::exponential(first, cap) with a zero `first` or `cap` never pauses: give it a \
             first pause and a cap (100 ms and 10 s, say), or use Wait::NONE for no pause"
        );
        Wait { first, cap }
    }

    /// The pause after attempt `attempt` failed (0-based, as [`Ctx::attempt`](crate::Ctx::attempt)
    /// counts): `first × 2^attempt` capped, for an exponential wait.
    pub fn delay(&self, attempt: usize) -> Duration {
        // Doubling until the cap is reached takes fewer than 100 steps, however many attempts.
        let mut pause = self.first;
        for _ in 0..attempt {
            if pause.is_zero() || pause >= self.cap {
                break;
            }
            pause = pause.saturating_mul(2);
        }
        pause.min(self.cap)
    }
}

impl From<Duration> for Wait {
    fn from(pause: Duration) -> Wait {
        Wait::fixed(pause)
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
