//! An output: a bounded queue that callers push lines into and a worker thread that drains it into a
//! sink, with per-output level, statistics and health.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use tamma_core::{Check, CheckFuture, CheckResult, metric_names};

use crate::config::{Level, QueuePolicy};
use crate::format::{LineFormat, render_internal};

/// One formatted line waiting in a queue.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) level: Level,
    pub(crate) time: SystemTime,
    pub(crate) bytes: Vec<u8>,
}

/// A failed write: why, and how many lines it lost.
#[derive(Debug)]
pub(crate) struct SinkError {
    pub(crate) message: String,
    pub(crate) lost: u64,
}

impl SinkError {
    pub(crate) fn new(message: impl Into<String>, lost: usize) -> Self {
        Self {
            message: message.into(),
            lost: lost as u64,
        }
    }
}

/// What a sink is told about the worker's state while it writes.
pub(crate) struct Control<'a> {
    output: &'a Output,
}

impl Control<'_> {
    /// Whether a shutdown's deadline has passed: stop retrying.
    pub(crate) fn give_up(&self) -> bool {
        self.output
            .queue
            .state
            .lock()
            .deadline
            .is_some_and(|d| Instant::now() >= d)
    }

    /// Sleeps up to `d`, returning early when the shutdown deadline passes.
    pub(crate) fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut st = self.output.queue.state.lock();
        loop {
            let now = Instant::now();
            let stop = st.deadline.map_or(until, |dl| dl.min(until));
            if now >= stop {
                return;
            }
            self.output.queue.wake.wait_for(&mut st, stop - now);
        }
    }

    /// Records a failure that the sink will retry.
    pub(crate) fn report_error(&self, e: &str) {
        self.output.stats.record_error(e);
    }
}

/// Where a worker writes. Runs on the output's own thread only.
pub(crate) trait Sink: Send {
    /// Writes (or batches) `lines`; on failure says why and how many lines were lost.
    fn write(&mut self, lines: &[Line], ctl: &Control<'_>) -> Result<(), SinkError>;
    /// Sends what is pending; called when [`Sink::deadline`] passes and at shutdown.
    fn flush(&mut self, ctl: &Control<'_>) -> Result<(), SinkError>;
    /// When the sink wants `flush` called (a pending batch's max wait).
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// Lines accepted by `write` but not yet delivered (a pending batch).
    fn pending(&self) -> usize {
        0
    }
}

#[derive(Debug, Default)]
struct State {
    lines: VecDeque<Line>,
    closed: bool,
    deadline: Option<Instant>,
}

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<State>,
    /// Wakes the worker.
    wake: Condvar,
    /// Wakes producers blocked on a full queue.
    room: Condvar,
    /// The worker sleeps without a timeout and must be woken by a push.
    parked: AtomicBool,
    blocked: AtomicUsize,
}

/// Counters and the last error of one output.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) written: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Whether the most recent write failed.
    pub(crate) failing: AtomicBool,
    pub(crate) last_error: Mutex<Option<(SystemTime, String)>>,
}

impl Stats {
    fn record_error(&self, e: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.failing.store(true, Ordering::Relaxed);
        *self.last_error.lock() = Some((SystemTime::now(), e.to_owned()));
    }
}

/// One configured output.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) format: LineFormat,
    /// 0 = inherit the global filter, else 1 (error) … 5 (trace).
    level: AtomicU8,
    capacity: usize,
    policy: QueuePolicy,
    queue: Queue,
    pub(crate) stats: Stats,
}

pub(crate) const fn level_rank(l: Level) -> u8 {
    match l {
        Level::Error => 1,
        Level::Warn => 2,
        Level::Info => 3,
        Level::Debug => 4,
        Level::Trace => 5,
    }
}

const fn rank_level(r: u8) -> Option<Level> {
    match r {
        1 => Some(Level::Error),
        2 => Some(Level::Warn),
        3 => Some(Level::Info),
        4 => Some(Level::Debug),
        5 => Some(Level::Trace),
        _ => None,
    }
}

/// How long a worker polls with short waits after its last line before it parks.
const IDLE_BEFORE_PARK: Duration = Duration::from_millis(50);
/// The short wait while active: a producer never has to wake the worker.
const ACTIVE_POLL: Duration = Duration::from_millis(1);

impl Output {
    pub(crate) fn new(
        name: String,
        kind: &'static str,
        format: LineFormat,
        level: Option<Level>,
        capacity: usize,
        policy: QueuePolicy,
    ) -> Self {
        Self {
            name,
            kind,
            format,
            level: AtomicU8::new(level.map_or(0, level_rank)),
            capacity: capacity.max(1),
            policy,
            queue: Queue::default(),
            stats: Stats::default(),
        }
    }

    /// The output's own level (`None` = whatever the global filter lets through).
    pub(crate) fn level(&self) -> Option<Level> {
        rank_level(self.level.load(Ordering::Relaxed))
    }

    pub(crate) fn set_level(&self, level: Option<Level>) {
        self.level
            .store(level.map_or(0, level_rank), Ordering::Relaxed);
    }

    /// The most verbose rank this output accepts (5 when it inherits).
    pub(crate) fn rank(&self) -> u8 {
        match self.level.load(Ordering::Relaxed) {
            0 => 5,
            r => r,
        }
    }

    /// Queues a line. Never waits on I/O; waits for room only under the `block` policy and only
    /// when `may_block`.
    pub(crate) fn push(&self, line: Line, may_block: bool) {
        let mut st = self.queue.state.lock();
        if st.closed {
            drop(st);
            self.count_drop();
            return;
        }
        if st.lines.len() >= self.capacity {
            if self.policy == QueuePolicy::Block && may_block {
                self.queue.blocked.fetch_add(1, Ordering::SeqCst);
                self.queue.wake.notify_one();
                while st.lines.len() >= self.capacity && !st.closed {
                    self.queue.room.wait(&mut st);
                }
                self.queue.blocked.fetch_sub(1, Ordering::SeqCst);
                if st.closed {
                    drop(st);
                    self.count_drop();
                    return;
                }
            } else {
                drop(st);
                self.count_drop();
                return;
            }
        }
        st.lines.push_back(line);
        drop(st);
        if self.queue.parked.load(Ordering::SeqCst) {
            self.queue.wake.notify_one();
        }
    }

    fn count_drop(&self) {
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric_names::LOG_DROPPED_TOTAL, "output" => self.name.clone())
            .increment(1);
    }

    pub(crate) fn depth(&self) -> usize {
        self.queue.state.lock().lines.len()
    }

    /// Closes the queue: the worker drains what is left and stops; retries stop at `deadline`.
    pub(crate) fn close(&self, deadline: Instant) {
        let mut st = self.queue.state.lock();
        st.closed = true;
        st.deadline = Some(deadline);
        drop(st);
        self.queue.wake.notify_all();
        self.queue.room.notify_all();
    }

    /// The worker loop; returns the number of lines it could not deliver before it stopped.
    pub(crate) fn run(&self, mut sink: Box<dyn Sink>, source_json: &str) -> u64 {
        let ctl = Control { output: self };
        let mut reported_drops = 0u64;
        let mut last_line = Instant::now();
        let mut batch: VecDeque<Line> = VecDeque::new();
        let mut lost = 0u64;
        loop {
            let closed;
            {
                let mut st = self.queue.state.lock();
                while st.lines.is_empty() && !st.closed {
                    let now = Instant::now();
                    let due = sink.deadline();
                    if due.is_some_and(|d| d <= now) {
                        break;
                    }
                    let idle = now.duration_since(last_line) >= IDLE_BEFORE_PARK;
                    let mut wait = if idle {
                        Duration::from_secs(3600)
                    } else {
                        ACTIVE_POLL
                    };
                    if let Some(d) = due {
                        wait = wait.min(d - now);
                    }
                    // Set under the lock after seeing an empty queue: a producer pushes under the
                    // same lock and reads `parked` after it, so no wake-up is lost.
                    self.queue.parked.store(idle, Ordering::SeqCst);
                    self.queue.wake.wait_for(&mut st, wait);
                    self.queue.parked.store(false, Ordering::SeqCst);
                }
                // Swap the whole queue out: producers never wait for the copy.
                std::mem::swap(&mut st.lines, &mut batch);
                closed = st.closed;
            }
            if self.queue.blocked.load(Ordering::SeqCst) > 0 {
                self.queue.room.notify_all();
            }
            let dropped = self.stats.dropped.load(Ordering::Relaxed);
            if dropped > reported_drops && !closed {
                let delta = dropped - reported_drops;
                reported_drops = dropped;
                batch.push_back(Line {
                    level: Level::Warn,
                    time: SystemTime::now(),
                    bytes: render_internal(
                        self.format,
                        Level::Warn,
                        "log lines dropped: output queue full",
                        &[("dropped", delta), ("droppedTotal", dropped)],
                        source_json,
                    ),
                });
            }
            metrics::gauge!(metric_names::LOG_QUEUE_DEPTH, "output" => self.name.clone())
                .set(f64::from(u32::try_from(self.depth()).unwrap_or(u32::MAX)));
            if batch.is_empty() {
                let before = sink.pending() as u64;
                match sink.flush(&ctl) {
                    Ok(()) => self.count_written(before.saturating_sub(sink.pending() as u64)),
                    Err(e) => lost += self.sink_failed(&e, before, sink.pending()),
                }
            } else {
                last_line = Instant::now();
                let n = batch.len() as u64;
                let before = sink.pending() as u64;
                match sink.write(batch.make_contiguous(), &ctl) {
                    Ok(()) => {
                        let delivered = (before + n).saturating_sub(sink.pending() as u64);
                        self.count_written(delivered);
                    }
                    Err(e) => lost += self.sink_failed(&e, before + n, sink.pending()),
                }
                batch.clear();
            }
            if closed && self.depth() == 0 {
                let before = sink.pending() as u64;
                match sink.flush(&ctl) {
                    Ok(()) => self.count_written(before.saturating_sub(sink.pending() as u64)),
                    Err(e) => lost += self.sink_failed(&e, before, sink.pending()),
                }
                return lost + sink.pending() as u64;
            }
        }
    }

    /// Records a failed write; lines neither pending nor lost were delivered. Returns the lost count.
    fn sink_failed(&self, e: &SinkError, offered: u64, pending: usize) -> u64 {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.stats.failing.store(true, Ordering::Relaxed);
        *self.stats.last_error.lock() = Some((SystemTime::now(), e.message.clone()));
        metrics::counter!(metric_names::LOG_ERRORS_TOTAL, "output" => self.name.clone())
            .increment(1);
        let delivered = offered
            .saturating_sub(pending as u64)
            .saturating_sub(e.lost);
        if delivered > 0 {
            self.stats.written.fetch_add(delivered, Ordering::Relaxed);
        }
        e.lost
    }

    fn count_written(&self, n: u64) {
        if n > 0 {
            self.stats.written.fetch_add(n, Ordering::Relaxed);
            self.stats.failing.store(false, Ordering::Relaxed);
            metrics::counter!(metric_names::LOG_LINES_TOTAL, "output" => self.name.clone())
                .increment(n);
        }
    }

    pub(crate) fn health(&self) -> OutputHealth {
        OutputHealth {
            name: self.name.clone(),
            kind: self.kind,
            level: self.level(),
            queue_depth: self.depth(),
            capacity: self.capacity,
            written: self.stats.written.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            errors: self.stats.errors.load(Ordering::Relaxed),
            failing: self.stats.failing.load(Ordering::Relaxed),
            last_error: self
                .stats
                .last_error
                .lock()
                .as_ref()
                .map(|(_, e)| e.clone()),
        }
    }
}

/// A snapshot of one output's state, for the health checker and operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputHealth {
    /// The output's name.
    pub name: String,
    /// The output type (`stdout`, `file`, …).
    pub kind: &'static str,
    /// The output's own level, if set.
    pub level: Option<Level>,
    /// Lines waiting in the queue.
    pub queue_depth: usize,
    /// The queue's capacity in lines.
    pub capacity: usize,
    /// Lines delivered since start.
    pub written: u64,
    /// Lines dropped because the queue was full (or arrived after shutdown).
    pub dropped: u64,
    /// Failed writes since start.
    pub errors: u64,
    /// Whether the most recent write failed.
    pub failing: bool,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// The health check of one output (`logging:<name>`): unhealthy while its writes fail, degraded
/// when it dropped lines since the previous check or its queue is more than 80% full.
#[derive(Debug)]
pub struct OutputCheck {
    pub(crate) output: Arc<Output>,
    pub(crate) name: String,
    pub(crate) seen_dropped: AtomicU64,
}

impl OutputCheck {
    pub(crate) fn new(output: Arc<Output>) -> Self {
        let name = format!("logging:{}", output.name);
        Self {
            output,
            name,
            seen_dropped: AtomicU64::new(0),
        }
    }
}

impl Check for OutputCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let h = self.output.health();
            let prev = self.seen_dropped.swap(h.dropped, Ordering::Relaxed);
            let fill = h.queue_depth * 100 / h.capacity.max(1);
            let mut r = if h.failing {
                CheckResult::unhealthy(format!(
                    "writes fail: {}",
                    h.last_error.as_deref().unwrap_or("unknown error")
                ))
            } else if h.dropped > prev {
                CheckResult::degraded(format!(
                    "{} lines dropped since the last check",
                    h.dropped - prev
                ))
            } else if fill > 80 {
                CheckResult::degraded(format!("queue {fill}% full"))
            } else {
                CheckResult::healthy()
            };
            r = r
                .observed(h.queue_depth, "lines")
                .detail("capacity", h.capacity)
                .detail("written", h.written)
                .detail("dropped", h.dropped)
                .detail("errors", h.errors);
            if let Some(e) = h.last_error {
                r = r.detail("lastError", e);
            }
            r
        })
    }
}
