//! The examples' support module: its OpenAI-compatible client against a loopback server
//! that speaks the chat-completions protocol (a whole reply, a streamed reply, server errors
//! — one of which a node's retry gets past — and a broken stream; no network beyond
//! 127.0.0.1), its offline stand-in models, and its helpers that read what a model wrote.

mod loopback;
#[path = "../examples/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopback::{Answer, STREAM_HEAD, chunk, completion, event_chunk, reply, serve};
use miniflow::{Action, Ctx, Event, Flow, Node, Params, Result, RunOptions};
use serde_json::json;
use support::openai::OpenAi;
use support::{Flaky, Message, Model, ModelError, Rules, Scripted, Slow, text};

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
}

#[test]
fn an_http_error_is_a_failed_attempt_that_a_retry_gets_past() -> Result<()> {
    let overloaded = r#"{"error":{"message":"overloaded, try again"}}"#.to_string();
    let (url, seen) = serve(vec![reply("503 Service Unavailable", overloaded), completion("ok")]);
    let mut flow = Flow::new();
    flow.add("ask", Ask { model: Arc::new(client(&url)) });
    let retries = Mutex::new(Vec::new());
    let observer = |event: &Event<'_>| {
        if let Event::Retry { attempt, error, .. } = event {
            retries.lock().unwrap().push((*attempt, error.to_string()));
        }
    };
    let mut log = Vec::new();

    smol::block_on(flow.run_with(&mut log, RunOptions::new().observer(&observer)))?;

    assert_eq!(log, ["ok"]);
    let retries = retries.into_inner().unwrap();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(
        retries[0].1,
        format!(
            "{url}/chat/completions answered 503 Service Unavailable: \
             {{\"error\":{{\"message\":\"overloaded, try again\"}}}}"
        )
    );
    assert_eq!(seen.try_iter().count(), 2, "one failed request and one that succeeded");
    Ok(())
}

#[test]
fn errors_say_what_the_server_sent_and_never_the_key() -> Result<()> {
    let (url, _seen) = serve(vec![
        reply("401 Unauthorized", r#"{"error":"bad key"}"#.to_string()),
        reply("200 OK", "<html>not json</html>".to_string()),
        reply("200 OK", r#"{"choices":[]}"#.to_string()),
    ]);
    let model = client(&url);
    let ask = |model: &OpenAi| smol::block_on(model.chat(&[Message::user("hi")])).unwrap_err();

    let unauthorized = ask(&model).to_string();
    assert_eq!(
        unauthorized,
        format!(r#"{url}/chat/completions answered 401 Unauthorized: {{"error":"bad key"}}"#)
    );
    let not_json = ask(&model).to_string();
    assert!(not_json.starts_with("the model's reply is not JSON ("), "{not_json}");
    assert!(not_json.ends_with("): <html>not json</html>"), "{not_json}");
    assert_eq!(
        ask(&model).to_string(),
        r#"the model's reply has no choices[0].message.content: {"choices":[]}"#
    );

    let shown = format!("{model} {model:?}");
    assert!(!shown.contains("sk-test"), "{shown}");
    assert_eq!(model.to_string(), format!("model test-model at {url}/chat/completions"));
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
    assert_eq!(cut_off.to_string(), "the model's stream ended without `data: [DONE]`");
    let crashed = smol::block_on(model.chat_stream(&messages, &token)).unwrap_err();
    assert_eq!(
        crashed.to_string(),
        r#"the model failed while streaming: {"message":"model crashed"}"#
    );
    assert_eq!(*pieces.lock().unwrap(), "HalfHalf", "the pieces before the break still arrived");
    Ok(())
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
            "stand-in answered 503 Service Unavailable: the model is overloaded, try again later \
             (retry after 5ms)"
        );
    }
    assert_eq!(smol::block_on(model.chat(&hi))?, "fine");
    assert_eq!(model.calls(), 3);
    Ok(())
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
