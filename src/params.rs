//! [`Params`]: the small, immutable, typed map a parent passes down to the nodes it runs.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::FlowError;

/// One param value: a string, an integer, a float or a bool.
///
/// Made with `.into()` from `&str`, `String`, the integer types that fit in an `i64`, `f32`,
/// `f64` and `bool`; read back with the typed getters of [`Params`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A string (cloning it is cheap: the text is shared).
    Str(Arc<str>),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Value {
    /// The type's name as error messages say it: `"a string"`, `"an integer"`, …
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a bool",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
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

type Entry = (Key, Value);

/// A key: a literal as it was given, or an owned key shared by every copy, so that cloning
/// params never copies a string.
#[derive(Clone)]
enum Key {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Key {
    fn as_str(&self) -> &str {
        match self {
            Key::Static(key) => key,
            Key::Shared(key) => key,
        }
    }
}

impl From<Cow<'static, str>> for Key {
    fn from(key: Cow<'static, str>) -> Self {
        match key {
            Cow::Borrowed(key) => Key::Static(key),
            Cow::Owned(key) => Key::Shared(key.into()),
        }
    }
}

/// The entries: none, one held inline (a batch flow's prep often builds a hundred thousand
/// params of one key each, and then none of them allocates), or a shared slice.
#[derive(Clone, Default)]
enum Entries {
    #[default]
    None,
    One(Entry),
    Many(Arc<[Entry]>),
}

/// The params of a run: a small immutable map from keys to typed [`Value`]s that flows pass
/// down to every node they run.
///
/// Where the shared store is the run's "heap" (results that nodes write for later nodes),
/// params are its "stack": who am I working for. A [`BatchFlow`](crate::BatchFlow) runs its
/// inner flow once per `Params` its prep returns, each merged over the params it inherited;
/// nested flows pass theirs on unchanged; a node reads them in `prep`.
///
/// Cloning is cheap (the entries are shared), and an empty `Params` allocates nothing.
/// Keys are unique: setting a key again replaces its value.
///
/// Params with one key are held inline, and more keys live in one shared slice: building
/// params costs at most one allocation, and none for one key (a batch flow's prep often
/// builds a hundred thousand of those). The price is that adding a key copies the others:
/// params are meant to hold a few keys, not hundreds.
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
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        let (key, value) = (Key::from(key.into()), value.into());
        let found = self.entries().iter().position(|(k, _)| k.as_str() == key.as_str());
        let entries = match (&mut self.0, found) {
            (Entries::None, _) => return self.0 = Entries::One((key, value)),
            (Entries::One(entry), Some(_)) => return entry.1 = value,
            (Entries::Many(shared), Some(i)) => match Arc::get_mut(shared) {
                Some(unshared) => return unshared[i].1 = value,
                None => shared.iter().cloned(),
            },
            (Entries::One(_) | Entries::Many(_), _) => self.entries().iter().cloned(),
        };
        // A new slice, collected straight into its one allocation (both iterators know their
        // length): the entries with the new one added, or with `key`'s value replaced.
        let new = match found {
            None => entries.chain(std::iter::once((key, value))).collect(),
            Some(i) => {
                let mut value = Some(value);
                let replace = |(j, (k, v))| (k, if j == i { value.take().unwrap_or(v) } else { v });
                entries.enumerate().map(replace).collect()
            }
        };
        self.0 = Entries::Many(new);
    }

    fn entries(&self) -> &[Entry] {
        match &self.0 {
            Entries::None => &[],
            Entries::One(entry) => std::slice::from_ref(entry),
            Entries::Many(entries) => entries,
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
        self.entries().iter().map(|(k, v)| (k.as_str(), v))
    }

    /// These params with every entry of `over` set on top (`over` wins where both have a key).
    ///
    /// This is how a batch flow combines the params it inherited with one item's params.
    /// When either side is empty, no allocation is made.
    #[must_use = "`merged` returns new params and leaves both inputs unchanged"]
    pub fn merged(&self, over: &Params) -> Params {
        if over.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return over.clone();
        }
        // The inherited keys in their order, with `over`'s values where it has them, then the
        // keys only `over` has.
        let (base, top) = (self.entries(), over.entries());
        let find = |list: &'_ [Entry], key: &Key| {
            list.iter().position(|(k, _)| k.as_str() == key.as_str())
        };
        let value = |key: &Key, v| find(top, key).map_or(v, |i| &top[i].1);
        let kept = base.iter().map(|(k, v)| (k.clone(), value(k, v).clone()));
        let added = top.iter().filter(|(k, _)| find(base, k).is_none()).cloned();
        Params(Entries::Many(kept.chain(added).collect()))
    }

    /// The string value of `key`.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing or is not a string.
    pub fn str(&self, key: &str) -> Result<&str, FlowError> {
        self.typed(key, "a string", |v| match v {
            Value::Str(s) => Some(&**s),
            _ => None,
        })
    }

    /// The integer value of `key`.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing or is not an integer.
    pub fn int(&self, key: &str) -> Result<i64, FlowError> {
        self.typed(key, "an integer", |v| match v {
            Value::Int(n) => Some(*n),
            _ => None,
        })
    }

    /// The float value of `key`. Integers are not converted: a param is read as the type it
    /// was set with.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing or is not a float.
    pub fn float(&self, key: &str) -> Result<f64, FlowError> {
        self.typed(key, "a float", |v| match v {
            Value::Float(x) => Some(*x),
            _ => None,
        })
    }

    /// The bool value of `key`.
    ///
    /// # Errors
    /// [`FlowError::Param`] when `key` is missing or is not a bool.
    pub fn bool(&self, key: &str) -> Result<bool, FlowError> {
        self.typed(key, "a bool", |v| match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// `key`'s value as `expected`, read by `read`; a [`FlowError::Param`] (with no node yet)
    /// when it is missing or `read` finds another type.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<T, FlowError> {
        let value = self.get(key);
        value.and_then(read).ok_or_else(|| FlowError::Param {
            node: String::new(),
            key: key.to_owned(),
            expected,
            found: value.map(Value::kind),
        })
    }
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
        let mut params = Params::new();
        for (k, v) in iter {
            params.insert(k, v);
        }
        params
    }
}
