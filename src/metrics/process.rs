//! `process_*` metrics as client_golang's process collector exports them on Linux,
//! and `scrape_guard_memory_limit_bytes`, all read from `/proc` and `/sys/fs/cgroup`
//! at scrape time: nothing runs between scrapes, and a number is never stale.
//!
//! Each value is read on its own; one that cannot be read (no `/proc`, another OS) is
//! left out rather than failing the scrape. The names, types and units are
//! client_golang's, so dashboards and alerts written for Go exporters work unchanged:
//! for a sidecar with a memory limit of a few tens of MiB, resident memory against
//! that limit is the number to watch.

use std::{fs, path::Path};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

/// The `process_*` metrics of this process (registered without our prefix).
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// `scrape_guard_memory_limit_bytes` (registered under our prefix): absent when the
/// process's cgroup has no memory limit.
#[derive(Debug)]
pub(super) struct MemoryLimitCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let sample = Sample::read();
        if let Some(seconds) = sample.cpu_seconds {
            counter(
                &mut encoder,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                seconds,
            )?;
        }
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors.",
                sample.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                sample.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                sample.virtual_bytes,
            ),
            (
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                sample.virtual_max_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                sample.resident_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                sample.start_time,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                gauge(&mut encoder, name, help, value)?;
            }
        }
        Ok(())
    }
}

impl Collector for MemoryLimitCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(limit) = super::cgroup::memory_limit() else {
            return Ok(());
        };
        // Precise below 2^53 bytes (8 PiB): every real limit.
        #[allow(clippy::cast_precision_loss)]
        gauge(
            &mut encoder,
            "memory_limit_bytes",
            "The memory limit of the process's cgroup (cgroup v2 memory.max, v1 \
             memory.limit_in_bytes; the lowest on the way to the root); absent when unlimited",
            limit as f64,
        )
    }
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// One reading of the process's numbers; `None` where a file could not be read.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    virtual_bytes: Option<f64>,
    virtual_max_bytes: Option<f64>,
    resident_bytes: Option<f64>,
    start_time: Option<f64>,
}

/// What `/proc/self/stat` says, in its own units.
#[derive(Debug, PartialEq)]
struct Stat {
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// Since boot, in clock ticks.
    start_ticks: u64,
    vsize_bytes: u64,
    rss_pages: u64,
}

impl Sample {
    #[allow(clippy::cast_precision_loss)] // counts and sizes far below 2^53
    fn read() -> Self {
        let proc = Path::new("/proc");
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as f64;
        let stat = read(&proc.join("self/stat")).and_then(|s| parse_stat(&s));
        let limits = read(&proc.join("self/limits"));
        let boot_time = read(&proc.join("stat")).and_then(|s| parse_boot_time(&s));
        let open_fds = fs::read_dir(proc.join("self/fd"))
            .ok()
            .map(|dir| dir.count() as f64);
        Self {
            cpu_seconds: stat.as_ref().map(|s| s.cpu_ticks as f64 / ticks),
            open_fds,
            max_fds: limits
                .as_deref()
                .and_then(|l| soft_limit(l, "Max open files")),
            virtual_bytes: stat.as_ref().map(|s| s.vsize_bytes as f64),
            virtual_max_bytes: limits
                .as_deref()
                .and_then(|l| soft_limit(l, "Max address space")),
            resident_bytes: stat.as_ref().map(|s| s.rss_pages as f64 * page),
            start_time: stat
                .as_ref()
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / ticks),
        }
    }
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// `/proc/<pid>/stat`: the command (field 2) is in parentheses and may hold spaces
/// and parentheses itself, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields 3 (state) onwards; field n is at index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        vsize_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

/// `btime` of `/proc/stat`: when the system booted (Unix seconds).
fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit of a `/proc/<pid>/limits` row. `unlimited` is 2^64 − 1, as
/// client_golang (procfs) reports it.
#[allow(clippy::cast_precision_loss)]
fn soft_limit(limits: &str, row: &str) -> Option<f64> {
    let rest = limits.lines().find_map(|line| line.strip_prefix(row))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX as f64),
        value => value.parse::<u64>().ok().map(|v| v as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a `)` in it.
        let stat = "4242 (scrape (guard)) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                    250 50 0 0 20 0 9 0 123456 104857600 4096 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                cpu_ticks: 300,
                start_ticks: 123_456,
                vsize_bytes: 104_857_600,
                rss_pages: 4096,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1"), None);
    }

    #[test]
    fn limits_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 1048576              files     \n\
                      Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(soft_limit(limits, "Max open files"), Some(1024.0));
        assert_eq!(
            soft_limit(limits, "Max address space"),
            Some(18_446_744_073_709_551_615.0)
        );
        assert_eq!(soft_limit(limits, "Max locked memory"), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1764800000\nprocesses 9\n"),
            Some(1_764_800_000)
        );
    }

    #[test]
    fn this_process_reads_as_client_golang_would_report_it() {
        let sample = Sample::read();
        let resident = sample.resident_bytes.expect("resident memory");
        assert!(resident > 0.0, "{sample:?}");
        assert!(sample.virtual_bytes.expect("virtual memory") >= resident);
        assert!(sample.open_fds.expect("open fds") >= 3.0, "{sample:?}");
        assert!(sample.max_fds.expect("max fds") >= sample.open_fds.unwrap_or_default());
        assert!(sample.cpu_seconds.expect("cpu") >= 0.0);
        let started = sample.start_time.expect("start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        // Started before now, and after 2020 (the arithmetic of ticks and btime).
        assert!(
            started <= now + 1.0 && started > 1_577_836_800.0,
            "{started}"
        );
    }
}
