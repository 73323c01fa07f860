//! The scripted failures every sandbox shares: a test queues faults, and each request the
//! sandbox answers takes the next one (FIFO) before anything else.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Faults of one sandbox, consumed one per request in the order they were queued.
pub(crate) struct FaultQueue<F> {
    queue: Mutex<VecDeque<F>>,
}

impl<F> Default for FaultQueue<F> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
        }
    }
}

impl<F> FaultQueue<F> {
    pub(crate) fn push(&self, fault: F) {
        self.lock().push_back(fault);
    }

    /// The fault for the request being answered, if any is left.
    pub(crate) fn next(&self) -> Option<F> {
        self.lock().pop_front()
    }

    pub(crate) fn pending(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    // A test that panicked while holding the lock must not poison the sandbox for the others.
    fn lock(&self) -> MutexGuard<'_, VecDeque<F>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
