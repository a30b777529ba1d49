//! Helpers shared by the integration tests: a user error type and yields that work on any
//! executor (and under a hand-written poll loop).

// Each test file uses only some of these.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A user's own error type, to check that it survives as the `source()` of a `FlowError`.
#[derive(Debug, PartialEq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// A boxed [`Failure`] with `message`.
pub fn failure(message: impl Into<String>) -> miniflow::Error {
    Box::new(Failure(message.into()))
}

/// Returns `Pending` `n` times, waking its own task each time, then `Ready`.
pub struct YieldNow(pub usize);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Gives way to the other futures of the task `n` times.
pub async fn yield_times(n: usize) {
    YieldNow(n).await
}
