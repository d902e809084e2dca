//! Built-in resource checks: memory, CPU and disk. Each reports a percentage as its observed value;
//! the warn and fail levels are [`Thresholds`] in the check's options.

use std::path::PathBuf;
use std::time::Duration;

use parking_lot::Mutex;
use tamma_core::{Check, CheckFuture, CheckResult};
use tokio::time::Instant;

use crate::checker::CheckOptions;
use crate::config::Thresholds;
use crate::error::{Error, Result};
use crate::sysfs::{CpuSample, SystemReader};

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Memory in use against the cgroup limit (v1 or v2), else the machine. Observed: percent.
#[derive(Debug)]
pub struct MemoryCheck {
    name: String,
    reader: SystemReader,
}

impl MemoryCheck {
    /// A memory check called `name` reading through `reader`.
    pub fn new(name: impl Into<String>, reader: SystemReader) -> Self {
        Self {
            name: name.into(),
            reader,
        }
    }

    /// The built-in options: critical, `ready`, `system`, warn 80 %, fail 90 % (the seed's level).
    #[must_use]
    pub fn default_options() -> CheckOptions {
        CheckOptions::new()
            .critical(true)
            .thresholds(Thresholds::new(80.0, 90.0))
            .component_type("system")
            .measurement("utilization")
    }
}

impl Check for MemoryCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match self.reader.memory() {
                Ok(m) => CheckResult::healthy()
                    .observed(round1(m.percent()), "percent")
                    .detail("usedBytes", m.used)
                    .detail("limitBytes", m.limit)
                    .detail("source", m.source.as_str()),
                Err(e) => CheckResult::unhealthy(error_chain(&e)),
            }
        })
    }
}

/// CPU used against the cgroup quota when one applies, else the machine's busy share of all cores.
/// Observed: percent, averaged since the previous run (the first run samples over a short window).
#[derive(Debug)]
pub struct CpuCheck {
    name: String,
    reader: SystemReader,
    window: Duration,
    previous: Mutex<Option<(Instant, CpuSample)>>,
}

impl CpuCheck {
    /// A CPU check called `name`; `window` is the first run's sampling time (keep it below the timeout).
    pub fn new(name: impl Into<String>, reader: SystemReader, window: Duration) -> Self {
        Self {
            name: name.into(),
            reader,
            window,
            previous: Mutex::new(None),
        }
    }

    /// The built-in options: not critical, `ready`, `system`, warn 80 %, fail 95 % (the seed's level).
    #[must_use]
    pub fn default_options() -> CheckOptions {
        CheckOptions::new()
            .thresholds(Thresholds::new(80.0, 95.0))
            .component_type("system")
            .measurement("utilization")
    }

    async fn measure(&self) -> Result<CheckResult> {
        let previous = *self.previous.lock();
        let (then, earlier) = match previous {
            Some(p) => p,
            None => {
                let first = (Instant::now(), self.reader.cpu_sample()?);
                tokio::time::sleep(self.window).await;
                first
            }
        };
        let now = Instant::now();
        let sample = self.reader.cpu_sample()?;
        *self.previous.lock() = Some((now, sample));
        let Some((pct, source)) = sample.utilization(&earlier, now.duration_since(then)) else {
            return Ok(CheckResult::healthy().detail(
                "note",
                "no CPU time elapsed between samples; measured again next run",
            ));
        };
        let mut result = CheckResult::healthy()
            .observed(round1(pct), "percent")
            .detail("source", source.as_str());
        if let Some(q) = sample.quota_cores {
            result = result.detail("quotaCores", q);
        }
        Ok(result)
    }
}

impl Check for CpuCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            self.measure()
                .await
                .unwrap_or_else(|e| CheckResult::unhealthy(error_chain(&e)))
        })
    }
}

/// Space used on the filesystem holding a directory (as `df` counts it). Observed: percent.
#[derive(Debug)]
pub struct DiskCheck {
    name: String,
    path: PathBuf,
}

/// Space on one filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskStats {
    /// Size of the filesystem in bytes.
    pub total: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Bytes in use.
    pub used: u64,
}

impl DiskStats {
    /// Used in percent of what unprivileged users can have (`used / (used + available)`, like `df`).
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // byte counts need no more precision for a percentage.
    pub fn percent(&self) -> f64 {
        let usable = self.used + self.available;
        if usable == 0 {
            0.0
        } else {
            self.used as f64 * 100.0 / usable as f64
        }
    }
}

/// The space on the filesystem that holds `path`.
///
/// # Errors
/// [`Error::Io`] when the path cannot be examined (missing, no permission).
pub fn disk_stats(path: &std::path::Path) -> Result<DiskStats> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|errno| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from(errno),
    })?;
    // `c_ulong` and `fsblkcnt_t` are narrower than u64 on some targets.
    #[allow(clippy::useless_conversion)]
    let (frag, blocks, free, avail) = (
        u64::from(s.fragment_size()),
        u64::from(s.blocks()),
        u64::from(s.blocks_free()),
        u64::from(s.blocks_available()),
    );
    Ok(DiskStats {
        total: blocks.saturating_mul(frag),
        available: avail.saturating_mul(frag),
        used: blocks.saturating_sub(free).saturating_mul(frag),
    })
}

impl DiskCheck {
    /// A disk check called `name` measuring the filesystem of `path`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
        }
    }

    /// The built-in options: critical, `ready`, `system`, warn 85 %, fail 95 % (the seed's level).
    #[must_use]
    pub fn default_options() -> CheckOptions {
        CheckOptions::new()
            .critical(true)
            .thresholds(Thresholds::new(85.0, 95.0))
            .component_type("system")
            .measurement("utilization")
    }
}

impl Check for DiskCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let path = self.path.clone();
            // statvfs can block on a network filesystem: keep it off the async workers.
            let stats = tokio::task::spawn_blocking(move || disk_stats(&path)).await;
            match stats {
                Ok(Ok(d)) => CheckResult::healthy()
                    .observed(round1(d.percent()), "percent")
                    .detail("path", self.path.display().to_string())
                    .detail("totalBytes", d.total)
                    .detail("availableBytes", d.available),
                Ok(Err(e)) => CheckResult::unhealthy(error_chain(&e)),
                Err(_) => CheckResult::unhealthy("the disk measurement task failed"),
            }
        })
    }
}

/// `error: source: source` on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
