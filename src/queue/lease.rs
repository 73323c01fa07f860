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
//! A beat skips a job whose row another transaction holds (sql/extend_leases.sql) and says
//! which: that job's lease was not extended, so its own deadline stays where its batch's was
//! before the beat that first skipped it. A later beat that extends it in time (or finds it
//! gone) lifts that cap; once a beat finishes after the cap, the job's lease may have lapsed
//! and it is lost for good, like a batch ([`Lease::doubtful`] names such jobs to the sink).
//!
//! The liveness lock (src/queue/liveness.rs) can end every lease at once: once the worker
//! cannot confirm its lock, a rescuer may release its jobs before their deadline. So the clock
//! has a generation, moved by [`LeaseClock::lose_all`]: a batch registered under an older one is
//! lost for good, like a lapsed lease, and so is a batch whose claim started before the loss.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The worker's side: registers batches at claim time, moves their deadlines on each beat.
#[derive(Debug)]
pub struct LeaseClock {
    lease: Duration,
    epoch: Instant,
    batches: Batches,
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
    jobs: Mutex<BatchJobs>,
}

/// Nanoseconds since the epoch of a job lost for good (its cap passed).
const LOST: u64 = 0;

#[derive(Debug, Default)]
struct BatchJobs {
    /// The batch's jobs: claimed with it, and adopted later ([`Lease::add_jobs`]).
    ids: HashSet<i64>,
    /// Jobs a beat skipped, with their own deadline (`LOST`: lost for good). Empty but for a
    /// row another transaction holds.
    capped: HashMap<i64, u64>,
}

/// The batches of the clock, still alive.
type Batches = Arc<Mutex<Vec<Weak<BatchState>>>>;

/// One batch's lease, as the handler and the sink see it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Lease {
    state: Arc<BatchState>,
    epoch: Instant,
    generation: Arc<AtomicU64>,
    batches: Batches,
}

impl LeaseClock {
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            epoch: Instant::now(),
            batches: Arc::default(),
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

    /// A batch of `jobs` whose claim statement started at `claim_started` and has just
    /// returned.
    pub fn register(&self, claim_started: Instant, jobs: impl IntoIterator<Item = i64>) -> Lease {
        self.register_since(claim_started, self.generation(), jobs)
    }

    /// Like [`LeaseClock::register`], for a claim that started in `generation`: if the lock
    /// was lost since, the batch is lost too.
    pub fn register_since(
        &self,
        claim_started: Instant,
        generation: u64,
        jobs: impl IntoIterator<Item = i64>,
    ) -> Lease {
        let state = Arc::new(BatchState {
            registered: self.nanos(Instant::now()),
            valid_until: AtomicU64::new(self.nanos(claim_started + self.lease)),
            generation,
            jobs: Mutex::new(BatchJobs {
                ids: jobs.into_iter().collect(),
                capped: HashMap::new(),
            }),
        });
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        // Batches that finished are dropped here rather than on a timer.
        batches.retain(|b| b.strong_count() > 0);
        batches.push(Arc::downgrade(&state));
        drop(batches);
        self.lease(state)
    }

    fn lease(&self, state: Arc<BatchState>) -> Lease {
        Lease {
            state,
            epoch: self.epoch,
            generation: self.generation.clone(),
            batches: self.batches.clone(),
        }
    }

    /// A heartbeat that started at `started` extended this worker's leases but those of
    /// `skipped` (their rows were held elsewhere); its commit was acknowledged at `finished`.
    /// Returns the jobs whose own lease may have lapsed since (each once, with the lease of the
    /// batch that held them): nothing more may be sent for them, and their lease should be
    /// left to run out unless this worker claimed them again ([`Lease::reclaimed`]).
    pub fn renewed(
        &self,
        started: Instant,
        finished: Instant,
        skipped: &[i64],
    ) -> Vec<(i64, Lease)> {
        let started_n = self.nanos(started);
        let finished_by = self.nanos(finished);
        let renewed_until = self.nanos(started + self.lease);
        let skipped: HashSet<i64> = skipped.iter().copied().collect();
        let mut lost = Vec::new();
        let batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        for b in batches.iter().filter_map(Weak::upgrade) {
            let before = b.valid_until.load(Ordering::Relaxed);
            let credited = b.registered < started_n && finished_by <= before;
            let mut jobs = b.jobs.lock().unwrap_or_else(|p| p.into_inner());
            if !jobs.capped.is_empty() {
                let lost_before = lost.len();
                jobs.capped.retain(|id, cap| {
                    if *cap == LOST {
                        true
                    } else if *cap < finished_by {
                        // Not extended before its own deadline: another worker may have it.
                        *cap = LOST;
                        lost.push((*id, None));
                        true
                    } else {
                        // Extended in time by this beat (or no longer held here): it is as
                        // safe as its batch again.
                        skipped.contains(id) || !credited
                    }
                });
                if lost.len() > lost_before {
                    let lease = self.lease(b.clone());
                    for l in &mut lost[lost_before..] {
                        l.1 = Some(lease.clone());
                    }
                }
            }
            if !skipped.is_empty() {
                let BatchJobs { ids, capped } = &mut *jobs;
                let mut cap = |id: i64| {
                    // Every beat credited so far extended it: its lease lasts at least as long
                    // as the batch's did before this one.
                    capped.entry(id).or_insert(before);
                };
                if ids.len() <= skipped.len() {
                    ids.iter()
                        .filter(|id| skipped.contains(id))
                        .for_each(|&id| cap(id));
                } else {
                    skipped
                        .iter()
                        .filter(|id| ids.contains(id))
                        .for_each(|&id| cap(id));
                }
            }
            drop(jobs);
            if credited {
                b.valid_until.fetch_max(renewed_until, Ordering::Relaxed);
            }
        }
        drop(batches);
        lost.into_iter()
            .filter_map(|(id, lease)| Some((id, lease?)))
            .collect()
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

    /// Whether this worker claimed `job` again after this batch (its lease here lapsed and the
    /// job came back to it): the job's lease is the newer batch's, not this one's to let run
    /// out.
    pub fn reclaimed(&self, job: i64) -> bool {
        let batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        batches.iter().filter_map(Weak::upgrade).any(|b| {
            !Arc::ptr_eq(&b, &self.state)
                && b.registered >= self.state.registered
                && b.jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .ids
                    .contains(&job)
        })
    }

    /// Jobs leased to this worker outside the claim (e.g. at a bulk change's expansion) that
    /// are worked on under this batch's lease: a beat that skips one caps it too.
    pub fn add_jobs(&self, ids: impl IntoIterator<Item = i64>) {
        self.state
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .extend(ids);
    }

    /// The batch's jobs whose own lease is not known to last `d` more although the batch's
    /// may (beats skipped their row): no request of at most `d` may start for them. Empty, and
    /// cheap, unless a row of the batch was held elsewhere.
    pub fn doubtful(&self, d: Duration) -> HashSet<i64> {
        let jobs = self.state.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.capped.is_empty() {
            return HashSet::new();
        }
        let now = Instant::now() + d;
        jobs.capped
            .iter()
            .filter(|&(_, &cap)| now > self.epoch + Duration::from_nanos(cap))
            .map(|(&id, _)| id)
            .collect()
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
        let lease = clock.register(Instant::now(), [1]);
        assert!(lease.valid_for(Duration::from_secs(9)));
        assert!(!lease.valid_for(Duration::from_secs(11)));
    }

    #[test]
    fn a_timely_beat_extends_batches_claimed_before_it() {
        let clock = LeaseClock::new(LEASE);
        let claimed = Instant::now() - Duration::from_secs(8);
        let lease = clock.register(claimed, [1]);
        assert!(!lease.valid_for(Duration::from_secs(5)));
        // A beat that starts after the claim returned covers the batch.
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + BEAT, &[]);
        assert!(lease.valid_for(Duration::from_secs(9)));
    }

    #[test]
    fn a_beat_that_started_before_the_claim_returned_does_not_count_for_it() {
        let clock = LeaseClock::new(LEASE);
        let before = Instant::now();
        let lease = clock.register(before - Duration::from_secs(8), [1]);
        clock.renewed(before, before + BEAT, &[]);
        assert!(!lease.valid_for(Duration::from_secs(5)));
    }

    #[test]
    fn a_beat_acknowledged_after_the_deadline_is_not_credited() {
        let clock = LeaseClock::new(LEASE);
        // 0.5 s left; the beat's commit is acknowledged 1 s from now.
        let lease = clock.register(Instant::now() - Duration::from_millis(9500), [1]);
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + BEAT, &[]);
        assert!(!lease.valid_for(Duration::from_secs(1)));
    }

    #[test]
    fn a_lease_whose_deadline_passed_is_never_renewed() {
        let clock = LeaseClock::new(LEASE);
        let lease = clock.register(Instant::now() - Duration::from_millis(10_500), [1]);
        assert!(!lease.valid_for(Duration::ZERO));
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + Duration::from_millis(1), &[]);
        assert!(
            !lease.valid_for(Duration::ZERO),
            "another worker may hold the job by now"
        );
    }

    #[test]
    fn losing_the_lock_ends_every_lease_for_good() {
        let clock = LeaseClock::new(LEASE);
        let before = clock.generation();
        let held = clock.register(Instant::now(), [1]);
        clock.lose_all();
        assert!(!held.valid_for(Duration::ZERO));
        // A claim that started before the loss and returned after it is lost as well.
        let straddling = clock.register_since(Instant::now(), before, [1]);
        assert!(!straddling.valid_for(Duration::ZERO));
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + Duration::from_millis(1), &[]);
        assert!(!held.valid_for(Duration::ZERO), "a beat does not heal it");
        // Claims after the loss are valid.
        assert!(clock
            .register(Instant::now(), [1])
            .valid_for(Duration::from_secs(9)));
    }

    #[test]
    fn finished_batches_are_forgotten() {
        let clock = LeaseClock::new(LEASE);
        for _ in 0..10 {
            drop(clock.register(Instant::now(), [1]));
        }
        let _live = clock.register(Instant::now(), [1]);
        assert_eq!(clock.batches.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_skipped_job_keeps_the_deadline_it_had_while_its_batch_is_renewed() {
        let clock = LeaseClock::new(LEASE);
        // 2 s left; job 2's row is held elsewhere when the beat runs.
        let lease = clock.register(Instant::now() - Duration::from_secs(8), [1, 2]);
        let beat = Instant::now() + Duration::from_millis(1);
        assert!(clock.renewed(beat, beat + BEAT, &[2, 99]).is_empty());
        assert!(lease.valid_for(Duration::from_secs(9)), "job 1 is extended");
        assert_eq!(lease.doubtful(Duration::from_secs(5)), HashSet::from([2]));
        assert!(
            lease.doubtful(Duration::from_millis(500)).is_empty(),
            "its own lease still lasts"
        );
    }

    #[test]
    fn a_skipped_job_extended_in_time_is_as_safe_as_its_batch_again() {
        let clock = LeaseClock::new(LEASE);
        let lease = clock.register(Instant::now() - Duration::from_secs(5), [1, 2]);
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + BEAT, &[2]);
        assert_eq!(lease.doubtful(Duration::from_secs(9)), HashSet::from([2]));
        // Skipped again: the first cap stays (the second beat did not extend it either).
        let beat2 = beat + Duration::from_secs(2);
        clock.renewed(beat2, beat2 + BEAT, &[2]);
        assert_eq!(lease.doubtful(Duration::from_secs(6)), HashSet::from([2]));
        let beat3 = beat2 + Duration::from_millis(10);
        assert!(clock.renewed(beat3, beat3 + BEAT, &[]).is_empty());
        assert!(lease.doubtful(Duration::from_secs(9)).is_empty());
    }

    #[test]
    fn a_skipped_job_whose_deadline_passed_is_lost_for_good_and_reported_once() {
        let clock = LeaseClock::new(LEASE);
        // 0.5 s left when job 2 is first skipped.
        let lease = clock.register(Instant::now() - Duration::from_millis(9500), [1, 2]);
        let beat = Instant::now() + Duration::from_millis(1);
        assert!(clock
            .renewed(beat, beat + Duration::from_millis(1), &[2])
            .is_empty());
        // The next beat answers after job 2's deadline: even if it extended it, another
        // worker may have had it in between.
        let late = beat + Duration::from_secs(1);
        let lost: Vec<i64> = clock
            .renewed(late, late + BEAT, &[])
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(lost, vec![2]);
        let later = late + Duration::from_secs(1);
        assert!(clock.renewed(later, later + BEAT, &[]).is_empty(), "once");
        assert_eq!(lease.doubtful(Duration::ZERO), HashSet::from([2]));
        assert!(
            lease.valid_for(Duration::from_secs(9)),
            "job 1 is not affected"
        );
    }

    #[test]
    fn jobs_added_to_a_batch_are_capped_like_its_own() {
        let clock = LeaseClock::new(LEASE);
        let lease = clock.register(Instant::now() - Duration::from_secs(5), [1]);
        lease.add_jobs([7]);
        let beat = Instant::now() + Duration::from_millis(1);
        clock.renewed(beat, beat + BEAT, &[7]);
        assert_eq!(lease.doubtful(Duration::from_secs(9)), HashSet::from([7]));
    }

    #[test]
    fn a_job_claimed_again_after_its_lease_lapsed_belongs_to_the_newer_batch() {
        let clock = LeaseClock::new(LEASE);
        let old = clock.register(Instant::now() - Duration::from_secs(20), [1, 2]);
        assert!(!old.reclaimed(1));
        let new = clock.register(Instant::now(), [1]);
        assert!(old.reclaimed(1), "its lease is the new batch's now");
        assert!(!old.reclaimed(2));
        assert!(!new.reclaimed(1));
        drop(new);
        assert!(!old.reclaimed(1));
    }
}
