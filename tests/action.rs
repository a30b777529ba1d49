//! `Action` as a string key: it keeps the text it was made from (`&'static str`, `String`,
//! `Cow`); it hashes and orders as its text does, so maps keyed by actions are looked up by
//! `&str` (`Borrow<str>`); `AsRef<str>`, `as_str` and `Display` give the text back; and
//! comparisons with `str`, `&str` and other actions are byte for byte, telling unequal strings
//! apart as well as matching equal ones.

use std::borrow::Cow;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use miniflow::Action;

fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Takes anything that can be seen as a `str`, as string-taking APIs do.
fn text_of(name: impl AsRef<str>) -> String {
    name.as_ref().to_owned()
}

#[test]
fn an_action_hashes_as_its_text_does() {
    for name in ["default", "search", "", "✓ fertig"] {
        let text = String::from(name);
        assert_eq!(hash_of(&Action::new(name)), hash_of(name), "{name:?}");
        assert_eq!(hash_of(&Action::from(text.clone())), hash_of(text.as_str()), "{name:?}");
    }
}

#[test]
fn a_hash_map_keyed_by_actions_is_looked_up_by_str() {
    let mut next: HashMap<Action, u32> = HashMap::new();
    next.insert(Action::new("search"), 1);
    next.insert(Action::from(format!("retry-{}", 2)), 2);
    next.insert(Action::DEFAULT, 3);

    assert_eq!(next.get("search"), Some(&1));
    assert_eq!(next.get("retry-2"), Some(&2));
    assert_eq!(next.get("default"), Some(&3));
    assert_eq!(next.get("Search"), None);
    assert_eq!(next.get(""), None);
    assert!(next.contains_key(String::from("search").as_str()));
    assert_eq!(next.remove("search"), Some(1));
    assert_eq!(next.len(), 2);

    let seen: HashSet<Action> = ["a", "b", "a"].into_iter().map(Action::new).collect();
    assert_eq!(seen.len(), 2);
    assert!(seen.contains("a") && seen.contains("b") && !seen.contains("c"));
}

#[test]
fn a_btree_map_keyed_by_actions_is_looked_up_by_str_in_text_order() {
    let map: BTreeMap<Action, u32> =
        [("b", 2), ("a", 1), ("", 0)].into_iter().map(|(k, v)| (Action::new(k), v)).collect();
    assert_eq!(map.get("a"), Some(&1));
    assert_eq!(map.get(""), Some(&0));
    assert_eq!(map.get("c"), None);
    let keys: Vec<&str> = map.keys().map(Action::as_str).collect();
    assert_eq!(keys, ["", "a", "b"]);
}

#[test]
fn an_action_keeps_the_text_it_was_made_from() {
    let literal: Action = "search".into();
    let owned: Action = String::from("retry-2").into();
    let borrowed: Action = Cow::Borrowed("ask").into();
    let from_cow: Action = Cow::<'static, str>::Owned(String::from("done")).into();
    let texts = [&literal, &owned, &borrowed, &from_cow].map(Action::as_str);
    assert_eq!(texts, ["search", "retry-2", "ask", "done"]);
    assert_eq!(Action::from("").as_str(), "");
    assert_eq!(Action::default().as_str(), "default");
}

#[test]
fn as_ref_as_str_and_display_give_the_text() {
    let owned = Action::from(String::from("retry-2"));
    assert_eq!(text_of(Action::new("search")), "search");
    assert_eq!(text_of(Action::DEFAULT), "default");
    assert_eq!(text_of(&owned), "retry-2");
    assert_eq!(text_of(Action::new("")), "");
    assert_eq!(AsRef::<str>::as_ref(&owned), owned.as_str());
    assert_eq!(owned.to_string(), "retry-2");
    assert_eq!(format!("{owned:?}"), "\"retry-2\"");
}

#[test]
fn comparisons_with_str_tell_equal_from_unequal() {
    let search = Action::new("search");
    let owned = Action::from(String::from("search"));

    // `PartialEq<&str>`
    assert!(search == "search");
    assert!(owned == "search");
    assert!(search != "Search"); // same length, case differs
    assert!(search != "searc");
    assert!(search != "");
    assert!(Action::new("") == "");

    // `PartialEq<str>`
    assert!(search == *"search");
    assert!(owned == *String::from("search").as_str());
    assert!(search != *"Search");
    assert!(search != *"searches");
    assert!(Action::DEFAULT == *"default");
    assert!(Action::DEFAULT != *"Default");

    // With `String`s, through `as_str`.
    let text = String::from("retry-2");
    let retry = Action::from(text.clone());
    assert!(retry == text.as_str());
    assert!(Action::new("retry-3") != text.as_str());
}

#[test]
fn comparisons_with_actions_tell_equal_from_unequal() {
    let search = Action::new("search");
    assert_eq!(search, Action::from(String::from("search")));
    assert_eq!(search, search.clone());
    assert_ne!(search, Action::new("Search"));
    assert_ne!(search, Action::new("searc"));
    assert_ne!(Action::DEFAULT, Action::new(""));
    assert!(Action::new("a") < Action::new("b"));
    assert!(Action::DEFAULT.is_default() && Action::from(String::from("default")).is_default());
    assert!(!search.is_default());
}
