//! Durable execution: save the run after every node, so that a process that crashes can be
//! started again and go on where it stopped, without doing twice what it had done.
//!
//! miniflow keeps no files. The hook `RunOptions::checkpoint` calls you after every node that
//! leads on to another, with the store and the path of that next node: `ship` in the outer
//! flow, `checkout/receipt` inside the nested flow `checkout`, and before `quote` just
//! `checkout`: the nested flow itself, which a resumed run starts from its start. Here the
//! store and the path go into one row of an SQLite table, in one transaction. After a crash, a
//! new process reads them back and runs with the option `RunOptions::start_at(path)`: the
//! outer flow starts at its nested flow `checkout`, that flow at its node `receipt`, and when
//! it ends the outer flow goes on. Nothing that had finished runs again.
//!
//! A resumed run runs the node it names from its `prep`, so a crash inside a node runs that
//! node again: keep each side effect in a node of its own (here `charge`), and a crash in a
//! later node repeats none. A crash in `charge` after the payment service took the money, but
//! before `post`, would still charge again: a charge is exactly-once only if the service
//! deduplicates, as this one does by an idempotency key, the order's id. Inside a batch flow
//! or a parallel node no checkpoint is taken: such a node resumes as a whole, all its sub-runs
//! again, so let its `prep` leave out the items the store already has results for.
//!
//! The example plays both processes: it starts itself as a worker that takes an order and
//! crashes (exits on the spot) in `checkout/receipt`, after the payment, then as a second
//! worker on the same database, which finds the checkpoint and finishes the order.
//!
//! Run with: `cargo run --example durable` (the order, the payment service and the SQLite
//! table are in `support/billing.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use miniflow::{Action, Flow, Params, Result, RunOptions, exec_fn, node_fn};
use serde::{Deserialize, Serialize};
use support::billing::{self, Checkpoints, Line, TempDir};

mod support;

/// The shared store: one order. After a crash it is all that is left, so it holds everything
/// the later nodes need, and derives `Serialize` and `Deserialize` to go into the database.
#[derive(Default, Serialize, Deserialize)]
struct Order {
    id: String,
    lines: Vec<Line>,
    total_cents: u64,
    // How many times `charge` finished in this order's run (its `post`). Not how many times the
    // card was charged: that only the payment service's own record tells (see `supervise`).
    charges: u32,
    payment: String, // the payment service's id for the charge
    receipt_sent: bool,
    tracking: String, // the carrier's
}

/// The order's way through the shop: reserve → checkout → ship, where `checkout` is a nested
/// flow: quote → charge → receipt. `charge` pays through the service that keeps `ledger`;
/// with `crash`, `receipt` crashes the process.
fn flow(ledger: PathBuf, crash: bool) -> Flow<Order> {
    let mut checkout = Flow::new();
    let steps = [
        checkout.add("quote", node_fn(quote)),
        checkout.add("charge", charge(ledger)),
        checkout.add("receipt", receipt(crash)),
    ];
    checkout.chain(&steps);

    let mut flow = Flow::new();
    let steps = [
        flow.add("reserve", node_fn(reserve)),
        flow.add("checkout", checkout),
        flow.add("ship", node_fn(ship)),
    ];
    flow.chain(&steps);
    flow
}

/// Holds the items in the warehouse.
fn reserve(order: &mut Order, _: &Params) -> Result<Action> {
    println!("  reserve   {} held in the warehouse", billing::describe(&order.lines));
    Ok(Action::DEFAULT)
}

/// Adds up what the customer pays.
fn quote(order: &mut Order, _: &Params) -> Result<Action> {
    let (subtotal, shipping) = (billing::subtotal(&order.lines), billing::SHIPPING_CENTS);
    order.total_cents = subtotal + shipping;
    let [subtotal, shipping, total] = [subtotal, shipping, order.total_cents].map(billing::money);
    println!("  quote     {subtotal} + {shipping} shipping = {total}");
    Ok(Action::DEFAULT)
}

/// Charges the card: the step that must never run twice, so it is a node of its own, and
/// the checkpoint after it says that the payment is done.
fn charge(ledger: PathBuf) -> impl miniflow::Node<Order> {
    exec_fn(
        move |order: &Order, _| Ok((ledger.clone(), order.id.clone(), order.total_cents)),
        |(ledger, id, cents)| async move { billing::charge_card(&ledger, &id, cents).await },
        |order, (_, _, cents), payment: String| {
            order.charges += 1;
            println!("  charge    card charged {} ({payment})", billing::money(cents));
            order.payment = payment;
            Ok(Action::DEFAULT)
        },
    )
}

/// Emails the receipt. With `crash`, the process dies here instead, as in a power cut: no
/// error, no unwinding, nothing saved; only what the database already holds survives.
fn receipt(crash: bool) -> impl miniflow::Node<Order> {
    node_fn(move |order: &mut Order, _| {
        if crash {
            println!("  receipt   the power goes out!");
            std::process::exit(1);
        }
        order.receipt_sent = true;
        println!("  receipt   emailed: {} paid", billing::money(order.total_cents));
        Ok(Action::DEFAULT)
    })
}

/// Hands the parcel to the carrier.
fn ship(order: &mut Order, _: &Params) -> Result<Action> {
    order.tracking = format!("TRK-{}", order.id);
    println!("  ship      handed to the carrier, tracking {}", order.tracking);
    Ok(Action::DEFAULT)
}

/// The order every worker takes, and the key of its checkpoint in the database.
const ORDER: &str = "A-1001";
/// The payment service's record of its charges, beside the checkpoints' database.
const LEDGER: &str = "payments.log";

fn main() -> support::Main {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => supervise(),
        ["--worker", dir] => work(Path::new(dir), false),
        ["--worker", dir, "--crash"] => work(Path::new(dir), true),
        _ => Err("usage: durable [--worker DIRECTORY [--crash]]".into()),
    }
}

/// Starts a worker, lets it crash, and starts another on the same database, as a service
/// manager restarts a program that died.
fn supervise() -> support::Main {
    let dir = TempDir::new(&format!("miniflow-durable-{}", std::process::id()))?; // removed on drop
    let worker = |extra: &[&str]| -> std::io::Result<_> {
        Command::new(std::env::current_exe()?).arg("--worker").arg(dir.path()).args(extra).status()
    };

    println!("process 1: a worker takes order {ORDER}, and will crash in `checkout/receipt`");
    let first = worker(&["--crash"])?;
    println!("process 1 died in the middle of the run ({first})");
    println!("\nprocess 2: a new worker starts, on the same database");
    let second = worker(&[])?;
    // The proof, outside the store and the checkpoints: the service took the money once, and
    // was asked once (a repeat, answered without charging, would mean `charge` ran again).
    let (charged, repeats) = billing::charges(&dir.path().join(LEDGER), ORDER)?;
    println!("\nthe payment service's own record for order {ORDER}:");
    println!("  charges: {charged}, repeats answered without charging: {repeats}");
    if first.success() || !second.success() || (charged, repeats) != (1, 0) {
        return Err("worker 1 should crash, worker 2 succeed, and the card be charged once".into());
    }
    Ok(())
}

/// A worker: resumes the order from its checkpoint if the database has one, else starts it.
fn work(dir: &Path, crash: bool) -> support::Main {
    let flow = flow(dir.join(LEDGER), crash);
    let mut checkpoints = Checkpoints::open(&dir.join("checkpoints.db"))?;
    let (mut order, resume_at) = match checkpoints.load::<Order>(ORDER)? {
        Some((order, next)) => {
            println!("  found a checkpoint: resuming at `{next}`");
            (order, Some(next))
        }
        None => {
            println!("  no checkpoint: a new order");
            (Order { id: ORDER.to_string(), lines: billing::cart(), ..Order::default() }, None)
        }
    };

    let mut options = RunOptions::new().checkpoint(|order: &Order, next: &str| {
        // A save that fails stops the run (`FlowError::Checkpoint`) before `next`.
        checkpoints.save(&order.id, order, next)?;
        println!("  -- saved: `{next}` runs next");
        Ok(())
    });
    if let Some(path) = &resume_at {
        options = options.start_at(path);
    }
    smol::block_on(flow.run_with(&mut order, options))?;
    // The run ended: its last checkpoint names a node that already ran (`ship`). Kept, it
    // would make the next start ship again.
    checkpoints.discard(ORDER)?;
    println!("  the run finished; its checkpoint is discarded");

    let Order { id, charges, payment, receipt_sent, tracking, .. } = &order;
    let s = if *charges == 1 { "" } else { "s" };
    println!("order {id}: `charge` finished {charges} time{s} ({payment})");
    println!("order {id}: receipt sent: {receipt_sent}");
    println!("order {id}: shipped, tracking {tracking}");
    Ok(())
}
