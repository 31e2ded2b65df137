//! The queue and its one writer thread. A thread, not a task: a write to a full pipe
//! or a slow disk blocks, and a blocked thread of its own holds up nothing else.
//!
//! Losses (a full queue, a failed write) are summed — how many, first and last (ms) —
//! and written as one gap event before the next event the writer takes, or within a
//! second if no event comes, so a quiet proxy still reports its last hole.

use std::{
    io::{self, Write},
    sync::{
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
        Arc, Mutex, PoisonError,
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use prometheus_client::metrics::counter::Counter;

use super::{
    event::{Event, Gap},
    millis,
};

/// How often an idle writer looks for a loss to report.
const IDLE: Duration = Duration::from_secs(1);

/// The request path's end of the queue.
#[derive(Debug)]
pub(super) struct Queue {
    /// `None` is the writer's cue to stop, once what is before it is written.
    sender: SyncSender<Option<Event>>,
    losses: Arc<Losses>,
    finished: Mutex<Option<mpsc::Receiver<()>>>,
}

/// Events lost and not yet reported.
#[derive(Debug)]
struct Losses {
    pending: Mutex<Loss>,
    dropped: Counter,
    /// When the last loss was logged to stderr (at most one line a second).
    reported: Mutex<Option<Instant>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Loss {
    count: u64,
    start: i64,
    end: i64,
}

/// Starts the writer on `out`, behind a queue of `capacity` events.
pub(super) fn spawn(
    out: Box<dyn Write + Send>,
    capacity: usize,
    dropped: Counter,
) -> io::Result<Queue> {
    let (sender, receiver) = mpsc::sync_channel(capacity);
    let (done, finished) = mpsc::channel();
    let losses = Arc::new(Losses {
        pending: Mutex::default(),
        dropped,
        reported: Mutex::default(),
    });
    let writer = Writer {
        out,
        losses: Arc::clone(&losses),
    };
    thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            writer.run(&receiver);
            let _ = done.send(());
        })?;
    Ok(Queue {
        sender,
        losses,
        finished: Mutex::new(Some(finished)),
    })
}

// === impl Queue ===

impl Queue {
    /// Offers `event` to the writer; a full (or closed) queue loses it.
    pub(super) fn push(&self, event: Event) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender.try_send(Some(event))
        {
            self.losses.lose("the audit queue is full: event dropped");
        }
    }

    /// Lets the writer drain and stop; waits for it at most `wait` (a writer stuck on
    /// its destination is left behind).
    pub(super) fn close(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        // The stop goes behind what is queued, when there is room for it.
        while let Err(TrySendError::Full(_)) = self.sender.try_send(None) {
            if Instant::now() >= deadline {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        if let Some(finished) = lock(&self.finished).take() {
            let _ = finished.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

// === impl Losses ===

impl Losses {
    fn lose(&self, why: &str) {
        let now = millis(SystemTime::now());
        {
            let mut pending = lock(&self.pending);
            if pending.count == 0 {
                pending.start = now;
            }
            pending.count += 1;
            pending.end = now;
        }
        self.dropped.inc();
        self.report(why);
    }

    fn take(&self) -> Loss {
        std::mem::take(&mut *lock(&self.pending))
    }

    /// A gap that could not be written is reported with the next one.
    fn restore(&self, loss: Loss) {
        let mut pending = lock(&self.pending);
        if pending.count == 0 {
            *pending = loss;
            return;
        }
        pending.count += loss.count;
        pending.start = pending.start.min(loss.start);
        pending.end = pending.end.max(loss.end);
    }

    /// One line a second at most on stderr: a stuck destination must not flood it.
    fn report(&self, why: &str) {
        let mut reported = lock(&self.reported);
        if reported.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *reported = Some(Instant::now());
        tracing::error!("{why}");
    }
}

// === the writer ===

struct Writer {
    out: Box<dyn Write + Send>,
    losses: Arc<Losses>,
}

impl Writer {
    fn run(mut self, receiver: &mpsc::Receiver<Option<Event>>) {
        loop {
            match receiver.recv_timeout(IDLE) {
                Ok(Some(event)) => {
                    self.gap();
                    let line = event.line(SystemTime::now());
                    if self.write(&line).is_err() {
                        self.losses.lose("an audit event could not be written");
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.gap(),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                    self.gap();
                    return;
                }
            }
        }
    }

    /// The losses since the last gap event, if any, as one.
    fn gap(&mut self) {
        let loss = self.losses.take();
        if loss.count == 0 {
            return;
        }
        let line = Gap::new(loss.count, loss.start, loss.end).line(SystemTime::now());
        if self.write(&line).is_err() {
            self.losses.restore(loss);
            self.losses
                .report("an audit gap event could not be written");
        }
    }

    /// One line, in one write where the destination allows it.
    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.out.flush()
    }
}

/// A poisoned lock here guards plain counters still worth reading.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
