//! `Params` as a map: setting, replacing, sharing and merging keys; equal only when the same
//! keys hold equal values in the same order; params collected from pairs; how a `Value`
//! displays; what each typed getter returns and says when a key is missing or mistyped; and
//! how many allocations building, changing and cloning params make.

use miniflow::{FlowError, Params, Value};

fn entries(params: &Params) -> Vec<(String, Value)> {
    params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn pairs(list: &[(&str, Value)]) -> Vec<(String, Value)> {
    list.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[test]
fn setting_a_key_again_replaces_its_value_where_it_stands() {
    let params = Params::new().with("a", 1).with("b", "two").with("c", true).with("b", 2.5);
    assert_eq!(
        entries(&params),
        pairs(&[("a", Value::Int(1)), ("b", Value::Float(2.5)), ("c", Value::Bool(true))])
    );
    assert_eq!(params.len(), 3);
}

#[test]
fn a_clone_keeps_its_values_when_the_original_changes() {
    let mut original = Params::new().with("a", 1).with("b", 2);
    let copy = original.clone();
    original.insert("a", 10); // shared with `copy`: replaced in a new list
    original.insert("c", 3);
    assert_eq!(entries(&copy), pairs(&[("a", Value::Int(1)), ("b", Value::Int(2))]));
    assert_eq!(
        entries(&original),
        pairs(&[("a", Value::Int(10)), ("b", Value::Int(2)), ("c", Value::Int(3))])
    );
    // No longer shared: replaced in place, and `copy` still does not see it.
    original.insert("b", 20);
    assert_eq!(original.int("b").unwrap(), 20);
    assert_eq!(copy.int("b").unwrap(), 2);
}

#[test]
fn merged_keeps_the_inherited_order_lets_the_top_win_and_appends_new_keys() {
    let inherited = Params::new().with("school", "Hilltop").with("year", 4).with("term", 1);
    let top = Params::new().with("class", "4b").with("year", 5);
    let merged = inherited.merged(&top);
    assert_eq!(
        entries(&merged),
        pairs(&[
            ("school", Value::Str("Hilltop".into())),
            ("year", Value::Int(5)),
            ("term", Value::Int(1)),
            ("class", Value::Str("4b".into())),
        ])
    );
    // Both inputs are unchanged, and merging with nothing is the identity.
    assert_eq!(inherited.int("year").unwrap(), 4);
    assert_eq!(top.len(), 2);
    assert_eq!(inherited.merged(&Params::new()), inherited);
    assert_eq!(Params::new().merged(&top), top);
}

#[test]
fn params_built_alike_are_equal() {
    let a = Params::new().with("x", 1).with("y", 2);
    assert_eq!(a, Params::new().with("x", 1).with("y", 2));
    assert_eq!(Params::new(), Params::default());
    assert!(Params::new().is_empty());
}

#[test]
fn owned_keys_work_like_literal_ones() {
    let key = format!("item-{}", 7);
    let mut params = Params::new().with(key.clone(), 1);
    let copy = params.clone();
    params.insert(key.clone(), 2);
    params.insert("other", "x");
    assert_eq!((params.int(&key).unwrap(), copy.int(&key).unwrap()), (2, 1));
    assert_eq!(params, Params::new().with("item-7", 2).with("other", "x"));
}

#[test]
fn params_that_differ_in_a_value_a_key_the_order_or_the_count_are_unequal() {
    let a = Params::new().with("x", 1).with("y", 2);
    assert_ne!(a, Params::new().with("x", 1).with("y", 3)); // a value
    assert_ne!(a, Params::new().with("x", 1).with("z", 2)); // a key
    assert_ne!(a, Params::new().with("y", 2).with("x", 1)); // the order
    assert_ne!(a, Params::new().with("x", 1)); // one key fewer
    assert_ne!(a, Params::new().with("x", 1).with("y", 2).with("z", 3)); // one more
    assert_ne!(a, Params::new());
    assert_ne!(Params::new().with("x", 1), Params::new().with("x", 1.0)); // another type
    assert_ne!(Params::new().with("x", "1"), Params::new().with("x", 1));
}

#[test]
fn values_display_as_their_plain_text() {
    assert_eq!(Value::from("Hilltop").to_string(), "Hilltop");
    assert_eq!(Value::from(String::new()).to_string(), "");
    assert_eq!(Value::from(-28).to_string(), "-28");
    assert_eq!(Value::from(2.5).to_string(), "2.5");
    assert_eq!(Value::from(3.0).to_string(), "3");
    assert_eq!(Value::from(true).to_string(), "true");
    assert_eq!(Value::from(false).to_string(), "false");
    let line: Vec<String> = Params::new()
        .with("school", "Hilltop")
        .with("size", 28)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(line, ["school=Hilltop", "size=28"]);
}

#[test]
fn params_collected_from_pairs_keep_the_first_order_and_the_last_value() {
    let params: Params = [("a", Value::Int(1)), ("b", Value::from("two")), ("a", Value::Int(3))]
        .into_iter()
        .collect();
    assert_eq!(entries(&params), pairs(&[("a", Value::Int(3)), ("b", Value::from("two"))]));
    let owned: Params = (1..=2).map(|i| (format!("item-{i}"), i)).collect();
    assert_eq!(owned, Params::new().with("item-1", 1).with("item-2", 2));
    let none: Params = std::iter::empty::<(&'static str, i64)>().collect();
    assert!(none.is_empty());
}

#[test]
fn setting_the_only_key_again_replaces_its_value() {
    let params = Params::new().with("n", 1).with("n", 2);
    assert_eq!(entries(&params), pairs(&[("n", Value::Int(2))]));
    let mut copy = params.clone();
    copy.insert("n", 3);
    assert_eq!((params.int("n").unwrap(), copy.int("n").unwrap(), copy.len()), (2, 3, 1));
    let merged = params.merged(&Params::new().with("n", 4));
    assert_eq!(entries(&merged), pairs(&[("n", Value::Int(4))]));
}

#[test]
fn each_getter_reads_its_own_type_and_names_the_type_it_found() {
    let params = Params::new().with("name", "Hilltop").with("size", 28).with("ratio", 2.5);
    let params = params.with("open", true).with("full", false);
    assert_eq!(params.str("name").unwrap(), "Hilltop");
    assert_eq!(params.int("size").unwrap(), 28);
    assert_eq!(params.float("ratio").unwrap(), 2.5);
    assert_eq!((params.bool("open").unwrap(), params.bool("full").unwrap()), (true, false));
    let messages = [
        params.str("size").unwrap_err(),
        params.int("ratio").unwrap_err(),
        params.float("size").unwrap_err(),
        params.bool("name").unwrap_err(),
        params.float("gone").unwrap_err(),
    ]
    .map(|err| err.to_string());
    assert_eq!(
        messages,
        [
            "param `size` should be a string, but it is an integer",
            "param `ratio` should be an integer, but it is a float",
            "param `size` should be a float, but it is an integer",
            "param `name` should be a bool, but it is a string",
            "param `gone` is missing; set it in the params the run or a batch flow passes down",
        ]
    );
    let Err(FlowError::Param { node, key, expected, found, .. }) = params.bool("size") else {
        panic!("a mistyped param is a `FlowError::Param`");
    };
    assert_eq!(
        (node.as_str(), key.as_str(), expected, found),
        ("", "size", "a bool", Some("an integer"))
    );
}

#[test]
fn one_literal_key_allocates_nothing_and_more_keys_one_slice_per_change() {
    // Exact counts of this thread's allocations (and reallocations).
    let count = |build: &mut dyn FnMut()| allocation_counter::measure(build).count_total;
    let mut params = Params::new();
    assert_eq!(count(&mut || params = Params::new().with("n", 5).with("n", 6)), 0);
    assert_eq!(count(&mut || params.insert("m", 7)), 1); // a second key: a new slice
    assert_eq!(count(&mut || params.insert("m", 8)), 0); // not shared: in place
    let copy = params.clone();
    assert_eq!(count(&mut || params.insert("m", 9)), 1); // shared with `copy`: copied first
    assert_eq!((copy.int("m").unwrap(), params.int("m").unwrap()), (8, 9));

    // A lone owned key lives in a shared slice, so that no clone copies its string.
    let owned = Params::new().with(String::from("item"), 1);
    let literal = Params::new().with("item", 1);
    let mut clones = None;
    assert_eq!(count(&mut || clones = Some([owned.clone(), literal.clone(), params.clone()])), 0);
    assert_eq!(count(&mut || drop(literal.merged(&Params::new().with("item", 2)))), 0);
}
