//! The examples' real-model client never shows its API key: not in its `Display` or `Debug`,
//! not in any error it returns (every status, a bad body, a refused connection, a broken or
//! failing stream, a node's timeout; each `source()` walked to the end), not after those errors
//! pass through a run (`FlowError`, its chain, and every observer event, retries and streamed
//! tokens included), not even when the server echoes the request's `Authorization` header back,
//! as a hostile or misconfigured proxy may. And the key *is* sent, so none of this passes
//! vacuously. Everything talks to a loopback server; no network beyond 127.0.0.1.

mod loopback;
#[path = "../examples/support/mod.rs"]
mod support;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopback::{Answer, STREAM_HEAD, Seen, chunk, completion, event_chunk, last_prompt, reply};
use miniflow::{Action, Ctx, Event, Flow, FlowError, Node, Params, Result, RunOptions};
use serde_json::json;
use support::openai::OpenAi;
use support::{Message, Model, Scripted};

/// The fake key: long and random-looking, so no other text contains it by chance.
const KEY: &str = "sk-test-7Qe2vXk9RzLw4JpT1cHy8NbM3sFdG6aU0oKiV5";

/// What the client puts where an echoed key was.
const REDACTED: &str = "[redacted]";

/// Panics if `text` (shown as `what`) holds the key, any part of its random tail, or a bearer
/// header of a key like it.
fn assert_hidden(what: &str, text: &str) {
    let tail = &KEY["sk-test-".len()..];
    // Any 8 characters in a row of the random tail: a truncated or split key leaks too.
    let leaked = text.contains(KEY)
        || text.contains("Bearer sk-")
        || tail.as_bytes().windows(8).any(|w| text.contains(std::str::from_utf8(w).unwrap()));
    assert!(!leaked, "{what} shows the API key:\n{text}");
}

/// Every way `error` can be shown: `Display`, `Debug` and `{:#?}` of it and of each
/// `source()` down its chain.
fn shown(error: &(dyn std::error::Error + 'static)) -> String {
    let mut all = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        all += &format!("{error}\n{error:?}\n{error:#?}\n");
        next = error.source();
    }
    all
}

/// The client under test, with the fake key, asking the server at `url`.
fn client(url: &str) -> OpenAi {
    OpenAi::new(url, "test-model", Some(KEY.to_string()))
}

/// One way a request can fail: its prompt tells the server which.
struct Case {
    /// The user message, which [`hostile`] answers by.
    prompt: &'static str,
    /// Asked with `chat_stream` rather than `chat`.
    stream: bool,
    /// The server copies the request's `Authorization` header (or the key alone) into what it
    /// sends, so the error must show [`REDACTED`] where the key was.
    echoes: bool,
}

const fn case(prompt: &'static str, stream: bool, echoes: bool) -> Case {
    Case { prompt, stream, echoes }
}

/// Every failure [`hostile`] can answer with.
const CASES: &[Case] = &[
    case("401 plain", false, false),
    case("401", false, true),
    case("403", false, true),
    case("404", false, true),
    case("429", false, true),
    case("500", false, true),
    case("500 text", false, true),
    case("500 long", false, true),
    case("not json", false, true),
    case("no content", false, true),
    case("hang up", false, false),
    case("cut body", false, false),
    case("stream 401", true, true),
    case("stream cut", true, false),
    case("stream broken", true, false),
    case("stream error", true, true),
    case("stream not json", true, true),
];

/// A whole reply whose body is shorter than its `Content-Length`.
const CUT_BODY: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                        Content-Length: 100\r\nConnection: close\r\n\r\n{\"choices\":";

/// A server that fails each request as its prompt names (see [`CASES`]), copying the
/// request's `Authorization` header or key into its answer where the case echoes. `"ok"` gets a
/// good whole reply, `"stream ok"` a good streamed one, `"hang"` no answer for a while.
fn hostile(seen: &Seen) -> Answer {
    let auth = seen.authorization.clone().unwrap_or_default();
    let key = auth.strip_prefix("Bearer ").unwrap_or_default();
    // What an echoing proxy or a debugging endpoint answers: the request's headers, and the
    // key it found in them, in the message the client quotes and beside it (every occurrence
    // must go, not just the first).
    let echo = |status: &'static str| {
        let message = format!("request failed for key {key} (Authorization: {auth})");
        let body = json!({ "error": { "message": message, "key": key,
                                      "request": { "headers": { "Authorization": auth } } } });
        reply(status, body.to_string())
    };
    let raw = |text: String| -> Answer { Box::new(move |s| s.write_all(text.as_bytes()).unwrap()) };
    match last_prompt(seen).as_str() {
        "ok" => completion("fine"),
        "stream ok" => loopback::streamed(&["Hel", "lo"]),
        "401 plain" => reply("401 Unauthorized", r#"{"error":"invalid api key"}"#.to_string()),
        "401" | "stream 401" => echo("401 Unauthorized"),
        "403" => echo("403 Forbidden"),
        "404" => echo("404 Not Found"),
        "429" => echo("429 Too Many Requests"),
        "500" => echo("500 Internal Server Error"),
        // The key where the client cuts a long message short: it must go before the cut, or
        // the cut leaves part of it.
        "500 long" => {
            let message = format!("{} {key} and more", "very long message ".repeat(10).trim());
            let body = json!({ "error": { "message": format!("{message} {}", "x".repeat(100)) } });
            reply("500 Internal Server Error", body.to_string())
        }
        "500 text" => {
            let text = format!("upstream failed for the request with Authorization: {auth}");
            raw(format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            ))
        }
        "not json" => reply("200 OK", format!("<html><pre>Authorization: {auth}</pre></html>")),
        "no content" => reply(
            "200 OK",
            json!({ "choices": [], "debug": { "authorization": auth } }).to_string(),
        ),
        // The connection closes before any answer.
        "hang up" => Box::new(|_| {}),
        "cut body" => raw(CUT_BODY.to_string()),
        // Pieces, then the end of the body without `data: [DONE]`.
        "stream cut" => raw(format!("{STREAM_HEAD}{}{}", event_chunk("Hal"), chunk(""))),
        // Pieces, then the connection drops in the middle of a chunk.
        "stream broken" => raw(format!("{STREAM_HEAD}{}40\r\ndata: {{\"cho", event_chunk("Hal"))),
        "stream error" => {
            let message = format!("model crashed serving key {key}");
            let error = json!({ "error": { "message": message, "api_key": key } });
            raw(format!(
                "{STREAM_HEAD}{}{}",
                event_chunk("Hal"),
                chunk(&format!("data: {error}\n\n"))
            ))
        }
        "stream not json" => raw(format!("{STREAM_HEAD}{}", chunk(&format!("data: <{auth}>\n\n")))),
        // No answer until well after the node's timeout; the server goes on meanwhile.
        "hang" => Box::new(|stream| {
            let held = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                drop(held);
            });
        }),
        other => panic!("no case {other:?}"),
    }
}

/// Asks the client once, as `case` says, and returns its error.
fn fail(model: &OpenAi, case: &Case) -> miniflow::Error {
    let messages = [Message::user(case.prompt)];
    let pieces = Mutex::new(String::new());
    let token = |piece: &str| pieces.lock().unwrap().push_str(piece);
    let result = match case.stream {
        true => smol::block_on(model.chat_stream(&messages, &token)),
        false => smol::block_on(model.chat(&messages)),
    };
    assert_hidden(&format!("the pieces streamed for {:?}", case.prompt), &pieces.lock().unwrap());
    match result {
        Ok(reply) => panic!("{:?} succeeded with {reply:?}", case.prompt),
        Err(error) => error,
    }
}

/// Checks that every request `seen` carried the key as a bearer token, and counts them.
fn all_sent_the_key(seen: &std::sync::mpsc::Receiver<Seen>) -> usize {
    let bearer = format!("Bearer {KEY}");
    let seen: Vec<Seen> = seen.try_iter().collect();
    for request in &seen {
        assert_eq!(request.authorization.as_deref(), Some(&*bearer), "{}", request.request_line);
    }
    seen.len()
}

#[test]
fn the_client_shows_its_model_and_url_but_not_its_key() {
    let model = client("http://127.0.0.1:9/v1");
    let cloned = model.clone();
    for text in [
        format!("{model}"),
        format!("{model:?}"),
        format!("{model:#?}"),
        format!("{cloned:?}"),
        format!("{}", Arc::new(model.clone())),
    ] {
        assert_hidden("the client", &text);
        assert!(text.contains("test-model"), "{text}");
    }
    // The key's presence is shown, so a missing key is easy to tell from a hidden one.
    assert!(format!("{model:?}").contains("(set)"));
    assert!(format!("{:?}", OpenAi::new("http://x/v1", "m", None)).contains("key: None"));
}

#[test]
fn no_error_of_the_client_shows_the_key_even_when_the_server_echoes_it() {
    let (url, seen) = loopback::serve_with(hostile);
    let model = client(&url);
    for case in CASES {
        let error = fail(&model, case);
        let text = shown(&*error);
        assert_hidden(&format!("the error for {:?}", case.prompt), &text);
        // The server's answer did reach the error, with the key taken out.
        assert_eq!(text.contains(REDACTED), case.echoes, "{:?}: {text}", case.prompt);
    }
    // The key was sent every time: an error that never had it to leak proves nothing.
    assert_eq!(all_sent_the_key(&seen), CASES.len());
}

#[test]
fn a_refused_connection_or_an_unusable_key_shows_no_key_either() {
    // A port with nothing listening: bound, then freed.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused = client(&format!("http://127.0.0.1:{port}/v1"));
    let error = smol::block_on(refused.chat(&[Message::user("hi")])).unwrap_err();
    assert_hidden("a refused connection", &shown(&*error));

    // A key no header can carry fails before anything is sent, without quoting it.
    let (url, seen) = loopback::serve_with(hostile);
    for bad in [format!("{KEY}\n"), format!("{KEY}\r\nX-Other: 1"), format!("\u{7f}{KEY}")] {
        let model = OpenAi::new(&url, "test-model", Some(bad));
        assert_hidden("a client with a bad key", &format!("{model} {model:?}"));
        match smol::block_on(model.chat(&[Message::user("ok")])) {
            Ok(reply) => panic!("a bad key was sent, and the server answered {reply:?}"),
            Err(error) => assert_hidden("the error for a bad key", &shown(&*error)),
        }
    }
    assert_eq!(seen.try_iter().count(), 0, "a bad key must not reach the server");
}

/// A node that asks the model about the store's prompt, streaming the reply's pieces as
/// `"token"` events when `stream` is set.
struct Ask {
    model: Arc<dyn Model>,
    stream: bool,
    retries: usize,
    timeout: Option<Duration>,
}

impl Node<String> for Ask {
    type Prep = String;
    type Output = String;

    fn prep(&self, prompt: &String, _: &Params) -> Result<String> {
        Ok(prompt.clone())
    }
    async fn exec(&self, prompt: &String, cx: Ctx<'_>) -> Result<String> {
        let messages = [Message::user(prompt.clone())];
        match self.stream {
            true => self.model.chat_stream(&messages, &|piece: &str| cx.emit("token", piece)).await,
            false => self.model.chat(&messages).await,
        }
    }
    fn post(&self, store: &mut String, _: String, reply: String) -> Result<Action> {
        *store = reply;
        Ok(Action::DEFAULT)
    }
    fn max_retries(&self) -> usize {
        self.retries
    }
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// Runs a one-node flow that asks `ask.model` about `prompt`, and returns its result and
/// every event its observer saw, each shown with `Display` and `Debug`.
fn run(ask: Ask, prompt: &str) -> (Result<Action, FlowError>, String, Vec<String>) {
    let mut flow = Flow::new();
    flow.add("ask", ask);
    let events = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| {
        let mut events = events.lock().unwrap();
        events.push(format!("{event}\n{event:?}\n{event:#?}"));
        // The errors the events carry, down their chains.
        match event {
            Event::Retry { error, .. } | Event::Fallback { error, .. } => {
                events.push(shown(&***error));
            }
            Event::Failed { error, .. } => events.push(shown(*error)),
            _ => {}
        }
    };
    let mut store = prompt.to_string();
    let result = smol::block_on(flow.run_with(&mut store, RunOptions::new().observer(&observer)));
    (result, store, events.into_inner().unwrap())
}

#[test]
fn errors_that_pass_through_a_run_and_its_events_show_no_key() {
    let (url, seen) = loopback::serve_with(hostile);
    let model: Arc<dyn Model> = Arc::new(client(&url));
    const RETRIES: usize = 3;
    for case in CASES {
        let ask =
            Ask { model: model.clone(), stream: case.stream, retries: RETRIES, timeout: None };
        let (result, _, events) = run(ask, case.prompt);
        let error = result.expect_err(case.prompt);
        assert!(
            matches!(&error, FlowError::NodeFailed { attempts: RETRIES, .. }),
            "{:?}: {error:?}",
            case.prompt
        );
        let mut text = shown(&error);
        assert_hidden(&format!("the run's error for {:?}", case.prompt), &text);
        for event in &events {
            assert_hidden(&format!("an event of the run for {:?}", case.prompt), event);
            text += event;
        }
        // The client's errors did reach the events: a retry for each failed attempt but the
        // last, which falls back; the echoed key was taken out of every one.
        let count = |kind: &str| events.iter().filter(|e| e.starts_with(kind)).count();
        assert_eq!(count("`ask` attempt "), RETRIES - 1, "{:?}: {events:#?}", case.prompt);
        assert_eq!(count("`ask` falls back "), 1, "{:?}: {events:#?}", case.prompt);
        let redacted = text.matches(REDACTED).count();
        assert_eq!(redacted > RETRIES, case.echoes, "{:?}: {text}", case.prompt);
    }
    assert_eq!(all_sent_the_key(&seen), CASES.len() * RETRIES);
}

#[test]
fn a_request_that_times_out_and_is_retried_shows_no_key() {
    let (url, seen) = loopback::serve_with(hostile);
    let ask = Ask {
        model: Arc::new(client(&url)),
        stream: false,
        retries: 2,
        timeout: Some(Duration::from_millis(150)),
    };
    let (result, _, events) = run(ask, "hang");

    let error = result.unwrap_err();
    assert_hidden("the run's error for a timeout", &shown(&error));
    assert!(shown(&error).contains("exec timed out after 150ms"), "{}", shown(&error));
    for event in &events {
        assert_hidden("an event of a run that timed out", event);
    }
    assert!(events.iter().any(|e| e.starts_with("`ask` attempt 1 failed: exec timed out")));
    assert_eq!(all_sent_the_key(&seen), 2);
}

#[test]
fn successful_runs_and_their_streamed_tokens_show_no_key() {
    let (url, seen) = loopback::serve_with(hostile);
    let model: Arc<dyn Model> = Arc::new(client(&url));
    for (stream, prompt, answer) in [(false, "ok", "fine"), (true, "stream ok", "Hello")] {
        let ask = Ask { model: model.clone(), stream, retries: 1, timeout: None };
        let (result, store, events) = run(ask, prompt);
        assert_eq!(result.unwrap(), Action::DEFAULT);
        assert_eq!(store, answer);
        for event in &events {
            assert_hidden("an event of a successful run", event);
        }
        if stream {
            let tokens: Vec<&String> = events.iter().filter(|e| e.contains("token")).collect();
            assert_eq!(tokens.len(), 2, "{events:#?}");
            assert!(tokens[0].starts_with("`ask` token: Hel\n"), "{events:#?}");
        }
    }
    assert_eq!(all_sent_the_key(&seen), 2);
}

/// The child half of the next test: with its variables set, asks through
/// `support::model` (so `OpenAi::from_env`) and prints what a user of it would see.
#[test]
fn model_from_the_environment_child() {
    if std::env::var("MINIFLOW_SECRETS_CHILD").as_deref() != Ok("1") {
        return; // only when the next test runs it
    }
    let model = support::model(Scripted::new(["the stand-in answered"])).unwrap();
    println!("ok: {:?}", smol::block_on(model.ask("ok")));
    let error = smol::block_on(model.ask("401")).unwrap_err();
    println!("401: {}", shown(&*error));
}

#[test]
fn the_model_the_environment_names_shows_no_key() {
    // `support::model` reads the environment, which a test cannot set for itself (that is
    // `unsafe`, and forbidden here): it runs in a child process of this test binary.
    let (url, seen) = loopback::serve_with(hostile);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["model_from_the_environment_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("MINIFLOW_SECRETS_CHILD", "1")
        .env("MINIFLOW_BASE_URL", &url)
        .env("MINIFLOW_MODEL", "test-model")
        .env("MINIFLOW_API_KEY", KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_hidden("the child's output", &format!("{stdout}\n{stderr}"));
    // It talked to the server, not the stand-in, and the server's echo reached the error.
    assert!(stderr.contains(&format!("(talking to model test-model at {url}")), "{stderr}");
    assert!(stdout.contains("ok: Ok(\"fine\")"), "{stdout}");
    assert!(stdout.contains(REDACTED), "{stdout}");
    assert_eq!(all_sent_the_key(&seen), 2);
}
