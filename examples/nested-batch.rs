//! Nested batch flows: a school's report, class by class, student by student.
//!
//! A [`BatchFlow`] runs a whole flow once per set of [`Params`] its prep returns. Params are
//! the "which piece of work is this" beside the shared store's "what has been done so far":
//! a small read-only map each node sees in `prep`. When batch flows nest, their params merge:
//! the outer batch flow runs once per class with `class = "3a"`, the batch flow inside it runs
//! once per student of that class with `student = "Ada"`, and the node at the bottom sees
//! both, so it knows exactly whose grades to average and where to write the result.
//!
//! The classes are worked on two at a time by a [`BatchAsyncFlow`] (the concurrent twin of
//! `BatchFlow`), the students of a class one after another by a `BatchFlow`. That is safe
//! because each sub-run writes its own slot in the store (keyed by class and student), never
//! a shared scratch field that two classes could overwrite. No model is involved; the grades
//! are data in the example, and every student has four of them so that every average is an
//! exact decimal.
//!
//! Run with: `cargo run --example nested-batch`

use std::collections::BTreeMap;

use miniflow::{Action, BatchAsyncFlow, BatchFlow, Ctx, Flow, Node, Params, Result};

mod support;

/// The shared store: the grades going in, the averages coming out. Maps are keyed by class,
/// then student, so every sub-run has a slot of its own.
#[derive(Debug, Default)]
struct Store {
    grades: BTreeMap<String, BTreeMap<String, Vec<u32>>>,
    student_averages: BTreeMap<String, BTreeMap<String, f64>>,
    class_averages: BTreeMap<String, f64>,
}

/// One student's grades, with the keys `post` needs to file the result.
struct Student {
    class: String,
    name: String,
    grades: Vec<u32>,
}

/// Averages one student's grades: the student named by the `student` param, in the class
/// named by the `class` param — two params set by two different batch flows.
struct StudentAverage;

impl Node<Store> for StudentAverage {
    type Prep = Student;
    type Output = f64;

    fn prep(&self, store: &Store, params: &Params) -> Result<Student> {
        let (class, name) = (params.str("class")?, params.str("student")?);
        let grades = store
            .grades
            .get(class)
            .and_then(|students| students.get(name))
            .ok_or_else(|| format!("no grades for {name} in class {class}"))?;
        Ok(Student { class: class.to_string(), name: name.to_string(), grades: grades.clone() })
    }

    async fn exec(&self, student: &Student, _cx: Ctx<'_>) -> Result<f64> {
        if student.grades.is_empty() {
            return Err(format!("{} has no grades", student.name).into());
        }
        Ok(student.grades.iter().sum::<u32>() as f64 / student.grades.len() as f64)
    }

    fn post(&self, store: &mut Store, student: Student, average: f64) -> Result<Action> {
        let class = store.student_averages.entry(student.class).or_default();
        class.insert(student.name, average);
        Ok(Action::DEFAULT)
    }
}

/// Averages the student averages of the class named by the `class` param. It runs after the
/// students' batch flow, in the same sub-run, so those averages are in the store by now.
struct ClassAverage;

impl Node<Store> for ClassAverage {
    /// The class and its students' averages.
    type Prep = (String, Vec<f64>);
    type Output = f64;

    fn prep(&self, store: &Store, params: &Params) -> Result<(String, Vec<f64>)> {
        let class = params.str("class")?;
        let averages = store
            .student_averages
            .get(class)
            .ok_or_else(|| format!("class {class} has no student averages yet"))?;
        Ok((class.to_string(), averages.values().copied().collect()))
    }

    async fn exec(&self, (class, averages): &(String, Vec<f64>), _cx: Ctx<'_>) -> Result<f64> {
        if averages.is_empty() {
            return Err(format!("class {class} has no students").into());
        }
        Ok(averages.iter().sum::<f64>() / averages.len() as f64)
    }

    fn post(
        &self,
        store: &mut Store,
        (class, _): (String, Vec<f64>),
        average: f64,
    ) -> Result<Action> {
        store.class_averages.insert(class, average);
        Ok(Action::DEFAULT)
    }
}

/// One class: its students, four grades each.
type Roster = &'static [(&'static str, [u32; 4])];

/// The school's grades, class by class.
const SCHOOL: [(&str, Roster); 3] = [
    (
        "3a",
        &[
            ("Ada", [92, 88, 95, 90]),
            ("Ben", [75, 80, 72, 78]),
            ("Cleo", [85, 91, 88, 86]),
            ("Dev", [60, 70, 65, 68]),
        ],
    ),
    (
        "3b",
        &[
            ("Emil", [88, 84, 90, 86]),
            ("Fay", [70, 75, 80, 72]),
            ("Gus", [95, 98, 92, 96]),
            ("Hana", [82, 79, 85, 81]),
            ("Ivo", [66, 73, 70, 69]),
        ],
    ),
    (
        "4a",
        &[
            ("Jo", [78, 82, 80, 84]),
            ("Kai", [90, 93, 89, 91]),
            ("Lea", [55, 62, 58, 65]),
            ("Max", [84, 88, 86, 87]),
        ],
    ),
];

/// [`SCHOOL`] as the store keeps it: class → student → grades.
fn grades() -> BTreeMap<String, BTreeMap<String, Vec<u32>>> {
    SCHOOL
        .iter()
        .map(|(class, roster)| {
            let students = roster.iter().map(|(name, grades)| (name.to_string(), grades.to_vec()));
            (class.to_string(), students.collect())
        })
        .collect()
}

fn main() -> support::Main {
    // Innermost: one student.
    let mut student = Flow::new();
    student.add("average", StudentAverage);

    // One class: a batch flow over its students, then the class average. The batch flow's prep
    // reads the `class` param its own parent set, and adds `student` for each sub-run.
    let students = BatchFlow::new(student, |store: &Store, params: &Params| {
        let class = params.str("class")?;
        let roster = store.grades.get(class).ok_or_else(|| format!("no class {class}"))?;
        Ok(roster.keys().map(|name| Params::new().with("student", name.clone())).collect())
    });
    let mut class = Flow::new();
    let students = class.add("students", students);
    let class_average = class.add("class_average", ClassAverage);
    class.then(students, class_average);

    // The school: a batch flow over the classes, one sub-run with `class` set for each, two
    // classes in flight at once. Their sub-runs interleave, but every `post` writes under its
    // own class, so the report comes out the same as one class after another.
    let classes = BatchAsyncFlow::new(class, |store: &Store, _params: &Params| {
        Ok(store.grades.keys().map(|class| Params::new().with("class", class.clone())).collect())
    })
    .max_in_flight(2);
    let mut school = Flow::new();
    school.add("classes", classes);

    let mut store = Store { grades: grades(), ..Store::default() };
    smol::block_on(school.run(&mut store))?;

    for (class, students) in &store.student_averages {
        println!("class {class}");
        for (name, average) in students {
            let grades = &store.grades[class][name];
            let grades: Vec<String> = grades.iter().map(u32::to_string).collect();
            println!("  {name:<5} {}  average {average}", grades.join(" "));
        }
        println!("  class average {}", store.class_averages[class]);
    }
    Ok(())
}
