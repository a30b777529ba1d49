//! [`Params`]: the small, immutable, typed map a parent passes down to the nodes it runs.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::FlowError;

/// One param value: a string, an integer, a float or a bool.
///
/// Made with `.into()` from `&str`, `String`, the integer types up to `u64` and `usize`,
/// `f32`, `f64` and `bool`; read back with the typed getters of [`Params`]. An integer is an
/// `Int` when it fits an `i64`, and a `UInt` only above `i64::MAX` (a `u64` hash, say), so
/// that equal numbers are equal values however they were made.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A string (cloning it is cheap: the text is shared).
    Str(Arc<str>),
    /// An integer that fits an `i64`.
    Int(i64),
    /// An integer above `i64::MAX`: what `From<u64>` and `From<usize>` make of those (smaller
    /// ones are an [`Int`](Value::Int)). Read it back as a `u64` or `usize`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Value {
    /// The type's name as error messages say it (`"a string"`, `"an integer"`, …), and the
    /// value as it displays.
    fn parts(&self) -> (&'static str, &dyn fmt::Display) {
        match self {
            Value::Str(s) => ("a string", s),
            Value::Int(n) if *n < 0 => ("a negative integer", n),
            Value::Int(n) => ("an integer", n),
            Value::UInt(n) => ("an integer above i64::MAX", n),
            Value::Float(x) => ("a float", x),
            Value::Bool(b) => ("a bool", b),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.parts().1.fmt(f)
    }
}

macro_rules! value_from {
    ($($variant:ident: $($t:ty),*;)*) => {$($(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$variant(v.into())
            }
        }
    )*)*};
}
value_from! {
    Str: &str, String, Arc<str>;
    Int: i8, i16, i32, i64, u8, u16, u32;
    Float: f32, f64;
    Bool: bool;
}

impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::Str(s.as_str().into())
    }
}

macro_rules! value_from_unsigned {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                i64::try_from(n).map_or(Value::UInt(n as u64), Value::Int)
            }
        }
    )*};
}
value_from_unsigned!(u64, usize);

/// A type a param can be read as, with [`Params::get_as`] and [`Params::get_or`]: `&str`,
/// `i64`, `i32` (what a bare literal such as the `1` of `get_or("k", 1)` is), `usize`, `u64`,
/// `f64` and `bool`. A value is read as the type it was set with (an
/// integer is not a float, a string of digits is not an integer); `usize` and `u64` take the
/// integers from 0 up.
pub trait FromValue<'a>: Sized {
    /// What the value should be, as [`FlowError::Param`] says it: `"an integer"`.
    const EXPECTED: &'static str;

    /// The value as `Self`, or `None` when it is of another type or out of range.
    fn from_value(value: &'a Value) -> Option<Self>;
}

macro_rules! from_value {
    ($($t:ty: $expected:literal, $($value:pat => $out:expr),+;)*) => {$(
        impl<'a> FromValue<'a> for $t {
            const EXPECTED: &'static str = $expected;

            fn from_value(value: &'a Value) -> Option<Self> {
                match value {
                    $($value => $out,)+
                    _ => None,
                }
            }
        }
    )*};
}
from_value! {
    &'a str: "a string", Value::Str(s) => Some(s);
    i64: "an integer", Value::Int(n) => Some(*n);
    i32: "an integer that fits an i32", Value::Int(n) => i32::try_from(*n).ok();
    usize: "a non-negative integer", Value::Int(n) => usize::try_from(*n).ok(),
        Value::UInt(n) => usize::try_from(*n).ok();
    u64: "a non-negative integer", Value::Int(n) => u64::try_from(*n).ok(),
        Value::UInt(n) => Some(*n);
    f64: "a float", Value::Float(x) => Some(*x);
    bool: "a bool", Value::Bool(b) => Some(*b);
}

type Entry = (Cow<'static, str>, Value);

/// The entries: none; one with a literal key, held inline (a batch flow's prep often builds a
/// hundred thousand params of one key each, and then none of them allocates); or a shared
/// slice, which also holds a lone owned key so that cloning params never copies a string.
#[derive(Clone, Default)]
enum Entries {
    #[default]
    None,
    One(Entry),
    Shared(Arc<[Entry]>),
}

/// The params of a run: a small immutable map from keys to typed [`Value`]s that flows pass
/// down to every node they run.
///
/// Where the shared store is the run's "heap" (results that nodes write for later nodes),
/// params are its "stack": who am I working for. A [`BatchFlow`](crate::BatchFlow) runs its
/// inner flow once per `Params` its prep returns, each merged over the params it inherited;
/// nested flows pass theirs on unchanged; a node reads them in `prep`. They replace
/// PocketFlow's `self.params` and `set_params`, typed: [`get_or`](Params::get_or) is its
/// `params.get(key, default)`.
///
/// Cloning is cheap and never allocates (the entries are shared, or one entry is copied
/// inline), and an empty `Params` allocates nothing. Keys are unique: setting a key again
/// replaces its value where it stands.
///
/// Params whose one key is a literal (`"n"`, not a `String`) are held inline, and all others
/// live in one shared slice. Setting a key makes at most one allocation (a slice), and none for
/// the one literal key (a batch flow's prep often builds a hundred thousand of those). The
/// price is that adding a key copies the others into a new slice, and so does changing a value
/// while a clone shares the slice; an owned key is copied with its entry (one more allocation,
/// for its `String`). Params are meant to hold a few keys, not hundreds.
///
/// ```
/// use miniflow::Params;
///
/// let school = Params::new().with("school", "Hilltop");
/// let class = school.merged(&Params::new().with("class", "4b").with("size", 28));
///
/// assert_eq!(class.str("school")?, "Hilltop");
/// assert_eq!(class.int("size")?, 28);
/// assert!(class.float("size").is_err()); // an integer is not a float
/// assert_eq!(
///     class.str("teacher").unwrap_err().to_string(),
///     "param `teacher` is missing; set it in the params the run or a batch flow passes down"
/// );
/// # Ok::<(), miniflow::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Params(Entries);

impl Params {
    /// No params.
    pub const fn new() -> Self {
        Params(Entries::None)
    }

    /// These params with `key` set to `value`, replacing any value it had.
    #[must_use = "`with` returns new params and leaves the original unchanged"]
    pub fn with(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value`, replacing any value it had.
    ///
    /// A value is replaced in place, unless a clone shares these params' entries; then they
    /// are copied first, and the clone keeps the old ones. A new key is added at the end, in a
    /// new slice.
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        let (key, value) = (key.into(), value.into());
        let found = self.entries().iter().position(|(k, _)| *k == key);
        let entries = match (&mut self.0, found, &key) {
            (Entries::One(entry), Some(_), _) => return entry.1 = value,
            // In place, unless a clone shares the slice (then it is copied first).
            (Entries::Shared(entries), Some(i), _) => return Arc::make_mut(entries)[i].1 = value,
            (Entries::None, _, Cow::Borrowed(_)) => return self.0 = Entries::One((key, value)),
            _ => self.entries().iter().cloned(),
        };
        // A new slice with the new entry added, collected straight into its one allocation.
        self.0 = Entries::Shared(entries.chain([(key, value)]).collect());
    }

    fn entries(&self) -> &[Entry] {
        match &self.0 {
            Entries::None => &[],
            Entries::One(entry) => std::slice::from_ref(entry),
            Entries::Shared(entries) => entries,
        }
    }

    /// The value of `key`, if it is set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether `key` is set.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys and values, in the order the keys were first set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries().iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// These params with every entry of `over` set on top (`over` wins where both have a key).
    ///
    /// This is how a batch flow combines the params it inherited with one item's params: the
    /// inherited keys keep their order, and the keys only `over` has follow in its order.
    /// When either side is empty, no allocation is made (the other side is cloned). Otherwise
    /// each key of `over` is set as [`insert`](Params::insert) sets it: at most one allocation
    /// per key, plus a copy of each owned key involved (`over`'s, and those of the entries
    /// copied).
    #[must_use = "`merged` returns new params and leaves both inputs unchanged"]
    pub fn merged(&self, over: &Params) -> Params {
        if self.is_empty() {
            return over.clone();
        }
        let mut merged = self.clone();
        for (key, value) in over.entries() {
            merged.insert(key.clone(), value.clone());
        }
        merged
    }

    /// The value of `key` as a `T` (see [`FromValue`] for the types):
    /// `params.get_as::<usize>("item")?`.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing, or its value is of another type or out of
    /// `T`'s range (a negative `usize`).
    pub fn get_as<'a, T: FromValue<'a>>(&'a self, key: &str) -> Result<T, FlowError> {
        let found = self.get(key);
        found.and_then(T::from_value).ok_or_else(|| mistyped(key, T::EXPECTED, found))
    }

    /// The value of `key` as a `T`, or `default` when `key` is missing (PocketFlow's
    /// `params.get("multiplier", 1)`): `params.get_or("multiplier", 1)?`.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is set to a value of another type or out of `T`'s
    /// range: a mistyped param is a mistake, not a missing one.
    ///
    /// ```
    /// let params = miniflow::Params::new().with("multiplier", 3);
    /// assert_eq!(params.get_or("multiplier", 1)?, 3);
    /// assert_eq!(params.get_or("offset", 0)?, 0);
    /// let error = params.get_or("multiplier", 1.5).unwrap_err(); // an integer is not a float
    /// assert_eq!(error.to_string(), "param `multiplier` should be a float, but it is an integer");
    /// # Ok::<(), miniflow::FlowError>(())
    /// ```
    pub fn get_or<'a, T: FromValue<'a>>(&'a self, key: &str, default: T) -> Result<T, FlowError> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.get_as(key),
        }
    }

    /// The string value of `key`: `get_as::<&str>`.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing or is not a string.
    pub fn str(&self, key: &str) -> Result<&str, FlowError> {
        self.get_as(key)
    }

    /// The integer value of `key`: `get_as::<i64>`.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing or is not an integer.
    pub fn int(&self, key: &str) -> Result<i64, FlowError> {
        self.get_as(key)
    }

    /// The float value of `key`: `get_as::<f64>`. Integers are not converted: a param is read
    /// as the type it was set with.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing or is not a float.
    pub fn float(&self, key: &str) -> Result<f64, FlowError> {
        self.get_as(key)
    }

    /// The bool value of `key`: `get_as::<bool>`.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing or is not a bool.
    pub fn bool(&self, key: &str) -> Result<bool, FlowError> {
        self.get_as(key)
    }
}

/// The error of a getter that wanted `expected` and found `found`: a [`FlowError::Param`] with no
/// node yet (the flow names the node when the error leaves its `prep`).
fn mistyped(key: &str, expected: &'static str, found: Option<&Value>) -> FlowError {
    let found = found.map(|value| value.parts().0);
    FlowError::Param { node: String::new(), key: key.to_owned(), expected, found }
}

impl PartialEq for Params {
    /// Equal when the same keys hold equal values, in the same order.
    fn eq(&self, other: &Params) -> bool {
        self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<Value>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        iter.into_iter().fold(Params::new(), |params, (k, v)| params.with(k, v))
    }
}
