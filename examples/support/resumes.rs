//! What `examples/map-reduce.rs` screens: the job, the résumés, the prompt, the reading of
//! the model's verdict, and the offline stand-in.

use std::sync::Arc;
use std::time::Duration;

use super::{Model, Rules, Slow, text};

/// What the candidates are judged against.
pub const JOB: &str = "Backend engineer. Must have: at least 3 years of professional \
                       experience with Rust, Go or C++, and experience running services in \
                       production.";

/// One candidate's résumé.
#[derive(Clone, Debug)]
pub struct Resume {
    /// The candidate's name.
    pub name: String,
    /// What the résumé says.
    pub text: String,
}

/// The résumés. They stand in for reading a folder of files (`std::fs::read_dir`), one of
/// them empty.
pub fn all() -> Vec<Resume> {
    let resumes = [
        (
            "Ana Lima",
            "Backend engineer, 6 years. Wrote and ran payment services in Rust and Go, on call \
             for a platform serving two million users.",
        ),
        (
            "Ben Okafor",
            "Graphic designer, 8 years. Brand identities, print, Figma; some HTML and CSS.",
        ),
        (
            "Chen Wei",
            "Systems programmer, 4 years of C++ at a trading firm, then 1 year of Rust. Owns \
             the order gateway in production.",
        ),
        (
            "Dara Novak",
            "Computer science graduate (2024). Rust side projects: a toy database and a \
             Discord bot. One summer internship in QA.",
        ),
        (
            "Eli Brandt",
            "Site reliability engineer, 5 years. Kubernetes, Terraform, Go tooling; led \
             incident response for production services.",
        ),
        ("Farah Haddad", "Data analyst, 3 years. SQL, Python, dashboards; no production services."),
        ("Gus Ortiz", ""), // an upload that came through empty
        (
            "Hana Sato",
            "Freelance developer since 2019. Projects in Rust, Go and TypeScript for various \
             clients; details on request.",
        ),
    ];
    let resume = |(name, text): (&str, &str)| Resume { name: name.into(), text: text.into() };
    resumes.into_iter().map(resume).collect()
}

/// The prompt that asks whether `resume` meets every requirement of [`JOB`], in two lines
/// that [`parse`] reads.
pub fn prompt(resume: &Resume) -> String {
    format!(
        "You screen job applications.\n\nThe job: {JOB}\n\nRésumé of {}:\n{}\n\n\
         Does this candidate meet every requirement of the job? Answer in exactly two lines, \
         nothing else:\nqualified: yes or no\nreason: one short sentence",
        resume.name, resume.text
    )
}

/// Reads `qualified: yes|no` and `reason: …` out of a model's answer, tolerating what real
/// models add: a code fence, bold markers, capitals, blank lines, a full stop after "yes"
/// ([`text::field`] finds the lines, [`text::word`] reads the first word of the verdict).
/// On failure, says what is missing.
pub fn parse(answer: &str) -> Result<(bool, String), &'static str> {
    let qualified = text::field(answer, "qualified").ok_or("has no `qualified: yes/no` line")?;
    // The first word decides: "Yes.", "no -- too junior" and "YES" all count.
    let qualified = match text::word(&qualified).as_str() {
        "yes" => true,
        "no" => false,
        _ => return Err("says neither yes nor no after `qualified:`"),
    };
    let reason = text::field(answer, "reason").unwrap_or_default();
    // The reason is printed inside parentheses: its full stop would be one too many.
    let reason = reason.trim_end_matches('.').trim();
    match reason.is_empty() {
        true => Err("has no `reason:` line"),
        false => Ok((qualified, reason.to_string())),
    }
}

/// The offline stand-in: a verdict per candidate, picked by the name in the prompt, 50 ms
/// after it is asked (so the calls overlap as a real model's would). Some verdicts are
/// written the way real models write them (bold, a code fence, capitals), to exercise
/// [`parse`]; about Hana Sato it never says yes or no, however often it is asked.
pub fn stand_in() -> impl Model {
    const VERDICTS: [(&str, &str); 7] = [
        (
            "Ana Lima",
            "qualified: yes\nreason: six years of Rust and Go services run in production.",
        ),
        ("Ben Okafor", "**Qualified:** No\n**Reason:** a designer with no backend experience."),
        (
            "Chen Wei",
            "```\nqualified: yes\nreason: five years of C++ and Rust, and owns a production \
             system.\n```",
        ),
        (
            "Dara Novak",
            "Qualified: no\nReason: no professional experience yet, only side projects.",
        ),
        (
            "Eli Brandt",
            "qualified: Yes.\nreason: five years of Go and of running production services.",
        ),
        ("Farah Haddad", "qualified: no\nreason: works in SQL and Python and runs no services."),
        ("Hana Sato", "qualified: maybe\nreason: the résumé gives no years per language."),
    ];
    let rules = Rules::new(|prompt: &str| {
        let verdict =
            VERDICTS.iter().find(|(name, _)| prompt.contains(&format!("Résumé of {name}:")));
        verdict.map_or("I cannot tell.", |(_, verdict)| verdict).to_string()
    });
    Slow::new(Arc::new(rules), Duration::from_millis(50))
}
