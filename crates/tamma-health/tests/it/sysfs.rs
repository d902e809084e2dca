//! cgroup v1 and v2 readers on fixture trees, and once on this machine; the disk check.

use std::path::Path;
use std::time::Duration;

use tamma_core::{Check, CheckStatus};
use tamma_health::{
    CgroupVersion, CpuCheck, DiskCheck, MemoryCheck, Source, SystemReader, disk_stats,
};

const MIB: u64 = 1024 * 1024;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn machine(root: &Path) {
    // 16 GiB machine, 4 GiB available.
    write(
        root,
        "proc/meminfo",
        "MemTotal:       16777216 kB\nMemFree:  1000 kB\nMemAvailable:    4194304 kB\n",
    );
    write(
        root,
        "proc/stat",
        "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n",
    );
}

/// A Kubernetes-style v2 tree: the pod caps memory at 512 MiB and CPU at 2 cores, the container
/// at 0.5 cores with no memory limit of its own.
fn v2_tree(root: &Path) {
    machine(root);
    write(root, "proc/self/cgroup", "0::/kubepods/pod1/ctr\n");
    write(
        root,
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory pids\n",
    );
    write(root, "sys/fs/cgroup/kubepods/memory.max", "max\n");
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/memory.max",
        &format!("{}\n", 512 * MIB),
    );
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/cpu.max",
        "200000 100000\n",
    );
    write(root, "sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n");
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/ctr/memory.current",
        &format!("{}\n", 300 * MIB),
    );
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/ctr/memory.stat",
        &format!("anon 1\ninactive_file {}\nactive_file 3\n", 44 * MIB),
    );
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max",
        "50000 100000\n",
    );
    write(
        root,
        "sys/fs/cgroup/kubepods/pod1/ctr/cpu.stat",
        "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\n",
    );
}

/// A Docker-style v1 tree with `cpu,cpuacct` co-mounted; the container sees its own cgroup at the
/// mount root (cgroup namespace), so `/docker/abc` from /proc/self/cgroup is not below the mount.
fn v1_tree(root: &Path) {
    machine(root);
    write(
        root,
        "proc/self/cgroup",
        "12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
    );
    write(
        root,
        "sys/fs/cgroup/memory/memory.limit_in_bytes",
        &format!("{}\n", 256 * MIB),
    );
    write(
        root,
        "sys/fs/cgroup/memory/memory.usage_in_bytes",
        &format!("{}\n", 200 * MIB),
    );
    write(
        root,
        "sys/fs/cgroup/memory/memory.stat",
        &format!(
            "cache 5\ninactive_file 9\ntotal_inactive_file {}\n",
            8 * MIB
        ),
    );
    write(
        root,
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
        "150000\n",
    );
    write(
        root,
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us",
        "100000\n",
    );
    write(
        root,
        "sys/fs/cgroup/cpu,cpuacct/cpuacct.usage",
        "5000000000\n",
    );
}

#[test]
fn cgroup_v2_memory_and_cpu_quota() {
    let dir = tempfile::tempdir().unwrap();
    v2_tree(dir.path());
    let r = SystemReader::new(dir.path());
    assert_eq!(r.cgroup_version(), Some(CgroupVersion::V2));
    let m = r.memory().unwrap();
    assert_eq!(m.source, Source::CgroupV2);
    assert_eq!(
        m.limit,
        512 * MIB,
        "the pod's limit applies to the container"
    );
    assert_eq!(m.used, 256 * MIB, "usage minus inactive file cache");
    assert!((m.percent() - 50.0).abs() < 1e-9);
    assert_eq!(
        r.cpu_quota().unwrap(),
        Some(0.5),
        "the tightest quota on the way up"
    );
    let s = r.cpu_sample().unwrap();
    assert_eq!(s.cgroup_usage, Some(Duration::from_secs(1)));
}

#[test]
fn cgroup_v2_without_limits_falls_back_to_the_machine() {
    let dir = tempfile::tempdir().unwrap();
    v2_tree(dir.path());
    write(
        dir.path(),
        "sys/fs/cgroup/kubepods/pod1/memory.max",
        "max\n",
    );
    write(
        dir.path(),
        "sys/fs/cgroup/kubepods/pod1/cpu.max",
        "max 100000\n",
    );
    write(
        dir.path(),
        "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max",
        "max 100000\n",
    );
    let r = SystemReader::new(dir.path());
    let m = r.memory().unwrap();
    assert_eq!(
        (m.source, m.limit, m.used),
        (Source::Machine, 16 * 1024 * MIB, 12 * 1024 * MIB)
    );
    assert_eq!(r.cpu_quota().unwrap(), None);
    assert_eq!(r.cpu_sample().unwrap().machine, Some((200, 1000)));
}

#[test]
fn cgroup_v1_memory_and_cpu_quota() {
    let dir = tempfile::tempdir().unwrap();
    v1_tree(dir.path());
    let r = SystemReader::new(dir.path());
    assert_eq!(r.cgroup_version(), Some(CgroupVersion::V1));
    let m = r.memory().unwrap();
    assert_eq!(
        (m.source, m.limit, m.used),
        (Source::CgroupV1, 256 * MIB, 192 * MIB)
    );
    assert!((m.percent() - 75.0).abs() < 1e-9);
    assert_eq!(r.cpu_quota().unwrap(), Some(1.5));
    assert_eq!(
        r.cpu_sample().unwrap().cgroup_usage,
        Some(Duration::from_secs(5))
    );
    // The "unlimited" value of v1 means the machine.
    write(
        dir.path(),
        "sys/fs/cgroup/memory/memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    write(
        dir.path(),
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
        "-1\n",
    );
    assert_eq!(r.memory().unwrap().source, Source::Machine);
    assert_eq!(r.cpu_quota().unwrap(), None);
}

#[test]
fn cgroup_v1_nested_path_takes_the_tightest_limit() {
    let dir = tempfile::tempdir().unwrap();
    v1_tree(dir.path());
    write(
        dir.path(),
        "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
        &format!("{}\n", 1024 * MIB),
    );
    write(
        dir.path(),
        "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes",
        &format!("{}\n", 64 * MIB),
    );
    write(
        dir.path(),
        "sys/fs/cgroup/memory/docker/abc/memory.stat",
        "total_inactive_file 0\n",
    );
    let m = SystemReader::new(dir.path()).memory().unwrap();
    assert_eq!(
        (m.limit, m.used),
        (256 * MIB, 64 * MIB),
        "the parent's 256 MiB is tighter"
    );
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    v2_tree(dir.path());
    write(
        dir.path(),
        "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max",
        "lots 100000\n",
    );
    let err = SystemReader::new(dir.path())
        .cpu_quota()
        .unwrap_err()
        .to_string();
    assert!(err.contains("ctr/cpu.max") && err.contains("lots"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = SystemReader::new(empty.path())
        .memory()
        .unwrap_err()
        .to_string();
    assert!(err.contains("meminfo"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn memory_and_cpu_checks_on_a_fixture_tree() {
    let dir = tempfile::tempdir().unwrap();
    v2_tree(dir.path());
    let mem = MemoryCheck::new("memory:utilization", SystemReader::new(dir.path()))
        .check()
        .await;
    assert_eq!(mem.observed_value, Some(serde_json::json!(50.0)));
    assert_eq!(mem.details["source"], "cgroup_v2");

    let cpu = CpuCheck::new(
        "cpu:utilization",
        SystemReader::new(dir.path()),
        Duration::from_millis(100),
    );
    let first = cpu.check().await;
    assert_eq!(
        first.observed_value,
        Some(serde_json::json!(0.0)),
        "no CPU used in the window"
    );
    // 0.25 s of CPU in 1 s against a 0.5 core quota = 50 %.
    tokio::time::advance(Duration::from_secs(1)).await;
    write(
        dir.path(),
        "sys/fs/cgroup/kubepods/pod1/ctr/cpu.stat",
        "usage_usec 1250000\n",
    );
    let second = cpu.check().await;
    assert_eq!(second.observed_value, Some(serde_json::json!(50.0)));
    assert_eq!(second.details["quotaCores"], 0.5);
}

#[tokio::test]
async fn live_machine_readers_work() {
    let r = SystemReader::live();
    let m = r.memory().expect("memory of this machine");
    assert!(m.limit > 0 && m.used <= m.limit, "{m:?}");
    eprintln!(
        "live: cgroup {:?}, memory {m:?}, cpu quota {:?}",
        r.cgroup_version(),
        r.cpu_quota()
    );
    if r.cgroup_version().is_some() {
        assert_ne!(
            std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
            ""
        );
    }
    r.cpu_quota().expect("cpu quota of this machine");
    let cpu = CpuCheck::new("cpu:utilization", r.clone(), Duration::from_millis(100));
    let result = cpu.check().await;
    assert_eq!(result.status, CheckStatus::Healthy, "{result:?}");
    let mem = MemoryCheck::new("memory:utilization", r).check().await;
    let pct = mem.observed_value.and_then(|v| v.as_f64()).unwrap();
    assert!((0.0..=100.0).contains(&pct), "{pct}");
}

#[tokio::test]
async fn disk_check_measures_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = disk_stats(dir.path()).unwrap();
    assert!(
        d.total > 0 && d.used <= d.total && d.available <= d.total,
        "{d:?}"
    );
    let r = DiskCheck::new("disk:utilization", dir.path()).check().await;
    assert_eq!(r.status, CheckStatus::Healthy);
    assert_eq!(r.observed_unit.as_deref(), Some("percent"));
    let missing = dir.path().join("nope");
    let r = DiskCheck::new("disk:utilization", &missing).check().await;
    assert_eq!(r.status, CheckStatus::Unhealthy);
    assert!(r.output.unwrap().contains("nope"));
}
