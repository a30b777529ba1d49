//! What the examples share: one small [`Model`] trait, the offline stand-ins that answer
//! through it, and [`model`], which picks a real model when the environment names one.
//!
//! miniflow itself knows nothing about language models (they are a non-goal of the crate):
//! a node that needs one holds an `Arc<dyn Model>` and awaits it in `exec`. Everything here
//! is example code, meant to be read and copied into your own project.
//!
//! # Offline by default
//!
//! With no environment variables set, every example answers through a deterministic
//! stand-in, so it runs offline, in a few seconds, and prints the same lines every time:
//!
//! - [`Scripted`] gives fixed replies in order;
//! - [`Rules`] answers each prompt with a function of your own;
//! - [`Flaky`] fails its first calls as a busy server would, to show retries;
//! - [`Slow`] waits before answering, and streams word by word, to show concurrency and
//!   streaming.
//!
//! # Failures and retries
//!
//! A model's call fails with a [`ModelError`], from a server or a stand-in alike: it says
//! what went wrong and whether trying again may help. A node that calls a model makes its
//! `Node::wait` hook [`wait`], which retries after the server's own pause, backs off, or gives
//! up, as the error says. [`TokenPrinter`] prints a streamed answer as it arrives, and ends
//! its line when the stream breaks off.
//!
//! # A real model
//!
//! Set these variables and the same examples talk to any server that speaks OpenAI's
//! chat-completions protocol (a hosted service, or a local llama.cpp, Ollama or vLLM server):
//!
//! | variable            | meaning                                   | example                     |
//! |---------------------|-------------------------------------------|-----------------------------|
//! | `MINIFLOW_BASE_URL` | the API's base URL, up to the `/v1`        | `http://localhost:11434/v1` |
//! | `MINIFLOW_MODEL`    | the model name the server knows            | `llama3.2`                  |
//! | `MINIFLOW_API_KEY`  | optional; sent as `Authorization: Bearer` | `sk-…`                      |
//!
//! A real model's answers differ from the stand-ins', so the printed lines will too.

#![allow(dead_code)] // each example uses its own part of this module

pub mod bees;
pub mod billing;
pub mod chat;
pub mod circuit_breaker;
pub mod game;
pub mod helpdesk;
pub mod kettle;
pub mod openai;
pub mod oracle;
pub mod research;
pub mod resumes;
pub mod school;
pub mod songwriting;
pub mod text;
pub mod trace;
pub mod translations;

/// What each example's `main` returns: `Ok`, or the error that stopped it.
///
/// A `main` that returns an error makes Rust print the error's `Debug`, which for a
/// [`miniflow::FlowError`] is a struct dump. [`Failed`]'s `Debug` is what a person wants
/// instead: the message and its whole chain of causes, as `{:#}` shows a `FlowError` —
/// `` node `save` failed in post: disk full ``.
pub type Main = Result<(), Failed>;

/// The error of a failed example: any error, shown with its chain of causes (see [`Main`]).
pub struct Failed(miniflow::Error);

impl<E: Into<miniflow::Error>> From<E> for Failed {
    fn from(error: E) -> Self {
        Failed(error.into())
    }
}

impl fmt::Debug for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use miniflow::Result;

/// One message of a conversation with a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `"system"`, `"user"` or `"assistant"`, as the chat-completions protocol names them.
    pub role: &'static str,
    /// What was said.
    pub content: String,
}

impl Message {
    /// Instructions that frame the whole conversation.
    pub fn system(content: impl Into<String>) -> Self {
        Message { role: "system", content: content.into() }
    }

    /// What the user says.
    pub fn user(content: impl Into<String>) -> Self {
        Message { role: "user", content: content.into() }
    }

    /// What the model said earlier in the conversation.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message { role: "assistant", content: content.into() }
    }
}

/// A chat model: give it a conversation, get its reply.
///
/// Object safe, so a node can hold `Arc<dyn Model>` and not care whether the answers come
/// from a stand-in or a server. Futures are boxed and `Send`, so a node's `exec` that awaits
/// one stays `Send`.
pub trait Model: Send + Sync {
    /// The model's reply to `messages`.
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>>;

    /// The same reply, handing each piece to `token` as it arrives; returns the whole reply.
    ///
    /// The default hands over the whole reply as one piece, for models that cannot stream.
    fn chat_stream<'a>(
        &'a self,
        messages: &'a [Message],
        token: &'a (dyn Fn(&str) + Sync),
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let reply = self.chat(messages).await?;
            token(&reply);
            Ok(reply)
        })
    }
}

impl dyn Model {
    /// Asks one question, with no system prompt and no history.
    pub async fn ask(&self, prompt: &str) -> Result<String> {
        self.chat(&[Message::user(prompt)]).await
    }
}

/// The model an example should use: the server named by `MINIFLOW_BASE_URL` and
/// `MINIFLOW_MODEL` if it is set, else `stand_in`.
///
/// # Errors
///
/// When `MINIFLOW_BASE_URL` is set but `MINIFLOW_MODEL` is not.
pub fn model(stand_in: impl Model + 'static) -> Result<Arc<dyn Model>> {
    Ok(match openai::OpenAi::from_env()? {
        Some(real) => {
            eprintln!("(talking to {real})");
            Arc::new(real)
        }
        None => Arc::new(stand_in),
    })
}

/// The prompt a stand-in answers: the last thing the user said.
fn last_prompt(messages: &[Message]) -> &str {
    messages.iter().rev().find(|m| m.role == "user").map_or("", |m| m.content.as_str())
}

/// A stand-in that gives its replies in order, whatever it is asked, and fails once they
/// run out.
pub struct Scripted {
    replies: Mutex<VecDeque<String>>,
}

impl Scripted {
    /// A model that answers with `replies`, one per call.
    pub fn new<I: IntoIterator<Item = T>, T: Into<String>>(replies: I) -> Self {
        Scripted { replies: Mutex::new(replies.into_iter().map(Into::into).collect()) }
    }
}

impl Model for Scripted {
    fn chat<'a>(&'a self, _: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        // Taken when the call is polled, not when it is made: a call that is dropped unpolled
        // (cancelled, timed out) leaves its reply for the next one.
        Box::pin(async move {
            let next = self.replies.lock().unwrap().pop_front();
            next.ok_or_else(|| "the scripted model has no replies left".into())
        })
    }
}

/// A stand-in that answers each prompt with a function: rule-based replies that depend on
/// what was asked, so they stay right when calls run concurrently or in another order.
pub struct Rules<F>(F);

impl<F: Fn(&str) -> String + Send + Sync> Rules<F> {
    /// A model whose reply to a conversation is `rule(last user message)`.
    pub fn new(rule: F) -> Self {
        Rules(rule)
    }
}

impl<F: Fn(&str) -> String + Send + Sync> Model for Rules<F> {
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        let reply = (self.0)(last_prompt(messages));
        Box::pin(async move { Ok(reply) })
    }
}

/// Why a call to a model failed: which server, what it said, and whether trying again may
/// help (see [`retryable`](ModelError::retryable) and [`retry_after`](ModelError::retry_after)).
///
/// The real client ([`openai::OpenAi`]) fails with this error, and so do the stand-ins that
/// simulate a failing server ([`Flaky`]), so [`wait`] decides the same way offline and online.
/// It reaches a node as a [`miniflow::Error`]; find it with `error.downcast_ref::<ModelError>()`.
#[derive(Debug)]
pub struct ModelError {
    /// The URL asked, or `stand-in` for the offline stand-ins.
    url: String,
    kind: Kind,
    /// What went wrong, in a few words: the server's own message where it sent one.
    message: String,
    retry_after: Option<Duration>,
}

/// The kinds of [`ModelError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The server answered with an HTTP error status.
    Status(u16),
    /// A time limit ran out (its name and value are in the message).
    Timeout,
    /// No connection could be made, or it broke before the reply was whole.
    Connection,
    /// The server answered, but not with a usable reply.
    Reply { retryable: bool },
    /// The request could not be sent as it is (a bad URL, a key no header can carry).
    Request,
}

impl ModelError {
    /// The server at `url` answered with HTTP `status` and `message` (its own words, not its
    /// whole body).
    pub fn status(url: impl Into<String>, status: u16, message: impl Into<String>) -> Self {
        ModelError::new(url, Kind::Status(status), message)
    }

    /// This error with the server's hint of when to try again (its `Retry-After` header).
    ///
    /// A real header gives whole seconds; the stand-ins give a few milliseconds, so the
    /// examples stay fast.
    #[must_use = "`with_retry_after` returns the error with its hint set"]
    pub fn with_retry_after(self, pause: Duration) -> Self {
        ModelError { retry_after: Some(pause), ..self }
    }

    /// A time limit of a request to `url` ran out: `message` names the limit and its value.
    pub fn timeout(url: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError::new(url, Kind::Timeout, message)
    }

    /// No connection to `url` could be made (refused, no such host), or it broke off.
    pub fn connection(url: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError::new(url, Kind::Connection, message)
    }

    /// The server at `url` answered, but its reply was no use (empty, not JSON, too large);
    /// `retryable` says whether asking again may get a better one.
    pub fn reply(url: impl Into<String>, message: impl Into<String>, retryable: bool) -> Self {
        ModelError::new(url, Kind::Reply { retryable }, message)
    }

    fn new(url: impl Into<String>, kind: Kind, message: impl Into<String>) -> Self {
        ModelError { url: url.into(), kind, message: message.into(), retry_after: None }
    }

    /// The URL that was asked (`stand-in` for the offline stand-ins).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The HTTP status the server answered with, if it answered with an error status.
    pub fn status_code(&self) -> Option<u16> {
        match self.kind {
            Kind::Status(code) => Some(code),
            _ => None,
        }
    }

    /// What went wrong: the server's own message where it sent one.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The pause the server asked for before the next try (its `Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether trying again may help: yes for a rate limit (`429`), a request the server timed
    /// out (`408`), a server error (`500`, `502`, `503`, `504`), an overloaded server (`529`),
    /// a proxy that could not reach the server (`520` to `524`, as Cloudflare sends them), a
    /// timeout, a refused or broken connection and a reply cut short; no for a refused request
    /// (`400`, `401`, `403`, `404`, `422`, any other status), a request that cannot be sent as
    /// it is, or a reply that will not get better (one too large to read, say).
    pub fn retryable(&self) -> bool {
        match self.kind {
            Kind::Status(code) => matches!(code, 408 | 429 | 500 | 502..=504 | 520..=524 | 529),
            Kind::Timeout | Kind::Connection => true,
            Kind::Reply { retryable } => retryable,
            Kind::Request => false,
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Status(code) => {
                // `503 Service Unavailable`; a status with no standard name (`529`) by its number.
                let reason = ureq::http::StatusCode::from_u16(code)
                    .ok()
                    .and_then(|status| status.canonical_reason());
                write!(f, "{} answered {code}", self.url)?;
                if let Some(reason) = reason {
                    write!(f, " {reason}")?;
                }
                write!(f, ": {}", self.message)?;
            }
            _ => write!(f, "{}: {}", self.url, self.message)?,
        }
        match self.retry_after {
            Some(pause) => write!(f, " (retry after {pause:?})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ModelError {}

/// The longest pause a server's `Retry-After` may ask of [`wait`]: a server that asks for more
/// is not retried (the node falls back at once rather than sleep for minutes).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The retry decision of every node that calls a model: its `Node::wait` hook is
/// `support::wait(error, cx)`.
///
/// Finds the [`ModelError`] in `error` or down its `source()` chain, and returns:
///
/// - the server's own pause for an error that says when to come back (a `429` or `503` with
///   `Retry-After`), or `None` if it asks for more than [`MAX_RETRY_AFTER`];
/// - a backoff for other errors worth retrying (`500`, `529`, a timeout, a refused
///   connection, … — see [`ModelError::retryable`]):
///   about 0.5 s after the first failed attempt, then twice as long each time up to 30 s,
///   each pause shortened by a random part of up to half (jitter, so that clients that failed
///   together do not all come back at once);
/// - `None`, no retry (the node goes to its `exec_fallback`), for an error that trying again
///   cannot fix (`400`, `401`, `403`, `404`, `422`);
/// - the same backoff for any other error (a node's [`miniflow::TimedOut`], an error of your
///   own): when in doubt, try again, since `max_retries` bounds the attempts anyway.
///
/// The stand-ins' errors carry a `Retry-After` of a few milliseconds, so offline examples do
/// not sit through backoffs meant for a real server; a node's timeout does back off for real.
///
/// ```ignore
/// impl Node<Store> for Ask {
///     // …prep, exec, post, max_retries as usual, then:
///     fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
///         support::wait(error, cx)
///     }
/// }
/// ```
pub fn wait(error: &miniflow::Error, cx: miniflow::Ctx<'_>) -> Option<Duration> {
    let first: &(dyn std::error::Error + 'static) = &**error;
    let mut chain = std::iter::successors(Some(first), |e| e.source());
    let model_error = chain.find_map(|e| e.downcast_ref::<ModelError>());
    let backoff = miniflow::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    match model_error {
        Some(e) if !e.retryable() => None,
        Some(e) => match e.retry_after() {
            Some(pause) => (pause <= MAX_RETRY_AFTER).then_some(pause),
            None => Some(backoff.jitter(0.5).delay(cx.attempt())),
        },
        None => Some(backoff.jitter(0.5).delay(cx.attempt())),
    }
}

/// What a busy stand-in answers: `503` with a `Retry-After` of 5 ms.
fn overloaded() -> ModelError {
    ModelError::status("stand-in", 503, "the model is overloaded")
        .with_retry_after(Duration::from_millis(5))
}

/// A model whose first `failures` calls fail with a [`ModelError`] (by default a `503` with a
/// `Retry-After` of 5 ms); after that it passes calls on to the model it wraps. `usize::MAX`
/// failures make a model that is always down.
pub struct Flaky {
    inner: Arc<dyn Model>,
    failures: usize,
    error: fn() -> ModelError,
    calls: AtomicUsize,
}

impl Flaky {
    /// Wraps `inner` so that its first `failures` calls fail.
    pub fn new(inner: Arc<dyn Model>, failures: usize) -> Self {
        Flaky { inner, failures, error: overloaded, calls: AtomicUsize::new(0) }
    }

    /// This model failing with `error()` instead, made afresh for each failed call: a rate
    /// limit (`ModelError::status("stand-in", 429, "slow down").with_retry_after(…)`), a
    /// refused key (`401`), ….
    #[must_use = "`failing_with` returns the model with its error set"]
    pub fn failing_with(self, error: fn() -> ModelError) -> Self {
        Flaky { error, ..self }
    }

    /// How many calls were made, failed ones included.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Model for Flaky {
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        if call < self.failures {
            let error = (self.error)();
            return Box::pin(async { Err(error.into()) });
        }
        self.inner.chat(messages)
    }
}

/// A model that takes its time: it waits `delay` before each reply, and when streaming,
/// `delay` before each word. The wait is a timer, so concurrent calls overlap.
pub struct Slow {
    inner: Arc<dyn Model>,
    delay: Duration,
}

impl Slow {
    /// Wraps `inner` so that each reply (or streamed word) comes `delay` later.
    pub fn new(inner: Arc<dyn Model>, delay: Duration) -> Self {
        Slow { inner, delay }
    }
}

impl Model for Slow {
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            smol::Timer::after(self.delay).await;
            self.inner.chat(messages).await
        })
    }

    fn chat_stream<'a>(
        &'a self,
        messages: &'a [Message],
        token: &'a (dyn Fn(&str) + Sync),
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let reply = self.inner.chat(messages).await?;
            // Each word with the space after it, so the pieces join back into the reply.
            for piece in reply.split_inclusive(' ') {
                smol::Timer::after(self.delay).await;
                token(piece);
            }
            Ok(reply)
        })
    }
}

/// An [`Observer`](miniflow::Observer) that prints a streamed answer as it arrives: the text
/// of each `"token"` event (what a node sends with `cx.emit("token", piece)`) right after the
/// last, shown at once rather than when the line ends.
///
/// Any other event first ends the line the tokens were on, so that what follows starts on a
/// line of its own: the next node's start, and also the retry, fallback or failed run after a
/// stream that broke off, whose error would otherwise be printed after the half-written
/// answer on the same line. Call it first in an observer that prints too:
///
/// ```ignore
/// let tokens = TokenPrinter::new();
/// let observer = |event: &Event<'_>| {
///     tokens.event(event); // ends a streamed line before anything else is printed
///     if let Event::Retry { error, .. } = event {
///         println!("retrying: {error}");
///     }
/// };
/// ```
pub struct TokenPrinter<W = std::io::Stdout> {
    /// Where the tokens go, and whether the last thing written was a token whose line is
    /// still open.
    out: Mutex<(W, bool)>,
}

impl TokenPrinter {
    /// A printer to standard output.
    pub fn new() -> Self {
        TokenPrinter::to(std::io::stdout())
    }
}

impl Default for TokenPrinter {
    fn default() -> Self {
        TokenPrinter::new()
    }
}

impl<W: std::io::Write + Send> TokenPrinter<W> {
    /// A printer to `out`.
    pub fn to(out: W) -> Self {
        TokenPrinter { out: Mutex::new((out, false)) }
    }
}

impl<W: std::io::Write + Send> miniflow::Observer for TokenPrinter<W> {
    fn event(&self, event: &miniflow::Event<'_>) {
        let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (out, mid_line) = &mut *out;
        // What cannot be printed is dropped: a closed terminal must not fail the run.
        match event {
            miniflow::Event::Custom { kind: "token", data, .. } => {
                let _ = write!(out, "{data}").and_then(|()| out.flush());
                *mid_line = true;
            }
            _ if *mid_line => {
                let _ = writeln!(out).and_then(|()| out.flush());
                *mid_line = false;
            }
            _ => {}
        }
    }
}

impl<W> fmt::Debug for TokenPrinter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPrinter").finish_non_exhaustive()
    }
}
