//! Reading memory and CPU figures from cgroups (v1 and v2) and `/proc`, below a root directory so
//! tests run the same code on fixture trees.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// The cgroup version the process is under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy hierarchies, one per controller (`/sys/fs/cgroup/memory/...`).
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup/cgroup.controllers` exists).
    V2,
}

/// Where a figure was measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A cgroup v1 limit or quota.
    CgroupV1,
    /// A cgroup v2 limit or quota.
    CgroupV2,
    /// The whole machine (no cgroup limit applies).
    Machine,
}

impl Source {
    /// `cgroup_v1`, `cgroup_v2` or `machine`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CgroupV1 => "cgroup_v1",
            Self::CgroupV2 => "cgroup_v2",
            Self::Machine => "machine",
        }
    }
}

impl From<CgroupVersion> for Source {
    fn from(v: CgroupVersion) -> Self {
        match v {
            CgroupVersion::V1 => Self::CgroupV1,
            CgroupVersion::V2 => Self::CgroupV2,
        }
    }
}

/// Memory in use against the limit that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes in use (for a cgroup: usage minus inactive file cache, the kubelet's working set).
    pub used: u64,
    /// The limit in bytes: the tightest cgroup limit on the way to the root, else the machine's memory.
    pub limit: u64,
    /// What `limit` is.
    pub source: Source,
}

impl MemoryStats {
    /// `used / limit` in percent.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // percentages of byte counts need no more than f64's 52 bits.
    pub fn percent(&self) -> f64 {
        if self.limit == 0 {
            0.0
        } else {
            self.used as f64 * 100.0 / self.limit as f64
        }
    }
}

/// One reading of CPU counters; two readings give a utilization (see [`CpuSample::utilization`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuSample {
    /// The cgroup CPU quota in cores (`quota / period`), if one applies.
    pub quota_cores: Option<f64>,
    /// The cgroup's cumulative CPU time, when a quota applies and it is readable.
    pub cgroup_usage: Option<Duration>,
    /// Machine-wide `(busy, total)` jiffies from `/proc/stat`.
    pub machine: Option<(u64, u64)>,
    /// The cgroup version of `quota_cores`.
    pub version: Option<CgroupVersion>,
}

impl CpuSample {
    /// The CPU utilization in percent between `earlier` and `self`, `elapsed` apart: against the cgroup
    /// quota when one applies, else the machine's busy share of all cores.
    #[must_use]
    pub fn utilization(&self, earlier: &Self, elapsed: Duration) -> Option<(f64, Source)> {
        if let (Some(quota), Some(now), Some(then), Some(version)) = (
            self.quota_cores,
            self.cgroup_usage,
            earlier.cgroup_usage,
            self.version,
        ) {
            let wall = elapsed.as_secs_f64() * quota;
            if wall > 0.0 {
                let used = now.saturating_sub(then).as_secs_f64();
                return Some((used * 100.0 / wall, version.into()));
            }
        }
        let ((busy1, total1), (busy0, total0)) = (self.machine?, earlier.machine?);
        let total = total1.checked_sub(total0).filter(|t| *t > 0)?;
        let busy = busy1.saturating_sub(busy0);
        #[allow(clippy::cast_precision_loss)] // jiffy deltas are far below 2^52.
        Some((busy as f64 * 100.0 / total as f64, Source::Machine))
    }
}

/// Reads cgroup and `/proc` files below a root directory (`/` on a live system).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemReader {
    root: PathBuf,
}

impl Default for SystemReader {
    fn default() -> Self {
        Self::live()
    }
}

/// cgroup v1 memory "no limit" is a page-aligned `i64::MAX`; anything at or above a quarter of that is
/// no limit either way.
const NO_LIMIT: u64 = 1 << 61;

impl SystemReader {
    /// A reader of the files below `root` (a fixture tree in tests).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A reader of this machine (`/`).
    #[must_use]
    pub fn live() -> Self {
        Self::new("/")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The cgroup version, or `None` when no cgroup filesystem is mounted at `/sys/fs/cgroup`.
    #[must_use]
    pub fn cgroup_version(&self) -> Option<CgroupVersion> {
        let base = self.path("sys/fs/cgroup");
        if base.join("cgroup.controllers").is_file() {
            Some(CgroupVersion::V2)
        } else if self.v1_mount("memory").is_some() || self.v1_mount("cpu").is_some() {
            Some(CgroupVersion::V1)
        } else {
            None
        }
    }

    /// Memory in use against the cgroup limit when there is one (v1 or v2), else the machine.
    ///
    /// # Errors
    /// When neither a cgroup limit nor `/proc/meminfo` can be read.
    pub fn memory(&self) -> Result<MemoryStats> {
        let machine = self.machine_memory();
        let cgroup = match self.cgroup_version() {
            Some(CgroupVersion::V2) => self.v2_memory()?,
            Some(CgroupVersion::V1) => self.v1_memory()?,
            None => None,
        };
        match (cgroup, machine) {
            (Some(c), Ok(m)) if c.limit < m.limit => Ok(c),
            (Some(c), Err(_)) => Ok(c),
            (_, machine) => machine,
        }
    }

    /// The cgroup CPU quota in cores (the tightest on the way to the root), if one applies.
    ///
    /// # Errors
    /// When a quota file exists but cannot be read or parsed.
    pub fn cpu_quota(&self) -> Result<Option<f64>> {
        match self.cgroup_version() {
            Some(CgroupVersion::V2) => {
                let mut best: Option<f64> = None;
                for dir in self.v2_dirs() {
                    let file = dir.join("cpu.max");
                    let Some(text) = read_optional(&file)? else {
                        continue;
                    };
                    let mut parts = text.split_whitespace();
                    let (quota, period) = (parts.next(), parts.next());
                    if quota == Some("max") {
                        continue;
                    }
                    let quota = parse_u64(&file, quota)?;
                    let period = parse_u64(&file, period.or(Some("100000")))?;
                    best = min_cores(best, quota, period);
                }
                Ok(best)
            }
            Some(CgroupVersion::V1) => {
                let mut best: Option<f64> = None;
                for dir in self.v1_dirs("cpu") {
                    let quota_file = dir.join("cpu.cfs_quota_us");
                    let Some(quota) = read_optional(&quota_file)? else {
                        continue;
                    };
                    let quota: i64 = quota.trim().parse().map_err(|_| Error::Parse {
                        path: quota_file.clone(),
                        reason: format!("expected an integer, found {:?}", quota.trim()),
                    })?;
                    let Ok(quota) = u64::try_from(quota) else {
                        continue;
                    }; // -1: no quota
                    let period_file = dir.join("cpu.cfs_period_us");
                    let period = read_optional(&period_file)?;
                    let period = parse_u64(&period_file, period.as_deref().or(Some("100000")))?;
                    best = min_cores(best, quota, period);
                }
                Ok(best)
            }
            None => Ok(None),
        }
    }

    /// One reading of the CPU counters.
    ///
    /// # Errors
    /// When a quota applies but no counter at all can be read.
    pub fn cpu_sample(&self) -> Result<CpuSample> {
        let version = self.cgroup_version();
        let quota_cores = self.cpu_quota()?;
        let cgroup_usage = match (quota_cores, version) {
            (Some(_), Some(CgroupVersion::V2)) => {
                let file = self.v2_dirs().next().map(|d| d.join("cpu.stat"));
                match file {
                    Some(file) => read_optional(&file)?
                        .and_then(|t| stat_value(&t, "usage_usec"))
                        .map(Duration::from_micros),
                    None => None,
                }
            }
            (Some(_), Some(CgroupVersion::V1)) => match self.v1_dirs("cpuacct").next() {
                Some(dir) => read_optional(&dir.join("cpuacct.usage"))?
                    .and_then(|t| t.trim().parse().ok())
                    .map(Duration::from_nanos),
                None => None,
            },
            _ => None,
        };
        let machine = self.machine_cpu();
        if cgroup_usage.is_none()
            && let Err(e) = &machine
        {
            return Err(Error::Parse {
                path: self.path("proc/stat"),
                reason: e.to_string(),
            });
        }
        Ok(CpuSample {
            quota_cores,
            cgroup_usage,
            machine: machine.ok(),
            version,
        })
    }

    fn machine_memory(&self) -> Result<MemoryStats> {
        let file = self.path("proc/meminfo");
        let text = read(&file)?;
        let kib = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|v| v.saturating_mul(1024))
        };
        let missing = |key: &str| Error::Parse {
            path: file.clone(),
            reason: format!("no {key} line"),
        };
        let total = kib("MemTotal").ok_or_else(|| missing("MemTotal"))?;
        let available = kib("MemAvailable").ok_or_else(|| missing("MemAvailable"))?;
        Ok(MemoryStats {
            used: total.saturating_sub(available),
            limit: total,
            source: Source::Machine,
        })
    }

    fn machine_cpu(&self) -> Result<(u64, u64)> {
        let file = self.path("proc/stat");
        let text = read(&file)?;
        let line = text
            .lines()
            .find(|l| l.starts_with("cpu "))
            .ok_or_else(|| Error::Parse {
                path: file.clone(),
                reason: "no `cpu` line".into(),
            })?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        if values.len() < 4 {
            return Err(Error::Parse {
                path: file,
                reason: "short `cpu` line".into(),
            });
        }
        // user nice system idle iowait irq softirq steal (guest is already inside user).
        let total: u64 = values.iter().take(8).sum();
        let idle = values[3] + values.get(4).copied().unwrap_or(0);
        Ok((total.saturating_sub(idle), total))
    }

    /// The process's cgroup paths: `(controllers, path)` from `/proc/self/cgroup`.
    fn proc_cgroups(&self) -> Vec<(String, String)> {
        let Ok(text) = std::fs::read_to_string(self.path("proc/self/cgroup")) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                Some((controllers.to_owned(), path.to_owned()))
            })
            .collect()
    }

    /// The process's cgroup directory and its ancestors up to the mount, innermost first. When the
    /// process's path is not visible below the mount (a cgroup namespace), the mount itself is used.
    fn ancestors(base: &Path, path: Option<&str>) -> Vec<PathBuf> {
        let mut dir = base.to_path_buf();
        if let Some(p) = path {
            let candidate = base.join(p.trim_start_matches('/'));
            if candidate.is_dir() {
                dir = candidate;
            }
        }
        let mut out = vec![dir.clone()];
        while dir != base {
            if !dir.pop() {
                break;
            }
            out.push(dir.clone());
        }
        out
    }

    fn v2_dirs(&self) -> impl Iterator<Item = PathBuf> {
        let base = self.path("sys/fs/cgroup");
        let cgroups = self.proc_cgroups();
        let path = cgroups
            .iter()
            .find(|(c, _)| c.is_empty())
            .map(|(_, p)| p.as_str());
        Self::ancestors(&base, path).into_iter()
    }

    fn v1_mount(&self, controller: &str) -> Option<PathBuf> {
        let base = self.path("sys/fs/cgroup");
        let exact = base.join(controller);
        if exact.is_dir() {
            return Some(exact);
        }
        std::fs::read_dir(&base)
            .ok()?
            .filter_map(std::result::Result::ok)
            .find_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                (name.split(',').any(|c| c == controller) && e.path().is_dir()).then(|| e.path())
            })
    }

    fn v1_dirs(&self, controller: &str) -> impl Iterator<Item = PathBuf> {
        let dirs = match self.v1_mount(controller) {
            Some(base) => {
                let cgroups = self.proc_cgroups();
                let path = cgroups
                    .iter()
                    .find(|(c, _)| c.split(',').any(|x| x == controller))
                    .map(|(_, p)| p.as_str());
                Self::ancestors(&base, path)
            }
            None => Vec::new(),
        };
        dirs.into_iter()
    }

    fn v2_memory(&self) -> Result<Option<MemoryStats>> {
        let mut dirs = self.v2_dirs();
        let Some(own) = dirs.next() else {
            return Ok(None);
        };
        let mut limit: Option<u64> = None;
        for dir in std::iter::once(own.clone()).chain(dirs) {
            let file = dir.join("memory.max");
            let Some(text) = read_optional(&file)? else {
                continue;
            };
            if text.trim() == "max" {
                continue;
            }
            let value = parse_u64(&file, Some(text.trim()))?;
            limit = Some(limit.map_or(value, |l| l.min(value)));
        }
        let Some(limit) = limit.filter(|l| *l < NO_LIMIT) else {
            return Ok(None);
        };
        let current_file = own.join("memory.current");
        let current = parse_u64(&current_file, Some(read(&current_file)?.trim()))?;
        let inactive = read_optional(&own.join("memory.stat"))?
            .and_then(|t| stat_value(&t, "inactive_file"))
            .unwrap_or(0);
        Ok(Some(MemoryStats {
            used: current.saturating_sub(inactive),
            limit,
            source: Source::CgroupV2,
        }))
    }

    fn v1_memory(&self) -> Result<Option<MemoryStats>> {
        let dirs: Vec<PathBuf> = self.v1_dirs("memory").collect();
        let Some(own) = dirs.first() else {
            return Ok(None);
        };
        let mut limit: Option<u64> = None;
        for dir in &dirs {
            let file = dir.join("memory.limit_in_bytes");
            let Some(text) = read_optional(&file)? else {
                continue;
            };
            let value = parse_u64(&file, Some(text.trim()))?;
            limit = Some(limit.map_or(value, |l| l.min(value)));
        }
        let Some(limit) = limit.filter(|l| *l < NO_LIMIT) else {
            return Ok(None);
        };
        let usage_file = own.join("memory.usage_in_bytes");
        let usage = parse_u64(&usage_file, Some(read(&usage_file)?.trim()))?;
        let inactive = read_optional(&own.join("memory.stat"))?
            .and_then(|t| {
                stat_value(&t, "total_inactive_file").or_else(|| stat_value(&t, "inactive_file"))
            })
            .unwrap_or(0);
        Ok(Some(MemoryStats {
            used: usage.saturating_sub(inactive),
            limit,
            source: Source::CgroupV1,
        }))
    }
}

fn min_cores(best: Option<f64>, quota: u64, period: u64) -> Option<f64> {
    if period == 0 {
        return best;
    }
    #[allow(clippy::cast_precision_loss)] // microsecond quotas are far below 2^52.
    let cores = quota as f64 / period as f64;
    Some(best.map_or(cores, |b| b.min(cores)))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_u64(path: &Path, value: Option<&str>) -> Result<u64> {
    let value = value.unwrap_or("").trim();
    value.parse().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a non-negative integer, found {value:?}"),
    })
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `cpu.stat`).
fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_utilization() {
        let a = CpuSample {
            quota_cores: None,
            cgroup_usage: None,
            machine: Some((100, 1000)),
            version: None,
        };
        let b = CpuSample {
            machine: Some((350, 1500)),
            ..a
        };
        let (pct, src) = b.utilization(&a, Duration::from_secs(1)).unwrap();
        assert!((pct - 50.0).abs() < 1e-9);
        assert_eq!(src, Source::Machine);
        assert_eq!(a.utilization(&a, Duration::from_secs(1)), None);
    }

    #[test]
    fn quota_cpu_utilization() {
        let a = CpuSample {
            quota_cores: Some(0.5),
            cgroup_usage: Some(Duration::from_millis(1000)),
            machine: None,
            version: Some(CgroupVersion::V2),
        };
        let b = CpuSample {
            cgroup_usage: Some(Duration::from_millis(1250)),
            ..a
        };
        let (pct, src) = b.utilization(&a, Duration::from_secs(1)).unwrap();
        assert!((pct - 50.0).abs() < 1e-9, "{pct}");
        assert_eq!(src, Source::CgroupV2);
    }

    #[test]
    fn stat_values() {
        assert_eq!(
            stat_value("usage_usec 42\nuser_usec 1\n", "usage_usec"),
            Some(42)
        );
        assert_eq!(
            stat_value(
                "inactive_file 7\ntotal_inactive_file 9\n",
                "total_inactive_file"
            ),
            Some(9)
        );
        assert_eq!(stat_value("x 1", "y"), None);
    }
}
