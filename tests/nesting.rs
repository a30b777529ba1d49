//! Nesting: flows inside flows and batch flows inside flows. Pins down that an inner flow's
//! last action (including an end edge's) routes its parent; that params given to `run_with`
//! reach nested nodes and that batch flows merge each sub-run's params over the inherited ones
//! (inner wins on a clash, siblings never see them); what a batch flow's post receives; and
//! that every error names the failing node by its full path (`"outer/inner/node"`,
//! `"grades[1]/avg"`) and keeps the user's error as its `source()`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use miniflow::{
    Action, BatchAsyncFlow, BatchFlow, Ctx, Flow, FlowError, Node, Params, Phase, Result,
    RunOptions, node_fn,
};

/// The store of every test here.
#[derive(Debug, Default)]
struct Log {
    /// What the nodes recorded, in the order they ran.
    visits: Vec<String>,
    count: u32,
    /// Set by the tests' batch flow posts: the params sets and sub-run actions they got.
    seen: Option<(Vec<Params>, Vec<Action>)>,
}

impl Log {
    fn with_count(count: u32) -> Self {
        Log { count, ..Log::default() }
    }
}

/// The user's own error type, to be found again through `source()`.
#[derive(Debug, PartialEq)]
struct Boom {
    code: usize,
}

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom {}", self.code)
    }
}

impl std::error::Error for Boom {}

/// A node that records its own path, as `exec` learns it from [`Ctx::node`], and returns the
/// action `choose` picks from the store (in `prep`).
struct Mark(Box<dyn Fn(&Log) -> Action + Send + Sync>);

impl Node<Log> for Mark {
    type Prep = Action;
    type Output = String;

    fn prep(&self, log: &Log, _: &Params) -> Result<Action> {
        Ok((self.0)(log))
    }

    async fn exec(&self, _: &Action, cx: Ctx<'_>) -> Result<String> {
        Ok(cx.node().to_string())
    }

    fn post(&self, log: &mut Log, action: Action, path: String) -> Result<Action> {
        log.visits.push(path);
        Ok(action)
    }
}

/// A [`Mark`] that always returns `action`.
fn mark(action: &'static str) -> Mark {
    Mark(Box::new(move |_| Action::new(action)))
}

/// A [`Mark`] whose action depends on the store.
fn mark_with(choose: fn(&Log) -> Action) -> Mark {
    Mark(Box::new(choose))
}

/// A node whose `exec` always fails with `Boom { code: 40 + attempt }`, `attempts` times.
struct AlwaysFails {
    attempts: usize,
}

impl Node<Log> for AlwaysFails {
    type Prep = ();
    type Output = ();

    fn prep(&self, _: &Log, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), cx: Ctx<'_>) -> Result<()> {
        Err(Box::new(Boom { code: 40 + cx.attempt() }))
    }

    fn post(&self, log: &mut Log, _: (), _: ()) -> Result<Action> {
        log.visits.push("AlwaysFails post must not run".into());
        Ok(Action::DEFAULT)
    }

    fn max_retries(&self) -> usize {
        self.attempts
    }
}

/// A node that reads one param in `prep` with `read`, and records what it read.
struct ReadParam(fn(&Params) -> Result<String, FlowError>);

impl Node<Log> for ReadParam {
    type Prep = String;
    type Output = ();

    fn prep(&self, _: &Log, params: &Params) -> Result<String> {
        Ok((self.0)(params)?)
    }

    async fn exec(&self, _: &String, _: Ctx<'_>) -> Result<()> {
        Ok(())
    }

    fn post(&self, log: &mut Log, read: String, _: ()) -> Result<Action> {
        log.visits.push(read);
        Ok(Action::DEFAULT)
    }
}

/// A flow whose only node is `node`, named `name`.
fn single<N, M>(name: &str, node: N) -> Flow<Log>
where
    N: miniflow::IntoNode<Log, M>,
{
    let mut flow = Flow::new();
    flow.add(name, node);
    flow
}

/// A batch flow post that keeps what it got in `Log::seen` and returns `action`.
fn keep_seen(
    action: &'static str,
) -> impl Fn(&mut Log, Vec<Params>, Vec<Action>) -> Result<Action> + Send + Sync {
    move |log, sets, actions| {
        log.seen = Some((sets, actions));
        Ok(Action::new(action))
    }
}

fn run(flow: &Flow<Log>, log: &mut Log) -> Result<Action, FlowError> {
    smol::block_on(flow.run(log))
}

/// The top flow runs `triage` (an inner flow: `read`, then `classify`, which answers "spam"
/// when the counter is positive and "ham" otherwise), then `trash` or `inbox`.
fn triage_flow() -> Flow<Log> {
    let mut inner = Flow::new();
    let read = inner.add("read", mark("default"));
    let classify = inner
        .add("classify", mark_with(|log| if log.count > 0 { "spam".into() } else { "ham".into() }));
    inner.then(read, classify);

    let mut outer = Flow::new();
    let triage = outer.add("triage", inner);
    let trash = outer.add("trash", mark("trashed"));
    let inbox = outer.add("inbox", mark("filed"));
    outer.edge(triage, "spam", trash);
    outer.edge(triage, "ham", inbox);
    outer
}

#[test]
fn inner_flow_ending_with_spam_routes_the_parent_to_trash() {
    let flow = triage_flow();
    let mut log = Log::with_count(1);
    assert_eq!(run(&flow, &mut log).unwrap(), "trashed");
    assert_eq!(log.visits, ["triage/read", "triage/classify", "trash"]);
}

#[test]
fn inner_flow_ending_with_ham_routes_the_parent_to_inbox() {
    let flow = triage_flow();
    let mut log = Log::with_count(0);
    assert_eq!(run(&flow, &mut log).unwrap(), "filed");
    assert_eq!(log.visits, ["triage/read", "triage/classify", "inbox"]);
}

#[test]
fn inner_flow_end_edge_passes_its_action_up() {
    let mut inner = Flow::new();
    let tick = inner.add(
        "tick",
        node_fn(|log: &mut Log, _: &Params| {
            log.count += 1;
            log.visits.push(format!("tick {}", log.count));
            Ok(if log.count < 3 { "again" } else { "out" }.into())
        }),
    );
    inner.edge(tick, "again", tick);
    inner.end(tick, "out");

    let mut outer = Flow::new();
    let ticker = outer.add("ticker", inner);
    let after = outer.add("after", mark("finished"));
    let wrong = outer.add("wrong", mark("wrong"));
    outer.edge(ticker, "out", after);
    outer.then(ticker, wrong);
    outer.edge(ticker, "again", wrong);

    let mut log = Log::default();
    assert_eq!(run(&outer, &mut log).unwrap(), "finished");
    assert_eq!(log.count, 3);
    assert_eq!(log.visits, ["tick 1", "tick 2", "tick 3", "after"]);
}

#[test]
fn unknown_action_inside_an_inner_flow_names_the_full_path() {
    let mut inner = Flow::new();
    let a = inner.add("a", mark("default"));
    let b = inner.add("b", mark("nope"));
    inner.then(a, b);
    inner.edge(b, "yes", a);
    inner.end(b, "stop");
    let outer = single("inner", inner);

    let mut top = Flow::new();
    let outer = top.add("outer", outer);
    let after = top.add("after", mark("default"));
    top.then(outer, after);

    let mut log = Log::default();
    let err = run(&top, &mut log).unwrap_err();

    let FlowError::UnknownAction { node, action, expected, .. } = &err else {
        panic!("expected UnknownAction, got {err:?}");
    };
    assert_eq!(node, "outer/inner/b");
    assert_eq!(action, "nope");
    assert_eq!(expected, &[Action::new("yes"), Action::new("stop")]);
    assert_eq!(
        err.to_string(),
        "node `outer/inner/b` returned action \"nope\", but its edges are for \"yes\", \"stop\"; \
         add an edge for it, or `Flow::end` if it should end the flow"
    );
    assert_eq!(log.visits, ["outer/inner/a", "outer/inner/b"]);
}

#[test]
fn inner_flow_result_without_a_parent_edge_is_an_unknown_action_of_the_nested_node() {
    let mut top = Flow::new();
    let asked = top.add("ask", single("answer", mark("maybe")));
    let yes = top.add("yes", mark("default"));
    let no = top.add("no", mark("default"));
    top.edge(asked, "yes", yes);
    top.edge(asked, "no", no);

    let mut log = Log::default();
    let err = run(&top, &mut log).unwrap_err();

    let FlowError::UnknownAction { node, action, expected, .. } = &err else {
        panic!("expected UnknownAction, got {err:?}");
    };
    assert_eq!((node.as_str(), action.as_str()), ("ask", "maybe"));
    assert_eq!(expected, &[Action::new("yes"), Action::new("no")]);
    assert_eq!(log.visits, ["ask/answer"]);
}

/// `outer` (a flow) holds `inner` (a flow) holding `start`, `node` named `name`, then `after`;
/// the top flow goes on to `top_after`.
fn two_levels_around<N, M>(name: &str, node: N) -> Flow<Log>
where
    N: miniflow::IntoNode<Log, M>,
{
    let mut inner = Flow::new();
    let start = inner.add("start", mark("default"));
    let middle = inner.add(name, node);
    let after = inner.add("after", mark("default"));
    inner.then(start, middle);
    inner.then(middle, after);

    let mut top = Flow::new();
    let outer = top.add("outer", single("inner", inner));
    let top_after = top.add("top_after", mark("default"));
    top.then(outer, top_after);
    top
}

#[test]
fn exec_error_two_levels_deep_names_the_path_and_keeps_the_last_source() {
    let top = two_levels_around("fetch", AlwaysFails { attempts: 3 });
    let mut log = Log::default();

    let err = run(&top, &mut log).unwrap_err();

    let FlowError::NodeFailed { node, phase, attempts, .. } = &err else {
        panic!("expected NodeFailed, got {err:?}");
    };
    assert_eq!(node, "outer/inner/fetch");
    assert_eq!(*phase, Phase::Exec);
    assert_eq!(*attempts, 3);
    assert_eq!(err.node(), "outer/inner/fetch");
    assert_eq!(err.to_string(), "node `outer/inner/fetch` failed in exec after 3 attempts");
    let source = std::error::Error::source(&err).expect("the user's error is the source");
    // The error of the last attempt (0-based attempt 2), as the user's own type.
    assert_eq!(source.downcast_ref::<Boom>(), Some(&Boom { code: 42 }));
    assert_eq!(source.to_string(), "boom 42");
    assert_eq!(log.visits, ["outer/inner/start"]);
}

#[test]
fn single_attempt_exec_error_says_attempt_in_the_singular() {
    let top = two_levels_around("fetch", AlwaysFails { attempts: 1 });
    let err = run(&top, &mut Log::default()).unwrap_err();

    let FlowError::NodeFailed { node, phase, attempts, .. } = &err else {
        panic!("expected NodeFailed, got {err:?}");
    };
    assert_eq!((node.as_str(), *phase, *attempts), ("outer/inner/fetch", Phase::Exec, 1));
    assert_eq!(err.to_string(), "node `outer/inner/fetch` failed in exec after 1 attempt");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.downcast_ref::<Boom>(), Some(&Boom { code: 40 }));
}

#[test]
fn post_error_two_levels_deep_names_the_path_and_keeps_the_source() {
    let save = node_fn(|log: &mut Log, _: &Params| {
        log.visits.push("save wrote this before failing".into());
        Err(Box::new(Boom { code: 7 }))
    });
    let top = two_levels_around("save", save);
    let mut log = Log::default();

    let err = run(&top, &mut log).unwrap_err();

    let FlowError::NodeFailed { node, phase, attempts, .. } = &err else {
        panic!("expected NodeFailed, got {err:?}");
    };
    assert_eq!(node, "outer/inner/save");
    assert_eq!(*phase, Phase::Post);
    assert_eq!(*attempts, 1);
    assert_eq!(err.to_string(), "node `outer/inner/save` failed in post");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.downcast_ref::<Boom>(), Some(&Boom { code: 7 }));
    assert_eq!(log.visits, ["outer/inner/start", "save wrote this before failing"]);
}

#[test]
fn run_with_params_reach_nodes_in_nested_flows() {
    let leaf = node_fn(|log: &mut Log, p: &Params| {
        log.visits.push(format!(
            "leaf: user={} limit={} verbose={} ratio={}",
            p.str("user")?,
            p.int("limit")?,
            p.bool("verbose")?,
            p.float("ratio")?
        ));
        Ok(Action::DEFAULT)
    });
    let top_node = node_fn(|log: &mut Log, p: &Params| {
        log.visits.push(format!("top: user={}", p.str("user")?));
        Ok(Action::DEFAULT)
    });
    let mut top = Flow::new();
    let first = top.add("first", top_node);
    let outer = top.add("outer", single("inner", single("leaf", leaf)));
    top.then(first, outer);

    let params =
        Params::new().with("user", "ann").with("limit", 3).with("verbose", true).with("ratio", 0.5);
    let mut log = Log::default();
    let last =
        smol::block_on(top.run_with(&mut log, RunOptions::new().params(params.clone()))).unwrap();

    assert_eq!(last, Action::DEFAULT);
    assert_eq!(log.visits, ["top: user=ann", "leaf: user=ann limit=3 verbose=true ratio=0.5"]);
}

/// The store for the school example: which students are in each (school, class).
#[derive(Debug, Default)]
struct Schools {
    roster: BTreeMap<(&'static str, &'static str), Vec<&'static str>>,
    lines: Vec<String>,
}

impl Schools {
    fn new() -> Self {
        let mut roster = BTreeMap::new();
        roster.insert(("Hilltop", "4a"), vec!["ann", "bob"]);
        roster.insert(("Hilltop", "4b"), vec!["cy"]);
        roster.insert(("Riverside", "5c"), vec!["dee", "eve"]);
        Schools { roster, lines: Vec::new() }
    }
}

/// schools (batch flow: sets `school` and `label`) → classes (batch flow: sets `class` and
/// `label`) → students (batch flow: sets `student`) → grade (reads them all), with a
/// `summary` node after `classes` in each school run and `wrap_up` at the top.
fn school_flow() -> Flow<Schools> {
    let grade = node_fn(|s: &mut Schools, p: &Params| {
        s.lines.push(format!(
            "{} {} {} {} label={}",
            p.int("year")?,
            p.str("school")?,
            p.str("class")?,
            p.str("student")?,
            p.str("label")?
        ));
        Ok(Action::DEFAULT)
    });
    let mut per_student = Flow::new();
    per_student.add("grade", grade);
    let students = BatchFlow::new(per_student, |s: &Schools, p: &Params| {
        let key = (p.str("school")?, p.str("class")?);
        let (_, names) =
            s.roster.iter().find(|((sc, cl), _)| (*sc, *cl) == key).ok_or("no such class")?;
        Ok(names.iter().map(|n| Params::new().with("student", *n)).collect())
    });

    let mut per_class = Flow::new();
    per_class.add("students", students);
    let classes = BatchFlow::new(per_class, |s: &Schools, p: &Params| {
        let school = p.str("school")?;
        Ok(s.roster
            .keys()
            .filter(|(sc, _)| *sc == school)
            .map(|(_, class)| Params::new().with("class", *class).with("label", "class"))
            .collect())
    });

    let mut per_school = Flow::new();
    let classes = per_school.add("classes", classes);
    let summary = per_school.add(
        "summary",
        node_fn(|s: &mut Schools, p: &Params| {
            s.lines.push(format!("summary {} label={}", p.str("school")?, p.str("label")?));
            Ok(Action::DEFAULT)
        }),
    );
    per_school.then(classes, summary);
    let schools = BatchFlow::new(per_school, |_: &Schools, _: &Params| {
        Ok(["Hilltop", "Riverside"]
            .into_iter()
            .map(|school| Params::new().with("school", school).with("label", "school"))
            .collect())
    });

    let mut top = Flow::new();
    let schools = top.add("schools", schools);
    let wrap_up = top.add(
        "wrap_up",
        node_fn(|s: &mut Schools, p: &Params| {
            s.lines.push(format!(
                "wrap_up label={} has_school={}",
                p.str("label")?,
                p.contains("school")
            ));
            Ok("graded".into())
        }),
    );
    top.then(schools, wrap_up);
    top
}

#[test]
fn batch_flow_params_merge_down_through_nested_batch_flows() {
    let flow = school_flow();
    let mut store = Schools::new();
    let params = Params::new().with("year", 2024).with("label", "run");

    let last = smol::block_on(flow.run_with(&mut store, RunOptions::new().params(params.clone())))
        .unwrap();

    assert_eq!(last, "graded");
    assert_eq!(
        store.lines,
        [
            "2024 Hilltop 4a ann label=class",
            "2024 Hilltop 4a bob label=class",
            "2024 Hilltop 4b cy label=class",
            "summary Hilltop label=school",
            "2024 Riverside 5c dee label=class",
            "2024 Riverside 5c eve label=class",
            "summary Riverside label=school",
            "wrap_up label=run has_school=false",
        ]
    );
}

#[test]
fn missing_param_deep_in_nested_batch_flows_names_the_full_path() {
    let flow = school_flow();
    let mut store = Schools::new();
    // No "year": the first grade node to ask for it fails.
    let params = Params::new().with("label", "run");

    let err = smol::block_on(flow.run_with(&mut store, RunOptions::new().params(params.clone())))
        .unwrap_err();

    let FlowError::Param { node, key, expected, found, .. } = &err else {
        panic!("expected Param, got {err:?}");
    };
    assert_eq!(node, "schools[0]/classes[0]/students[0]/grade");
    assert_eq!(key, "year");
    assert_eq!(*expected, "an integer");
    assert_eq!(*found, None);
    assert!(store.lines.is_empty());
}

/// A flow running the batch flow `grades` (one sub-run per set) whose inner flow is the node
/// `avg` reading a param with `read`.
fn grades_flow(sets: Vec<Params>, read: fn(&Params) -> Result<String, FlowError>) -> Flow<Log> {
    let grades =
        BatchFlow::new(single("avg", ReadParam(read)), move |_: &Log, _: &Params| Ok(sets.clone()))
            .post(keep_seen("graded"));
    single("grades", grades)
}

fn read_score_int(p: &Params) -> Result<String, FlowError> {
    Ok(format!("score {}", p.int("score")?))
}

#[test]
fn missing_param_in_a_batch_sub_run_names_the_node_path_and_key() {
    let sets = vec![Params::new().with("score", 90), Params::new().with("other", 1)];
    let flow = grades_flow(sets, read_score_int);
    let mut log = Log::default();

    let err = run(&flow, &mut log).unwrap_err();

    let FlowError::Param { node, key, expected, found, .. } = &err else {
        panic!("expected Param, got {err:?}");
    };
    assert_eq!(node, "grades[1]/avg");
    assert_eq!(key, "score");
    assert_eq!(*expected, "an integer");
    assert_eq!(*found, None);
    assert_eq!(err.node(), "grades[1]/avg");
    assert_eq!(
        err.to_string(),
        "node `grades[1]/avg`: param `score` is missing; set it in the params the run or a batch flow passes down"
    );
    // Sub-run 0 finished; the batch flow's post never ran.
    assert_eq!(log.visits, ["score 90"]);
    assert!(log.seen.is_none());
}

#[test]
fn mistyped_params_report_the_expected_and_found_types() {
    type Case = (Params, fn(&Params) -> Result<String, FlowError>, &'static str, &'static str);
    let cases: [Case; 5] = [
        (Params::new().with("score", "high"), read_score_int, "an integer", "a string"),
        (
            Params::new().with("score", 90),
            |p| Ok(p.float("score")?.to_string()),
            "a float",
            "an integer",
        ),
        (
            Params::new().with("score", 1.5),
            |p| Ok(p.str("score")?.to_owned()),
            "a string",
            "a float",
        ),
        (Params::new().with("score", true), read_score_int, "an integer", "a bool"),
        (
            Params::new().with("score", 3),
            |p| Ok(p.bool("score")?.to_string()),
            "a bool",
            "an integer",
        ),
    ];
    for (set, read, want_expected, want_found) in cases {
        let flow = grades_flow(vec![set], read);
        let mut log = Log::default();

        let err = run(&flow, &mut log).unwrap_err();

        let FlowError::Param { node, key, expected, found, .. } = &err else {
            panic!("expected Param, got {err:?}");
        };
        assert_eq!(node, "grades[0]/avg");
        assert_eq!(key, "score");
        assert_eq!(*expected, want_expected);
        assert_eq!(*found, Some(want_found));
        assert_eq!(
            err.to_string(),
            format!(
                "node `grades[0]/avg`: param `score` should be {want_expected}, but it is {want_found}"
            )
        );
        assert!(log.visits.is_empty());
    }
}

#[test]
fn batch_flow_prep_param_error_names_the_batch_flow() {
    let classes = BatchFlow::new(single("leaf", mark("default")), |_: &Log, p: &Params| {
        Ok(vec![Params::new().with("school", p.str("school")?.to_owned())])
    });
    let mut top = Flow::new();
    let first = top.add("first", mark("default"));
    let classes = top.add("classes", classes);
    top.then(first, classes);

    let mut log = Log::default();
    let err = run(&top, &mut log).unwrap_err();

    let FlowError::Param { node, key, expected, found, .. } = &err else {
        panic!("expected Param, got {err:?}");
    };
    assert_eq!((node.as_str(), key.as_str()), ("classes", "school"));
    assert_eq!((*expected, *found), ("a string", None));
    assert_eq!(log.visits, ["first"]);
}

#[test]
fn batch_flow_post_gets_the_sets_and_each_sub_runs_last_action_in_order() {
    let judge = node_fn(|log: &mut Log, p: &Params| {
        let (student, verdict) = (p.str("student")?, p.str("verdict")?);
        log.visits.push(format!("{} {student}", p.str("term")?));
        Ok(Action::from(verdict.to_owned()))
    });
    let sets = vec![
        Params::new().with("student", "ann").with("verdict", "pass"),
        Params::new().with("student", "bob").with("verdict", "fail"),
        Params::new().with("student", "cy").with("verdict", "pass"),
    ];
    let sets_for_prep = sets.clone();
    let review =
        BatchFlow::new(
            single("judge", judge),
            move |_: &Log, _: &Params| Ok(sets_for_prep.clone()),
        )
        .post(keep_seen("reviewed"));
    let mut top = Flow::new();
    let review = top.add("review", review);
    let notify = top.add("notify", mark("notified"));
    top.edge(review, "reviewed", notify);

    let mut log = Log::default();
    let inherited = Params::new().with("term", "spring");
    let last = smol::block_on(top.run_with(&mut log, RunOptions::new().params(inherited.clone())))
        .unwrap();

    assert_eq!(last, "notified");
    assert_eq!(log.visits, ["spring ann", "spring bob", "spring cy", "notify"]);
    let (got_sets, actions) = log.seen.expect("the batch flow's post ran");
    // The sets exactly as prep returned them: not merged with the inherited params.
    assert_eq!(got_sets, sets);
    assert_eq!(actions, [Action::new("pass"), Action::new("fail"), Action::new("pass")]);
}

#[test]
fn batch_flow_with_no_sets_runs_nothing_and_post_gets_empty_lists() {
    let inner = single(
        "never",
        node_fn(|log: &mut Log, _: &Params| {
            log.visits.push("inner ran".into());
            Ok(Action::DEFAULT)
        }),
    );
    let batch = BatchFlow::new(inner, |_: &Log, _: &Params| Ok(Vec::new()))
        .post(keep_seen("nothing_to_do"));
    let mut top = Flow::new();
    let batch = top.add("batch", batch);
    let after = top.add("after", mark("done"));
    top.edge(batch, "nothing_to_do", after);

    let mut log = Log::default();
    assert_eq!(run(&top, &mut log).unwrap(), "done");
    assert_eq!(log.visits, ["after"]);
    assert_eq!(log.seen, Some((Vec::new(), Vec::new())));
}

#[test]
fn batch_flow_without_post_returns_default() {
    let inner = single("item", mark("item_done"));
    let batch = BatchFlow::new(inner, |_: &Log, _: &Params| {
        Ok(vec![Params::new().with("i", 0), Params::new().with("i", 1)])
    });
    let mut top = Flow::new();
    let batch = top.add("batch", batch);
    let after = top.add("after", mark("done"));
    top.then(batch, after);

    let mut log = Log::default();
    assert_eq!(run(&top, &mut log).unwrap(), "done");
    assert_eq!(log.visits, ["batch[0]/item", "batch[1]/item", "after"]);
}

#[test]
fn error_in_sub_run_i_names_it_and_stops_the_remaining_sub_runs() {
    let check = node_fn(|log: &mut Log, p: &Params| {
        let n = p.int("n")?;
        log.visits.push(format!("check {n}"));
        log.count += 1;
        if n == 2 {
            return Err(Box::new(Boom { code: 2 }));
        }
        Ok(Action::DEFAULT)
    });
    let items = BatchFlow::new(single("check", check), |_: &Log, _: &Params| {
        Ok((0..5).map(|n| Params::new().with("n", n)).collect())
    })
    .post(keep_seen("checked"));
    let mut top = Flow::new();
    let items = top.add("items", items);
    let after = top.add("after", mark("done"));
    top.edge(items, "checked", after);

    let mut log = Log::default();
    let err = run(&top, &mut log).unwrap_err();

    let FlowError::NodeFailed { node, phase, attempts, .. } = &err else {
        panic!("expected NodeFailed, got {err:?}");
    };
    assert_eq!(node, "items[2]/check");
    assert_eq!(*phase, Phase::Post);
    assert_eq!(*attempts, 1);
    assert_eq!(err.to_string(), "node `items[2]/check` failed in post");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.downcast_ref::<Boom>(), Some(&Boom { code: 2 }));
    // Sub-runs 3 and 4 never started; neither the post nor `after` ran.
    assert_eq!(log.count, 3);
    assert_eq!(log.visits, ["check 0", "check 1", "check 2"]);
    assert!(log.seen.is_none());
}

#[test]
fn empty_inner_flow_fails_the_run_with_its_path_before_any_node_runs() {
    let mut top = Flow::new();
    let first = top.add("first", mark("default"));
    let inner = top.add("inner", Flow::<Log>::new());
    top.then(first, inner);

    let mut log = Log::default();
    let err = run(&top, &mut log).unwrap_err();

    let FlowError::InvalidConfig { node, message, .. } = &err else {
        panic!("expected InvalidConfig, got {err:?}");
    };
    assert_eq!(node, "inner");
    assert_eq!(message, "flow `inner` has no nodes; add one with `Flow::add` before running it");
    assert_eq!(
        err.to_string(),
        "flow `inner` has no nodes; add one with `Flow::add` before running it"
    );
    // The outermost flow checks the whole tree before it runs anything.
    assert!(log.visits.is_empty(), "{:?}", log.visits);
}

#[test]
fn empty_inner_flow_of_a_batch_flow_fails_before_any_sub_run() {
    let each = BatchFlow::new(Flow::<Log>::new(), |_: &Log, _: &Params| {
        Ok(vec![Params::new().with("i", 0), Params::new().with("i", 1)])
    });
    let top = single("each", each);

    let err = run(&top, &mut Log::default()).unwrap_err();

    let FlowError::InvalidConfig { node, message, .. } = &err else {
        panic!("expected InvalidConfig, got {err:?}");
    };
    // Found by the check of the whole tree, which names flows, not sub-runs.
    assert_eq!(node, "each");
    assert_eq!(message, "flow `each` has no nodes; add one with `Flow::add` before running it");
    assert_eq!(
        err.to_string(),
        "flow `each` has no nodes; add one with `Flow::add` before running it"
    );
}

/// A node that waits `ms` milliseconds (a param) in `exec`, then records `name` (a param) and
/// returns `"<name>-ok"`.
struct Sleepy;

impl Node<Log> for Sleepy {
    type Prep = (String, u64);
    type Output = ();

    fn prep(&self, _: &Log, p: &Params) -> Result<(String, u64)> {
        Ok((p.str("name")?.to_owned(), u64::try_from(p.int("ms")?)?))
    }

    async fn exec(&self, (_, ms): &(String, u64), _: Ctx<'_>) -> Result<()> {
        smol::Timer::after(Duration::from_millis(*ms)).await;
        Ok(())
    }

    fn post(&self, log: &mut Log, (name, _): (String, u64), _: ()) -> Result<Action> {
        log.visits.push(format!("finished {name}"));
        Ok(Action::from(format!("{name}-ok")))
    }
}

#[test]
fn batch_async_flow_post_gets_actions_in_input_order_whatever_finished_first() {
    let fan_out = BatchAsyncFlow::new(single("sleep", Sleepy), |_: &Log, _: &Params| {
        Ok([("slow", 150), ("medium", 75), ("fast", 0)]
            .into_iter()
            .map(|(name, ms)| Params::new().with("name", name).with("ms", ms))
            .collect())
    })
    .max_in_flight(3)
    .post(keep_seen("all_done"));
    let top = single("fan_out", fan_out);

    let mut log = Log::default();
    assert_eq!(run(&top, &mut log).unwrap(), "all_done");

    // They overlapped: the fastest finished first...
    assert_eq!(log.visits, ["finished fast", "finished medium", "finished slow"]);
    // ...but post sees the actions in input order.
    let (sets, actions) = log.seen.unwrap();
    assert_eq!(sets.len(), 3);
    assert_eq!(actions, [Action::new("slow-ok"), Action::new("medium-ok"), Action::new("fast-ok")]);
}

/// A node whose `exec` runs a flow of its own (on a store of its own), as a node that
/// delegates to a sub-agent does, and passes its error on with `?`.
struct RunsItsOwnFlow(Flow<Log>);

impl Node<Log> for RunsItsOwnFlow {
    type Prep = ();
    type Output = Action;

    fn prep(&self, _: &Log, _: &Params) -> Result<()> {
        Ok(())
    }

    async fn exec(&self, _: &(), _: Ctx<'_>) -> Result<Action> {
        Ok(self.0.run(&mut Log::default()).await?)
    }

    fn post(&self, log: &mut Log, _: (), action: Action) -> Result<Action> {
        log.visits.push(format!("own flow ended with {action}"));
        Ok(action)
    }
}

#[test]
fn param_error_of_a_flow_a_node_runs_itself_stays_that_flows_and_fails_the_node() {
    // outer/delegate runs, in its exec, a flow whose node `avg` asks for a param nobody set.
    // That error already names `avg` (in the flow that ran it): it must not be re-addressed
    // to `outer/delegate` as if `delegate` had asked, but fail `delegate` with it as source.
    let mut outer = Flow::new();
    outer.add("delegate", RunsItsOwnFlow(single("avg", ReadParam(read_score_int))));
    let flow = single("outer", outer);
    let mut log = Log::default();

    let err = run(&flow, &mut log).unwrap_err();

    let FlowError::NodeFailed { node, phase, attempts, source, .. } = &err else {
        panic!("expected NodeFailed, got {err:?}");
    };
    assert_eq!((node.as_str(), *phase, *attempts), ("outer/delegate", Phase::Exec, 1));
    assert_eq!(err.to_string(), "node `outer/delegate` failed in exec after 1 attempt");
    let Some(FlowError::Param { node, key, expected, found, .. }) = source.downcast_ref() else {
        panic!("expected a Param source, got {source:?}");
    };
    assert_eq!(
        (node.as_str(), key.as_str(), *expected, *found),
        ("avg", "score", "an integer", None)
    );
    assert_eq!(
        source.to_string(),
        "node `avg`: param `score` is missing; set it in the params the run or a batch flow passes down"
    );
    assert!(log.visits.is_empty());
}
