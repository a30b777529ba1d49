//! A client for any server that speaks OpenAI's chat-completions protocol.
//!
//! It needs no async runtime: the HTTP client (`ureq`) is blocking, and each request runs on
//! `smol::unblock`'s thread pool while the node's `exec` awaits it, so it works under smol,
//! tokio, `futures::executor::block_on` or anything else. A streamed reply is read on that
//! thread line by line and sent through a channel to the awaiting `exec` piece by piece.
//!
//! A server that ignores `stream: true` and answers a streamed request with one whole
//! completion (a JSON body rather than server-sent events) is understood too: its content
//! arrives as a single piece.
//!
//! A request that is cancelled (its future dropped, say by a node's timeout) stops waiting at
//! once; the blocking read stops at the next line it reads (or when a time limit runs out)
//! and its answer is thrown away.
//!
//! # Time limits
//!
//! Three limits, each with a builder method:
//!
//! - [`connect_timeout`](OpenAi::connect_timeout) (10 s): to open the connection;
//! - [`request_timeout`](OpenAi::request_timeout) (120 s): a whole reply, from the start of
//!   the request (connecting included) to the reply's last byte;
//! - [`idle_timeout`](OpenAi::idle_timeout) (60 s): a streamed reply's longest wait for text,
//!   from the start of the request to its first piece (while the model reads the prompt) and
//!   between two pieces. Only text counts: keep-alive comments and events without text (a
//!   reasoning model's thinking, say) do not restart it. A stream has no limit on its whole
//!   length: a slow model that sends a piece every few seconds is never cut off, and one that
//!   stops sending text is. (A node's own `timeout`, if it sets one, still cuts off the whole
//!   attempt.)
//!
//! # Errors
//!
//! Every error is a [`ModelError`]: it names the URL, and the limit that ran out with its
//! value, or the status and the server's own message (not its whole body), and says whether
//! trying again may help (see [`support::wait`](super::wait)). An empty reply, or one of
//! whitespace only, is an error too, and so is a whole reply larger than [`MAX_REPLY`]. A
//! `Retry-After` header in seconds becomes its [`retry_after`](ModelError::retry_after); its
//! other form, a date, is taken as no hint (`support::wait` then backs off).

use std::fmt;
use std::io::{self, BufRead, BufReader};
use std::pin::pin;
use std::time::Duration;

use futures::future::{BoxFuture, Either, select};
use miniflow::Result;
use serde_json::{Value, json};
use smol::channel::Sender;

use super::{Kind, Message, Model, ModelError};

/// The largest whole reply the client reads, in bytes (10 MiB): a larger one fails, not worth
/// retrying. A streamed reply has no such limit, since it is read piece by piece.
pub const MAX_REPLY: u64 = 10 * 1024 * 1024;

/// A chat-completions client: where the server is, which model to ask, the key if any, and
/// how long to wait for it.
#[derive(Clone)]
pub struct OpenAi {
    agent: ureq::Agent,
    url: String,
    model: String,
    key: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
}

impl OpenAi {
    /// A client for the server at `base_url` (up to and including `/v1`, as in
    /// `http://localhost:11434/v1`), asking `model`, sending `key` as a bearer token if any.
    pub fn new(base_url: &str, model: &str, key: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            // Non-2xx answers come back as responses, so the server's message can go in the
            // error.
            .http_status_as_error(false)
            .build()
            .new_agent();
        OpenAi {
            agent,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model: model.to_string(),
            key,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// The client the environment names: `None` when `MINIFLOW_BASE_URL` is not set.
    ///
    /// # Errors
    ///
    /// When `MINIFLOW_BASE_URL` is set but `MINIFLOW_MODEL` is not.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(base_url) = std::env::var("MINIFLOW_BASE_URL").ok().filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let model = std::env::var("MINIFLOW_MODEL").map_err(|_| {
            "MINIFLOW_BASE_URL is set, so MINIFLOW_MODEL must name the model to ask \
             (for example `MINIFLOW_MODEL=llama3.2`)"
        })?;
        let key = std::env::var("MINIFLOW_API_KEY").ok().filter(|k| !k.is_empty());
        Ok(Some(OpenAi::new(&base_url, &model, key)))
    }

    /// This client, giving up on a connection not made within `limit` (10 s by default).
    #[must_use = "the builder methods return the changed client"]
    pub fn connect_timeout(self, limit: Duration) -> Self {
        OpenAi { connect_timeout: limit, ..self }
    }

    /// This client, giving up on a whole (not streamed) reply that has not fully arrived
    /// `limit` after the request started, connecting included (120 s by default). Streamed
    /// replies have the [`idle_timeout`](OpenAi::idle_timeout) instead.
    #[must_use = "the builder methods return the changed client"]
    pub fn request_timeout(self, limit: Duration) -> Self {
        OpenAi { request_timeout: limit, ..self }
    }

    /// This client, giving up on a streamed reply when no text arrives for `limit` (60 s by
    /// default): from the start of the request to its first piece, or between two. Keep-alive
    /// comments and events without text do not count. However long the whole reply takes, it
    /// goes on as long as its text keeps coming.
    #[must_use = "the builder methods return the changed client"]
    pub fn idle_timeout(self, limit: Duration) -> Self {
        OpenAi { idle_timeout: limit, ..self }
    }

    /// Sends one request and returns the response, or the server's error as an `Err`.
    /// Blocking: call it from `smol::unblock`.
    fn send(
        &self,
        messages: &[Message],
        stream: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, ModelError> {
        let messages: Vec<Value> =
            messages.iter().map(|m| json!({ "role": m.role, "content": m.content })).collect();
        let body = json!({ "model": self.model, "messages": messages, "stream": stream });
        let mut request = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(key) = &self.key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        // A whole reply has one limit for all of it. A stream has one for each silence of the
        // socket (ureq's per-read limit starts again with every read); the wait for text,
        // which a stream of keep-alives would never trip here, is timed in `chat_stream`.
        let config = request.config().timeout_connect(Some(self.connect_timeout));
        let config = match stream {
            false => config.timeout_global(Some(self.request_timeout)),
            true => config.timeout_per_read(Some(self.idle_timeout)),
        };
        let mut response = config.build().send(body.to_string()).map_err(|e| self.failed(e))?;

        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let mut error = ModelError::status(&self.url, status.as_u16(), self.server_message(&text));
        // `Retry-After: 2` asks for two seconds. Its other form, a date, is taken as no hint.
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok());
        if let Some(seconds) = retry_after.and_then(|v| v.trim().parse().ok()) {
            error = error.with_retry_after(Duration::from_secs(seconds));
        }
        Err(error)
    }

    /// One whole reply. Blocking.
    fn complete(&self, messages: &[Message]) -> Result<String, ModelError> {
        self.whole(self.send(messages, false)?)
    }

    /// The content of `response`, a whole completion (at most [`MAX_REPLY`] bytes). Blocking.
    fn whole(&self, mut response: ureq::http::Response<ureq::Body>) -> Result<String, ModelError> {
        // ureq fails once it has read `limit` bytes and the body goes on: one more than the
        // most allowed, so that a reply of exactly `MAX_REPLY` bytes is read.
        let body = response.body_mut().with_config().limit(MAX_REPLY + 1).lossy_utf8(true);
        let text = body.read_to_string().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => self.bad_reply(format!(
                "the reply is larger than {} MiB, the most this client reads",
                MAX_REPLY / (1024 * 1024)
            )),
            other => self.failed(other),
        })?;
        let reply: Value = serde_json::from_str(&text).map_err(|e| {
            self.bad_reply(format!("the reply is not JSON ({e}): {}", self.quote(&text)))
        })?;
        match reply.pointer("/choices/0/message/content") {
            Some(Value::String(content)) if !content.trim().is_empty() => Ok(content.clone()),
            Some(Value::String(_) | Value::Null) => Err(self.empty(&reply["choices"][0])),
            _ => Err(self.bad_reply(format!(
                "the reply has no choices[0].message.content: {}",
                self.quote(&text)
            ))),
        }
    }

    /// A streamed reply: each piece goes to `pieces` as its server-sent event arrives.
    /// Blocking; stops early (without an error) once the receiving side has hung up.
    fn stream(&self, messages: &[Message], pieces: &Sender<String>) -> Result<(), ModelError> {
        let response = self.send(messages, true)?;
        if is_json(&response) {
            // A server that ignored `stream: true`: one whole completion, sent as one piece.
            let _ = pieces.send_blocking(self.whole(response)?);
            return Ok(());
        }
        let lines = BufReader::new(response.into_body().into_reader()).lines();
        // Whether any piece had more than whitespace, and the last event (for its
        // `finish_reason`, should the reply turn out empty).
        let (mut said_something, mut last) = (false, Value::Null);
        for line in lines {
            let line = line.map_err(|e| self.failed(e.into()))?;
            if pieces.is_closed() {
                return Ok(()); // no one is waiting for the rest
            }
            // Events are `data: {json}` lines; blank lines and comments separate them.
            let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                return match said_something {
                    false => Err(self.empty(&last["choices"][0])),
                    true => Ok(()),
                };
            }
            let event: Value = serde_json::from_str(data).map_err(|e| {
                self.bad_reply(format!("a streamed event is not JSON ({e}): {}", self.quote(data)))
            })?;
            if let Some(error) = event.get("error") {
                let message = format!("the model failed while streaming: {}", self.message(error));
                return Err(ModelError::reply(&self.url, message, true));
            }
            let text = event.pointer("/choices/0/delta/content").and_then(Value::as_str);
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                said_something |= !text.trim().is_empty();
                if pieces.send_blocking(text.to_string()).is_err() {
                    return Ok(());
                }
            }
            last = event;
        }
        Err(ModelError::connection(&self.url, "the stream ended without `data: [DONE]`"))
    }

    /// The error for a request that failed before the server's answer was whole: which limit
    /// ran out, or why there was no connection.
    fn failed(&self, error: ureq::Error) -> ModelError {
        use ureq::Timeout;
        let url = &self.url;
        match error {
            ureq::Error::Timeout(Timeout::Connect) => {
                self.ran_out("no connection", "connect", self.connect_timeout)
            }
            ureq::Error::Timeout(Timeout::Global) => {
                self.ran_out("no whole reply", "request", self.request_timeout)
            }
            // The socket went silent: no bytes, so no text either. The same error as
            // `chat_stream`'s own wait for text, which usually runs out first.
            ureq::Error::Timeout(Timeout::PerRead) => self.idle(),
            ureq::Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                ModelError::connection(url, format!("could not connect: {e}"))
            }
            ureq::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                ModelError::connection(url, "the server hung up before the reply was whole")
            }
            ureq::Error::Io(e) => {
                ModelError::connection(url, format!("the connection failed: {e}"))
            }
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                ModelError::connection(url, format!("could not connect: {error}"))
            }
            ureq::Error::Protocol(_) => {
                ModelError::connection(url, format!("the reply was cut short or garbled: {error}"))
            }
            // Another limit of ureq's, which this client does not set.
            ureq::Error::Timeout(other) => ModelError::timeout(url, format!("timed out ({other})")),
            // Anything else is the request's own fault (a bad URL, a key no header can carry)
            // and fails the same way every time.
            other => {
                let message = format!("the request could not be sent: {other}");
                ModelError::new(url, Kind::Request, self.redact(&message))
            }
        }
    }

    /// The error for a time limit that ran out: `what` did not happen within the limit `name`.
    fn ran_out(&self, what: &str, name: &str, limit: Duration) -> ModelError {
        let message =
            format!("{what} within the {name} timeout of {limit:?} (`OpenAi::{name}_timeout`)");
        ModelError::timeout(&self.url, message)
    }

    /// The error for a stream that sent no text for the idle timeout.
    fn idle(&self) -> ModelError {
        self.ran_out("no text arrived", "idle", self.idle_timeout)
    }

    /// The error for a reply that will not get better if asked again.
    fn bad_reply(&self, message: String) -> ModelError {
        ModelError::reply(&self.url, message, false)
    }

    /// The error for a reply with no content, or only whitespace; `choice` may say why
    /// (`finish_reason: length` for a model that spent its tokens thinking).
    fn empty(&self, choice: &Value) -> ModelError {
        let message = match choice["finish_reason"].as_str() {
            Some(reason) => format!("the reply is empty (finish_reason: {})", self.quote(reason)),
            None => "the reply is empty".to_string(),
        };
        ModelError::reply(&self.url, message, true)
    }

    /// What an error body says: the server's message where it has one, else the body itself,
    /// short.
    fn server_message(&self, body: &str) -> String {
        match serde_json::from_str::<Value>(body) {
            Ok(json) => self.message(&json),
            Err(_) if body.trim().is_empty() => "(no message)".to_string(),
            Err(_) => self.quote(body),
        }
    }

    /// The message in a JSON error: `{"error": {"message": "…"}}` as OpenAI sends it, or
    /// `{"error": "…"}`, `{"message": "…"}` or `{"detail": "…"}` as some others do, or the
    /// `msg` of each of FastAPI's validation errors (`{"detail": [{"loc": […], "msg": "…"}]}`),
    /// joined with `; `; the JSON itself, short, if it has none of them.
    fn message(&self, json: &Value) -> String {
        if let Some(Value::Array(details)) = json.get("detail") {
            let msgs: Vec<&str> = details.iter().filter_map(|d| d["msg"].as_str()).collect();
            if !msgs.is_empty() {
                return self.quote(&msgs.join("; "));
            }
        }
        let paths = ["/error/message", "/error", "/message", "/detail", ""];
        let found = paths.iter().find_map(|path| json.pointer(path).and_then(Value::as_str));
        self.quote(&found.map_or_else(|| json.to_string(), str::to_string))
    }

    /// `text` from the server, fit to quote in an error: the key taken out, whitespace
    /// squeezed, at most 200 characters.
    fn quote(&self, text: &str) -> String {
        let text = self.redact(text).split_whitespace().collect::<Vec<_>>().join(" ");
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }

    /// `text`, with the key replaced by `[redacted]` wherever it shows.
    ///
    /// The client's own messages never hold the key, but they quote what the server sent, and
    /// a server or proxy that echoes the request's headers back (as some debugging proxies do)
    /// would put the key into the error, and from there into logs and observer events.
    fn redact(&self, text: &str) -> String {
        match self.key.as_deref().filter(|k| !k.is_empty()) {
            Some(key) => text.replace(key, "[redacted]"),
            None => text.to_string(),
        }
    }
}

impl Model for OpenAi {
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        let (client, messages) = (self.clone(), messages.to_vec());
        Box::pin(async move { Ok(smol::unblock(move || client.complete(&messages)).await?) })
    }

    fn chat_stream<'a>(
        &'a self,
        messages: &'a [Message],
        token: &'a (dyn Fn(&str) + Sync),
    ) -> BoxFuture<'a, Result<String>> {
        let (client, messages) = (self.clone(), messages.to_vec());
        Box::pin(async move {
            let (tx, rx) = smol::channel::unbounded();
            // The reading thread stops when this side hangs up (the future was dropped, or no
            // text came in time).
            let reader = smol::unblock(move || client.stream(&messages, &tx));
            let mut reply = String::new();
            // Each piece must come within the idle timeout of the last (the first, of the
            // request's start). The reading thread sends text only, so keep-alives and events
            // without text leave this wait running.
            loop {
                let quiet = pin!(miniflow::sleep(self.idle_timeout));
                match select(pin!(rx.recv()), quiet).await {
                    Either::Left((Ok(piece), _)) => {
                        token(&piece);
                        reply.push_str(&piece);
                    }
                    Either::Left((Err(_), _)) => break, // the reading thread is done
                    Either::Right(_) => return Err(self.idle().into()),
                }
            }
            reader.await?;
            Ok(reply)
        })
    }
}

impl fmt::Display for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model {} at {}", self.model, self.url) // never the key
    }
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("key", &self.key.as_ref().map(|_| "(set)"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// Whether `response` is a JSON document (a whole completion) rather than server-sent events.
fn is_json(response: &ureq::http::Response<ureq::Body>) -> bool {
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok());
    let media_type = content_type.and_then(|t| t.split(';').next()).unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("application/json") || media_type.ends_with("+json")
}
