//! Batches this proxy published itself, handed to its store from memory.
//!
//! The feed ([`super::feed`]) would otherwise read each of them back from
//! the stream, decompress and decode it: work the proxy has just done the
//! other way round. So a batch is published with the header
//! `Wasmtap-Origin: <process nonce>-<n>`, and before publishing the
//! proxy registers `n` with a slot. Once JetStream confirms the batch as
//! new, the record still in memory goes to the store and the store's
//! receipt into the slot. When the feed reads a message of this process's
//! origin, it waits for the slot instead of decoding: it gets the receipt,
//! or nothing when the publish was not confirmed in time (the message is
//! in the stream all the same), and then decodes the message as any other.
//!
//! The feed still acknowledges to JetStream in stream order and only once
//! the store answered, so a proxy killed at any moment gets again what it
//! had not stored, and the store keeps a batch once whichever way it came.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;
use wasmtap_protocol::access_key::ProjectId;

use crate::store::{Receipt, Store, StoredBatch};

/// The header naming a message's publisher.
pub const ORIGIN: &str = "Wasmtap-Origin";

/// Most slots waiting for the feed; past it, batches are published
/// without an origin and the feed decodes them (a feed that stopped
/// reading must not make the proxy hold slots without bound).
const MAX_SLOTS: usize = 4_096;

/// What a slot resolves to: the store's receipt for a batch stored from
/// memory, or `None` when the feed must decode the message itself.
pub type Slot = oneshot::Receiver<Option<Receipt>>;

/// The batches this process published and the feed has not read yet.
#[derive(Debug)]
pub struct Own {
    store: Arc<Store>,
    /// Tells this process's messages from those of earlier runs and of
    /// other proxies.
    nonce: u64,
    next: AtomicU64,
    slots: Mutex<HashMap<u64, Slot>>,
}

/// One publish's registration; settled by [`Registered::stored`] or
/// [`Registered::not_stored`] (dropping it counts as the latter).
#[derive(Debug)]
pub struct Registered {
    own: Arc<Own>,
    n: u64,
    tx: Option<oneshot::Sender<Option<Receipt>>>,
}

impl Own {
    /// Slots for batches published by this process, stored into `store`.
    pub fn new(store: Arc<Store>) -> Arc<Self> {
        Arc::new(Self {
            store,
            nonce: rand::random(),
            next: AtomicU64::new(0),
            slots: Mutex::default(),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a batch about to be published: the value of its
    /// [`ORIGIN`] header and its registration, or `None` when too many
    /// slots wait (the batch then goes without an origin).
    pub fn register(self: &Arc<Self>) -> Option<(String, Registered)> {
        let mut slots = self.slots();
        if slots.len() >= MAX_SLOTS {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        slots.insert(n, rx);
        let origin = format!("{:016x}-{n}", self.nonce);
        Some((origin, Registered { own: self.clone(), n, tx: Some(tx) }))
    }

    /// The slot of a message whose [`ORIGIN`] header is `origin`, taken
    /// out; `None` for another process's message or one already taken.
    pub fn take(&self, origin: Option<&str>) -> Option<Slot> {
        let (nonce, n) = origin?.split_once('-')?;
        let nonce = u64::from_str_radix(nonce, 16).ok()?;
        let n: u64 = n.parse().ok()?;
        if nonce != self.nonce {
            return None;
        }
        self.slots().remove(&n)
    }

    /// Slots waiting for the feed.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.slots().len()
    }
}

impl Registered {
    /// JetStream confirmed the batch as new: the store takes `record` from
    /// memory, and the feed waits for its receipt when it reads the message.
    pub fn stored(mut self, project: &ProjectId, record: Arc<StoredBatch>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(self.own.store.submit(project, record)));
        }
    }

    /// The batch was not confirmed as new (a duplicate, which the stream
    /// did not keep, or no answer, though the message may be in the
    /// stream): the slot goes, and a feed that already took it decodes.
    pub fn not_stored(self) {}
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            self.own.slots().remove(&self.n);
            let _ = tx.send(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmtap_protocol::message::Batch;

    use super::*;
    use crate::store::Appended;

    fn record(seq: u64) -> Arc<StoredBatch> {
        Arc::new(StoredBatch {
            agent: "web-1".into(),
            session: 1,
            received_ms: 5,
            batch: Batch { seq, samples: Vec::new() },
        })
    }

    fn project() -> ProjectId {
        ProjectId::new("shop").expect("valid")
    }

    fn own() -> (tempfile::TempDir, Arc<Own>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        (dir, Own::new(store))
    }

    #[tokio::test]
    async fn a_confirmed_batch_reaches_the_feed_as_the_stores_receipt() {
        let (_dir, own) = own();
        let (origin, registered) = own.register().expect("room");
        let slot = own.take(Some(&origin)).expect("own message");
        assert_eq!(own.waiting(), 0);
        registered.stored(&project(), record(1));
        let receipt = slot.await.expect("settled").expect("stored from memory");
        assert_eq!(receipt.await.expect("answered").expect("stored"), Appended::Stored);
    }

    #[tokio::test]
    async fn an_unconfirmed_batch_leaves_the_message_to_be_decoded_and_no_slot_behind() {
        let (_dir, own) = own();
        let (origin, registered) = own.register().expect("room");
        let slot = own.take(Some(&origin)).expect("own message");
        registered.not_stored();
        assert!(slot.await.expect("settled").is_none());

        // Settled before the feed looked: nothing is left waiting.
        let (origin, registered) = own.register().expect("room");
        drop(registered);
        assert_eq!(own.waiting(), 0);
        assert!(own.take(Some(&origin)).is_none());
    }

    #[test]
    fn other_origins_and_garbage_are_not_ours() {
        let (_dir, own) = own();
        let (origin, _registered) = own.register().expect("room");
        let (_, n) = origin.split_once('-').expect("nonce-n");
        let other = if origin.starts_with('0') { "1" } else { "0" };
        let foreign = format!("{other}{}-{n}", &origin[1..16]);
        for bad in [None, Some(""), Some("-"), Some("zz-1"), Some(foreign.as_str()), Some("1-x")] {
            assert!(own.take(bad).is_none(), "{bad:?}");
        }
        assert!(own.take(Some(&origin)).is_some());
        assert!(own.take(Some(&origin)).is_none(), "taken once");
    }

    #[test]
    fn past_the_bound_batches_go_without_an_origin() {
        let (_dir, own) = own();
        let held: Vec<_> = (0..MAX_SLOTS).map(|_| own.register().expect("room")).collect();
        assert!(own.register().is_none());
        drop(held);
        assert!(own.register().is_some());
    }
}
