//! The validation pool: one worker thread per core, shared by every source
//! (files, stdin, relays), that parses, hashes and — with
//! `--verify-signatures` — verifies chunks of input elements.
//!
//! Why a pool: on one core, parsing and the NIP-01 id hash capped ingest
//! at about a third of a million events/s, and BIP-340 verification at
//! ~24 k/s (issue 15). The elements of a chunk are independent, so chunks
//! go to whichever worker is free. Order is not left to chance: a job
//! hands back a [`Ticket`], and whoever submitted the jobs redeems the
//! tickets in submission order, so queue order, resume offsets, source
//! positions and dead letters are exactly those of a one-thread ingest.
//!
//! No dependency for this: a mutex-guarded job receiver is contention-free
//! at the rate of a few hundred chunks a second, and the pool never runs a
//! job that waits on another job, so it cannot deadlock.

use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of worker threads taking jobs from one channel.
pub(crate) struct Pool {
    jobs: Mutex<Sender<Job>>,
    threads: usize,
}

/// The result of a submitted job, to be redeemed once.
pub(crate) struct Ticket<T>(Receiver<T>);

impl<T> Ticket<T> {
    /// Waits for the job's result; `None` if the job panicked (its worker
    /// survives, the result is lost — the caller reports it).
    pub(crate) fn wait(self) -> Option<T> {
        self.0.recv().ok()
    }
}

impl Pool {
    /// Starts `threads` workers (at least one). They live as long as the
    /// pool; the shared pool lives as long as the process.
    fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("dvmtop-validate-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job.
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        let Ok(job) = job else { return };
                        // A panicking job loses its result (its ticket
                        // says so), not the worker.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start a validation worker");
            }
        }
        Pool {
            jobs: Mutex::new(tx),
            threads,
        }
    }

    /// Worker threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `f` on a worker.
    pub(crate) fn submit<T, F>(&self, f: F) -> Ticket<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx): (SyncSender<T>, Receiver<T>) = sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.send(job),
            Err(poisoned) => poisoned.into_inner().send(job),
        };
        if let Err(std::sync::mpsc::SendError(job)) = sent {
            // No worker is left (none could be started): run it here.
            job();
        }
        Ticket(rx)
    }

    /// `f` applied to every item on the workers, results in the items'
    /// order (`None` where a job panicked). Items are split into at most
    /// one run per worker.
    pub(crate) fn map_ordered<I, T, F>(&self, items: Vec<I>, f: F) -> Vec<Option<T>>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(I) -> T + Send + Sync + 'static,
    {
        let n = items.len();
        let per = n.div_ceil(self.threads).max(1);
        let f = Arc::new(f);
        let mut tickets = Vec::new();
        let mut items = items.into_iter();
        loop {
            let run: Vec<I> = items.by_ref().take(per).collect();
            if run.is_empty() {
                break;
            }
            let len = run.len();
            let f = Arc::clone(&f);
            tickets.push((
                len,
                self.submit(move || run.into_iter().map(|i| f(i)).collect::<Vec<T>>()),
            ));
        }
        let mut out = Vec::with_capacity(n);
        for (len, t) in tickets {
            match t.wait() {
                Some(results) => out.extend(results.into_iter().map(Some)),
                None => out.extend((0..len).map(|_| None)),
            }
        }
        out
    }
}

/// The process's validation pool: one worker per available core.
pub(crate) fn shared() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        Pool::new(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_come_back_in_submission_order_whatever_finishes_first() {
        let pool = Pool::new(3);
        let tickets: Vec<Ticket<u32>> = (0..20u32)
            .map(|i| {
                pool.submit(move || {
                    // Early jobs take longest.
                    std::thread::sleep(std::time::Duration::from_millis(u64::from(20 - i)));
                    i
                })
            })
            .collect();
        let got: Vec<u32> = tickets.into_iter().filter_map(Ticket::wait).collect();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_job_loses_its_result_not_the_worker() {
        let pool = Pool::new(1);
        let bad = pool.submit(|| -> u32 { panic!("job fails") });
        assert_eq!(bad.wait(), None);
        assert_eq!(pool.submit(|| 7).wait(), Some(7));
    }

    #[test]
    fn map_keeps_the_order_of_the_items() {
        let pool = Pool::new(2);
        let out = pool.map_ordered((0..101).collect(), |i: i32| i * 2);
        assert_eq!(
            out,
            (0..101).map(|i| Some(i * 2)).collect::<Vec<Option<i32>>>()
        );
        assert!(pool.map_ordered(Vec::<i32>::new(), |i| i).is_empty());
    }
}
