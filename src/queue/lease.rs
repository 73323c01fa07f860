//! Until when this worker's leases are known to be valid: a worker that lost its lease stops
//! sending for it (docs/operations.md, "Lease lost").
//!
//! The database decides who holds a job (`locked_until < now()` lets any claim rescue it);
//! the worker only knows what its own statements achieved. So it keeps, per claimed batch, a
//! conservative deadline measured on its own monotonic clock:
//!
//! - a claim that started at `c` leased the batch until at least `c + lease` (the database's
//!   `now()` is later than `c`);
//! - a heartbeat that started at `h` and whose commit was acknowledged at `f` extended every
//!   job this worker still held to at least `h + lease`, **provided** the batch's deadline had
//!   not passed by `f`: the statement then finished while the lease still stood, so no claim
//!   can have rescued the job before it. A later beat does not heal a lease that may
//!   have lapsed in between: another worker may have the job by then, so the batch is lost for
//!   good and left to the rescuer (fencing discards whatever it would still write).
//!
//! The sink starts a request only while the deadline is at least one request timeout away, so
//! a request this worker starts always ends before the job could be rescued.
//!
//! The liveness lock (src/queue/liveness.rs) can end every lease at once: once the worker
//! cannot confirm its lock, a rescuer may release its jobs before their deadline. So the clock
//! has a generation, moved by [`LeaseClock::lose_all`]: a batch registered under an older one is
//! lost for good, like a lapsed lease, and so is a batch whose claim started before the loss.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The worker's side: registers batches at claim time, moves their deadlines on each beat.
#[derive(Debug)]
pub struct LeaseClock {
    lease: Duration,
    epoch: Instant,
    batches: Mutex<Vec<Weak<BatchState>>>,
    /// Moved on every loss of the liveness lock.
    generation: Arc<AtomicU64>,
}

#[derive(Debug)]
struct BatchState {
    /// When the claim returned (nanoseconds since the clock's epoch): a beat that started
    /// later includes this batch.
    registered: u64,
    /// Nanoseconds since the epoch until which the lease is known valid. Once a beat could
    /// not confirm it in time it never moves again: every later beat finishes later still.
    valid_until: AtomicU64,
    /// The clock's generation when the claim started.
    generation: u64,
}

/// One batch's lease, as the handler and the sink see it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Lease {
    state: Arc<BatchState>,
    epoch: Instant,
    generation: Arc<AtomicU64>,
}

impl LeaseClock {
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            epoch: Instant::now(),
            batches: Mutex::new(Vec::new()),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The current generation: read it before a claim starts, and register the batch with it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The liveness lock could not be confirmed: every lease held so far may be cut short by a
    /// rescuer, so none is valid any more (and none registered with an older generation).
    pub fn lose_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A batch whose claim statement started at `claim_started` and has just returned.
    pub fn register(&self, claim_started: Instant) -> Lease {
        self.register_since(claim_started, self.generation())
    }

    /// Like [`LeaseClock::register`], for a claim that started in `generation`: if the lock
    /// was lost since, the batch is lost too.
    pub fn register_since(&self, claim_started: Instant, generation: u64) -> Lease {
        let state = Arc::new(BatchState {
            registered: self.nanos(Instant::now()),
            valid_until: AtomicU64::new(self.nanos(claim_started + self.lease)),
            generation,
        });
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        // Batches that finished are dropped here rather than on a timer.
        batches.retain(|b| b.strong_count() > 0);
        batches.push(Arc::downgrade(&state));
        Lease {
            state,
            epoch: self.epoch,
            generation: self.generation.clone(),
        }
    }

    /// A heartbeat that started at `started` extended this worker's leases; its commit was
    /// acknowledged at `finished`.
    pub fn renewed(&self, started: Instant, finished: Instant) {
        let started_n = self.nanos(started);
        let finished_by = self.nanos(finished);
        let renewed_until = self.nanos(started + self.lease);
        let batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        for b in batches.iter().filter_map(Weak::upgrade) {
            if b.registered < started_n && finished_by <= b.valid_until.load(Ordering::Relaxed) {
                b.valid_until.fetch_max(renewed_until, Ordering::Relaxed);
            }
        }
    }
}

impl Lease {
    /// Whether the worker lost its liveness lock since this batch was claimed: its jobs may be
    /// released by a rescuer at any time, and what it did not start is given back.
    pub fn lost_to_lock(&self) -> bool {
        self.generation.load(Ordering::SeqCst) != self.state.generation
    }

    /// Whether the lease is known to last at least `d` more: a request of at most `d` may start.
    pub fn valid_for(&self, d: Duration) -> bool {
        if self.lost_to_lock() {
            return false;
        }
        let until =
            self.epoch + Duration::from_nanos(self.state.valid_until.load(Ordering::Relaxed));
        Instant::now() + d <= until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);
    const BEAT: Duration = Duration::from_secs(1);

    #[test]
    fn a_claim_is_valid_for_its_lease_minus_what_a_request_needs() {
        let clock = LeaseClock::new(LEASE);
        let lease = clock.register(Instant::now());
        assert!(lease.valid_for(Duration::from_secs(9)));
        assert!(!lease.valid_for(Duration::from_secs(11)));
    }

    #[test]
    fn a_timely_beat_extends_batches_claimed_before_it() {
        let clock = LeaseClock::new(LEASE);
        let claimed = Instant::now() - Duration::from_secs(8);
        let lease = clock.register(claimed);
        assert!(!lease.valid_for(Duration::from_secs(5)));
        // A beat that starts after the claim returned covers the batch.
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + BEAT);
        assert!(lease.valid_for(Duration::from_secs(9)));
    }

    #[test]
    fn a_beat_that_started_before_the_claim_returned_does_not_count_for_it() {
        let clock = LeaseClock::new(LEASE);
        let before = Instant::now();
        let lease = clock.register(before - Duration::from_secs(8));
        clock.renewed(before, before + BEAT);
        assert!(!lease.valid_for(Duration::from_secs(5)));
    }

    #[test]
    fn a_beat_acknowledged_after_the_deadline_is_not_credited() {
        let clock = LeaseClock::new(LEASE);
        // 0.5 s left; the beat's commit is acknowledged 1 s from now.
        let lease = clock.register(Instant::now() - Duration::from_millis(9500));
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + BEAT);
        assert!(!lease.valid_for(Duration::from_secs(1)));
    }

    #[test]
    fn a_lease_whose_deadline_passed_is_never_renewed() {
        let clock = LeaseClock::new(LEASE);
        let lease = clock.register(Instant::now() - Duration::from_millis(10_500));
        assert!(!lease.valid_for(Duration::ZERO));
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + Duration::from_millis(1));
        assert!(
            !lease.valid_for(Duration::ZERO),
            "another worker may hold the job by now"
        );
    }

    #[test]
    fn losing_the_lock_ends_every_lease_for_good() {
        let clock = LeaseClock::new(LEASE);
        let before = clock.generation();
        let held = clock.register(Instant::now());
        clock.lose_all();
        assert!(!held.valid_for(Duration::ZERO));
        // A claim that started before the loss and returned after it is lost as well.
        let straddling = clock.register_since(Instant::now(), before);
        assert!(!straddling.valid_for(Duration::ZERO));
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + Duration::from_millis(1));
        assert!(!held.valid_for(Duration::ZERO), "a beat does not heal it");
        // Claims after the loss are valid.
        assert!(clock
            .register(Instant::now())
            .valid_for(Duration::from_secs(9)));
    }

    #[test]
    fn finished_batches_are_forgotten() {
        let clock = LeaseClock::new(LEASE);
        for _ in 0..10 {
            drop(clock.register(Instant::now()));
        }
        let _live = clock.register(Instant::now());
        assert_eq!(clock.batches.lock().unwrap().len(), 1);
    }
}
