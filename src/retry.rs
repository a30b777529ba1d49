//! Retries: the check of a node's settings, the retry loop around `exec` ([`retry!`] and
//! [`recover`]), [`Backoff`] for the pauses between attempts, and [`TimedOut`], the error of
//! an attempt (or fallback) that ran past its node's `timeout()`.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::pin;
use std::time::Duration;

use async_io::Timer;
use futures::future::{self, Either};

use crate::run::{NodePath, Outcome, invalid};
use crate::{Ctx, Error, Event, FlowError, Phase};

/// The most attempts a node may ask for with `max_retries()`; above it the run fails with
/// [`FlowError::InvalidConfig`] instead of retrying (nearly) forever.
pub const MAX_ATTEMPTS: usize = 1_000;

/// Checks a node's settings before its prep runs (so a bad setting costs no work): attempts
/// between 1 and [`MAX_ATTEMPTS`], a timeout that is not zero, an in-flight limit above 0
/// (1 for a plain node). Inline, with the message built out of line.
#[inline]
pub fn check(
    attempts: usize,
    timeout: Option<Duration>,
    in_flight: usize,
    path: &NodePath<'_>,
) -> Outcome<()> {
    match (1..=MAX_ATTEMPTS).contains(&attempts) && timeout != Some(Duration::ZERO) {
        true if in_flight > 0 => Ok(()),
        _ => Err(bad_settings(attempts, timeout, path)),
    }
}

#[cold]
fn bad_settings(attempts: usize, timeout: Option<Duration>, path: &NodePath<'_>) -> Box<FlowError> {
    let message = if !(1..=MAX_ATTEMPTS).contains(&attempts) {
        format!(
            "max_retries() is {attempts}, but it counts every attempt, the first included, and \
             must be between 1 and {MAX_ATTEMPTS}"
        )
    } else if timeout == Some(Duration::ZERO) {
        "timeout() is zero, so every attempt would time out; return None for no time limit".into()
    } else {
        "max_in_flight() is 0, so no item could ever run; return 1 to run items one after \
         another, or usize::MAX for no limit"
            .into()
    };
    invalid(path, format!("node `{path}`: {message}"))
}

/// Runs `$node.exec($input, cx)` up to `max_retries()` times, each attempt cut short by the
/// node's timeout, pausing as its `wait` decides between attempts, then `exec_fallback` on
/// the last error. Evaluates to the output and the attempts made. `$node` is a [`Node`] or a
/// [`BatchNode`]: their methods share names, and a macro needs no trait over both.
///
/// The common case — no timeout, and the first attempt succeeds — awaits `exec` in place.
/// Everything else is [`recover`], boxed apart: its timers and closures would otherwise
/// double the size of every node run's future. A macro, not an `async fn`, so that the future
/// it is written into holds only what `exec` needs while the first attempt runs.
///
/// [`Node`]: crate::Node
/// [`BatchNode`]: crate::BatchNode
macro_rules! retry {
    ($node:expr, $input:expr, $cx:expr) => {{
        let (node, input, cx) = ($node, $input, $cx);
        let first = match node.timeout() {
            None => Some(node.exec(input, cx).await),
            Some(_) => None,
        };
        match first {
            Some(Ok(output)) => Ok((output, 1)),
            first => {
                let failed = first.and_then(Result::err);
                let exec = |cx| node.exec(input, cx);
                let fallback = |error, cx| node.exec_fallback(input, error, cx);
                let wait = |error: &_, cx| node.wait(error, cx);
                let rest = $crate::retry::recover(cx, node.timeout(), failed, exec, wait, fallback);
                Box::pin(rest).await
            }
        }
    }};
}
pub(crate) use retry;

/// What [`retry!`] does after a first attempt that failed with `failed` (or from the first
/// attempt, if `failed` is `None`: a node with a timeout makes it here, under the timer).
pub async fn recover<'p, T, F, B>(
    mut cx: Ctx<'p>,
    timeout: Option<Duration>,
    mut failed: Option<Error>,
    exec: impl Fn(Ctx<'p>) -> F,
    wait: impl Fn(&Error, Ctx<'p>) -> Option<Duration>,
    fallback: impl FnOnce(Error, Ctx<'p>) -> B,
) -> Outcome<(T, usize)>
where
    F: Future<Output = Result<T, Error>>,
    B: Future<Output = Result<T, Error>>,
{
    loop {
        let error = match failed.take() {
            Some(error) => error,
            None => match timed(exec(cx), timeout, false).await {
                Ok(out) => return Ok((out, cx.attempt() + 1)),
                Err(error) => error,
            },
        };
        let (node, attempt) = (cx.path, cx.attempt());
        let delay = if attempt + 1 < cx.max_retries() { wait(&error, cx) } else { None };
        let Some(delay) = delay else {
            cx.report(&Event::Fallback { node, error: &error });
            let attempts = attempt + 1;
            return match timed(fallback(error, cx), timeout, true).await {
                Ok(out) => Ok((out, attempts)),
                Err(error) => Err(FlowError::user(node, Phase::Exec, attempts, error).into()),
            };
        };
        cx.report(&Event::Retry { node, attempt, error: &error, delay });
        drop(error);
        if !delay.is_zero() {
            sleep(delay).await;
        }
        cx.attempt += 1;
    }
}

/// Waits `duration`, on any executor: the timer the crate pauses between attempts with
/// (async-io's, which runs its own driver thread when no other code drives it). For a pause
/// in `exec` without adding a runtime's timer. `Duration::MAX` waits forever.
///
/// ```
/// use std::time::Duration;
///
/// futures::executor::block_on(miniflow::sleep(Duration::from_millis(5)));
/// ```
pub async fn sleep(duration: Duration) {
    Timer::after(duration).await;
}

/// `work` (an attempt of `exec`, or `exec_fallback` if `fallback`), cut short with a
/// [`TimedOut`] error if it runs past `limit`.
async fn timed<T>(
    work: impl Future<Output = Result<T, Error>>,
    limit: Option<Duration>,
    fallback: bool,
) -> Result<T, Error> {
    let Some(after) = limit else { return work.await };
    match future::select(pin!(work), Timer::after(after)).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(Box::new(TimedOut { after, fallback })),
    }
}

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
/// [`FlowError::NodeFailed`]. The fallback itself runs under the
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
