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
//! - [`Flaky`] fails its first calls, to show retries;
//! - [`Slow`] waits before answering, and streams word by word, to show concurrency and
//!   streaming.
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

pub mod openai;
pub mod text;
pub mod trace;

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

/// The error a [`Flaky`] model fails with: what a busy server answers.
#[derive(Debug)]
pub struct Overloaded;

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the model is overloaded (HTTP 503), try again later")
    }
}

impl std::error::Error for Overloaded {}

/// A model whose first `failures` calls fail with [`Overloaded`]; after that it passes
/// calls on to the model it wraps. `usize::MAX` failures make a model that is always down.
pub struct Flaky {
    inner: Arc<dyn Model>,
    failures: usize,
    calls: AtomicUsize,
}

impl Flaky {
    /// Wraps `inner` so that its first `failures` calls fail.
    pub fn new(inner: Arc<dyn Model>, failures: usize) -> Self {
        Flaky { inner, failures, calls: AtomicUsize::new(0) }
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
            return Box::pin(async { Err(Overloaded.into()) });
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
