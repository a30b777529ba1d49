//! [`Flow::to_mermaid`]: a flow drawn as Mermaid flowchart text.

use std::fmt::Write;

use crate::run::Step;
use crate::{Flow, MAX_DEPTH};

impl<S> Flow<S> {
    /// The flow as a [Mermaid](https://mermaid.js.org) flowchart, to paste into a Markdown
    /// file (GitHub, GitLab and most wikis draw it) or any Mermaid viewer. Generated here,
    /// with no network and no dependency.
    ///
    /// Every flow gets a `start` circle pointing at its start node. Nodes show their names;
    /// batch nodes are drawn as subroutines `[[…]]` and labelled `(BatchNode)`. Nested flows
    /// become subgraphs (labelled `(BatchFlow)` or `(BatchAsyncFlow)` for the batch flows),
    /// and so do parallel nodes (`(Parallel)`), holding their branches. Edges are labelled
    /// with their action, except those for `"default"` and the empty action (an empty quoted
    /// label does not parse, and no label draws the same empty text); end edges lead to the
    /// flow's `end` circle. A node without edges ends the flow, and has no arrow out. Flows nested deeper than [`MAX_DEPTH`],
    /// which cannot run, are drawn as a box saying so.
    ///
    /// # Any name draws as itself
    ///
    /// Names and actions are quoted labels, and Mermaid reads much of what a quoted label holds:
    /// `"` ends it, `` ` `` starts Markdown, `<`, `>` and `&` are HTML, `%%{…}%%` anywhere
    /// reconfigures the diagram, `%%` starts a comment, `#…;` is a character code, a line break
    /// ends the statement, and the spaces at both ends are trimmed. So a label keeps only
    /// letters and digits (of any script), spaces other than its first and last character, and
    /// the C1 controls U+0080–U+009F (as codes, HTML would draw those as Windows-1252's "€" and
    /// so on); every other character is written as its Mermaid code, `#`, the decimal code
    /// point and `;`: `a<b` is `a#60;b`, `"` is `#34;`, a line break `#10;`, 🚀 `#128640;`.
    /// Mermaid turns each code into an HTML character reference, so the browser draws the
    /// character itself, as text.
    ///
    /// Three exceptions, where the text of a drawn label (its DOM `textContent`) is not the name
    /// or action (with its suffix, such as ` (BatchNode)`): NUL, which HTML cannot hold, draws
    /// as U+FFFD "�"; a carriage return, alone or before a line feed, draws as a line feed, as
    /// HTML reads line ends; and since Mermaid's placeholders for codes, `ﬂ°` and `¶ß`, are
    /// decoded a second time in the SVG it writes, a name holding one of these pairs gets an
    /// invisible word joiner (U+2060) between the two. `tests/mermaid-check` checks all this
    /// with Mermaid itself (11.17 and 12.3), its parser and its drawing in a browser, on some
    /// 1,800 hostile names and actions.
    ///
    /// # Limits
    ///
    /// Mermaid, as configured by default, refuses a diagram of more than 500 edges (every
    /// edge, the arrow from each `start` circle included: "Edge limit exceeded"), and draws a
    /// text longer than 50,000 UTF-16 code units as a box saying "Maximum text size in diagram
    /// exceeded"; codes count as written (`#60;` is four). Its `maxEdges` and `maxTextSize`
    /// settings raise both.
    ///
    /// ```
    /// use miniflow::{Action, Flow, node_fn};
    ///
    /// let mut flow = Flow::<()>::new();
    /// let decide = flow.add("decide", node_fn(|_, _| Ok("answer".into())));
    /// let search = flow.add("search", node_fn(|_, _| Ok(Action::DEFAULT)));
    /// flow.edge(decide, "search", search);
    /// flow.then(search, decide);
    /// flow.end(decide, "answer");
    ///
    /// assert_eq!(flow.to_mermaid(), r#"flowchart TD
    ///     n_start(("start")) --> n_0
    ///     n_0["decide"]
    ///     n_1["search"]
    ///     n_0 -->|"search"| n_1
    ///     n_0 -->|"answer"| n_end((("end")))
    ///     n_1 --> n_0
    /// "#);
    /// # Ok::<(), miniflow::FlowError>(())
    /// ```
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart TD\n");
        self.mermaid(&mut out, "n_", 1);
        out
    }

    /// Writes this flow's nodes and edges, indented `depth` levels, with ids starting `id`.
    fn mermaid(&self, out: &mut String, id: &str, depth: usize) {
        let pad = "    ".repeat(depth);
        if !self.slots.is_empty() {
            let _ = writeln!(out, "{pad}{id}start((\"start\")) --> {id}{}", self.start);
        }
        for (i, slot) in self.slots.iter().enumerate() {
            node(out, &format!("{id}{i}"), &slot.name, &slot.step, depth);
        }
        for (i, slot) in self.slots.iter().enumerate() {
            for (action, target) in &slot.edges {
                let label = match action.is_default() || action.as_str().is_empty() {
                    true => String::new(),
                    false => format!("|\"{}\"|", escape(action.as_str())),
                };
                let _ = match target {
                    Some(j) => writeln!(out, "{pad}{id}{i} -->{label} {id}{j}"),
                    None => writeln!(out, "{pad}{id}{i} -->{label} {id}end(((\"end\")))"),
                };
            }
        }
    }
}

/// Writes one node: a box, or a subgraph for the kinds that hold nodes.
fn node<S>(out: &mut String, id: &str, name: &str, step: &Step<S>, depth: usize) {
    let (pad, name) = ("    ".repeat(depth), escape(name));
    let _ = match step {
        // A run refuses this too; drawing it would only risk the stack.
        Step::Flow(_) | Step::Fan(_) if depth >= MAX_DEPTH => {
            writeln!(out, "{pad}{id}[\"{name} (nested deeper than {MAX_DEPTH}: not drawn)\"]")
        }
        Step::Leaf(_, false) => writeln!(out, "{pad}{id}[\"{name}\"]"),
        Step::Leaf(_, true) => writeln!(out, "{pad}{id}[[\"{name} (BatchNode)\"]]"),
        Step::Flow(flow) => {
            let _ = writeln!(out, "{pad}subgraph {id}[\"{name}\"]");
            flow.mermaid(out, &format!("{id}_"), depth + 1);
            writeln!(out, "{pad}end")
        }
        Step::Fan(fan) => {
            let _ = writeln!(out, "{pad}subgraph {id}[\"{name} ({})\"]", fan.kind);
            match fan.batch {
                true => fan.flows[0].mermaid(out, &format!("{id}_"), depth + 1),
                // A parallel node's branches: the one node of each branch's flow.
                false => {
                    for (j, slot) in fan.flows.iter().flat_map(|flow| &flow.slots).enumerate() {
                        node(out, &format!("{id}_{j}"), &slot.name, &slot.step, depth + 1);
                    }
                }
            }
            writeln!(out, "{pad}end")
        }
    };
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let _ = match c {
            ' ' if i > 0 && i + 1 < text.len() => out.write_char(c),
            '\u{80}'..='\u{9f}' => out.write_char(c),
            c if c.is_alphanumeric() => out.write_char(c),
            c => write!(out, "#{};", u32::from(c)),
        };
        let next = &text[i + c.len_utf8()..];
        if c == 'ﬂ' && next.starts_with('°') || c == '¶' && next.starts_with('ß') {
            out.push_str("#8288;");
        }
    }
    out
}
