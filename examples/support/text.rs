//! Reading what a model wrote. Real models decorate their answers — code fences, Markdown
//! bold, list markers, a "Here you go:" line, a `<think>…</think>` block from a reasoning
//! model — and these helpers take that away, so the examples' parsers see only the answer.

/// The reply without `<think>…</think>` blocks and code-fence lines, trimmed.
pub fn body(reply: &str) -> String {
    let mut rest = reply;
    let mut kept = String::new();
    while let Some(start) = rest.find("<think>") {
        kept.push_str(&rest[..start]);
        rest = rest[start..].find("</think>").map_or("", |end| &rest[start + end + 8..]);
    }
    kept.push_str(rest);
    let lines = kept.lines().filter(|line| !line.trim_start().starts_with("```"));
    lines.collect::<Vec<_>>().join("\n").trim().to_string()
}

/// The value of the first `key: value` line of the reply, the key in any case and with any
/// Markdown around it (`**Action:** search`), the value without quotes, bold or backticks.
pub fn field(reply: &str, key: &str) -> Option<String> {
    body(reply).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim_matches(|c: char| c.is_whitespace() || "-*`#".contains(c));
        let value = value.trim_matches(|c: char| c.is_whitespace() || "*`\"".contains(c));
        name.eq_ignore_ascii_case(key).then(|| value.to_string())
    })
}

/// The first word of `value`, lowercase, without punctuation: `"Answer."` is `"answer"`.
pub fn word(value: &str) -> String {
    let first = value.split_whitespace().next().unwrap_or("");
    first.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()
}

/// The reply's lines that say something: without blank lines, list markers (`1.`, `-`, `*`),
/// quotes, and lines that only introduce the rest (ending in `:`).
pub fn lines(reply: &str) -> Vec<String> {
    body(reply)
        .lines()
        .map(|line| {
            let line = line.trim();
            // A list number is digits and then `.` or `)`: "1. Rick", not "100 years".
            let digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
            let line = match digits.strip_prefix(['.', ')']) {
                Some(rest) if digits.len() < line.len() => rest,
                _ => line,
            };
            let line = line.trim_start_matches(['-', '*', ' ']);
            line.trim_matches(['"', '\'', '*', ' ']).to_string()
        })
        .filter(|line| !line.is_empty() && !line.ends_with(':'))
        .collect()
}
