//! Retries, backoff, timeouts and a fallback: a node that keeps working when its model does
//! not.
//!
//! Calls to a model fail now and then — the server is overloaded, the connection drops, the
//! answer takes forever. A node says how to cope in three small methods: `max_retries` is how
//! many times `exec` is tried in all, `wait` decides after each failed try whether to try
//! again and after what pause (here always, after an exponential [`Backoff`]: each pause twice
//! the last, up to a cap), and `timeout` cuts one try short. When every try has failed,
//! `exec_fallback` gets the last error and may answer instead — with a canned reply, a cached
//! one, a cheaper model — or give up, failing the run.
//!
//! Not every error deserves the same retry. `wait` sees the error, so it decides per error:
//! a rate limit that says when to come back ("retry after 30 ms") is retried after exactly
//! that pause; an error that retrying cannot fix (a refused API key) is not retried at all;
//! anything else backs off.
//!
//! The same node asks the same question five times, of five models: one that is overloaded
//! twice and then answers (the retries fix it), one that is always down (the fallback
//! answers), one too slow for the node's timeout (every try times out; the fallback
//! answers), one that is rate limited once and says for how long (one retry, after its
//! pause), and one that refuses the key (no retry: straight to the fallback). An observer
//! prints each retry as the run reports it; `exec` prints its attempt number from
//! [`Ctx::attempt`].
//!
//! Run with: `cargo run --example retry-fallback`. Offline the answers come from a stand-in;
//! set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to ask a real model (see `support/mod.rs`)
//! behind the same simulated failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use miniflow::{
    Action, Backoff, Ctx, Error, Event, Flow, Node, Params, Result, RunOptions, TimedOut,
};
use support::{Flaky, Message, Model, Rules, Slow};

mod support;

/// The shared store: the question and how it was answered.
#[derive(Debug, Default)]
struct Store {
    question: String,
    answer: Option<Answer>,
}

#[derive(Debug)]
struct Answer {
    text: String,
    /// Whether `exec_fallback` wrote it rather than the model.
    canned: bool,
}

/// Asks the model the store's question, trying up to three times.
struct Ask {
    model: Arc<dyn Model>,
    /// The longest one try may take, if there is a limit.
    timeout: Option<Duration>,
}

impl Node<Store> for Ask {
    type Prep = String;
    type Output = Answer;

    fn prep(&self, store: &Store, _params: &Params) -> Result<String> {
        Ok(store.question.clone())
    }

    async fn exec(&self, question: &String, cx: Ctx<'_>) -> Result<Answer> {
        // `attempt` is 0-based: 0 is the first try.
        println!("  exec: attempt {} of {}", cx.attempt() + 1, cx.max_retries());
        let text = self.model.ask(question).await?;
        Ok(Answer { text: text.trim().to_string(), canned: false })
    }

    /// Called once the last attempt has failed (or `wait` gave up), with its error. Returning `Ok` hands `post`
    /// an answer as if `exec` had produced it; returning the error would fail the run.
    async fn exec_fallback(&self, _question: &String, error: Error, cx: Ctx<'_>) -> Result<Answer> {
        let why = if error.is::<TimedOut>() { "timed out" } else { "failed" };
        let (tries, of) = (cx.attempt() + 1, cx.max_retries());
        println!("  fallback: {why} after {tries} of {of} attempts; answering with a canned reply");
        let text = "The assistant cannot answer right now. Please try again in a few minutes.";
        Ok(Answer { text: text.to_string(), canned: true })
    }

    fn post(&self, store: &mut Store, _question: String, answer: Answer) -> Result<Action> {
        store.answer = Some(answer);
        Ok(Action::DEFAULT)
    }

    /// Three tries in all: the first and two retries.
    fn max_retries(&self) -> usize {
        3
    }

    /// Decides, after a failed try, whether to try again and after what pause: never for a
    /// refused key, after the server's own pause for a rate limit, and otherwise after 5 ms the
    /// first time, then 10 ms, never more than 40 ms. Kept short so the example runs fast;
    /// against a real server, start at half a second or so and add `.jitter(0.5)`, so that
    /// clients that failed together do not all come back at once.
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        match error.downcast_ref::<ApiError>() {
            Some(ApiError::Unauthorized) => None,
            Some(ApiError::RateLimited { retry_after }) => Some(*retry_after),
            None => {
                let backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(40));
                Some(backoff.delay(cx.attempt()))
            }
        }
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// The errors a model's API reports, as an HTTP client would turn its status codes into
/// errors: `401` and `429` with its `Retry-After` header.
#[derive(Debug)]
enum ApiError {
    Unauthorized,
    RateLimited { retry_after: Duration },
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unauthorized => write!(f, "the API key was refused (HTTP 401)"),
            ApiError::RateLimited { retry_after } => {
                write!(f, "rate limited (HTTP 429), retry after {retry_after:?}")
            }
        }
    }
}

impl std::error::Error for ApiError {}

/// A model behind an API that answers its first `failures` calls with `error` (made afresh
/// each time), then passes the question on.
struct Failing {
    inner: Arc<dyn Model>,
    failures: usize,
    error: fn() -> ApiError,
    calls: AtomicUsize,
}

impl Model for Failing {
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        match self.calls.fetch_add(1, Ordering::Relaxed) < self.failures {
            true => Box::pin(async { Err((self.error)().into()) }),
            false => self.inner.chat(messages),
        }
    }
}

/// The offline stand-in's answer.
fn stand_in(_prompt: &str) -> String {
    "It stops calling a failing service for a while, so the service can recover and callers \
     fail fast instead of waiting."
        .to_string()
}

/// Asks `model` the question through a one-node flow, printing what happens.
fn ask(model: Arc<dyn Model>, timeout: Option<Duration>) -> Result<Answer> {
    let mut flow = Flow::new();
    flow.add("ask", Ask { model, timeout });

    // The observer sees every retry the run makes: which node, which attempt, why, and the
    // pause before the next one (the backoff's setting, not a measured time). Its `attempt` is
    // 0-based, like `Ctx::attempt`; printed 1-based here to match `exec`'s lines.
    let observer = |event: &Event<'_>| {
        if let Event::Retry { node, attempt, error, delay, .. } = event {
            println!(
                "  observer: `{node}` attempt {} failed ({error}); next in {delay:?}",
                attempt + 1
            );
        }
    };
    let mut store = Store {
        question: "In one sentence: what does a circuit breaker do in a distributed system?"
            .to_string(),
        answer: None,
    };
    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer)))?;
    store.answer.ok_or_else(|| "the flow ended without an answer".into())
}

fn main() -> support::Main {
    let model = support::model(Rules::new(stand_in))?;
    let print = |answer: &Answer| {
        let from = if answer.canned { "fallback" } else { "model" };
        println!("  answer ({from}): {}", answer.text);
    };

    println!("1. a model that is overloaded twice, then answers");
    let flaky = Arc::new(Flaky::new(model.clone(), 2));
    print(&ask(flaky.clone(), None)?);
    println!("  the model was called {} times", flaky.calls());

    println!("2. a model that is always down");
    let down = Arc::new(Flaky::new(model.clone(), usize::MAX));
    print(&ask(down.clone(), None)?);
    println!("  the model was called {} times", down.calls());

    println!("3. a model slower than the node's 50 ms timeout");
    let slow = Slow::new(model.clone(), Duration::from_millis(200));
    print(&ask(Arc::new(slow), Some(Duration::from_millis(50)))?);

    println!("4. a rate-limited model that says when to come back");
    let retry_after = || ApiError::RateLimited { retry_after: Duration::from_millis(30) };
    let limited =
        Failing { inner: model.clone(), failures: 1, error: retry_after, calls: 0.into() };
    print(&ask(Arc::new(limited), None)?);

    println!("5. a model that refuses the API key");
    let refused = || ApiError::Unauthorized;
    let locked = Failing { inner: model, failures: usize::MAX, error: refused, calls: 0.into() };
    print(&ask(Arc::new(locked), None)?);
    Ok(())
}
