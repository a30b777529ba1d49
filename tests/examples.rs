//! Every example, run as a newcomer runs it (`cargo run --example NAME`), with the key lines of
//! its output checked, so an example cannot silently rot. Offline examples answer through their
//! stand-in models; the last tests point one at a loopback chat-completions server instead.

mod loopback;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The variables that would send the examples to a real model: cleared, so the tests run
/// offline whatever the developer's shell has set.
const MODEL_VARS: [&str; 3] = ["MINIFLOW_BASE_URL", "MINIFLOW_MODEL", "MINIFLOW_API_KEY"];

/// `cargo run --example name -- args`, with stdin from `stdin` (a file of the repository) or
/// empty, and `env` set on top of a cleared model configuration.
fn cargo_run(name: &str, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(root).args(["run", "--quiet", "--example", name, "--"]).args(args);
    for var in MODEL_VARS {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.stdin(match stdin {
        Some(file) => std::fs::File::open(root.join(file)).expect("the example's input").into(),
        None => Stdio::null(),
    });
    command.output().expect("cargo runs")
}

/// Runs the example, expects it to succeed, and returns what it printed.
fn run(name: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = cargo_run(name, args, stdin, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Checks that each of `expected` is a whole line of `output` (ignoring trailing spaces), in
/// this order.
#[track_caller]
fn assert_lines(output: &str, expected: &[&str]) {
    let mut lines = output.lines().map(str::trim_end);
    for want in expected {
        assert!(
            lines.any(|line| line == *want),
            "expected the line {want:?} (after the lines before it) in:\n{output}"
        );
    }
}

#[test]
fn hello() {
    let out = run("hello", &[], None);
    assert_lines(
        &out,
        &[
            "prep: reading the question from the store",
            "exec: answering (attempt 1)",
            "post: writing the answer to the store",
            "question: What is the answer to life, the universe and everything?",
            "answer:   42",
            "the flow ended with action \"default\"",
        ],
    );
}

#[test]
fn agent() {
    let out = run("agent", &[], None);
    assert_lines(
        &out,
        &[
            "decide [attempt 1]: could not read the reply: expected a line `action: search` or `action: answer`, got \"Good question! I think we should first f…\"",
            "decide [attempt 2]: search \"Ferris crab mascot\" (I need to know which language has Ferris as its mascot.)",
            "search: \"Ferris crab mascot\" found Ferris, Crabs",
            "search: \"Rust history 1.0 release\" found Rust 1.0, Rust history",
            "decide [attempt 1]: answer (The notes cover both halves of the question.)",
            "searches: Ferris crab mascot | Rust history 1.0 release",
            "answer: Ferris the crab is the mascot of Rust, which Graydon Hoare started in 2006 as a personal project. Rust 1.0 was released on 15 May 2015.",
        ],
    );
}

#[test]
fn batch() {
    let out = run("batch", &[], None);
    assert_lines(
        &out,
        &[
            "text: Small steps make great journeys.",
            "1. French: Les petites étapes font les grands voyages.",
            "3. German: Kleine Schritte machen große Reisen.",
            "8. Japanese: 小さな一歩が大きな旅になる。",
            "one at a time, in input order: yes",
            "four at once, in input order: yes",
        ],
    );
}

#[test]
fn map_reduce() {
    let out = run("map-reduce", &[], None);
    assert_lines(
        &out,
        &[
            "Ana Lima: qualified (six years of Rust and Go services run in production)",
            "Ben Okafor: not qualified (a designer with no backend experience)",
            "Chen Wei: qualified (five years of C++ and Rust, and owns a production system)",
            "Dara Novak: not qualified (no professional experience yet, only side projects)",
            "Eli Brandt: qualified (five years of Go and of running production services)",
            "Farah Haddad: not qualified (works in SQL and Python and runs no services)",
            // The failed sub-runs, by path, in input order: one in prep, one after its retries.
            "Gus Ortiz: not judged: node `evaluate[6]/judge` failed in prep: the file is empty",
            "Hana Sato: not judged: node `evaluate[7]/judge` failed in exec after 3 attempts: the answer says neither yes nor no after `qualified:`: \"qualified: maybe\\nreason: the résumé gives no years per language.\"",
            "3 of the 6 judged candidates qualify: Ana Lima, Chen Wei, Eli Brandt; 2 résumés could not be judged",
        ],
    );
}

#[test]
fn nested_batch() {
    let out = run("nested-batch", &[], None);
    assert_lines(
        &out,
        &[
            "class 3a",
            "  Ada   92 88 95 90  average 91.25",
            "  class average 80.1875",
            "class 3b",
            "  Emil  88 84 90 86  average 87",
            "  class average 81.55",
            "class 4a",
            "  Max   84 88 86 87  average 86.25",
            "  class average 79.5",
        ],
    );
}

#[test]
fn retry_fallback() {
    let out = run("retry-fallback", &[], None);
    let overloaded =
        "stand-in answered 503 Service Unavailable: the model is overloaded (retry after 5ms)";
    // The server's pause, exactly, each time it gives one; the node's own backoff otherwise.
    let failed_1 = format!("  observer: `ask` attempt 1 failed: {overloaded}; next in 5ms");
    let failed_2 = format!("  observer: `ask` attempt 2 failed: {overloaded}; next in 5ms");
    assert_lines(
        &out,
        &[
            "1. a model that is overloaded twice, then answers",
            &failed_1,
            &failed_2,
            "  exec: attempt 3 of 3",
            "  answer (model): It stops calling a failing service for a while, so the service can recover and callers fail fast instead of waiting.",
            "  the model was called 3 times",
            "2. a model that is always down",
            "  fallback: failed after 3 of 3 attempts; answering with a canned reply",
            "  the model was called 3 times",
            "3. a model slower than the node's 50 ms timeout",
            "  observer: `ask` attempt 1 failed: exec timed out after 50ms; next in 5ms",
            "  observer: `ask` attempt 2 failed: exec timed out after 50ms; next in 10ms",
            "  fallback: timed out after 3 of 3 attempts; answering with a canned reply",
            "4. a rate-limited model that says when to come back",
            "  exec: attempt 1 of 3",
            "  observer: `ask` attempt 1 failed: stand-in answered 429 Too Many Requests: slow down (retry after 30ms); next in 30ms",
            "  exec: attempt 2 of 3",
            "  answer (model): It stops calling a failing service for a while, so the service can recover and callers fail fast instead of waiting.",
            "5. a model that refuses the API key",
            "  exec: attempt 1 of 3",
            "  fallback: failed after 1 of 3 attempts; answering with a canned reply",
            "  answer (fallback): The assistant cannot answer right now. Please try again in a few minutes.",
        ],
    );
}

#[test]
fn supervisor() {
    // Both runs, up to the second answer.
    let first = [
        "question: How do I get rid of limescale in my electric kettle?",
        "agent/decide: search \"kettle limescale descale vinegar\"",
        "agent/search: found 3 documents",
        "agent/decide: answer now",
        "agent/answer: Fill the kettle with vinegar, add a splash of bleach to make it work faster, boil it and leave it overnight.",
        "supervisor: rejected, back to the agent: Mixing bleach with vinegar releases toxic chlorine gas; the answer must never suggest it.",
        "agent/decide: answer now",
    ];
    let out = run("supervisor", &[], None);
    let approved = [
        "agent/answer: Fill the kettle halfway with equal parts white vinegar and water, boil it and leave it for an hour. Then empty it, rinse it, and boil clean water once to get rid of the taste.",
        "supervisor: approved: Safe, and it follows the notes.",
        "the run ended with \"approved\" after 1 rejection(s)",
    ];
    assert_lines(&out, &[&first[..], &approved].concat());

    // `--stall`: the model hangs instead of writing the second answer, the agent's deadline
    // ends the run there, and the example reports it, then what the store kept, as its last
    // lines (and succeeds: `run` checks that).
    let out = run("supervisor", &["--stall"], None);
    let timed_out = [
        "the agent ran out of time: node `agent` did not finish within its time limit of 200ms",
        "left in the store: notes: 3, answer: None",
    ];
    assert_lines(&out, &[&first[..], &timed_out].concat());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[lines.len().saturating_sub(2)..], timed_out, "{out}");
}

#[test]
fn multi_agent() {
    let out = run("multi-agent", &[], None);
    assert_lines(
        &out,
        &[
            "the hinter's secret word: \"lighthouse\"",
            "hinter  > hint 1: It is a tall, narrow building that stands by the sea.",
            "guesser > Tower",
            "hinter  > no, that is not it",
            "hinter  > hint 3: A keeper once lived in it and kept the lamp at its top burning.",
            "guesser > Lighthouse",
            "hinter  > yes! the word was \"lighthouse\"",
            "the hinter ended with \"won\", the guesser with \"won\", after 3 hints and 3 guesses",
        ],
    );
}

/// The chat's turns, whether they come from `--script` or from a pipe.
const CHAT: [&str; 6] = [
    "you> Hi! My name is Ada.",
    "bot> Nice to meet you, Ada! What shall we talk about?",
    "you> What is my name?",
    "bot> Your name is Ada; you told me in message 1.",
    "you> exit",
    "Goodbye! (3 turns)",
];

#[test]
fn chat_from_a_script_file() {
    assert_lines(&run("chat", &["--script", "examples/chat.script"], None), &CHAT);
}

#[test]
fn chat_from_a_pipe() {
    assert_lines(&run("chat", &[], Some("examples/chat.script")), &CHAT);
}

#[test]
fn chat_with_no_input_says_goodbye() {
    assert_eq!(run("chat", &[], None), "Goodbye! (0 turns)\n");
}

#[test]
fn soundtrack() {
    let out = run("soundtrack", &[], None);
    assert_lines(
        &out,
        &[
            "movie: Casablanca",
            "song: Letters of Transit",
            "sung by: Rick Blaine and Ilsa Lund",
            "BOTH: Letters of transit, signed in the rain,",
            "Vera Strand: A tidy AABB scheme and a chorus that resolves exactly where the ear expects. Competent, if a little too polite.",
            "Ruth Calder: Rhyming 'key' with 'me' should be a crime. Two stars, one of them for the fog.",
        ],
    );
    // The trace table: one row per node, the parallel branches under the Parallel node.
    let rows: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for node in ["ideas/song", "ideas/characters", "ideas", "lyrics", "critics"] {
        assert!(rows.contains(&node), "no trace row for {node} in:\n{out}");
    }
}

#[test]
fn durable() {
    let out = run("durable", &[], None);
    assert_lines(
        &out,
        &[
            "process 1: a worker takes order A-1001, and will crash in `checkout/receipt`",
            "  no checkpoint: a new order",
            "  reserve   2 × Aurora desk lamp held in the warehouse",
            "  -- saved: `checkout` runs next",
            "  quote     49.98 + 4.99 shipping = 54.97",
            "  -- saved: `checkout/charge` runs next",
            "  charge    card charged 54.97 (pay_A-1001)",
            "  -- saved: `checkout/receipt` runs next",
            "  receipt   the power goes out!",
            "process 1 died in the middle of the run (exit status: 1)",
            "process 2: a new worker starts, on the same database",
            "  found a checkpoint: resuming at `checkout/receipt`",
            "  receipt   emailed: 54.97 paid",
            "  -- saved: `ship` runs next",
            "  ship      handed to the carrier, tracking TRK-A-1001",
            "  the run finished; its checkpoint is discarded",
            "order A-1001: `charge` finished 1 time (pay_A-1001)",
            "order A-1001: receipt sent: true",
            "order A-1001: shipped, tracking TRK-A-1001",
            "the payment service's own record for order A-1001:",
            "  charges: 1, repeats answered without charging: 0",
        ],
    );
    // The second process resumed inside the nested flow: nothing before the crash ran twice.
    for node in ["  reserve ", "  quote ", "  charge ", "  ship "] {
        let runs = out.lines().filter(|line| line.starts_with(node)).count();
        assert_eq!(runs, 1, "{node:?} ran {runs} times in:\n{out}");
    }
    assert_eq!(out.lines().filter(|line| line.starts_with("  receipt ")).count(), 2, "{out}");
}

#[test]
fn human_in_the_loop() {
    let out = run("human-in-the-loop", &[], None);
    assert_lines(
        &out,
        &[
            "session 1: a customer email arrives",
            "  drafted reply v1",
            "  notified the reviewer: draft v1 awaits review",
            "  paused at `ask_human`, ticket saved",
            "session 2: the reviewer reads draft v1",
            "  reviewer (scripted): later",
            "  paused at `ask_human`, ticket saved",
            "session 3: the reviewer reads draft v1",
            "  reviewer (scripted): revise: Say when the refund will arrive (within 5 business days), and that she does not need to send the lamp back.",
            "  drafted reply v2",
            "  notified the reviewer: draft v2 awaits review",
            "  paused at `ask_human`, ticket saved",
            "session 4: the reviewer reads draft v2",
            "  reviewer (scripted): approve",
            "  sent reply v2 to the customer",
            "the flow ended with \"sent\" after 4 sessions and 2 drafts",
            "notifications sent: 2, for 2 drafts",
            "sent: true",
        ],
    );
    // Resuming at `ask_human` re-runs none of the nodes before it: one notification per draft,
    // however many sessions a draft waits through.
    let notified = |draft: &str| out.lines().filter(|line| line.trim() == draft).count();
    assert_eq!(notified("notified the reviewer: draft v1 awaits review"), 1, "{out}");
    assert_eq!(notified("notified the reviewer: draft v2 awaits review"), 1, "{out}");
    assert_eq!(out.lines().filter(|line| line.contains("paused at")).count(), 3, "{out}");
}

#[test]
fn observe() {
    let out = run("observe", &[], None);
    assert_lines(
        &out,
        &[
            "[draft] started",
            "[draft/write] started",
            "A honeybee that finds flowers comes home and dances. Its waggle run points toward the food, measured against the sun, and its length tells how far away it is. Sisters follow the steps, then fly straight there, so one good find feeds the whole hive.",
            "[title] started",
            "title: The Waggle Dance",
            "the last attempt's tokens add up to the stored text: true",
            "flowchart TD",
            "    n_start((\"start\")) --> n_0",
            "    subgraph n_0[\"draft\"]",
            "        n_0_0 --> n_0_1",
            "    n_0 --> n_1",
        ],
    );
}

#[test]
fn observe_streams_a_real_servers_answer() {
    // The server answers like a model would: the paragraph streamed in pieces, the outline
    // and the title whole, with the decoration real models add.
    let (url, seen) = loopback::serve_with(|request| {
        let prompt = loopback::last_prompt(request);
        if request.body["stream"] == true {
            loopback::streamed(&["Bees ", "dance ", "to share ", "where food is."])
        } else if prompt.contains("outline") {
            loopback::completion("```\n- Dance\n- Direction\n- Distance\n```")
        } else {
            loopback::completion("**Bee Talk**")
        }
    });
    let env = [("MINIFLOW_BASE_URL", url.as_str()), ("MINIFLOW_MODEL", "tiny")];
    let out = cargo_run("observe", &[], None, &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_lines(
        &stdout,
        &[
            "[draft/write] started",
            "Bees dance to share where food is.",
            "title: Bee Talk",
            "outline: Dance; Direction; Distance",
            "the last attempt's tokens add up to the stored text: true",
        ],
    );
    let streamed = seen.try_iter().filter(|request| request.body["stream"] == true).count();
    assert_eq!(streamed, 1, "one streamed request, for the paragraph");
}

#[test]
fn observe_compares_only_the_last_attempts_tokens_after_a_stream_breaks_off() {
    // The first streamed answer breaks off after a piece; the node retries and the second
    // arrives whole. The broken attempt's piece was printed, but it is not part of the text.
    let streams = AtomicUsize::new(0);
    let (url, _seen) = loopback::serve_with(move |request| {
        if request.body["stream"] != true {
            let prompt = loopback::last_prompt(request);
            let reply = if prompt.contains("outline") { "- Dance\n- Distance" } else { "Bee Talk" };
            return loopback::completion(reply);
        }
        match streams.fetch_add(1, Ordering::Relaxed) {
            0 => {
                let cut = format!("{}{}", loopback::event_chunk("Bees "), loopback::chunk(""));
                Box::new(move |stream| {
                    stream.write_all(loopback::STREAM_HEAD.as_bytes()).unwrap();
                    stream.write_all(cut.as_bytes()).unwrap();
                })
            }
            _ => loopback::streamed(&["Bees ", "dance."]),
        }
    });
    let env = [("MINIFLOW_BASE_URL", url.as_str()), ("MINIFLOW_MODEL", "tiny")];
    let out = cargo_run("observe", &[], None, &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_lines(
        &stdout,
        &[
            "[draft/write] started",
            "Bees",
            "Bees dance.",
            "title: Bee Talk",
            "the last attempt's tokens add up to the stored text: true",
        ],
    );
}

#[test]
fn hello_asks_the_server_the_environment_names() {
    let (url, seen) = loopback::serve(vec![loopback::completion("Forty-two, of course.")]);
    let env = [
        ("MINIFLOW_BASE_URL", url.as_str()),
        ("MINIFLOW_MODEL", "tiny"),
        ("MINIFLOW_API_KEY", "k"),
    ];
    let out = cargo_run("hello", &[], None, &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_lines(&stdout, &["answer:   Forty-two, of course."]);
    let request = seen.recv().expect("one request");
    assert_eq!(request.body["model"], "tiny");
    assert_eq!(request.authorization.as_deref(), Some("Bearer k"));
    assert_eq!(
        loopback::last_prompt(&request),
        "What is the answer to life, the universe and everything?"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("(talking to model tiny at {url}/chat/completions)")),
        "{stderr}"
    );
}

#[test]
fn a_base_url_without_a_model_is_a_clear_error() {
    let out = cargo_run("hello", &[], None, &[("MINIFLOW_BASE_URL", "http://127.0.0.1:9/v1")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MINIFLOW_BASE_URL is set, so MINIFLOW_MODEL must name the model"),
        "{stderr}"
    );
}

#[test]
fn a_failed_run_prints_its_whole_chain_of_causes() {
    // Port 9 (discard) refuses the connection: the node fails, and the example says why.
    let env = [("MINIFLOW_BASE_URL", "http://127.0.0.1:9/v1"), ("MINIFLOW_MODEL", "tiny")];
    let out = cargo_run("hello", &[], None, &env);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr.lines().find(|l| l.starts_with("Error: ")).unwrap_or_default();
    assert!(
        error.starts_with("Error: node `answer` failed in exec after 1 attempt: ")
            && error.contains("Connection refused"),
        "{stderr}"
    );
}
