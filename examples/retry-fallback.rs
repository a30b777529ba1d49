//! Retries, timeouts and a fallback: a node that keeps working when its model does not.
//!
//! Calls to a model fail now and then: the server is overloaded, rate-limits you, refuses
//! your key, or takes forever. A node copes in four small methods. `max_retries` is how many
//! times `exec` is tried in all; `wait` decides after each failed try whether to try again,
//! and after what pause; `timeout` cuts one try short; and when no try is left, or `wait`
//! gave up, `exec_fallback` gets the last error and may answer instead (a canned reply, a
//! cached one, a cheaper model) or give up, failing the run.
//!
//! `wait` sees the error, so it decides per error. A model's error says whether trying again
//! may help and how long the server asked to wait ([`ModelError`]): a refused key is not
//! retried at all, an error that says "retry after 30 ms" is retried after exactly that
//! pause, anything else after an exponential [`Backoff`] (each pause twice the last, up to a
//! cap). `support::wait`, which the other examples' nodes use, decides the same way with
//! pauses sized for a real server (and, unlike this one, does not wait for a server that
//! asks for more than a minute).
//!
//! The same node asks the same question of five models: one overloaded twice (the retries
//! get past it), one always down (the fallback answers), one slower than the node's timeout
//! (every try times out; the fallback answers), one rate-limited once (one retry, after its
//! pause), and one that refuses the key (no retry: straight to the fallback). An observer
//! prints each retry as the run reports it.
//!
//! Run with: `cargo run --example retry-fallback`. Offline, the answers come from a stand-in
//! (`support/circuit_breaker.rs`); set `MINIFLOW_BASE_URL` and `MINIFLOW_MODEL` to ask a real
//! model (see `support/mod.rs`) behind the same simulated failures.

use std::sync::Arc;
use std::time::Duration;

use miniflow::{
    Action, Backoff, Ctx, Error, Event, Flow, Node, Params, Result, RunOptions, TimedOut,
};
use support::{Flaky, Model, ModelError, Slow, circuit_breaker};

mod support;

fn main() -> support::Main {
    let model = support::model(circuit_breaker::stand_in())?;

    println!("1. a model that is overloaded twice, then answers");
    let flaky = Arc::new(Flaky::new(model.clone(), 2)); // fails with 503, "retry after 5ms"
    ask(flaky.clone(), None)?;
    println!("  the model was called {} times", flaky.calls());

    println!("2. a model that is always down");
    let down = Arc::new(Flaky::new(model.clone(), usize::MAX));
    ask(down.clone(), None)?;
    println!("  the model was called {} times", down.calls());

    println!("3. a model slower than the node's 50 ms timeout");
    ask(Arc::new(Slow::new(model.clone(), ms(200))), Some(ms(50)))?;

    println!("4. a rate-limited model that says when to come back");
    let limit = || ModelError::status("stand-in", 429, "slow down").with_retry_after(ms(30));
    ask(Arc::new(Flaky::new(model.clone(), 1).failing_with(limit)), None)?;

    println!("5. a model that refuses the API key");
    let refused = || ModelError::status("stand-in", 401, "the API key was refused");
    ask(Arc::new(Flaky::new(model, usize::MAX).failing_with(refused)), None)?;
    Ok(())
}

/// Runs [`Ask`] by itself against `model`, printing each retry and the answer.
fn ask(model: Arc<dyn Model>, timeout: Option<Duration>) -> Result<()> {
    let mut flow = Flow::new();
    flow.add("ask", Ask { model, timeout });

    // The observer sees every retry: which node, which attempt (0-based, like
    // `Ctx::attempt`), why, and the pause `wait` chose before the next one.
    let observer = |event: &Event<'_>| {
        if let Event::Retry { node, attempt, error, delay, .. } = event {
            let attempt = attempt + 1;
            println!("  observer: `{node}` attempt {attempt} failed: {error}; next in {delay:?}");
        }
    };
    let mut store = Store { question: circuit_breaker::QUESTION.to_string(), answer: None };
    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer)))?;

    let answer = store.answer.ok_or("the flow ended without an answer")?;
    let from = if answer.canned { "fallback" } else { "model" };
    println!("  answer ({from}): {}", answer.text);
    Ok(())
}

/// The shared store: the question and how it was answered.
#[derive(Debug)]
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

/// Asks the model the store's question: up to three tries, then a canned reply.
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
        println!("  exec: attempt {} of {}", cx.attempt() + 1, cx.max_retries());
        let text = self.model.ask(question).await?;
        Ok(Answer { text: text.trim().to_string(), canned: false })
    }

    /// Three tries in all: the first and two retries.
    fn max_retries(&self) -> usize {
        3
    }

    /// Whether to try again after a failed try, and when: never for an error that retrying
    /// cannot fix, after exactly the pause the server asked for if it did, and otherwise after
    /// 5 ms, then 10 ms, never more than 40 ms (short, so that the example runs fast;
    /// `support::wait` starts at half a second and adds jitter, so that clients that failed
    /// together do not all come back at once).
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        let backoff = Backoff::new(ms(5), ms(40)).delay(cx.attempt());
        match error.downcast_ref::<ModelError>() {
            Some(e) if !e.retryable() => None, // a refused key stays refused
            Some(e) => Some(e.retry_after().unwrap_or(backoff)),
            None => Some(backoff), // a timeout, or an error of another kind
        }
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Called with the last error once no try is left (or `wait` gave up). `Ok` hands `post`
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
}

/// `n` milliseconds.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
