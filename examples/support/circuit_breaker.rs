//! The question `examples/retry-fallback.rs` asks, and its offline stand-in's answer.

use super::{Model, Rules};

/// What the example asks.
pub const QUESTION: &str =
    "In one sentence: what does a circuit breaker do in a distributed system?";

/// A model that answers every question with the same sentence about circuit breakers (the
/// example wraps it in models that fail, to show retries).
pub fn stand_in() -> impl Model {
    Rules::new(|_: &str| {
        "It stops calling a failing service for a while, so the service can recover and \
         callers fail fast instead of waiting."
            .to_string()
    })
}
