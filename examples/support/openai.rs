//! A client for any server that speaks OpenAI's chat-completions protocol.
//!
//! It needs no async runtime: the HTTP client (`ureq`) is blocking, and each request runs on
//! `smol::unblock`'s thread pool while the node's `exec` awaits it, so it works under smol,
//! tokio, `futures::executor::block_on` or anything else. A streamed reply is read on that
//! thread line by line and sent through a channel to the awaiting `exec` piece by piece.
//!
//! A request that is cancelled (its future dropped, say by a node's timeout) stops waiting at
//! once; the blocking read finishes on its own thread and its answer is thrown away.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use futures::future::BoxFuture;
use miniflow::Result;
use serde_json::{Value, json};

use super::{Message, Model};

/// How long one request may take in all, streamed answers included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A chat-completions client: where the server is, which model to ask, and the key if any.
#[derive(Clone)]
pub struct OpenAi {
    agent: ureq::Agent,
    url: String,
    model: String,
    key: Option<String>,
}

impl OpenAi {
    /// A client for the server at `base_url` (up to and including `/v1`, as in
    /// `http://localhost:11434/v1`), asking `model`, sending `key` as a bearer token if any.
    pub fn new(base_url: &str, model: &str, key: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            // Non-2xx answers come back as responses, so their body can go in the error.
            .http_status_as_error(false)
            .build()
            .new_agent();
        let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        OpenAi { agent, url, model: model.to_string(), key }
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

    /// Sends one request and returns the response, or the server's error as an `Err`.
    /// Blocking: call it from `smol::unblock`.
    fn send(&self, messages: &[Message], stream: bool) -> Result<ureq::http::Response<ureq::Body>> {
        let messages: Vec<Value> =
            messages.iter().map(|m| json!({ "role": m.role, "content": m.content })).collect();
        let body = json!({ "model": self.model, "messages": messages, "stream": stream });
        let mut request = self.agent.post(&self.url).header("Content-Type", "application/json");
        if let Some(key) = &self.key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request.send(body.to_string())?;
        let status = response.status();
        if !status.is_success() {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            return Err(format!("{} answered {status}: {}", self.url, text.trim()).into());
        }
        Ok(response)
    }

    /// One whole reply. Blocking.
    fn complete(&self, messages: &[Message]) -> Result<String> {
        let text = self.send(messages, false)?.body_mut().read_to_string()?;
        let reply: Value = serde_json::from_str(&text)
            .map_err(|e| format!("the model's reply is not JSON ({e}): {text}"))?;
        match reply.pointer("/choices/0/message/content").and_then(Value::as_str) {
            Some(content) => Ok(content.to_string()),
            None => {
                Err(format!("the model's reply has no choices[0].message.content: {text}").into())
            }
        }
    }

    /// A streamed reply: each piece goes to `piece` as its server-sent event arrives.
    /// Blocking; stops early (without an error) when `piece` returns `false`.
    fn stream(&self, messages: &[Message], mut piece: impl FnMut(String) -> bool) -> Result<()> {
        let response = self.send(messages, true)?;
        let lines = BufReader::new(response.into_body().into_reader()).lines();
        for line in lines {
            let line = line?;
            // Events are `data: {json}` lines; blank lines and comments separate them.
            let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
            if data == "[DONE]" {
                return Ok(());
            }
            let event: Value = serde_json::from_str(data)
                .map_err(|e| format!("a streamed event is not JSON ({e}): {data}"))?;
            if let Some(error) = event.get("error") {
                return Err(format!("the model failed while streaming: {error}").into());
            }
            let text = event.pointer("/choices/0/delta/content").and_then(Value::as_str);
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                if !piece(text.to_string()) {
                    return Ok(());
                }
            }
        }
        Err("the model's stream ended without `data: [DONE]`".into())
    }

    /// `error`, with the key replaced by `[redacted]` wherever it shows.
    ///
    /// The client's own messages never hold the key, but they quote what the server sent, and
    /// a server or proxy that echoes the request's headers back (as some debugging proxies do)
    /// would put the key into the error, and from there into logs and observer events.
    fn redact(&self, error: miniflow::Error) -> miniflow::Error {
        let Some(key) = self.key.as_deref().filter(|k| !k.is_empty()) else { return error };
        let first: &(dyn std::error::Error + 'static) = &*error;
        let mut chain = std::iter::successors(Some(first), |e| e.source());
        match chain.any(|e| format!("{e} {e:?}").contains(key)) {
            true => error.to_string().replace(key, "[redacted]").into(),
            false => error,
        }
    }
}

impl Model for OpenAi {
    fn chat<'a>(&'a self, messages: &'a [Message]) -> BoxFuture<'a, Result<String>> {
        let (client, messages) = (self.clone(), messages.to_vec());
        Box::pin(smol::unblock(move || client.complete(&messages).map_err(|e| client.redact(e))))
    }

    fn chat_stream<'a>(
        &'a self,
        messages: &'a [Message],
        token: &'a (dyn Fn(&str) + Sync),
    ) -> BoxFuture<'a, Result<String>> {
        let (client, messages) = (self.clone(), messages.to_vec());
        Box::pin(async move {
            let (tx, rx) = smol::channel::unbounded();
            // The reading thread stops when this side hangs up (the future was dropped).
            let reader = smol::unblock(move || {
                let read = client.stream(&messages, |p| tx.send_blocking(p).is_ok());
                read.map_err(|e| client.redact(e))
            });
            let mut reply = String::new();
            while let Ok(piece) = rx.recv().await {
                token(&piece);
                reply.push_str(&piece);
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
            .finish()
    }
}
