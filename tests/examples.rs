//! Every example, run as a newcomer runs it (`cargo run --example NAME`), with the key lines of
//! its output checked, so an example cannot silently rot. Offline examples answer through their
//! stand-in models; the last tests point one at a loopback chat-completions server instead.

mod loopback;

use std::path::Path;
use std::process::{Command, Output, Stdio};

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
            "exec: answering (attempt 0)",
            "post: writing the answer to the store",
            "question: What is the answer to life, the universe and everything?",
            "answer:   42",
            "the flow ended with action \"default\"",
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
