//! `Flow::to_mermaid` draws every name and action literally: the exact text for each kind of
//! string that Mermaid would otherwise read as syntax, markup or a directive (empty actions,
//! backticks, HTML, entities, `%%` directives and comments, Mermaid's own entity placeholders,
//! `style` lines, controls C0 and C1, spaces at the ends, non-ASCII, long names).
//!
//! Whether Mermaid itself parses and draws these as written is checked by
//! `tests/mermaid-check/check.mjs`, which reads the diagrams [`hostile_diagrams`] writes when
//! `MINIFLOW_MERMAID_OUT` names a file (see that script for the commands).

use miniflow::{Action, BatchNode, Ctx, Flow, NodeId, Params, Result, node_fn};
use serde_json::{Value, json};

/// Adds a node named `name` that returns "default".
fn add(flow: &mut Flow<()>, name: &str) -> NodeId {
    flow.add(name, node_fn(|_: &mut (), _: &Params| Ok(Action::DEFAULT)))
}

/// A batch node with no items.
struct Items;

impl BatchNode<()> for Items {
    type Item = ();
    type Output = ();

    fn prep(&self, _: &(), _: &Params) -> Result<Vec<()>> {
        Ok(Vec::new())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, _: &mut (), _: &Params, _: Vec<()>, _: Vec<()>) -> Result<Action> {
        Ok(Action::DEFAULT)
    }
}

/// The line drawing a single node named `name`.
fn node_line(name: &str) -> String {
    let mut flow = Flow::new();
    add(&mut flow, name);
    flow.to_mermaid().lines().nth(2).unwrap().trim_start().to_owned()
}

/// The line drawing a single edge for `action`.
fn edge_line(action: &str) -> String {
    let mut flow = Flow::new();
    let (a, b) = (add(&mut flow, "a"), add(&mut flow, "b"));
    flow.edge(a, action.to_owned(), b);
    flow.to_mermaid().lines().nth(4).unwrap().trim_start().to_owned()
}

#[test]
fn plain_letters_digits_and_inner_spaces_stay_readable() {
    let mut flow = Flow::new();
    let a = add(&mut flow, "Étape 1 décide");
    let b = add(&mut flow, "検索 2");
    flow.edge(a, "look it up", b);
    flow.end(b, "Done");
    assert_eq!(
        flow.to_mermaid(),
        r##"flowchart TD
    n_start(("start")) --> n_0
    n_0["Étape 1 décide"]
    n_1["検索 2"]
    n_0 -->|"look it up"| n_1
    n_1 -->|"Done"| n_end((("end")))
"##
    );
}

#[test]
fn an_empty_action_is_an_edge_without_a_label() {
    // `|""|` does not parse; an unlabelled edge draws the empty string, as "default" does.
    assert_eq!(edge_line(""), "n_0 --> n_1");
    assert_eq!(edge_line(" "), r##"n_0 -->|"#32;"| n_1"##);
}

#[test]
fn backticks_are_codes_so_no_markdown_string_starts() {
    assert_eq!(edge_line("`"), r##"n_0 -->|"#96;"| n_1"##);
    assert_eq!(edge_line("``"), r##"n_0 -->|"#96;#96;"| n_1"##);
    assert_eq!(node_line("`code`"), r##"n_0["#96;code#96;"]"##);
    assert_eq!(node_line("**b**"), r##"n_0["#42;#42;b#42;#42;"]"##);
}

#[test]
fn html_is_written_as_codes_so_it_draws_as_text() {
    assert_eq!(node_line("a<b"), r##"n_0["a#60;b"]"##);
    assert_eq!(node_line("x > y & z"), r##"n_0["x #62; y #38; z"]"##);
    assert_eq!(node_line("&lt;tag&gt;"), r##"n_0["#38;lt#59;tag#38;gt#59;"]"##);
    assert_eq!(node_line("<b>bold"), r##"n_0["#60;b#62;bold"]"##);
    assert_eq!(
        node_line("<img src=x onerror=alert(1)>"),
        r##"n_0["#60;img src#61;x onerror#61;alert#40;1#41;#62;"]"##
    );
    assert_eq!(edge_line("a<br>b"), r##"n_0 -->|"a#60;br#62;b"| n_1"##);
}

#[test]
fn no_directive_or_comment_can_start() {
    assert_eq!(
        node_line(r##"%%{init: {"theme":"dark"}}%%"##),
        r##"n_0["#37;#37;#123;init#58; #123;#34;theme#34;#58;#34;dark#34;#125;#125;#37;#37;"]"##
    );
    assert_eq!(node_line("%% not a comment"), r##"n_0["#37;#37; not a comment"]"##);
    assert_eq!(edge_line("%%"), r##"n_0 -->|"#37;#37;"| n_1"##);
}

#[test]
fn controls_are_codes_except_c1_which_html_would_read_as_windows_1252() {
    assert_eq!(node_line("nul\0"), r##"n_0["nul#0;"]"##);
    assert_eq!(node_line("two\nlines\r\n"), r##"n_0["two#10;lines#13;#10;"]"##);
    assert_eq!(node_line("tab\there\u{7}\u{1b}\u{7f}"), r##"n_0["tab#9;here#7;#27;#127;"]"##);
    // `#128;` would draw as "€": C1 controls are written as they are, inside the quotes.
    assert_eq!(node_line("c1\u{80}\u{85}\u{9f}"), "n_0[\"c1\u{80}\u{85}\u{9f}\"]");
    assert_eq!(node_line("\u{a0}"), r##"n_0["#160;"]"##);
}

#[test]
fn quotes_hashes_and_literal_codes_draw_as_written() {
    assert_eq!(node_line(r##"say "hi""##), r##"n_0["say #34;hi#34;"]"##);
    assert_eq!(node_line("#1"), r##"n_0["#35;1"]"##);
    assert_eq!(node_line("#quot;"), r##"n_0["#35;quot#59;"]"##);
    assert_eq!(edge_line("#35;"), r##"n_0 -->|"#35;35#59;"| n_1"##);
    assert_eq!(edge_line("&#35;"), r##"n_0 -->|"#38;#35;35#59;"| n_1"##);
}

#[test]
fn mermaids_own_entity_placeholders_are_codes_and_kept_apart() {
    // Mermaid turns `#…;` into `ﬂ°°…¶ß` or `ﬂ°…¶ß`, and back into `&#…;` or `&…;` both in each
    // label it draws and in the whole SVG: a drawn `ﬂ°` or `¶ß` would be read a second time, so
    // an invisible word joiner (#8288;) goes between them.
    assert_eq!(node_line("ﬂ°°1¶ß"), r##"n_0["ﬂ#8288;#176;#176;1#182;#8288;ß"]"##);
    assert_eq!(edge_line("ﬂ°amp¶ß"), r##"n_0 -->|"ﬂ#8288;#176;amp#182;#8288;ß"| n_1"##);
    assert_eq!(node_line("°ﬂ ß¶ ﬂ"), r##"n_0["#176;ﬂ ß#182; ﬂ"]"##);
}

#[test]
fn style_lines_keep_their_semicolons() {
    // Mermaid drops the last `;` of any line with `style`, then `:`, then `#`, then `;`.
    assert_eq!(node_line("style n_0 fill:#f00;"), r##"n_0["style n#95;0 fill#58;#35;f00#59;"]"##);
    assert_eq!(
        edge_line("classDef x color:#fff;"),
        r##"n_0 -->|"classDef x color#58;#35;fff#59;"| n_1"##
    );
}

#[test]
fn spaces_at_the_ends_are_codes_because_mermaid_trims_labels() {
    assert_eq!(node_line("  two  inner  "), r##"n_0["#32; two  inner #32;"]"##);
    assert_eq!(node_line(" "), r##"n_0["#32;"]"##);
    assert_eq!(edge_line("\u{3000}x\u{feff}"), r##"n_0 -->|"#12288;x#65279;"| n_1"##);
}

#[test]
fn non_ascii_letters_are_kept_and_other_symbols_are_codes() {
    assert_eq!(node_line("日本語 ß é"), r##"n_0["日本語 ß é"]"##);
    assert_eq!(node_line("e\u{301}"), r##"n_0["e#769;"]"##);
    assert_eq!(edge_line("🚀|]"), r##"n_0 -->|"#128640;#124;#93;"| n_1"##);
    assert_eq!(node_line("\u{2028}\u{fffe}\u{10ffff}"), r##"n_0["#8232;#65534;#1114111;"]"##);
}

#[test]
fn a_long_name_is_drawn_whole() {
    let name = "long name ".repeat(10_000);
    let coded = format!("{}#32;", &"long name ".repeat(10_000)[..99_999]);
    assert_eq!(node_line(&name), format!("n_0[\"{coded}\"]"));
}

#[test]
fn labels_of_batch_nodes_and_subgraphs_are_escaped_too() {
    let mut inner = Flow::new();
    add(&mut inner, "<i>");
    let mut flow = Flow::new();
    flow.add("`b`", Items);
    flow.add("%%{x}%%", inner);
    assert_eq!(
        flow.to_mermaid(),
        r##"flowchart TD
    n_start(("start")) --> n_0
    n_0[["#96;b#96; (BatchNode)"]]
    subgraph n_1["#37;#37;#123;x#125;#37;#37;"]
        n_1_start(("start")) --> n_1_0
        n_1_0["#60;i#62;"]
    end
"##
    );
}

/// Hostile strings: every class above, every ASCII and C1 character, the placeholders and
/// Unicode spaces alone, doubled and between spaces, and pseudo-random mixes of them all.
fn hostile() -> Vec<String> {
    let mut all: Vec<String> = [
        "",
        " ",
        "  ",
        " a ",
        "a  b",
        "`",
        "``",
        "`code`",
        "**b**",
        "a<b",
        "a>b",
        "a&b",
        "&lt;tag&gt;",
        "&amp;",
        "&#35;",
        "&#128;",
        "<b>bold</b>",
        "<img src=x onerror=alert(1)>",
        "<br>",
        "<br/>",
        "<script>alert(1)</script>",
        r##"%%{init: {"theme":"dark"}}%%"##,
        "%%{init: {'theme':'forest'}}%%",
        "%% comment",
        "a %% b",
        "%%",
        "#quot;",
        "#35;",
        "#x;",
        "#128;",
        "#+1;",
        "ﬂ°°",
        "ﬂ°",
        "¶ß",
        "ﬂ°°35¶ß",
        "style:a#b;",
        "style n_0 fill:#f00;",
        "classDef x color:#fff;",
        "fa:fa-car",
        ":::cls",
        "-->",
        "---",
        "|",
        "]",
        ")",
        "end",
        "subgraph",
        "click n_0 call alert()",
        "A & B",
        "${x}",
        "\\",
        "\"",
        "\"\"",
        "'",
        "\u{0}",
        "\r\n",
        "\r",
        "\n",
        "\u{85}",
        "\u{a0}x\u{a0}",
        "\u{feff}",
        "\u{2028}",
        "\u{2029}",
        "\u{3000}",
        "\u{200b}",
        "e\u{301}",
        "\u{202e}abc",
        "👩‍👩‍👧",
        "🦀",
        "\u{fffd}",
        "\u{fffe}",
        "\u{ffff}",
        "\u{10ffff}",
        "\u{e000}",
        "日本語",
    ]
    .map(String::from)
    .into();
    let mut alphabet: Vec<char> = ('\0'..='\u{9f}').collect();
    alphabet.extend("ﬂ°¶ßé日\u{a0}\u{feff}\u{2028}\u{3000}\u{200b}\u{301}🦀".chars());
    for &c in &alphabet {
        all.extend([format!("{c}"), format!("{c}{c}"), format!(" {c} "), format!("a{c}b")]);
    }
    all.push("long ".repeat(2_000));
    // A fixed xorshift: the same strings every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..1_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 24) as usize;
        let word = (0..len).map(|i| alphabet[(seed >> (i % 8 * 8)) as usize % alphabet.len()]);
        all.push(word.collect());
    }
    all
}

/// Flows of chained nodes (a nested flow first, a batch node last) named and linked by the
/// hostile strings (a name [`Flow::add`] would refuse is replaced by a plain one), as
/// `{text, nodes: {id: label}, edges: [[from, to, label]]}`.
fn hostile_diagrams() -> Vec<Value> {
    let mut diagrams = Vec::new();
    for (k, chunk) in hostile().chunks(40).enumerate() {
        let mut flow = Flow::new();
        let mut nodes = serde_json::Map::from_iter(
            [("n_start", "start"), ("n_end", "end")]
                .map(|(id, label)| (id.to_owned(), json!(label))),
        );
        let mut ids = Vec::new();
        for (i, name) in chunk.iter().enumerate() {
            let taken = nodes.values().any(|n| n == name.as_str());
            let name = match name.is_empty() || name.contains(['/', '[', ']']) || taken {
                true => format!("node {k} {i}"),
                false => name.clone(),
            };
            // The first is a nested flow (a subgraph), the last a batch node, the rest plain.
            if i == 0 {
                let mut inner = Flow::new();
                add(&mut inner, "inner");
                ids.push(flow.add(name.as_str(), inner));
                nodes.insert("n_0_0".into(), json!("inner"));
                nodes.insert("n_0_start".into(), json!("start"));
            } else if i + 1 == chunk.len() {
                ids.push(flow.add(name.as_str(), Items));
            } else {
                ids.push(add(&mut flow, &name));
            }
            let suffix = if i > 0 && i + 1 == chunk.len() { " (BatchNode)" } else { "" };
            nodes.insert(format!("n_{i}"), json!(name + suffix));
        }
        let mut edges = vec![json!(["n_start", "n_0", ""]), json!(["n_0_start", "n_0_0", ""])];
        for (i, action) in chunk.iter().enumerate() {
            match ids.get(i + 1) {
                Some(&to) => flow.edge(ids[i], action.clone(), to),
                None => flow.end(ids[i], action.clone()),
            };
            let to = if i + 1 < ids.len() { format!("n_{}", i + 1) } else { "n_end".into() };
            let label = if action == "default" { "" } else { action.as_str() };
            edges.push(json!([format!("n_{i}"), to, label]));
        }
        diagrams.push(json!({"text": flow.to_mermaid(), "nodes": nodes, "edges": edges}));
    }
    diagrams
}

/// Writes the hostile diagrams for `tests/mermaid-check` when `MINIFLOW_MERMAID_OUT` names a
/// file; in any case, checks that each is one statement a line with its quotes paired.
#[test]
fn hostile_diagrams_are_well_formed_and_written_for_the_checker() {
    let diagrams = hostile_diagrams();
    for diagram in &diagrams {
        for line in diagram["text"].as_str().unwrap().lines().skip(1) {
            assert!(line.starts_with("    ") && line.matches('"').count() % 2 == 0, "{line:?}");
        }
    }
    if let Some(path) = std::env::var_os("MINIFLOW_MERMAID_OUT") {
        std::fs::write(path, serde_json::to_string(&diagrams).unwrap()).unwrap();
    }
}
