//! How the suite gets a fresh store for each case.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use tamma_events::{EventStore, StoreHooks};

/// A fresh, empty store for one test case, and whatever keeps its storage alive (a temp dir, a database
/// that is dropped afterwards). Fields drop in order: the store before its guard.
pub struct Fresh {
    /// The store under test.
    pub store: Arc<dyn EventStore>,
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl Fresh {
    /// A fresh store that needs nothing kept alive.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            _guard: None,
        }
    }

    /// Keeps `guard` alive as long as the store is used (dropped after the store).
    #[must_use]
    pub fn keep(mut self, guard: impl Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }
}

/// Opens a fresh, empty store with the given test hooks. Implemented for every
/// `Fn(StoreHooks) -> impl Future<Output = Fresh>`, so an `async fn open(hooks: StoreHooks) -> Fresh`
/// is a factory.
pub trait StoreFactory: Send + Sync {
    /// A fresh, empty store using `hooks`.
    fn open(&self, hooks: StoreHooks) -> BoxFuture<'_, Fresh>;
}

impl<F, Fut> StoreFactory for F
where
    F: Fn(StoreHooks) -> Fut + Send + Sync,
    Fut: Future<Output = Fresh> + Send + 'static,
{
    fn open(&self, hooks: StoreHooks) -> BoxFuture<'_, Fresh> {
        Box::pin(self(hooks))
    }
}
