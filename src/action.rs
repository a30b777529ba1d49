//! [`Action`]: the string a node's `post` returns to choose the next edge.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::{Hash, Hasher};

/// The name of an edge: what a node's `post` returns to say where the flow goes next
/// (PocketFlow's action string; its `post` returning `None` is `Ok(Action::DEFAULT)` here).
///
/// An action is a string compared byte for byte (case matters; any UTF-8, including the empty
/// string, is a valid action). [`Action::DEFAULT`] — the string `"default"` — is what
/// [`Flow::then`](crate::Flow::then) connects and what [`Action::default()`] returns.
///
/// Actions made from string literals cost nothing to create or clone; actions made from a
/// `String` keep it.
///
/// ```
/// use miniflow::Action;
///
/// let search: Action = "search".into();
/// assert_eq!(search, "search");
/// assert_eq!(Action::default(), Action::DEFAULT);
/// assert_eq!(Action::from(format!("retry-{}", 2)).as_str(), "retry-2");
/// ```
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct Action(Cow<'static, str>);

static DEFAULT_TEXT: [u8; 7] = *b"default";

impl Action {
    /// The action `"default"`: the edge [`Flow::then`](crate::Flow::then) adds.
    // Its text is one static, so that every crate's copy of this constant points at the same
    // bytes and compares equal by address (a string literal is duplicated per crate).
    pub const DEFAULT: Action = match std::str::from_utf8(&DEFAULT_TEXT) {
        Ok(text) => Action(Cow::Borrowed(text)),
        Err(_) => panic!("\"default\" is UTF-8"),
    };

    /// An action from a string literal, usable in `const` items.
    ///
    /// ```
    /// use miniflow::Action;
    /// const APPROVED: Action = Action::new("approved");
    /// assert_eq!(APPROVED.as_str(), "approved");
    /// ```
    pub const fn new(name: &'static str) -> Self {
        Action(Cow::Borrowed(name))
    }

    /// The action's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is [`Action::DEFAULT`].
    pub fn is_default(&self) -> bool {
        self.0 == "default"
    }
}

impl PartialEq for Action {
    fn eq(&self, other: &Action) -> bool {
        // Actions made from the same literal share their text: equal without reading it.
        let (a, b) = (self.as_str(), other.as_str());
        a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a == b)
    }
}

impl Hash for Action {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state) // as `str` hashes, so that `Borrow<str>` lookups work
    }
}

impl Default for Action {
    /// [`Action::DEFAULT`], the string `"default"`.
    fn default() -> Self {
        Action::DEFAULT
    }
}

impl From<&'static str> for Action {
    fn from(name: &'static str) -> Self {
        Action(Cow::Borrowed(name))
    }
}

impl From<String> for Action {
    fn from(name: String) -> Self {
        Action(Cow::Owned(name))
    }
}

impl From<Cow<'static, str>> for Action {
    fn from(name: Cow<'static, str>) -> Self {
        Action(name)
    }
}

impl AsRef<str> for Action {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Action {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Action {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}
