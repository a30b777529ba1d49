//! The grades `examples/nested-batch.rs` averages: three classes, four grades per student,
//! so that every average is an exact decimal.

use std::collections::BTreeMap;

/// Grades by class, then by student.
pub type Grades = BTreeMap<String, BTreeMap<String, Vec<u32>>>;

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

/// The school's grades: class → student → grades. They stand in for reading a file or a
/// database.
pub fn grades() -> Grades {
    let class = |(name, roster): &(&str, Roster)| {
        let students = roster.iter().map(|(name, grades)| (name.to_string(), grades.to_vec()));
        (name.to_string(), students.collect())
    };
    SCHOOL.iter().map(class).collect()
}
