//! A loopback server that speaks just enough of the chat-completions protocol for the tests
//! of the examples' model client: whole replies, streamed replies, errors.

// Each test file uses only some of these.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

/// What the server saw of one request.
#[derive(Debug)]
pub struct Seen {
    pub request_line: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// How the server answers one request: it writes the whole response itself.
pub type Answer = Box<dyn FnOnce(&mut TcpStream) + Send>;

/// A server on a free loopback port that answers one connection per entry of `answers`, in
/// order, and reports each request it read. Returns the base URL (with `/v1`).
pub fn serve(answers: Vec<Answer>) -> (String, mpsc::Receiver<Seen>) {
    let answers = Mutex::new(VecDeque::from(answers));
    serve_with(move |_| answers.lock().unwrap().pop_front().expect("more requests than answers"))
}

/// A server that answers every request with `answer(request)`, for as long as the test runs.
pub fn serve_with(
    answer: impl Fn(&Seen) -> Answer + Send + 'static,
) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (seen_tx, seen_rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let seen = read_request(&mut stream);
            let respond = answer(&seen);
            // The test may have finished with the requests it looked at.
            let _ = seen_tx.send(seen);
            respond(&mut stream);
            // Dropping the stream closes the connection, so no reply is left half-read.
        }
    });
    (url, seen_rx)
}

pub fn read_request(stream: &mut TcpStream) -> Seen {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let (mut length, mut authorization) = (0, None);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Seen {
        request_line: request_line.trim_end().to_string(),
        authorization,
        body: serde_json::from_slice(&body).unwrap(),
    }
}

/// An answer with a whole body.
pub fn reply(status: &'static str, body: String) -> Answer {
    reply_with(status, &[], body)
}

/// An answer with a whole body and extra `headers` (`("Retry-After", "2")`).
pub fn reply_with(status: &'static str, headers: &[(&str, &str)], body: String) -> Answer {
    let headers: String =
        headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    Box::new(move |stream| {
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             {headers}Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    })
}

/// A successful whole reply saying `content`.
pub fn completion(content: &str) -> Answer {
    let body = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content },
                      "finish_reason": "stop" }],
    });
    reply("200 OK", body.to_string())
}

/// One server-sent event carrying `piece`, as a chunk of a chunked body.
pub fn event_chunk(piece: &str) -> String {
    let event = json!({ "object": "chat.completion.chunk",
                        "choices": [{ "index": 0, "delta": { "content": piece } }] });
    chunk(&format!("data: {event}\n\n"))
}

pub fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

pub const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                           Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

/// A successful streamed reply made of `pieces`, ended as the protocol ends it.
pub fn streamed(pieces: &[&str]) -> Answer {
    let events: String = pieces.iter().map(|p| event_chunk(p)).collect();
    let body = format!("{STREAM_HEAD}{events}{}{}", chunk("data: [DONE]\n\n"), chunk(""));
    Box::new(move |stream| stream.write_all(body.as_bytes()).unwrap())
}

/// A successful streamed reply made of `pieces`, each sent on its own after `pause`: the head
/// at once, then a pause before each piece and before the end.
pub fn streamed_slowly(pieces: &[&str], pause: Duration) -> Answer {
    let events: Vec<String> = pieces.iter().map(|p| event_chunk(p)).collect();
    Box::new(move |stream| {
        stream.write_all(STREAM_HEAD.as_bytes()).unwrap();
        for event in events.iter().chain([&format!("{}{}", chunk("data: [DONE]\n\n"), chunk(""))]) {
            stream.flush().unwrap();
            thread::sleep(pause);
            stream.write_all(event.as_bytes()).unwrap();
        }
    })
}

/// A streamed reply that sends its head at once, then each of `chunks` (each a chunk of the
/// body, see [`chunk`]) after `pause`, and stops early once a write fails (the client hung
/// up). The end of the body, if wanted, is one of `chunks`.
pub fn dripped(chunks: Vec<String>, pause: Duration) -> Answer {
    Box::new(move |stream| {
        stream.write_all(STREAM_HEAD.as_bytes()).unwrap();
        for chunk in chunks {
            thread::sleep(pause);
            if stream.write_all(chunk.as_bytes()).and_then(|()| stream.flush()).is_err() {
                return;
            }
        }
    })
}

/// The last user message of a request, as the examples' stand-ins see it.
pub fn last_prompt(seen: &Seen) -> String {
    let messages = seen.body["messages"].as_array().cloned().unwrap_or_default();
    let user = messages.iter().rev().find(|m| m["role"] == "user");
    user.and_then(|m| m["content"].as_str()).unwrap_or("").to_string()
}
