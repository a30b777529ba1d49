//! `Params` as a map: setting, replacing, sharing and merging keys.

use miniflow::{Params, Value};

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
