//! [`BatchNode`]: a node whose `exec` runs once per item.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::retry;
use crate::run::{self, IntoNode, Own, Scope, Step, Store, Visit, marker};
use crate::{Action, Ctx, Error, Params, Phase, Result};

/// A node whose `prep` returns a list of items and whose `exec` runs once per item, each item
/// with its own retries and fallback; `post` gets every output, in the order of the items.
///
/// It replaces PocketFlow's `BatchNode` (items one after another, the default) and
/// `AsyncParallelBatchNode` (a [`max_in_flight`](BatchNode::max_in_flight) above 1).
///
/// Items run one after another by default. Return more than 1 from
/// [`max_in_flight`](BatchNode::max_in_flight) and up to that many items' `exec` run
/// concurrently (polled together in the run's own task: nothing is spawned); the outputs still
/// come back in input order. An empty list calls no `exec` and gives `post` two empty lists.
///
/// If an item fails (every attempt and its fallback), the node fails with that item's error,
/// naming it by its index (`"translate[3]"`), and the items still in flight are dropped.
///
/// ```
/// use miniflow::{Action, BatchNode, Ctx, Flow, Params, Result};
///
/// struct Shout;
///
/// impl BatchNode<Vec<String>> for Shout {
///     type Item = String;
///     type Output = String;
///
///     fn prep(&self, words: &Vec<String>, _: &Params) -> Result<Vec<String>> {
///         Ok(words.clone())
///     }
///
///     async fn exec(&self, word: &String, _cx: Ctx<'_>) -> Result<String> {
///         Ok(word.to_uppercase())
///     }
///
///     fn post(&self, words: &mut Vec<String>, _: &Params, _: Vec<String>, loud: Vec<String>) -> Result<Action> {
///         *words = loud;
///         Ok(Action::DEFAULT)
///     }
///
///     fn max_in_flight(&self) -> usize {
///         4 // up to four words at once
///     }
/// }
///
/// let mut flow = Flow::new();
/// flow.add("shout", Shout);
/// let mut words = vec!["hello".to_string(), "flow".to_string()];
/// smol::block_on(flow.run(&mut words))?;
/// assert_eq!(words, ["HELLO", "FLOW"]);
/// # Ok::<(), miniflow::Error>(())
/// ```
pub trait BatchNode<S>: Send + Sync {
    /// One unit of work; `exec` borrows it, so every attempt sees it unchanged.
    type Item: Send + Sync;

    /// What `exec` (or `exec_fallback`) produces for one item.
    type Output: Send;

    /// Reads the items from the store and the params.
    fn prep(&self, store: &S, params: &Params) -> Result<Vec<Self::Item>>;

    /// Processes one item; retried per item, and run concurrently with other items when
    /// [`max_in_flight`](BatchNode::max_in_flight) allows. [`Ctx::attempt`] counts this item's
    /// attempts only.
    fn exec(
        &self,
        item: &Self::Item,
        cx: Ctx<'_>,
    ) -> impl Future<Output = Result<Self::Output>> + Send;

    /// Called with an item's last error when its attempts ran out or [`wait`](BatchNode::wait)
    /// gave up on it; the default returns
    /// the error. An `Ok` value takes the place of the item's output.
    fn exec_fallback(
        &self,
        item: &Self::Item,
        error: Error,
        cx: Ctx<'_>,
    ) -> impl Future<Output = Result<Self::Output>> + Send {
        let _ = (item, cx);
        async move { Err(error) }
    }

    /// Gets the params `prep` saw (for context the items do not carry, such as a batch id),
    /// and the items back with their outputs (same length, same order), and writes the results.
    fn post(
        &self,
        store: &mut S,
        params: &Params,
        items: Vec<Self::Item>,
        outputs: Vec<Self::Output>,
    ) -> Result<Action>;

    /// Attempts per item, the first included: as [`Node::max_retries`](crate::Node::max_retries).
    fn max_retries(&self) -> usize {
        1
    }

    /// Decides whether to retry an item after its attempt `cx.attempt()` failed with `error`,
    /// and after how long: as [`Node::wait`](crate::Node::wait), per item.
    fn wait(&self, error: &Error, cx: Ctx<'_>) -> Option<Duration> {
        let _ = (error, cx);
        Some(Duration::ZERO)
    }

    /// The longest one attempt of one item's `exec` may take: as
    /// [`Node::timeout`](crate::Node::timeout).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// How many items' `exec` may be in flight at once: 1 (the default) runs them one after
    /// another; `usize::MAX` sets no limit. 0 fails the run with
    /// [`FlowError::InvalidConfig`](crate::FlowError::InvalidConfig).
    fn max_in_flight(&self) -> usize {
        1
    }
}

/// Runs one visit of a [`BatchNode`].
struct Batch<P>(P);

impl<S: Send, P: Deref<Target: BatchNode<S>> + Send + Sync> run::Leaf<S> for Batch<P> {
    fn run<'a>(&'a self, mut store: Store<'a, S>, scope: &'a Scope<'a>) -> Visit<'a> {
        let node = &*self.0;
        run::boxed(move || async move {
            let (path, limit) = (scope.path, node.max_in_flight());
            retry::check(node.max_retries(), node.timeout(), limit, path)?;
            let items = store.phase(path, Phase::Prep, 0, |s| node.prep(s, scope.params))?;
            let (outputs, attempts) = if limit == 1 {
                // Item after item, each item's future awaited where it is built: a job future
                // per item (as below) would be moved, hundreds of bytes, on every item.
                let (mut outputs, mut total) = (Vec::with_capacity(items.len()), 0);
                for (i, item) in items.iter().enumerate() {
                    if i % run::TURN == run::TURN - 1 {
                        run::Turn::default().await;
                    }
                    let path = path.item(i);
                    let (output, attempts) =
                        retry::retry!(node, item, Ctx::new(&path, node.max_retries(), scope))?;
                    outputs.push(output);
                    total += attempts;
                }
                (outputs, total)
            } else {
                let items = &items;
                let jobs = (0..items.len()).map(|i| async move {
                    let path = path.item(i);
                    (i, retry::retry!(node, &items[i], Ctx::new(&path, node.max_retries(), scope)))
                });
                run::run_all(jobs, limit).await?
            };
            let action = store.phase(path, Phase::Post, attempts, |s| {
                node.post(s, scope.params, items, outputs)
            })?;
            Ok((action, attempts))
        })
    }
}

#[diagnostic::do_not_recommend]
impl<S: Send, B: BatchNode<S> + 'static> IntoNode<S, marker::Batch> for B {
    fn into_step(self) -> Step<S> {
        Step::Leaf(Box::new(Batch(Own(self))), true)
    }
}

#[diagnostic::do_not_recommend]
impl<S: Send, B: BatchNode<S> + 'static> IntoNode<S, marker::SharedBatch> for Arc<B> {
    fn into_step(self) -> Step<S> {
        Step::Leaf(Box::new(Batch(self)), true)
    }
}
