//! Durable execution: save the run after every node, and after a crash pick it up where it
//! stopped instead of starting over.
//!
//! A long pipeline (downloads, model calls, slow services) should not redo an hour of work
//! because the machine lost power in the last step. miniflow keeps no files of its own; it
//! gives you two hooks. `RunOptions::checkpoint` calls you after every node with the store
//! and the name of the node that runs next: write both somewhere safe (here, a JSON file).
//! After a crash, read them back and run again with `RunOptions::start_at(next)`: the nodes
//! that had finished are not run again, and the result is the one an uninterrupted run gives.
//!
//! This example bills a month of orders in five steps, three of them talking to (simulated)
//! services. It runs the pipeline three times: once straight through, as the reference; once
//! with a power cut after the third checkpoint; and once as a fresh start that finds the
//! checkpoint file and resumes from it. Then it checks that the invoices came out the same.
//!
//! Run with: `cargo run --example durable`

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{self, Either};
use miniflow::{Action, Ctx, Event, Flow, Node, Observer, Params, Result, RunOptions, node_fn};
use serde::{Deserialize, Serialize};

mod support;

/// How long the simulated shop, tax and accounting services take to answer.
const NETWORK: Duration = Duration::from_millis(10);

/// Customers who spend at least this much (in cents) get [`DISCOUNT_PERCENT`] off.
const DISCOUNT_FROM: u64 = 10_000; // 100.00
const DISCOUNT_PERCENT: u64 = 10;

/// The shared store. Everything a later node needs must be in here, because after a crash
/// this is all that is left: it derives `Serialize` and `Deserialize` to go into the file.
/// Money is in whole cents, so that the runs can be compared exactly.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Books {
    month: String,
    orders: Vec<Order>,
    /// What each customer ordered, by name (a `BTreeMap`, so the order is always the same).
    subtotals: BTreeMap<String, u64>,
    /// The same after the volume discount.
    discounted: BTreeMap<String, u64>,
    /// The same with VAT: what each invoice says.
    invoices: BTreeMap<String, u64>,
    /// The accounting service's receipt for the published invoices.
    receipt: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    customer: String,
    quantity: u64,
    unit_cents: u64,
}

/// What goes into the checkpoint file: the store, and where to go on.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    next: String,
    books: Books,
}

/// Downloads the month's orders from the shop.
struct Fetch;

impl Node<Books> for Fetch {
    type Prep = String;
    type Output = Vec<Order>;

    fn prep(&self, books: &Books, _: &Params) -> Result<String> {
        Ok(books.month.clone())
    }

    async fn exec(&self, month: &String, _: Ctx<'_>) -> Result<Vec<Order>> {
        smol::Timer::after(NETWORK).await; // a real shop API call in real life
        let order = |customer: &str, quantity, unit_cents| Order {
            customer: customer.to_string(),
            quantity,
            unit_cents,
        };
        match month.as_str() {
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

    fn post(&self, books: &mut Books, _: String, orders: Vec<Order>) -> Result<Action> {
        println!("  fetch     {} orders", orders.len());
        books.orders = orders;
        Ok(Action::DEFAULT)
    }
}

/// Asks the tax service for the VAT rate and adds VAT to every bill.
struct Tax;

impl Node<Books> for Tax {
    type Prep = BTreeMap<String, u64>;
    type Output = BTreeMap<String, u64>;

    fn prep(&self, books: &Books, _: &Params) -> Result<BTreeMap<String, u64>> {
        Ok(books.discounted.clone())
    }

    async fn exec(&self, bills: &BTreeMap<String, u64>, _: Ctx<'_>) -> Result<Self::Output> {
        println!("  tax       asking the tax service for the VAT rate...");
        smol::Timer::after(NETWORK).await;
        let vat_percent = 20;
        Ok(bills
            .iter()
            .map(|(who, &cents)| (who.clone(), cents + percent(cents, vat_percent)))
            .collect())
    }

    fn post(&self, books: &mut Books, _: Self::Prep, invoices: Self::Output) -> Result<Action> {
        println!("  tax       {}", amounts(&invoices));
        books.invoices = invoices;
        Ok(Action::DEFAULT)
    }
}

/// Sends the invoices to the accounting service.
///
/// This is the one step with an effect outside the store. If the power goes out after the
/// service has the invoices but before `post` has run, the resumed run sends them again; a
/// real service would be told an idempotency key (the month would do) so that it ignores
/// the repeat.
struct Publish;

impl Node<Books> for Publish {
    type Prep = (String, BTreeMap<String, u64>);
    type Output = String;

    fn prep(&self, books: &Books, _: &Params) -> Result<Self::Prep> {
        Ok((books.month.clone(), books.invoices.clone()))
    }

    async fn exec(&self, (month, invoices): &Self::Prep, _: Ctx<'_>) -> Result<String> {
        smol::Timer::after(NETWORK).await;
        let total: u64 = invoices.values().sum();
        Ok(format!("{month}: {} invoices, {} in all", invoices.len(), money(total)))
    }

    fn post(&self, books: &mut Books, _: Self::Prep, receipt: String) -> Result<Action> {
        println!("  publish   {receipt}");
        books.receipt = Some(receipt);
        Ok(Action::DEFAULT)
    }
}

/// The pipeline: fetch → subtotal → discount → tax → publish. The two steps in the middle
/// only compute, so they are plain closures.
fn build() -> Result<Flow<Books>> {
    let mut flow = Flow::new();
    let fetch = flow.add("fetch", Fetch);
    let subtotal = flow.add(
        "subtotal",
        node_fn(|books: &mut Books, _| {
            books.subtotals.clear();
            for order in &books.orders {
                *books.subtotals.entry(order.customer.clone()).or_default() +=
                    order.quantity * order.unit_cents;
            }
            println!("  subtotal  {}", amounts(&books.subtotals));
            Ok(Action::DEFAULT)
        }),
    );
    let discount = flow.add(
        "discount",
        node_fn(|books: &mut Books, _| {
            let off =
                |cents| if cents >= DISCOUNT_FROM { percent(cents, DISCOUNT_PERCENT) } else { 0 };
            books.discounted = books
                .subtotals
                .iter()
                .map(|(who, &cents)| (who.clone(), cents - off(cents)))
                .collect();
            println!("  discount  {}", amounts(&books.discounted));
            Ok(Action::DEFAULT)
        }),
    );
    let tax = flow.add("tax", Tax);
    let publish = flow.add("publish", Publish);
    flow.then(fetch, subtotal);
    flow.then(subtotal, discount);
    flow.then(discount, tax);
    flow.then(tax, publish);
    Ok(flow)
}

/// Saves a checkpoint so that a crash at any moment leaves either the old file or the new
/// one, never half of one: write a temporary file, flush it to the disk, then rename it over
/// the old one (a rename within one directory is atomic).
///
/// The checkpoint hook is synchronous and the run waits for it, on the executor's thread.
/// A small local file is fine there; a service that saves to a slow disk or over the network
/// would rather hand the store to a writer task (through a channel) and keep the hook quick.
fn save(path: &Path, books: &Books, next: &str) -> Result<()> {
    let checkpoint = Checkpoint { next: next.to_string(), books: books.clone() };
    let temp = path.with_extension("json.tmp");
    let mut file = fs::File::create(&temp)?;
    file.write_all(&serde_json::to_vec_pretty(&checkpoint)?)?;
    file.sync_all()?;
    fs::rename(&temp, path)?;
    Ok(())
}

fn load(path: &Path) -> Result<Checkpoint> {
    let text = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

/// An observer that notes the name of every node that finishes, to show which ran.
#[derive(Default)]
struct Finished(Mutex<Vec<String>>);

impl Observer for Finished {
    fn event(&self, event: &Event<'_>) {
        if let Event::NodeEnd { node, .. } = event {
            self.0.lock().unwrap().push(node.to_string());
        }
    }
}

impl Finished {
    fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn main() -> support::Main {
    let flow = build()?;
    let path = std::env::temp_dir().join(format!("miniflow-durable-{}.json", std::process::id()));
    let new_books = || Books { month: "2024-06".to_string(), ..Books::default() };

    // Run 1: the reference, straight through.
    println!("run 1: straight through");
    let mut reference = new_books();
    let finished = Finished::default();
    smol::block_on(flow.run_with(&mut reference, RunOptions::new().observer(&finished)))?;
    let all_nodes = finished.names();
    println!("  nodes run: {}", all_nodes.join(", "));

    // Run 2: the same, saving a checkpoint after every node, and losing power after the
    // third. A power cut gives a program no chance to react: no error comes back, no clean-up
    // runs, everything in memory is lost. Inside one process the nearest thing is to drop the
    // run's future: the run stops at the `.await` it is waiting at — inside `tax`, which waits
    // for the tax service — and none of its code runs again, not even the rest of that node.
    // (A real cut can also land in a `post`, or between a `post` and its checkpoint; resuming
    // handles that the same way, from the checkpoint before, so that node runs again.)
    // `select` drives the run until the checkpoint hook fires a one-shot channel, then hands
    // back the unfinished run, which we drop.
    println!("\nrun 2: saving a checkpoint after every node; the power goes out after the third");
    println!("(checkpoints go to {})", path.display());
    let (cut_power, power_cut) = oneshot::channel::<()>();
    let mut cut_power = Some(cut_power);
    let mut saved = 0;
    let finished = Finished::default();
    let mut books = new_books();
    let options = RunOptions::new().observer(&finished).checkpoint(|books: &Books, next: &str| {
        // A save that fails stops the run (`FlowError::Checkpoint`): a durable run must not
        // go on past a node whose result could not be saved.
        save(&path, books, next)?;
        saved += 1;
        println!("  -- checkpoint {saved} saved: `{next}` runs next");
        if saved == 3 {
            if let Some(cut) = cut_power.take() {
                let _ = cut.send(()); // `select` below is listening
            }
        }
        Ok(())
    });
    let run = Box::pin(flow.run_with(&mut books, options));
    match smol::block_on(future::select(run, power_cut)) {
        Either::Left((result, _)) => {
            result?;
            return Err("the run finished before the power cut".into());
        }
        Either::Right((_, run)) => drop(run), // the power cut: the run is gone, mid-node
    }
    drop(books); // and so is everything the program held in memory
    let before_cut = finished.names();
    println!("  -- power cut! finished before it: {}", before_cut.join(", "));

    // Run 3: the program starts again, finds the checkpoint, and resumes. It has nothing but
    // the file: the store as the last finished node left it, and the name of the next node.
    println!("\nrun 3: a fresh start that finds the checkpoint");
    let Checkpoint { next, mut books } = load(&path)?;
    println!("  loaded the checkpoint: resuming at `{next}`");
    let finished = Finished::default();
    let options = RunOptions::new()
        .observer(&finished)
        .start_at(&next)
        .checkpoint(|books, next| save(&path, books, next));
    smol::block_on(flow.run_with(&mut books, options))?;
    let after_cut = finished.names();
    println!("  nodes run: {}", after_cut.join(", "));
    // The run is over: the checkpoint (which still says "publish runs next", because the
    // hook is not called at the end) must go, or the next start would publish again.
    fs::remove_file(&path)?;

    // Every node ran exactly once over runs 2 and 3, and the books match the reference.
    let both: Vec<String> = before_cut.into_iter().chain(after_cut).collect();
    assert_eq!(both, all_nodes, "the resumed run redid or skipped a node");
    assert_eq!(books, reference, "the resumed run came out differently");
    println!("\nruns 2 and 3 together ran each node once: {}", both.join(", "));
    println!("resumed invoices equal the uninterrupted run's: {}", books == reference);
    println!("receipt: {}", books.receipt.as_deref().unwrap_or("(none)"));
    Ok(())
}

/// `percent` % of `cents`, rounded to the nearest cent (halves up).
fn percent(cents: u64, percent: u64) -> u64 {
    (cents * percent + 50) / 100
}

/// Cents as "123.45".
fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Each customer's amount: "ada 102.00, bob 66.50".
fn amounts(bills: &BTreeMap<String, u64>) -> String {
    bills
        .iter()
        .map(|(who, &cents)| format!("{who} {}", money(cents)))
        .collect::<Vec<_>>()
        .join(", ")
}
