//! What `examples/durable.rs` bills and how it keeps its checkpoints: the month's orders, the
//! pricing rules, money formatting, the checkpoint file, and an observer that notes which
//! nodes ran.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use miniflow::{Event, Observer, Result};
use serde::{Deserialize, Serialize};

/// How long the simulated shop, tax and accounting services take to answer.
pub const NETWORK: Duration = Duration::from_millis(10);

/// Customers who spend at least this much (in cents) get [`DISCOUNT_PERCENT`] off.
const DISCOUNT_FROM: u64 = 10_000; // 100.00
const DISCOUNT_PERCENT: u64 = 10;

/// The VAT rate the tax service answers with.
pub const VAT_PERCENT: u64 = 20;

/// One line of an order. Money is in whole cents, so that runs can be compared exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Who ordered.
    pub customer: String,
    /// How many.
    pub quantity: u64,
    /// The price of one, in cents.
    pub unit_cents: u64,
}

/// The shop's orders for `month`: what its API would answer.
pub fn orders(month: &str) -> Result<Vec<Order>> {
    let order = |customer: &str, quantity, unit_cents| Order {
        customer: customer.to_string(),
        quantity,
        unit_cents,
    };
    match month {
        "2024-06" => Ok(vec![
            order("ada", 2, 45_00),
            order("bob", 4, 12_00),
            order("ada", 1, 12_00),
            order("cy", 1, 89_99),
            order("bob", 1, 18_50),
            order("cy", 2, 12_00),
        ]),
        other => Err(format!("the shop has no orders for {other:?}").into()),
    }
}

/// What each customer ordered, in all.
pub fn subtotals(orders: &[Order]) -> BTreeMap<String, u64> {
    let mut subtotals = BTreeMap::new();
    for order in orders {
        *subtotals.entry(order.customer.clone()).or_default() += order.quantity * order.unit_cents;
    }
    subtotals
}

/// Each bill after the volume discount: [`DISCOUNT_PERCENT`] off from [`DISCOUNT_FROM`] up.
pub fn discounted(bills: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let off = |cents| if cents >= DISCOUNT_FROM { percent(cents, DISCOUNT_PERCENT) } else { 0 };
    bills.iter().map(|(who, &cents)| (who.clone(), cents - off(cents))).collect()
}

/// Each bill with `vat_percent` % of VAT added.
pub fn with_vat(bills: &BTreeMap<String, u64>, vat_percent: u64) -> BTreeMap<String, u64> {
    bills.iter().map(|(who, &cents)| (who.clone(), cents + percent(cents, vat_percent))).collect()
}

/// `percent` % of `cents`, rounded to the nearest cent (halves up).
fn percent(cents: u64, percent: u64) -> u64 {
    (cents * percent + 50) / 100
}

/// Cents as "123.45".
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Each customer's amount: "ada 102.00, bob 66.50".
pub fn amounts(bills: &BTreeMap<String, u64>) -> String {
    let each = bills.iter().map(|(who, &cents)| format!("{who} {}", money(cents)));
    each.collect::<Vec<_>>().join(", ")
}

/// What a checkpoint file holds: the store, and the node to resume at.
#[derive(Serialize, Deserialize)]
pub struct Checkpoint<S> {
    /// The node that runs next.
    pub next: String,
    /// The store as the last finished node left it.
    pub store: S,
}

/// Saves a checkpoint so that a crash at any moment leaves either the old file or the new
/// one, never half of one: write a temporary file, flush it to the disk, then rename it over
/// the old one (a rename within one directory is atomic).
///
/// The checkpoint hook is synchronous and the run waits for it, on the executor's thread.
/// A small local file is fine there; a service that saves to a slow disk or over the network
/// would rather hand the store to a writer task (through a channel) and keep the hook quick.
pub fn save<S: Serialize>(path: &Path, store: &S, next: &str) -> Result<()> {
    let checkpoint = Checkpoint { next: next.to_string(), store };
    let temp = path.with_extension("json.tmp");
    let mut file = fs::File::create(&temp)?;
    file.write_all(&serde_json::to_vec_pretty(&checkpoint)?)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    Ok(())
}

/// Reads back what [`save`] wrote.
pub fn load<S: for<'de> Deserialize<'de>>(path: &Path) -> Result<Checkpoint<S>> {
    let text = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

/// An observer that notes the name of every node that finishes, to show which ran.
#[derive(Default)]
pub struct Finished(Mutex<Vec<String>>);

impl Observer for Finished {
    fn event(&self, event: &Event<'_>) {
        if let Event::NodeEnd { node, .. } = event {
            self.0.lock().unwrap().push(node.to_string());
        }
    }
}

impl Finished {
    /// The nodes that finished, in order.
    pub fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}
