//! [`Flow::to_mermaid`]: a flow drawn as Mermaid flowchart text.

use std::fmt::Write;

use crate::flow::Target;
use crate::run::Shape;
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
    /// with their action, except those for `"default"`; end edges lead to the flow's `end`
    /// circle. A node without edges ends the flow, and has no arrow out. Names and actions are
    /// quoted labels, with `"`, `#` and control characters (a line break) written as Mermaid
    /// character codes, so any name draws. Flows nested deeper than
    /// [`MAX_DEPTH`](crate::MAX_DEPTH), which cannot run, are drawn as a box saying so.
    ///
    /// ```
    /// use miniflow::{Action, Flow, node_fn};
    ///
    /// let mut flow = Flow::<()>::new();
    /// let decide = flow.add("decide", node_fn(|_, _| Ok("answer".into())));
    /// let search = flow.add("search", node_fn(|_, _| Ok(Action::DEFAULT)));
    /// flow.edge(decide, "search", search)?;
    /// flow.then(search, decide)?;
    /// flow.end(decide, "answer")?;
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
            node(out, &format!("{id}{i}"), &slot.name, slot.step.shape(), depth);
        }
        for (i, slot) in self.slots.iter().enumerate() {
            for (action, target) in &slot.edges {
                let label = match action.is_default() {
                    true => String::new(),
                    false => format!("|\"{}\"|", escape(action.as_str())),
                };
                let _ = match target {
                    Target::Node(j) => writeln!(out, "{pad}{id}{i} -->{label} {id}{j}"),
                    Target::End => writeln!(out, "{pad}{id}{i} -->{label} {id}end(((\"end\")))"),
                };
            }
        }
    }
}

/// Writes one node: a box, or a subgraph for the kinds that hold nodes.
fn node<S>(out: &mut String, id: &str, name: &str, shape: Shape<'_, S>, depth: usize) {
    let (pad, name) = ("    ".repeat(depth), escape(name));
    let _ = match shape {
        // A run refuses this too; drawing it would only risk the stack.
        Shape::Flow(_) | Shape::BatchFlow(..) | Shape::Parallel(_) if depth >= MAX_DEPTH => {
            writeln!(out, "{pad}{id}[\"{name} (nested deeper than {MAX_DEPTH}: not drawn)\"]")
        }
        Shape::Node => writeln!(out, "{pad}{id}[\"{name}\"]"),
        Shape::BatchNode => writeln!(out, "{pad}{id}[[\"{name} (BatchNode)\"]]"),
        Shape::Flow(flow) => {
            let _ = writeln!(out, "{pad}subgraph {id}[\"{name}\"]");
            flow.mermaid(out, &format!("{id}_"), depth + 1);
            writeln!(out, "{pad}end")
        }
        Shape::BatchFlow(flow, kind) => {
            let _ = writeln!(out, "{pad}subgraph {id}[\"{name} ({kind})\"]");
            flow.mermaid(out, &format!("{id}_"), depth + 1);
            writeln!(out, "{pad}end")
        }
        Shape::Parallel(branches) => {
            let _ = writeln!(out, "{pad}subgraph {id}[\"{name} (Parallel)\"]");
            for (j, (branch, step)) in branches.iter().enumerate() {
                node(out, &format!("{id}_{j}"), branch, step.shape(), depth + 1);
            }
            writeln!(out, "{pad}end")
        }
    };
}

/// Mermaid ends a quoted label at `"`, reads `#…;` as a character code, and a line break
/// would end the statement: spell those as codes, control characters included.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let _ = match c {
            '"' => out.write_str("#quot;"),
            '#' => out.write_str("#35;"),
            c if c.is_control() => write!(out, "#{};", u32::from(c)),
            c => out.write_char(c),
        };
    }
    out
}
