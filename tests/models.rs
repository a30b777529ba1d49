//! The examples' support module: its OpenAI-compatible client against a loopback server
//! that speaks the chat-completions protocol (a whole reply, a streamed reply, server errors
//! — one of which a node's retry gets past — a broken stream, its time limits, the server's
//! message in its errors; no network beyond 127.0.0.1), the retry decisions of
//! `support::wait`, the printing of a streamed answer, its offline stand-in models, and its
//! helpers that read what a model wrote.

mod loopback;
#[path = "../examples/support/mod.rs"]
mod support;

use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopback::{Answer, STREAM_HEAD, chunk, completion, event_chunk, reply, reply_with, serve};
use miniflow::{Action, Ctx, Event, Flow, Node, Observer, Params, Result, RunOptions};
use serde_json::json;
use support::openai::OpenAi;
use support::{Flaky, Message, Model, ModelError, Rules, Scripted, Slow, TokenPrinter, text};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn client(url: &str) -> OpenAi {
    OpenAi::new(url, "test-model", Some("sk-test".to_string()))
}

#[test]
fn a_whole_reply_and_the_request_that_asked_for_it() -> Result<()> {
    let (url, seen) = serve(vec![completion("Paris.")]);
    let model = client(&url);
    let messages = [Message::system("Answer briefly."), Message::user("Capital of France?")];

    let reply = smol::block_on(model.chat(&messages))?;

    assert_eq!(reply, "Paris.");
    let seen = seen.recv()?;
    assert_eq!(seen.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(seen.authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(
        seen.body,
        json!({
            "model": "test-model",
            "stream": false,
            "messages": [
                { "role": "system", "content": "Answer briefly." },
                { "role": "user", "content": "Capital of France?" },
            ],
        })
    );
    Ok(())
}

#[test]
fn no_key_means_no_authorization_header_and_a_trailing_slash_is_fine() -> Result<()> {
    let (url, seen) = serve(vec![completion("ok")]);
    let model = OpenAi::new(&format!("{url}/"), "m", None);
    // Another executor: the client needs none of its own.
    assert_eq!(futures::executor::block_on((&model as &dyn Model).ask("hi"))?, "ok");
    let seen = seen.recv()?;
    assert_eq!(seen.request_line, "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(seen.authorization, None);
    Ok(())
}

#[test]
fn a_streamed_reply_reaches_the_caller_piece_by_piece_as_it_arrives() -> Result<()> {
    // The server sends the first piece, then holds the rest back until the caller has seen
    // it: a client that waited for the whole body would never see it, and the test fails.
    let (first_seen_tx, first_seen_rx) = mpsc::channel::<()>();
    let answer: Answer = Box::new(move |stream| {
        write!(stream, "{STREAM_HEAD}{}", event_chunk("Hel")).unwrap();
        stream.flush().unwrap();
        let held_back = first_seen_rx.recv_timeout(Duration::from_secs(20));
        assert!(held_back.is_ok(), "the first piece did not reach the caller on its own");
        let rest = [event_chunk("lo, "), chunk(": a comment line\n\n"), event_chunk("world")];
        write!(stream, "{}{}{}", rest.concat(), chunk("data: [DONE]\n\n"), chunk("")).unwrap();
    });
    let (url, seen) = serve(vec![answer]);
    let model = client(&url);
    let pieces = Mutex::new(Vec::new());
    let first_seen_tx = Mutex::new(Some(first_seen_tx));
    let token = |piece: &str| {
        pieces.lock().unwrap().push(piece.to_string());
        if let Some(tx) = first_seen_tx.lock().unwrap().take() {
            tx.send(()).unwrap();
        }
    };

    let reply = smol::block_on(model.chat_stream(&[Message::user("Greet the world.")], &token))?;

    assert_eq!(reply, "Hello, world");
    assert_eq!(*pieces.lock().unwrap(), ["Hel", "lo, ", "world"]);
    assert_eq!(seen.recv()?.body["stream"], json!(true));
    Ok(())
}

/// A node that asks the model once per attempt and records what it was told.
struct Ask {
    model: Arc<dyn Model>,
}

impl Node<Vec<String>> for Ask {
    type Prep = ();
    type Output = String;

    fn prep(&self, _: &Vec<String>, _: &Params) -> Result<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<String> {
        self.model.ask("Say ok.").await
    }
    fn post(&self, log: &mut Vec<String>, _: (), answer: String) -> Result<Action> {
        log.push(answer);
        Ok(Action::DEFAULT)
    }
    fn max_retries(&self) -> usize {
        2
    }
    fn wait(&self, error: &miniflow::Error, cx: Ctx<'_>) -> Option<Duration> {
        support::wait(error, cx)
    }
}

#[test]
fn an_http_error_is_a_failed_attempt_that_a_retry_gets_past() -> Result<()> {
    let overloaded = r#"{"error":{"message":"overloaded, try again"}}"#.to_string();
    // `Retry-After: 0`: come back at once (a real server says a second or more).
    let busy = reply_with("503 Service Unavailable", &[("Retry-After", "0")], overloaded);
    let (url, seen) = serve(vec![busy, completion("ok")]);
    let mut flow = Flow::new();
    flow.add("ask", Ask { model: Arc::new(client(&url)) });
    let retries = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| {
        if let Event::Retry { attempt, error, delay, .. } = event {
            retries.lock().unwrap().push((*attempt, error.to_string(), *delay));
        }
    };
    let mut log = Vec::new();

    smol::block_on(flow.run_with(&mut log, RunOptions::new().observer(&observer)))?;

    assert_eq!(log, ["ok"]);
    let retries = retries.into_inner().unwrap();
    let message = format!(
        "{url}/chat/completions answered 503 Service Unavailable: overloaded, try again \
         (retry after 0ns)"
    );
    assert_eq!(retries, [(0, message, Duration::ZERO)]);
    assert_eq!(seen.try_iter().count(), 2, "one failed request and one that succeeded");
    Ok(())
}

#[test]
fn an_error_that_a_retry_cannot_fix_goes_straight_to_the_fallback() -> Result<()> {
    let refused = r#"{"error":{"message":"Incorrect API key provided"}}"#.to_string();
    let (url, seen) = serve(vec![reply("401 Unauthorized", refused)]);
    let mut flow = Flow::new();
    flow.add("ask", Ask { model: Arc::new(client(&url)) });
    let events = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| match event {
        Event::Retry { error, .. } => events.lock().unwrap().push(format!("retry: {error}")),
        Event::Fallback { error, .. } => events.lock().unwrap().push(format!("fallback: {error}")),
        _ => {}
    };

    let error =
        smol::block_on(flow.run_with(&mut Vec::new(), RunOptions::new().observer(&observer)))
            .unwrap_err();

    let refused =
        format!("{url}/chat/completions answered 401 Unauthorized: Incorrect API key provided");
    assert_eq!(*events.lock().unwrap(), [format!("fallback: {refused}")]);
    let model_error =
        std::error::Error::source(&error).and_then(|e| e.downcast_ref::<ModelError>());
    assert_eq!(model_error.map(ModelError::status_code), Some(Some(401)), "{error:?}");
    assert_eq!(seen.try_iter().count(), 1, "no second request");
    Ok(())
}

#[test]
fn errors_quote_the_servers_message_not_its_body() -> Result<()> {
    let openai = json!({ "error": { "message": "Invalid model \"x\"",
                                    "type": "invalid_request_error", "code": "model_not_found" } });
    let page = format!("<html>\n<h1>502 Bad Gateway</h1>\n{}</html>", "<p>nginx</p>\n".repeat(30));
    let (url, _seen) = serve(vec![
        reply("404 Not Found", openai.to_string()),
        reply("401 Unauthorized", r#"{"error":"bad key"}"#.to_string()),
        reply("422 Unprocessable Entity", r#"{"detail":"messages: field required"}"#.to_string()),
        reply("500 Internal Server Error", r#"{"status":"down"}"#.to_string()),
        reply("502 Bad Gateway", page.clone()),
        reply("503 Service Unavailable", String::new()),
        reply("200 OK", "<html>not json</html>".to_string()),
        reply("200 OK", r#"{"choices":[]}"#.to_string()),
    ]);
    let model = client(&url);
    let url = format!("{url}/chat/completions");
    let ask = || -> ModelError {
        let error = smol::block_on(model.chat(&[Message::user("hi")])).unwrap_err();
        *error.downcast::<ModelError>().expect("a ModelError")
    };

    let not_found = ask();
    assert_eq!(
        not_found.to_string(),
        format!(r#"{url} answered 404 Not Found: Invalid model "x""#)
    );
    assert_eq!(
        (not_found.url(), not_found.status_code(), not_found.message()),
        (url.as_str(), Some(404), r#"Invalid model "x""#)
    );
    assert_eq!(ask().to_string(), format!("{url} answered 401 Unauthorized: bad key"));
    assert_eq!(
        ask().to_string(),
        format!("{url} answered 422 Unprocessable Entity: messages: field required")
    );
    // JSON with no message of a known shape, and a page that is not JSON: shown short, on one
    // line (whitespace squeezed, at most 200 characters).
    assert_eq!(
        ask().to_string(),
        format!(r#"{url} answered 500 Internal Server Error: {{"status":"down"}}"#)
    );
    let squeezed = page.split_whitespace().collect::<Vec<_>>().join(" ");
    let bad_gateway = ask();
    assert_eq!(bad_gateway.message(), format!("{}…", &squeezed[..200]));
    assert_eq!(ask().to_string(), format!("{url} answered 503 Service Unavailable: (no message)"));

    let not_json = ask().to_string();
    let prefix = format!("{url}: the reply is not JSON (");
    assert!(not_json.starts_with(&prefix), "{not_json}");
    assert!(not_json.ends_with("): <html>not json</html>"), "{not_json}");
    assert_eq!(
        ask().to_string(),
        format!(r#"{url}: the reply has no choices[0].message.content: {{"choices":[]}}"#)
    );

    let shown = format!("{model} {model:?}");
    assert!(!shown.contains("sk-test"), "{shown}");
    assert_eq!(model.to_string(), format!("model test-model at {url}"));
    Ok(())
}

#[test]
fn an_empty_reply_is_an_error_that_says_so() -> Result<()> {
    let null = json!({ "choices": [{ "message": { "role": "assistant", "content": null },
                                     "finish_reason": "length" }] });
    let only_done: Answer = Box::new(|stream| {
        let done = chunk("data: [DONE]\n\n");
        write!(stream, "{STREAM_HEAD}{}{done}{}", event_chunk(""), chunk("")).unwrap();
    });
    let (url, _seen) = serve(vec![completion(""), reply("200 OK", null.to_string()), only_done]);
    let model = client(&url);
    let hi = [Message::user("hi")];
    let error = |result: Result<String>| -> ModelError {
        *result.unwrap_err().downcast::<ModelError>().expect("a ModelError")
    };

    let empty = error(smol::block_on(model.chat(&hi)));
    assert_eq!(
        empty.to_string(),
        format!("{url}/chat/completions: the reply is empty (finish_reason: stop)")
    );
    assert!(empty.retryable(), "another sample may say something");
    let null = error(smol::block_on(model.chat(&hi)));
    assert_eq!(null.message(), "the reply is empty (finish_reason: length)");
    let pieces = Mutex::new(Vec::<String>::new());
    let token = |piece: &str| pieces.lock().unwrap().push(piece.to_string());
    let streamed = error(smol::block_on(model.chat_stream(&hi, &token)));
    assert_eq!(streamed.message(), "the reply is empty");
    assert!(pieces.lock().unwrap().is_empty());
    Ok(())
}

#[test]
fn a_stream_that_breaks_off_is_an_error_not_a_short_answer() -> Result<()> {
    let cut: Answer = Box::new(|stream| {
        write!(stream, "{STREAM_HEAD}{}{}", event_chunk("Half"), chunk("")).unwrap()
    });
    let failing: Answer = Box::new(|stream| {
        let error = chunk("data: {\"error\":{\"message\":\"model crashed\"}}\n\n");
        write!(stream, "{STREAM_HEAD}{}{error}{}", event_chunk("Half"), chunk("")).unwrap();
    });
    let (url, _seen) = serve(vec![cut, failing]);
    let model = client(&url);
    let messages = [Message::user("hi")];
    let pieces = Mutex::new(String::new());
    let token = |piece: &str| pieces.lock().unwrap().push_str(piece);

    let cut_off = smol::block_on(model.chat_stream(&messages, &token)).unwrap_err();
    assert_eq!(
        cut_off.to_string(),
        format!("{url}/chat/completions: the stream ended without `data: [DONE]`")
    );
    let crashed = smol::block_on(model.chat_stream(&messages, &token)).unwrap_err();
    assert_eq!(
        crashed.to_string(),
        format!("{url}/chat/completions: the model failed while streaming: model crashed")
    );
    for error in [cut_off, crashed] {
        assert!(error.downcast_ref::<ModelError>().is_some_and(ModelError::retryable), "{error}");
    }
    assert_eq!(*pieces.lock().unwrap(), "HalfHalf", "the pieces before the break still arrived");
    Ok(())
}

#[test]
fn a_reply_of_whitespace_only_is_empty() -> Result<()> {
    let (url, _seen) = serve(vec![
        completion("  \n\t "),
        loopback::streamed(&[" ", "\n"]),
        // A server that ignored `stream: true`, and said nothing either.
        completion(" "),
    ]);
    let model = client(&url);
    let hi = [Message::user("hi")];
    let pieces = Mutex::new(Vec::<String>::new());
    let token = |piece: &str| pieces.lock().unwrap().push(piece.to_string());
    let empty = format!("{url}/chat/completions: the reply is empty");

    let whole = model_error(smol::block_on(model.chat(&hi)).unwrap_err());
    assert_eq!(whole.to_string(), format!("{empty} (finish_reason: stop)"));
    let streamed = model_error(smol::block_on(model.chat_stream(&hi, &token)).unwrap_err());
    assert_eq!(streamed.to_string(), empty);
    let unstreamed = model_error(smol::block_on(model.chat_stream(&hi, &token)).unwrap_err());
    assert_eq!(unstreamed.to_string(), format!("{empty} (finish_reason: stop)"));
    for error in [whole, streamed, unstreamed] {
        assert!(error.retryable(), "{error}");
    }
    // The whitespace was streamed as it came; the reply it made up is still refused.
    assert_eq!(*pieces.lock().unwrap(), [" ", "\n"]);
    Ok(())
}

#[test]
fn a_server_that_ignores_stream_true_answers_in_one_piece() -> Result<()> {
    let (url, seen) = serve(vec![completion("Paris.")]);
    let model = client(&url);
    let pieces = Mutex::new(Vec::new());
    let token = |piece: &str| pieces.lock().unwrap().push(piece.to_string());

    let reply = smol::block_on(model.chat_stream(&[Message::user("Capital of France?")], &token))?;

    assert_eq!(reply, "Paris.");
    assert_eq!(*pieces.lock().unwrap(), ["Paris."]);
    assert_eq!(seen.recv()?.body["stream"], json!(true), "it was asked to stream");
    Ok(())
}

#[test]
fn timeouts_overloads_and_proxy_errors_are_worth_retrying() {
    let statuses = [
        ("408 Request Timeout", "408 Request Timeout"),
        ("520 Unknown Error", "520"),
        ("521 Web Server Is Down", "521"),
        ("522 Connection Timed Out", "522"),
        ("523 Origin Is Unreachable", "523"),
        ("524 A Timeout Occurred", "524"),
        ("529 Site Overloaded", "529"),
    ];
    let overloaded = r#"{"error":{"message":"Overloaded"}}"#;
    let (url, _seen) =
        serve(statuses.iter().map(|(s, _)| reply(s, overloaded.to_string())).collect());
    let model = client(&url);
    for (_, shown) in statuses {
        let error = fail(&model);
        // A status with no standard name is shown by its number alone.
        assert_eq!(
            error.to_string(),
            format!("{url}/chat/completions answered {shown}: Overloaded")
        );
        assert_eq!((error.retry_after(), error.retryable()), (None, true), "{error}");
        assert_backoff(decide(error.into()), 0);
    }
    let stand_in = ModelError::status("stand-in", 529, "overloaded").with_retry_after(ms(5));
    assert_eq!(stand_in.to_string(), "stand-in answered 529: overloaded (retry after 5ms)");
    assert_eq!(decide(stand_in.into()), Some(ms(5)));
}

#[test]
fn a_reply_larger_than_the_limit_is_too_large_not_a_failed_request() -> Result<()> {
    // A completion padded with spaces (which JSON allows) to exactly the limit, and one byte
    // more.
    let padded = |size: u64| {
        let body = json!({ "choices": [{ "message": { "content": "big" } }] }).to_string();
        let size = usize::try_from(size).unwrap();
        body.clone() + &" ".repeat(size - body.len())
    };
    let limit = support::openai::MAX_REPLY;
    assert_eq!(limit, 10 * 1024 * 1024);
    let too_large = padded(limit + 1);
    let answer: Answer = Box::new(move |stream| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            too_large.len()
        );
        // The client stops reading at the limit and hangs up: the rest may not go through.
        let _ =
            stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(too_large.as_bytes()));
    });
    let (url, _seen) = serve(vec![reply("200 OK", padded(limit)), answer]);
    let model = client(&url);

    assert_eq!(smol::block_on(model.chat(&[Message::user("hi")]))?, "big");
    let error = fail(&model);
    assert_eq!(
        error.to_string(),
        format!(
            "{url}/chat/completions: the reply is larger than 10 MiB, the most this client reads"
        )
    );
    assert!(!error.retryable(), "the same question gets the same oversized reply");
    assert_eq!(decide(error.into()), None);
    Ok(())
}

#[test]
fn validation_errors_show_each_message() {
    let fastapi = json!({ "detail": [
        { "loc": ["body", "messages"], "msg": "field required", "type": "value_error.missing" },
        { "loc": ["body", "temperature"], "msg": "value is not a valid float",
          "type": "type_error.float" },
    ] });
    let (url, _seen) = serve(vec![reply("422 Unprocessable Entity", fastapi.to_string())]);
    let error = fail(&client(&url));
    assert_eq!(
        error.to_string(),
        format!(
            "{url}/chat/completions answered 422 Unprocessable Entity: field required; \
             value is not a valid float"
        )
    );
    assert!(!error.retryable());
}

// ---------------------------------------------------------------------------------------------
// Time limits
// ---------------------------------------------------------------------------------------------

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An answer that writes `first` and then holds the connection open, silent, until the test
/// sends on the returned sender (or 20 s pass): a server that stopped answering.
fn silent_after(first: String) -> (Answer, mpsc::Sender<()>) {
    let (release, released) = mpsc::channel();
    let answer: Answer = Box::new(move |stream| {
        stream.write_all(first.as_bytes()).unwrap();
        stream.flush().unwrap();
        let _ = released.recv_timeout(secs(20));
    });
    (answer, release)
}

/// The [`ModelError`] in `error`.
fn model_error(error: miniflow::Error) -> ModelError {
    match error.downcast::<ModelError>() {
        Ok(error) => *error,
        Err(other) => panic!("not a ModelError: {other}"),
    }
}

#[test]
fn a_stream_longer_than_the_request_timeout_goes_on_while_its_pieces_keep_coming() -> Result<()> {
    // Six pauses of 50 ms (before each piece and before the end): the stream takes at least
    // 300 ms, three times the request timeout, and no pause comes near the idle timeout.
    let pieces = ["One ", "piece ", "at ", "a ", "time."];
    let (url, _seen) = serve(vec![loopback::streamed_slowly(&pieces, ms(50))]);
    let model = client(&url).request_timeout(ms(100)).idle_timeout(secs(5));
    let seen = Mutex::new(Vec::new());
    let token = |piece: &str| seen.lock().unwrap().push(piece.to_string());

    let reply = smol::block_on(model.chat_stream(&[Message::user("hi")], &token))?;

    assert_eq!(reply, "One piece at a time.");
    assert_eq!(*seen.lock().unwrap(), pieces);
    Ok(())
}

#[test]
fn a_stream_that_goes_silent_fails_naming_the_idle_timeout() -> Result<()> {
    // Silent after its first piece, and silent before it sends anything at all.
    let (after_a_piece, release_1) = silent_after(format!("{STREAM_HEAD}{}", event_chunk("Hel")));
    let (from_the_start, release_2) = silent_after(String::new());
    let (url, _seen) = serve(vec![after_a_piece, from_the_start]);
    let model = client(&url).request_timeout(secs(60)).idle_timeout(ms(200));
    let pieces = Mutex::new(Vec::new());
    let token = |piece: &str| pieces.lock().unwrap().push(piece.to_string());
    let silent = format!(
        "{url}/chat/completions: no text arrived within the idle timeout of 200ms \
         (`OpenAi::idle_timeout`)"
    );

    for release in [release_1, release_2] {
        let error = smol::block_on(model.chat_stream(&[Message::user("hi")], &token));
        let _ = release.send(());
        let error = model_error(error.unwrap_err());
        assert_eq!(error.to_string(), silent);
        assert!(error.retryable());
    }
    assert_eq!(*pieces.lock().unwrap(), ["Hel"]);
    Ok(())
}

/// A `: keep-alive` comment, as a chunk of a streamed body.
fn keep_alive() -> String {
    chunk(": keep-alive\n\n")
}

/// An event with no text: a reasoning model's thinking, as some servers stream it.
fn thinking() -> String {
    let event = json!({ "choices": [{ "index": 0, "delta": { "reasoning_content": "Hmm…" } }] });
    chunk(&format!("data: {event}\n\n"))
}

#[test]
fn keep_alives_and_events_without_text_do_not_hold_off_the_idle_timeout() -> Result<()> {
    // Every 50 ms something arrives, for up to 10 s, but never text (or, in the last case,
    // text once and then no more): the socket is never quiet, the wait for text is.
    let forever = |first: Vec<String>, then: fn() -> String| {
        let chunks = first.into_iter().chain((0..200).map(|_| then())).collect();
        loopback::dripped(chunks, ms(50))
    };
    let (url, seen) = serve(vec![
        forever(vec![], keep_alive),
        forever(vec![], thinking),
        forever(vec![event_chunk("Hel")], thinking),
    ]);
    let model = client(&url).request_timeout(secs(60)).idle_timeout(ms(300));
    let pieces = Mutex::new(Vec::new());
    let token = |piece: &str| pieces.lock().unwrap().push(piece.to_string());
    let idle = format!(
        "{url}/chat/completions: no text arrived within the idle timeout of 300ms \
         (`OpenAi::idle_timeout`)"
    );

    for _ in 0..3 {
        let error = smol::block_on(model.chat_stream(&[Message::user("hi")], &token));
        let error = model_error(error.unwrap_err());
        assert_eq!(error.to_string(), idle);
        assert!(error.retryable());
    }
    assert_eq!(*pieces.lock().unwrap(), ["Hel"]);
    assert_eq!(seen.try_iter().count(), 3);
    Ok(())
}

#[test]
fn a_stream_with_keep_alives_between_its_pieces_completes() -> Result<()> {
    // A piece every 150 ms, a keep-alive and a thought between each two: the stream takes
    // over a second, the idle timeout is 500 ms, and text never stops for that long.
    let words = ["Keep ", "alive ", "and ", "keep ", "going ", "on."];
    let mut chunks = Vec::new();
    for word in words {
        chunks.extend([keep_alive(), thinking(), event_chunk(word)]);
    }
    chunks.extend([chunk("data: [DONE]\n\n"), chunk("")]);
    let (url, _seen) = serve(vec![loopback::dripped(chunks, ms(50))]);
    let model = client(&url).request_timeout(ms(100)).idle_timeout(ms(500));
    let pieces = Mutex::new(Vec::new());
    let token = |piece: &str| pieces.lock().unwrap().push(piece.to_string());

    let reply = smol::block_on(model.chat_stream(&[Message::user("hi")], &token))?;

    assert_eq!(reply, "Keep alive and keep going on.");
    assert_eq!(*pieces.lock().unwrap(), words);
    Ok(())
}

#[test]
fn a_whole_reply_that_takes_too_long_fails_naming_the_request_timeout() -> Result<()> {
    let (silent, release) = silent_after(String::new());
    let (url, _seen) = serve(vec![silent]);
    let model = client(&url).request_timeout(ms(200)).idle_timeout(secs(60));

    let error = smol::block_on(model.chat(&[Message::user("hi")]));
    let _ = release.send(());

    let error = model_error(error.unwrap_err());
    assert_eq!(
        error.to_string(),
        format!(
            "{url}/chat/completions: no whole reply within the request timeout of 200ms \
             (`OpenAi::request_timeout`)"
        )
    );
    assert!(error.retryable());
    Ok(())
}

#[test]
fn a_refused_connection_names_the_url_and_is_worth_retrying() {
    // A port with nothing listening: bound, then freed.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1");

    let error = model_error(smol::block_on(client(&url).chat(&[Message::user("hi")])).unwrap_err());

    // The system's own words for it ("Connection refused (os error 111)" on Linux).
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(error.to_string(), format!("{url}/chat/completions: could not connect: {refused}"));
    assert_eq!((error.status_code(), error.retryable()), (None, true));
    assert_backoff(decide(error.into()), 0);
}

// ---------------------------------------------------------------------------------------------
// Retry decisions (`support::wait`)
// ---------------------------------------------------------------------------------------------

/// A node whose every attempt fails with `error()`, and whose `wait` hook records what
/// `support::wait` decides, then retries at once while the decision is to retry. (A `Ctx`
/// comes only from a run, so this is how a test calls `support::wait`.)
struct Decide<F> {
    error: F,
    attempts: usize,
    decisions: Mutex<Vec<Option<Duration>>>,
}

impl<F: Fn() -> miniflow::Error + Send + Sync> Node<()> for Decide<F> {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &(), _: &Params) -> Result<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Err((self.error)())
    }
    fn post(&self, _: &mut (), _: (), _: ()) -> Result<Action> {
        Ok(Action::DEFAULT)
    }
    fn max_retries(&self) -> usize {
        self.attempts
    }
    fn wait(&self, error: &miniflow::Error, cx: Ctx<'_>) -> Option<Duration> {
        let decision = support::wait(error, cx);
        self.decisions.lock().unwrap().push(decision);
        decision.map(|_| Duration::ZERO)
    }
}

/// What `support::wait` decides after each of `attempts - 1` failed attempts (the last
/// attempt's error goes to the fallback, not to `wait`), each failing with `error()`.
fn decisions(
    error: impl Fn() -> miniflow::Error + Send + Sync + 'static,
    attempts: usize,
) -> Vec<Option<Duration>> {
    let decide = Arc::new(Decide { error, attempts, decisions: Mutex::new(Vec::new()) });
    let mut flow = Flow::new();
    flow.add("decide", decide.clone());
    let _ = smol::block_on(flow.run(&mut ()));
    decide.decisions.lock().unwrap().clone()
}

/// What `support::wait` decides after a first attempt failed with `error`.
fn decide(error: miniflow::Error) -> Option<Duration> {
    let error = Mutex::new(Some(error));
    let decided =
        decisions(move || error.lock().unwrap().take().unwrap_or_else(|| "the retry".into()), 2);
    assert_eq!(decided.len(), 1);
    decided[0]
}

/// Checks that `decision` is the backoff after attempt `attempt` (0-based): 0.5 s doubled
/// `attempt` times, capped at 30 s, less a random part of up to half.
#[track_caller]
fn assert_backoff(decision: Option<Duration>, attempt: u32) {
    let full = (ms(500) * 2u32.pow(attempt)).min(secs(30));
    match decision {
        Some(pause) => assert!(full / 2 <= pause && pause <= full, "{pause:?} after {attempt}"),
        None => panic!("no retry after attempt {attempt}"),
    }
}

/// Asks `model` once for a whole reply and returns its [`ModelError`].
fn fail(model: &OpenAi) -> ModelError {
    model_error(smol::block_on(model.chat(&[Message::user("hi")])).unwrap_err())
}

#[test]
fn wait_takes_the_pause_the_server_asks_for() {
    let slow_down = r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#;
    let limited = |retry_after: &str| {
        reply_with("429 Too Many Requests", &[("Retry-After", retry_after)], slow_down.to_string())
    };
    let (url, _seen) = serve(vec![
        limited("2"),
        reply_with("503 Service Unavailable", &[("retry-after", " 7 ")], String::new()),
        // A date is taken as no hint; a pause over `MAX_RETRY_AFTER` is not waited for.
        limited("Wed, 21 Oct 2015 07:28:00 GMT"),
        limited("3600"),
    ]);
    let model = client(&url);

    let rate_limited = fail(&model);
    assert_eq!(
        rate_limited.to_string(),
        format!(
            "{url}/chat/completions answered 429 Too Many Requests: Rate limit reached \
             (retry after 2s)"
        )
    );
    assert_eq!(rate_limited.retry_after(), Some(secs(2)));
    assert_eq!(decide(rate_limited.into()), Some(secs(2)));
    assert_eq!(decide(fail(&model).into()), Some(secs(7)));
    let dated = fail(&model);
    assert_eq!((dated.retry_after(), dated.retryable()), (None, true));
    assert_backoff(decide(dated.into()), 0);
    let hour = fail(&model);
    assert_eq!((hour.retry_after(), hour.retryable()), (Some(secs(3600)), true));
    assert_eq!(decide(hour.into()), None);
}

#[test]
fn wait_gives_up_on_errors_that_a_retry_cannot_fix() {
    let refused = [
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "422 Unprocessable Entity",
    ];
    let (url, seen) = serve(refused.iter().map(|s| reply(s, "{}".to_string())).collect());
    let model = client(&url);
    for status in refused {
        let error = fail(&model);
        assert!(error.to_string().contains(status), "{error}");
        assert!(!error.retryable(), "{error}");
        assert_eq!(decide(error.into()), None, "{status}");
    }
    assert_eq!(seen.try_iter().count(), refused.len());
}

#[test]
fn wait_backs_off_from_other_server_errors() {
    let busy = [
        "429 Too Many Requests",
        "500 Internal Server Error",
        "502 Bad Gateway",
        "503 Service Unavailable",
        "504 Gateway Timeout",
    ];
    let (url, _seen) = serve(busy.iter().map(|s| reply(s, "{}".to_string())).collect());
    let model = client(&url);
    for status in busy {
        let error = fail(&model);
        assert!(error.to_string().contains(status), "{error}");
        assert_eq!((error.retry_after(), error.retryable()), (None, true), "{error}");
        assert_backoff(decide(error.into()), 0);
    }
    // Twice as long after each further attempt, up to the cap.
    let overloaded = || ModelError::status("stand-in", 503, "overloaded").into();
    let pauses = decisions(overloaded, 10);
    assert_eq!(pauses.len(), 9);
    for (attempt, pause) in (0..).zip(pauses) {
        assert_backoff(pause, attempt);
    }
}

/// An error of the caller's own that wraps the model's.
#[derive(Debug)]
struct Wrapped(ModelError);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the summary step failed")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn wait_finds_the_model_error_down_the_chain_and_backs_off_from_unknown_errors() {
    let refused = || Wrapped(ModelError::status("stand-in", 401, "bad key")).into();
    assert_eq!(decisions(refused, 3), [None]);
    let limited =
        || Wrapped(ModelError::status("stand-in", 429, "wait").with_retry_after(ms(5))).into();
    assert_eq!(decisions(limited, 3), [Some(ms(5)), Some(ms(5))]);
    // Not a model's error (a node's timeout, a parse error of your own): back off all the same.
    let unknown = decisions(|| "could not read the reply".into(), 3);
    assert_eq!(unknown.len(), 2);
    assert_backoff(unknown[0], 0);
    assert_backoff(unknown[1], 1);
}

// ---------------------------------------------------------------------------------------------
// Printing a streamed answer
// ---------------------------------------------------------------------------------------------

/// A node that streams the model's answer as `"token"` events, trying twice.
struct Stream {
    model: Arc<dyn Model>,
}

impl Node<String> for Stream {
    type Prep = ();
    type Output = String;

    fn prep(&self, _: &String, _: &Params) -> Result<()> {
        Ok(())
    }
    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<String> {
        let on_token = move |piece: &str| cx.emit("token", piece);
        self.model.chat_stream(&[Message::user("Greet.")], &on_token).await
    }
    fn post(&self, store: &mut String, _: (), answer: String) -> Result<Action> {
        *store = answer;
        Ok(Action::DEFAULT)
    }
    fn max_retries(&self) -> usize {
        2
    }
    fn wait(&self, _: &miniflow::Error, _: Ctx<'_>) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

/// A terminal that tests can read: what a [`TokenPrinter`] and an observer print, in order.
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Write for Screen {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Runs a [`Stream`] node against `answers`, printing tokens with a [`TokenPrinter`] and, on
/// the same screen, a line for each retry, the fallback and the run's end, as an example's
/// observer would. Returns the server's URL and the screen.
fn print_run(answers: Vec<Answer>) -> (String, String) {
    let (url, _seen) = serve(answers);
    let mut flow = Flow::new();
    flow.add("write", Stream { model: Arc::new(client(&url)) });
    let screen = Screen::default();
    let tokens = TokenPrinter::to(screen.clone());
    let observer = |event: &Event<'_>| {
        tokens.event(event);
        let line = match event {
            Event::Retry { error, .. } => format!("retry: {error}\n"),
            Event::Fallback { .. } => "fallback\n".to_string(),
            Event::Finished { .. } => "finished\n".to_string(),
            Event::Failed { .. } => "failed\n".to_string(),
            _ => return,
        };
        screen.clone().write_all(line.as_bytes()).unwrap();
    };
    let _ =
        smol::block_on(flow.run_with(&mut String::new(), RunOptions::new().observer(&observer)));
    (url, screen.text())
}

#[test]
fn a_stream_that_breaks_off_ends_its_line_before_the_error_is_shown() {
    let cut = || -> Answer {
        Box::new(|stream| {
            write!(stream, "{STREAM_HEAD}{}{}", event_chunk("Hel"), chunk("")).unwrap();
        })
    };
    let broke_off = "chat/completions: the stream ended without `data: [DONE]`";

    let (url, retried) = print_run(vec![cut(), loopback::streamed(&["Hel", "lo", "!"])]);
    assert_eq!(retried, format!("Hel\nretry: {url}/{broke_off}\nHello!\nfinished\n"));

    let (url, failed) = print_run(vec![cut(), cut()]);
    assert_eq!(failed, format!("Hel\nretry: {url}/{broke_off}\nHel\nfallback\nfailed\n"));
}

#[test]
fn tokens_print_on_one_line_and_other_events_end_it() {
    let screen = Screen::default();
    let tokens = TokenPrinter::to(screen.clone());
    let (url, _seen) = serve(vec![loopback::streamed(&["One ", "line."])]);
    let mut flow = Flow::new();
    flow.add("write", Stream { model: Arc::new(client(&url)) });
    let mut store = String::new();

    smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&tokens))).unwrap();

    assert_eq!(store, "One line.");
    assert_eq!(screen.text(), "One line.\n", "no line of its own before, one newline after");
}

// ---------------------------------------------------------------------------------------------
// The stand-ins
// ---------------------------------------------------------------------------------------------

#[test]
fn scripted_replies_come_in_order_and_a_dropped_call_takes_none() -> Result<()> {
    let model = Scripted::new(["one", "two"]);
    let hi = [Message::user("hi")];
    drop(model.chat(&hi)); // made but never polled: cancelled before it asked
    assert_eq!(smol::block_on(model.chat(&hi))?, "one");
    assert_eq!(smol::block_on(model.chat(&hi))?, "two");
    let spent = smol::block_on(model.chat(&hi)).unwrap_err();
    assert_eq!(spent.to_string(), "the scripted model has no replies left");
    Ok(())
}

#[test]
fn rules_answer_the_last_user_message() -> Result<()> {
    let model = Rules::new(|prompt: &str| prompt.to_uppercase());
    let chat = [Message::user("first"), Message::assistant("FIRST"), Message::user("second")];
    assert_eq!(smol::block_on(model.chat(&chat))?, "SECOND");
    Ok(())
}

#[test]
fn flaky_fails_its_first_calls_then_passes_them_on() -> Result<()> {
    let model = Flaky::new(Arc::new(Rules::new(|_: &str| "fine".to_string())), 2);
    let hi = [Message::user("hi")];
    for _ in 0..2 {
        let err = smol::block_on(model.chat(&hi)).unwrap_err();
        let err = err.downcast_ref::<ModelError>().expect("a ModelError");
        assert_eq!((err.status_code(), err.retry_after()), (Some(503), Some(ms(5))));
        assert_eq!(
            err.to_string(),
            "stand-in answered 503 Service Unavailable: the model is overloaded (retry after 5ms)"
        );
        assert!(err.retryable());
    }
    assert_eq!(smol::block_on(model.chat(&hi))?, "fine");
    assert_eq!(model.calls(), 3);
    Ok(())
}

#[test]
fn flaky_fails_with_the_error_it_is_given() {
    let refused = || ModelError::status("stand-in", 401, "invalid API key");
    let model = Flaky::new(Arc::new(Rules::new(|_: &str| "fine".to_string())), usize::MAX)
        .failing_with(refused);
    let err = smol::block_on(model.chat(&[Message::user("hi")])).unwrap_err();
    assert_eq!(err.to_string(), "stand-in answered 401 Unauthorized: invalid API key");
    assert_eq!(decide(err), None, "a refused key is not retried");
}

#[test]
fn slow_streams_word_by_word_and_the_words_join_into_the_reply() -> Result<()> {
    let inner = Arc::new(Rules::new(|_: &str| "three little words".to_string()));
    let model = Slow::new(inner, Duration::from_millis(1));
    let pieces = Mutex::new(Vec::new());
    let token = |piece: &str| pieces.lock().unwrap().push(piece.to_string());
    let reply = futures::executor::block_on(model.chat_stream(&[Message::user("hi")], &token))?;
    assert_eq!(reply, "three little words");
    assert_eq!(*pieces.lock().unwrap(), ["three ", "little ", "words"]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading replies
// ---------------------------------------------------------------------------------------------

#[test]
fn body_drops_thinking_and_code_fences() {
    let reply = "<think>\nmaybe action: search?\n</think>\n```yaml\naction: answer\n```\n";
    assert_eq!(text::body(reply), "action: answer");
    assert_eq!(text::body("<think>never closed"), "");
    assert_eq!(text::body("  plain  "), "plain");
}

#[test]
fn field_finds_a_key_in_any_case_and_markdown() {
    let reply = "Sure!\n**Action:** `search`\nquery: \"Ferris the crab\"\n";
    assert_eq!(text::field(reply, "action").as_deref(), Some("search"));
    assert_eq!(text::field(reply, "QUERY").as_deref(), Some("Ferris the crab"));
    assert_eq!(text::field(reply, "reason"), None);
    // Thinking is not the answer: the field comes from what follows it.
    let thinking = "<think>action: search</think>\naction: answer";
    assert_eq!(text::field(thinking, "action").as_deref(), Some("answer"));
}

#[test]
fn word_is_the_first_word_lowercase_without_punctuation() {
    assert_eq!(text::word("Answer."), "answer");
    assert_eq!(text::word("  approve, it is safe"), "approve");
    assert_eq!(text::word(""), "");
}

#[test]
fn lines_keep_what_the_reply_says() {
    let reply = "Here are the two characters:\n\n1. Rick Blaine\n- \"Ilsa Lund\"\n* **Victor**\n";
    assert_eq!(text::lines(reply), ["Rick Blaine", "Ilsa Lund", "Victor"]);
    // Only a list number goes, not a number that is part of the line.
    assert_eq!(
        text::lines("2) 100 years ago\n1984 was a year"),
        ["100 years ago", "1984 was a year"]
    );
}
