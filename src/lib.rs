//! miniflow: a minimalist node-graph framework.

mod action;
mod batch;
mod error;
mod flow;
mod node;
mod params;
mod run;

pub use action::Action;
pub use batch::{BatchAsyncFlow, BatchFlow, BatchNode};
pub use error::{Error, FlowError, Phase, Result};
pub use flow::{Flow, NodeId};
pub use node::{Ctx, Node, NodeFn, node_fn};
pub use params::{Params, Value};
pub use run::{IntoNode, MAX_ATTEMPTS};
#[doc(hidden)]
pub use run::marker;
