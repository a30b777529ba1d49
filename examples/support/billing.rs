//! What `examples/durable.rs` sells and where it keeps its runs: the order, its prices, a
//! stand-in for the payment service, the SQLite table of checkpoints, and a temp directory.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use miniflow::Result;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// How long the simulated payment service takes to answer.
pub const NETWORK: Duration = Duration::from_millis(10);

/// What shipping costs, in cents, whatever the order.
pub const SHIPPING_CENTS: u64 = 4_99;

/// One line of an order. Money is in whole cents, so that sums are exact.
#[derive(Serialize, Deserialize)]
pub struct Line {
    /// What was ordered.
    pub item: String,
    /// How many.
    pub quantity: u64,
    /// The price of one, in cents.
    pub unit_cents: u64,
}

/// The lines of the order the example takes: two desk lamps.
pub fn cart() -> Vec<Line> {
    vec![Line { item: "Aurora desk lamp".to_string(), quantity: 2, unit_cents: 24_99 }]
}

/// What the lines cost, shipping left out.
pub fn subtotal(lines: &[Line]) -> u64 {
    lines.iter().map(|line| line.quantity * line.unit_cents).sum()
}

/// The lines as "2 × Aurora desk lamp".
pub fn describe(lines: &[Line]) -> String {
    let each = lines.iter().map(|line| format!("{} × {}", line.quantity, line.item));
    each.collect::<Vec<_>>().join(", ")
}

/// Cents as "123.45".
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The payment service: charges the customer's card `cents` for `order`, and answers with the
/// payment's id.
///
/// The stand-in keeps its own record of every request, a line each in the file `ledger`: like
/// a real service's, it is outside the store and the checkpoints, so it shows what happened
/// whatever the store says (see [`charges`]).
///
/// The order's id is the request's idempotency key, as a real service is given one: a second
/// request for the same order takes no money, is answered with the first one's id, and is
/// recorded as a repeat. That covers the one gap a checkpoint leaves: a crash after the service
/// took the money but before the node's `post` ran, when the resumed run charges again.
pub async fn charge_card(ledger: &Path, order: &str, cents: u64) -> Result<String> {
    miniflow::sleep(NETWORK).await;
    let (charged, _) = charges(ledger, order)?;
    let outcome = if charged == 0 { "charged" } else { "repeat" };
    let mut file = OpenOptions::new().create(true).append(true).open(ledger)?;
    writeln!(file, "{order} {cents} {outcome}")?;
    Ok(format!("pay_{order}"))
}

/// By the payment service's own record: how many requests for `order` took money, and how
/// many were repeats it answered without charging.
pub fn charges(ledger: &Path, order: &str) -> Result<(usize, usize)> {
    let record = match fs::read_to_string(ledger) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        other => other?,
    };
    let outcomes: Vec<&str> = record
        .lines()
        .filter_map(|line| line.strip_prefix(order)?.strip_prefix(' '))
        .filter_map(|rest| rest.split(' ').nth(1))
        .collect();
    let count = |outcome| outcomes.iter().filter(|&&o| o == outcome).count();
    Ok((count("charged"), count("repeat")))
}

/// A directory in the system's temp directory, removed with everything in it when dropped,
/// however the code that holds it returns: early, with `?`, too.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates the directory `name` in the temp directory.
    pub fn new(name: &str) -> io::Result<Self> {
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0); // the demo's files; nothing to do if it fails
    }
}

/// The checkpoints of unfinished runs, one row per run, in an SQLite database.
pub struct Checkpoints(Connection);

impl Checkpoints {
    /// Opens the database at `path`, creating it and its table if they are not there yet.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Connection::open(path)?;
        db.execute(
            "CREATE TABLE IF NOT EXISTS checkpoints (
                run   TEXT PRIMARY KEY, -- which run: here, the order's id
                next  TEXT NOT NULL,    -- the path of the node that runs next
                store TEXT NOT NULL     -- the store, as JSON
            )",
            [],
        )?;
        Ok(Checkpoints(db))
    }

    /// Saves `store` and the path of the `next` node as run `run`'s checkpoint, replacing the
    /// one before, in one transaction: a crash at any moment leaves the old row or the new
    /// one, never the store of one checkpoint with the next node of another. The commit
    /// returns once SQLite has the row on the disk.
    ///
    /// The checkpoint hook is synchronous and the run waits for it, on the executor's thread.
    /// A local database is fine there; one over the network would rather be handed the store
    /// through a channel, by a quick hook, and written by a task of its own.
    pub fn save<S: Serialize>(&mut self, run: &str, store: &S, next: &str) -> Result<()> {
        let store = serde_json::to_string(store)?;
        let transaction = self.0.transaction()?;
        transaction.execute(
            "INSERT INTO checkpoints (run, next, store) VALUES (?1, ?2, ?3)
             ON CONFLICT (run) DO UPDATE SET next = excluded.next, store = excluded.store",
            params![run, next, store],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Run `run`'s checkpoint, if it has one: its store, and the path of the node to resume at.
    pub fn load<S: DeserializeOwned>(&self, run: &str) -> Result<Option<(S, String)>> {
        let row = self
            .0
            .query_row("SELECT store, next FROM checkpoints WHERE run = ?1", [run], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .optional()?;
        match row {
            None => Ok(None),
            Some((store, next)) => Ok(Some((serde_json::from_str(&store)?, next))),
        }
    }

    /// Deletes run `run`'s checkpoint: the run has ended, and its last checkpoint names a node
    /// that already ran.
    pub fn discard(&mut self, run: &str) -> Result<()> {
        self.0.execute("DELETE FROM checkpoints WHERE run = ?1", [run])?;
        Ok(())
    }
}
