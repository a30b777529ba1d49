//! Nested batch flows: a school's report, class by class, student by student.
//!
//! A [`BatchFlow`] runs a whole flow once per set of [`Params`] its prep returns. Params say
//! "which piece of work is this", beside the shared store's "what has been done so far": a
//! small read-only map every node of the sub-run sees. When batch flows nest, their params
//! merge: the outer batch flow runs once per class with `class = "3a"`, the one inside it
//! once per student of that class with `student = "Ada"`, and the step at the bottom sees
//! both, so it knows whose grades to average and where to write the result.
//!
//! The classes are worked on two at a time by a [`BatchAsyncFlow`] (the concurrent twin of
//! `BatchFlow`), the students of a class one after another. That is safe because each
//! sub-run writes its own slot in the store (keyed by class and student), never a shared
//! scratch field that two classes could overwrite. The steps only compute, so each is a
//! [`node_fn`].
//!
//! Run with: `cargo run --example nested-batch`. No model is involved: the grades are data
//! (`support/school.rs`).

use std::collections::BTreeMap;

use miniflow::{Action, BatchAsyncFlow, BatchFlow, Flow, Params, Result, node_fn};
use support::school::{self, Grades};

mod support;

/// The school: a batch flow over the classes; in each, a batch flow over its students, then
/// the class average.
fn flow() -> Flow<Store> {
    // The innermost flow: one student.
    let mut student = Flow::new();
    student.add("average", node_fn(student_average));

    // One class: a sub-run per student, then the class average. The batch flow's prep reads
    // the `class` param its parent set, and adds `student` for each sub-run.
    let students = BatchFlow::new(student, |store: &Store, params: &Params| {
        let class = params.str("class")?;
        let roster = store.grades.get(class).ok_or_else(|| format!("no class {class}"))?;
        Ok(roster.keys().map(|name| Params::new().with("student", name.clone())).collect())
    });
    let mut class = Flow::new();
    let students = class.add("students", students);
    let class_average = class.add("class_average", node_fn(class_average));
    class.then(students, class_average);

    // The school: a sub-run per class, two classes in flight at once.
    let classes = BatchAsyncFlow::new(class, |store: &Store, _params: &Params| {
        Ok(store.grades.keys().map(|class| Params::new().with("class", class.clone())).collect())
    })
    .max_in_flight(2);
    let mut school = Flow::new();
    school.add("classes", classes);
    school
}

fn main() -> support::Main {
    let mut store = Store { grades: school::grades(), ..Store::default() };
    smol::block_on(flow().run(&mut store))?;

    for (class, students) in &store.student_averages {
        println!("class {class}");
        for (name, average) in students {
            let grades: Vec<String> =
                store.grades[class][name].iter().map(u32::to_string).collect();
            println!("  {name:<5} {}  average {average}", grades.join(" "));
        }
        println!("  class average {}", store.class_averages[class]);
    }
    Ok(())
}

/// The shared store: the grades going in, the averages coming out. Maps are keyed by class,
/// then student, so every sub-run has a slot of its own.
#[derive(Debug, Default)]
struct Store {
    grades: Grades,
    student_averages: BTreeMap<String, BTreeMap<String, f64>>,
    class_averages: BTreeMap<String, f64>,
}

/// Averages one student's grades: the student the `student` param names, in the class the
/// `class` param names (two params, set by two different batch flows).
fn student_average(store: &mut Store, params: &Params) -> Result<Action> {
    let (class, name) = (params.str("class")?, params.str("student")?);
    let grades = store.grades.get(class).and_then(|students| students.get(name));
    let grades = grades.ok_or_else(|| format!("no grades for {name} in class {class}"))?;
    if grades.is_empty() {
        return Err(format!("{name} has no grades").into());
    }
    let average = grades.iter().sum::<u32>() as f64 / grades.len() as f64;
    let averages = store.student_averages.entry(class.to_string()).or_default();
    averages.insert(name.to_string(), average);
    Ok(Action::DEFAULT)
}

/// Averages the student averages of the class the `class` param names. It runs after the
/// students' batch flow, in the same sub-run, so their averages are in the store by now.
fn class_average(store: &mut Store, params: &Params) -> Result<Action> {
    let class = params.str("class")?;
    let averages = store.student_averages.get(class).filter(|a| !a.is_empty());
    let averages = averages.ok_or_else(|| format!("class {class} has no student averages"))?;
    let average = averages.values().sum::<f64>() / averages.len() as f64;
    store.class_averages.insert(class.to_string(), average);
    Ok(Action::DEFAULT)
}
