//! Process metrics from `/proc/self`: CPU seconds, resident memory, open file descriptors and
//! uptime, recorded as the catalogue's `tamma_process_*` series on an interval and on demand.
//!
//! The sources are the ones Prometheus' own `procfs` reader uses: `stat` (CPU ticks at the fixed
//! Linux `USER_HZ` of 100, start time), `status` (`VmRSS`, in kB, so no page size is needed), the
//! entries of `fd/`, and the machine's `uptime`. Where `/proc` does not exist (not Linux) a sample
//! is empty and nothing is recorded.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tamma_core::metric_names::{
    PROCESS_CPU_SECONDS_TOTAL, PROCESS_OPEN_FDS, PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_UPTIME_SECONDS,
};

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, 100 on every Linux architecture
/// Prometheus supports (its `procfs` package hard-codes it too).
const USER_HZ: u64 = 100;

/// One reading of the process's resources. A field is `None` when its source could not be read
/// (no `/proc`, a restricted mount).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ProcessSample {
    /// User plus system CPU time, in clock ticks (1/100 s).
    pub cpu_ticks: Option<u64>,
    /// Resident set size, bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Seconds since the process started.
    pub uptime_seconds: Option<f64>,
}

impl ProcessSample {
    /// CPU time in seconds (tick resolution: 10 ms).
    #[must_use]
    pub fn cpu_seconds(&self) -> Option<f64> {
        // Ticks of a real process stay far below 2^52, where u64 → f64 is exact.
        #[allow(clippy::cast_precision_loss)]
        self.cpu_ticks.map(|t| t as f64 / USER_HZ as f64)
    }
}

/// Reads `/proc/self` and records the `tamma_process_*` metrics through the `metrics` facade
/// (so they carry the recorder's global labels). Cloning is cheap.
///
/// `tamma_process_cpu_seconds_total` is a counter, and the facade's counters are integers: it
/// counts whole seconds (`rate()` over a minute or more is what dashboards use).
///
/// ```
/// use tamma_telemetry::ProcessMetrics;
///
/// let sample = ProcessMetrics::new().sample();
/// # #[cfg(target_os = "linux")]
/// assert!(sample.open_fds.is_some_and(|n| n >= 3)); // at least stdin, stdout, stderr
/// ```
#[derive(Clone, Debug)]
pub struct ProcessMetrics {
    root: PathBuf,
    /// Reading `fd/` of the live process opens one descriptor that the listing includes.
    live: bool,
    /// Used for uptime when `/proc` cannot tell.
    created: Instant,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessMetrics {
    /// The current process, read from `/proc`.
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: PathBuf::from("/proc"),
            live: true,
            created: Instant::now(),
        }
    }

    /// A process tree under `root` laid out like `/proc`: `root/self/{stat,status,fd/}` and
    /// `root/uptime` (fixtures in tests, a host's `/proc` mounted elsewhere).
    #[must_use]
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            live: false,
            created: Instant::now(),
        }
    }

    /// Reads the current values. Never fails: what cannot be read is `None`.
    #[must_use]
    pub fn sample(&self) -> ProcessSample {
        let dir = self.root.join("self");
        let stat = read(&dir.join("stat")).and_then(|s| parse_stat(&s));
        let machine_uptime = read(&self.root.join("uptime")).and_then(|s| parse_uptime(&s));
        let uptime_seconds = match (stat, machine_uptime) {
            (Some(stat), Some(up)) => {
                // Start times stay far below 2^52 ticks, where u64 → f64 is exact.
                #[allow(clippy::cast_precision_loss)]
                let started = stat.start_ticks as f64 / USER_HZ as f64;
                Some((up - started).max(0.0))
            }
            _ if self.live => Some(self.created.elapsed().as_secs_f64()),
            _ => None,
        };
        ProcessSample {
            cpu_ticks: stat.map(|s| s.cpu_ticks),
            resident_memory_bytes: read(&dir.join("status")).and_then(|s| parse_vm_rss(&s)),
            open_fds: count_entries(&dir.join("fd"))
                .map(|n| if self.live { n.saturating_sub(1) } else { n }),
            uptime_seconds,
        }
    }

    /// Samples and records the gauges (and the CPU counter) through the current `metrics`
    /// recorder; returns the sample.
    pub fn record(&self) -> ProcessSample {
        let s = self.sample();
        if let Some(ticks) = s.cpu_ticks {
            metrics::counter!(PROCESS_CPU_SECONDS_TOTAL).absolute(ticks / USER_HZ);
        }
        // Byte and descriptor counts of a real process stay far below 2^52: exact in an f64.
        #[allow(clippy::cast_precision_loss)]
        {
            if let Some(rss) = s.resident_memory_bytes {
                metrics::gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(rss as f64);
            }
            if let Some(fds) = s.open_fds {
                metrics::gauge!(PROCESS_OPEN_FDS).set(fds as f64);
            }
        }
        if let Some(up) = s.uptime_seconds {
            metrics::gauge!(PROCESS_UPTIME_SECONDS).set(up);
        }
        s
    }

    /// Records now, then every `interval` on a thread of its own (`tamma-process-metrics`) until
    /// the returned task is dropped or stopped. Call [`record`](Self::record) on a clone right
    /// before rendering `/metrics`, so a scrape never sees values older than the last render.
    ///
    /// # Errors
    /// [`crate::Error::Thread`] when the thread cannot be started.
    pub fn spawn(self, interval: Duration) -> crate::Result<ProcessMetricsTask> {
        let (tx, rx) = mpsc::channel::<Message>();
        let sampler = self.clone();
        let thread = std::thread::Builder::new()
            .name("tamma-process-metrics".into())
            .spawn(move || {
                let mut interval = interval.max(MIN_INTERVAL);
                loop {
                    sampler.record();
                    match rx.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(Message::Interval(next)) => interval = next.max(MIN_INTERVAL),
                        Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .map_err(|source| crate::Error::Thread {
                name: "tamma-process-metrics",
                source,
            })?;
        Ok(ProcessMetricsTask {
            sampler: self,
            tx,
            thread: Some(thread),
        })
    }
}

/// The shortest interval the background thread accepts (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(100);

enum Message {
    Interval(Duration),
    Stop,
}

/// The background sampler started by [`ProcessMetrics::spawn`] (or [`spawn_process_metrics`]).
/// Dropping it stops the thread.
///
/// How a node serves fresh values at `/metrics`: the render refreshes, then renders.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tamma_telemetry::{MetricsConfig, MetricsRecorder, spawn_process_metrics};
///
/// let recorder = MetricsRecorder::new(&MetricsConfig::default());
/// recorder.install()?;
/// let task = spawn_process_metrics(Duration::from_secs(30))?;
/// let sampler = task.sampler();
/// let render: Arc<dyn Fn() -> (String, &'static str) + Send + Sync> = Arc::new(move || {
///     sampler.record();
///     recorder.render()
/// });
/// let (body, _content_type) = render();
/// # #[cfg(target_os = "linux")]
/// assert!(body.contains("\ntamma_process_open_fds "));
/// drop(task); // stops the thread
/// # Ok::<(), tamma_telemetry::Error>(())
/// ```
#[derive(Debug)]
pub struct ProcessMetricsTask {
    sampler: ProcessMetrics,
    tx: Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

impl ProcessMetricsTask {
    /// Samples and records now, on the caller's thread (before a render).
    pub fn refresh(&self) -> ProcessSample {
        self.sampler.record()
    }

    /// The sampler, to refresh from elsewhere (a `/metrics` render closure).
    #[must_use]
    pub fn sampler(&self) -> ProcessMetrics {
        self.sampler.clone()
    }

    /// Changes the interval (a reloaded `monitoring.metrics.interval`); records once at once.
    pub fn set_interval(&self, interval: Duration) {
        // A send fails only when the thread has ended, and then there is nothing to change.
        let _ = self.tx.send(Message::Interval(interval));
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(t) = self.thread.take() {
            // The loop has no panicking path; a join error would only repeat a panic already
            // reported by the thread itself.
            let _ = t.join();
        }
    }
}

impl Drop for ProcessMetricsTask {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Starts sampling the current process every `interval` (`monitoring.metrics.interval`); see
/// [`ProcessMetrics::spawn`].
///
/// # Errors
/// [`crate::Error::Thread`] when the thread cannot be started.
pub fn spawn_process_metrics(interval: Duration) -> crate::Result<ProcessMetricsTask> {
    ProcessMetrics::new().spawn(interval)
}

fn read(path: &Path) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::trace!(path = %path.display(), error = %e, "process metric source unreadable");
            None
        }
    }
}

fn count_entries(dir: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(entries.filter(Result::is_ok).count() as u64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    cpu_ticks: u64,
    start_ticks: u64,
}

/// `pid (comm) state ppid …`: `comm` may hold spaces and parentheses, so fields are counted from
/// the last `)`. After it, `utime` is the 12th field, `stime` the 13th, `starttime` the 20th.
fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(11)?.checked_add(field(12)?)?,
        start_ticks: field(19)?,
    })
}

/// `VmRSS:   12345 kB` → bytes.
fn parse_vm_rss(s: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        Some("B") | None => Some(value),
        Some(_) => None,
    }
}

/// `/proc/uptime`: seconds since boot, then idle seconds.
fn parse_uptime(s: &str) -> Option<f64> {
    s.split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MetricsConfig, MetricsRecorder};

    const STAT: &str = "4242 (tamma (w) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                        250 75 0 0 20 0 9 0 5000 123456789 3000 18446744073709551615 \
                        1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0\n";

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("self");
        std::fs::create_dir_all(own.join("fd")).unwrap();
        std::fs::write(own.join("stat"), STAT).unwrap();
        std::fs::write(
            own.join("status"),
            "Name:\ttamma\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n",
        )
        .unwrap();
        for i in 0..7 {
            std::fs::write(own.join("fd").join(i.to_string()), "").unwrap();
        }
        std::fs::write(dir.path().join("uptime"), "170.25 300.00\n").unwrap();
        dir
    }

    #[test]
    fn reads_a_fixture_tree() {
        let dir = fixture();
        let s = ProcessMetrics::with_root(dir.path()).sample();
        assert_eq!(s.cpu_ticks, Some(325));
        assert_eq!(s.cpu_seconds(), Some(3.25));
        assert_eq!(s.resident_memory_bytes, Some(12345 * 1024));
        assert_eq!(s.open_fds, Some(7));
        // Booted 170.25 s ago, started 5000 ticks = 50 s after boot.
        assert_eq!(s.uptime_seconds, Some(120.25));
    }

    #[test]
    fn missing_or_garbled_sources_are_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ProcessMetrics::with_root(dir.path()).sample(),
            ProcessSample::default()
        );
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vm_rss("VmSize:\t12 kB\n"), None);
        assert_eq!(parse_uptime("-3 1"), None);
        assert_eq!(parse_uptime(""), None);
    }

    #[test]
    fn records_the_catalogue_series_with_global_labels() {
        let dir = fixture();
        let mut config = MetricsConfig::default();
        config.labels.insert("region".into(), "eu-1".into());
        let recorder = MetricsRecorder::new(&config);
        metrics::with_local_recorder(&recorder, || {
            ProcessMetrics::with_root(dir.path()).record();
        });
        let text = recorder.render_prometheus();
        for line in [
            "tamma_process_cpu_seconds_total{region=\"eu-1\"} 3\n",
            "tamma_process_resident_memory_bytes{region=\"eu-1\"} 12641280\n",
            "tamma_process_open_fds{region=\"eu-1\"} 7\n",
            "tamma_process_uptime_seconds{region=\"eu-1\"} 120.25\n",
            "# TYPE tamma_process_cpu_seconds_total counter\n",
            "# TYPE tamma_process_open_fds gauge\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_the_live_process() {
        let live = ProcessMetrics::new();
        let before = live.sample();
        let fds_before = before.open_fds.unwrap();
        // Each open file adds a descriptor.
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<std::fs::File> = (0..50)
            .map(|i| std::fs::File::create(dir.path().join(i.to_string())).unwrap())
            .collect();
        // Touched memory is resident.
        let ballast = vec![1u8; 64 << 20];
        let mut spin = 0u64;
        // CPU time moves (ticks are 10 ms; a deadline bounds a starved machine).
        let deadline = Instant::now() + Duration::from_secs(20);
        let start_ticks = before.cpu_ticks.unwrap();
        let mut after = live.sample();
        while after.cpu_ticks.unwrap() < start_ticks + 5 && Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                spin = spin.wrapping_mul(31).wrapping_add(i ^ spin.rotate_left(7));
            }
            after = live.sample();
        }
        std::hint::black_box(spin);
        assert!(
            after.cpu_ticks.unwrap() >= start_ticks + 5,
            "{before:?} → {after:?}"
        );
        assert!(
            after.open_fds.unwrap() >= fds_before + 45,
            "{fds_before} → {after:?}"
        );
        assert!(
            after.resident_memory_bytes.unwrap() >= 60 << 20,
            "{after:?} with 64 MiB touched"
        );
        let up = after.uptime_seconds.unwrap();
        assert!((0.0..3600.0).contains(&up), "a test process is young: {up}");
        assert_eq!(std::hint::black_box(&ballast)[12345], 1);
        drop(files);
    }

    #[test]
    fn the_task_records_on_its_interval_and_stops() {
        let dir = fixture();
        let recorder = MetricsRecorder::new(&MetricsConfig::default());
        // The thread records through the global recorder; this test looks at a local one
        // through `refresh`, and checks the thread ends on stop.
        let task = ProcessMetrics::with_root(dir.path())
            .spawn(Duration::from_millis(10))
            .unwrap();
        task.set_interval(Duration::from_secs(3600));
        let sample = metrics::with_local_recorder(&recorder, || task.refresh());
        assert_eq!(sample.open_fds, Some(7));
        assert!(
            recorder
                .render_prometheus()
                .contains("tamma_process_open_fds 7\n")
        );
        let started = Instant::now();
        task.stop();
        assert!(started.elapsed() < Duration::from_secs(5), "stop is prompt");
    }
}
