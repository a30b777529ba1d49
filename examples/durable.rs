//! Durable execution: save the run after every node, and after a crash pick it up where it
//! stopped instead of starting over.
//!
//! A long pipeline should not redo an hour of work because the power went out in its last
//! step. miniflow keeps no files; it gives two hooks. `RunOptions::checkpoint` calls you after
//! every node with the store and the name of the node that runs next: save both (here, in a
//! JSON file). After a crash, load them and run again with `RunOptions::start_at(next)`: the
//! finished nodes do not run again, and the result is the one an uninterrupted run gives.
//!
//! This example bills a month of orders in five steps, three of them calling (simulated)
//! services. It runs them three times: straight through; with a power cut after the third
//! checkpoint; and as a fresh start that resumes from the file. Then it compares the invoices.
//!
//! Run with: `cargo run --example durable` (the orders, the pricing and the checkpoint file
//! are in `support/billing.rs`).

use std::collections::BTreeMap;
use std::fs;

use futures::channel::oneshot;
use futures::future::{self, Either};
use miniflow::{Action, Flow, Node, Params, Result, RunOptions, exec_fn, node_fn};
use serde::{Deserialize, Serialize};
use support::billing::{self, Checkpoint, Finished, NETWORK, Order};

mod support;

/// The pipeline: fetch → subtotal → discount → tax → publish. The two steps in the middle
/// only compute, so they are plain functions; the others await a service.
fn flow() -> Flow<Books> {
    let mut flow = Flow::new();
    let steps = [
        flow.add("fetch", fetch()),
        flow.add("subtotal", node_fn(subtotal)),
        flow.add("discount", node_fn(discount)),
        flow.add("tax", tax()),
        flow.add("publish", publish()),
    ];
    flow.chain(&steps);
    flow
}

fn main() -> support::Main {
    let flow = flow();
    let path = std::env::temp_dir().join(format!("miniflow-durable-{}.json", std::process::id()));
    let new_books = || Books { month: "2024-06".to_string(), ..Books::default() };

    // Run 1: the reference, straight through.
    println!("run 1: straight through");
    let (mut reference, finished) = (new_books(), Finished::default());
    smol::block_on(flow.run_with(&mut reference, RunOptions::new().observer(&finished)))?;
    let all_nodes = finished.names();
    println!("  nodes run: {}", all_nodes.join(", "));

    // Run 2: the same, saving a checkpoint after every node, and losing power after the
    // third. A power cut leaves no chance to react, and everything in memory is lost; in one
    // process the nearest thing is to drop the run's future. The run stops at the `.await` it
    // is at (in `tax`, waiting for the tax service), and none of its code runs again. (A real
    // cut can also land in a `post`; resuming from the checkpoint before redoes that node.)
    // `select` drives the run until the hook fires a one-shot channel, then hands it back.
    println!("\nrun 2: saving a checkpoint after every node; the power goes out after the third");
    println!("(checkpoints go to {})", path.display());
    let (cut_power, power_cut) = oneshot::channel::<()>();
    let (mut cut_power, mut saved) = (Some(cut_power), 0);
    let (mut books, finished) = (new_books(), Finished::default());
    let options = RunOptions::new().observer(&finished).checkpoint(|books: &Books, next: &str| {
        // A save that fails stops the run (`FlowError::Checkpoint`): a durable run must not
        // go on past a node whose result could not be saved.
        billing::save(&path, books, next)?;
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
    let Checkpoint { next, store: mut books } = billing::load::<Books>(&path)?;
    println!("  loaded the checkpoint: resuming at `{next}`");
    let finished = Finished::default();
    let options = RunOptions::new()
        .observer(&finished)
        .start_at(&next)
        .checkpoint(|books, next| billing::save(&path, books, next));
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

/// The shared store. Everything a later node needs must be in here, because after a crash
/// this is all that is left: it derives `Serialize` and `Deserialize` to go into the file.
/// Amounts are in cents, by customer (a `BTreeMap`, so the order is always the same).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Books {
    month: String,
    orders: Vec<Order>,
    subtotals: BTreeMap<String, u64>,
    discounted: BTreeMap<String, u64>,
    invoices: BTreeMap<String, u64>, // with VAT: what each invoice says
    receipt: Option<String>,         // the accounting service's, for the published invoices
}

/// Downloads the month's orders from the shop.
fn fetch() -> impl Node<Books> {
    exec_fn(
        |books: &Books, _| Ok(books.month.clone()),
        |month| async move {
            miniflow::sleep(NETWORK).await; // a call to the shop's API in real life
            billing::orders(&month)
        },
        |books, _, orders: Vec<Order>| {
            println!("  fetch     {} orders", orders.len());
            books.orders = orders;
            Ok(Action::DEFAULT)
        },
    )
}

/// Adds up what each customer ordered.
fn subtotal(books: &mut Books, _: &Params) -> Result<Action> {
    books.subtotals = billing::subtotals(&books.orders);
    println!("  subtotal  {}", billing::amounts(&books.subtotals));
    Ok(Action::DEFAULT)
}

/// Takes the volume discount off each subtotal.
fn discount(books: &mut Books, _: &Params) -> Result<Action> {
    books.discounted = billing::discounted(&books.subtotals);
    println!("  discount  {}", billing::amounts(&books.discounted));
    Ok(Action::DEFAULT)
}

/// Asks the tax service for the VAT rate and adds VAT to every bill.
fn tax() -> impl Node<Books> {
    exec_fn(
        |books: &Books, _| Ok(books.discounted.clone()),
        |bills| async move {
            println!("  tax       asking the tax service for the VAT rate...");
            miniflow::sleep(NETWORK).await; // the service answers with the rate
            Ok(billing::with_vat(&bills, billing::VAT_PERCENT))
        },
        |books, _, invoices: BTreeMap<String, u64>| {
            println!("  tax       {}", billing::amounts(&invoices));
            books.invoices = invoices;
            Ok(Action::DEFAULT)
        },
    )
}

/// Sends the invoices to the accounting service.
///
/// This is the one step with an effect outside the store. If the power goes out after the
/// service has the invoices but before `post` has run, the resumed run sends them again; a
/// real service would be told an idempotency key (the month would do) so that it ignores
/// the repeat.
fn publish() -> impl Node<Books> {
    exec_fn(
        |books: &Books, _| Ok((books.month.clone(), books.invoices.clone())),
        |(month, invoices)| async move {
            miniflow::sleep(NETWORK).await;
            let total: u64 = invoices.values().sum();
            Ok(format!("{month}: {} invoices, {} in all", invoices.len(), billing::money(total)))
        },
        |books, _, receipt: String| {
            println!("  publish   {receipt}");
            books.receipt = Some(receipt);
            Ok(Action::DEFAULT)
        },
    )
}
