//! Where the CPU goes over a benchmark window, by part of the local stack: each function binary,
//! each emulator, cargo-lambda, and, inside the benchmark's own process, the device simulator
//! (on a runtime of its own, its threads named [`SIMULATOR_THREADS`]) apart from the in-process
//! local stack (MQTT broker, rules engine, SQS pollers, API). Read from /proc; elsewhere the
//! profile is empty.

use devstack::ministack::MiniStackServices;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Thread name of the runtime the device simulator runs on.
pub const SIMULATOR_THREADS: &str = "device-sim";

const MOTO: &str = "moto (IoT registry, Secrets Manager, S3)";
const CARGO_LAMBDA: &str = "cargo-lambda (runs the functions, routes invocations)";
const SIMULATOR: &str = "device simulator (MQTT clients)";
const IN_PROCESS: &str =
    "local stack in the benchmark process (MQTT broker, rules engine, SQS pollers, API)";

/// CPU ticks (user + system) by part, at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    ticks: BTreeMap<String, u64>,
}

/// Takes a snapshot; `functions` are the binary names of the stack's functions.
pub fn snapshot(functions: &[String]) -> CpuSnapshot {
    let mut ticks = BTreeMap::new();
    let own = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return CpuSnapshot { ticks };
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let process = entry.path();
        if name == own {
            for (thread, spent) in thread_ticks(&process) {
                let part = if thread.starts_with(SIMULATOR_THREADS) {
                    SIMULATOR
                } else {
                    IN_PROCESS
                };
                *ticks.entry(part.to_owned()).or_default() += spent;
            }
            continue;
        }
        let Some(part) = part_of(&process, functions) else {
            continue;
        };
        if let Some(spent) = read_ticks(&process.join("stat")) {
            *ticks.entry(part).or_default() += spent;
        }
    }
    CpuSnapshot { ticks }
}

/// Which part of the stack a process is, if any.
fn part_of(process: &Path, functions: &[String]) -> Option<String> {
    let cmdline = std::fs::read(process.join("cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    for services in [MiniStackServices::DynamoDb, MiniStackServices::Sqs] {
        if cmdline.contains(services.script_name()) {
            return Some(services.name().to_owned());
        }
    }
    if cmdline.contains("cellbridge_moto_server") {
        return Some(MOTO.to_owned());
    }
    let exe = std::fs::read_link(process.join("exe")).ok()?;
    let exe = exe.file_name()?.to_string_lossy().into_owned();
    if exe == "cargo-lambda" {
        return Some(CARGO_LAMBDA.to_owned());
    }
    functions.contains(&exe).then(|| format!("function {exe}"))
}

/// Ticks of each thread of `process`, by thread name.
fn thread_ticks(process: &Path) -> Vec<(String, u64)> {
    let Ok(threads) = std::fs::read_dir(process.join("task")) else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|thread| {
            let stat = std::fs::read_to_string(thread.path().join("stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_owned();
            Some((name, parse_ticks(&stat)?))
        })
        .collect()
}

/// CPU ticks (user + system) of process `pid` so far; 0 once it is gone.
pub fn process_ticks(pid: u32) -> u64 {
    read_ticks(Path::new(&format!("/proc/{pid}/stat"))).unwrap_or(0)
}

fn read_ticks(stat: &Path) -> Option<u64> {
    parse_ticks(&std::fs::read_to_string(stat).ok()?)
}

/// utime + stime of a /proc stat line.
fn parse_ticks(stat: &str) -> Option<u64> {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub fn tick_rate() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU used by each part between two snapshots, in cores (1.0 = one core busy throughout),
/// the busiest first.
pub fn cores_between(
    before: &CpuSnapshot,
    after: &CpuSnapshot,
    window: Duration,
) -> Vec<(String, f64)> {
    let seconds = window.as_secs_f64().max(f64::EPSILON);
    let rate = tick_rate();
    let mut parts: Vec<(String, f64)> = after
        .ticks
        .iter()
        .map(|(part, &end)| {
            let start = before.ticks.get(part).copied().unwrap_or(0);
            (
                part.clone(),
                end.saturating_sub(start) as f64 / rate / seconds,
            )
        })
        .filter(|(_, cores)| *cores > 0.0)
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    parts
}

/// Seconds of CPU a part used between two snapshots.
pub fn seconds_between(before: &CpuSnapshot, after: &CpuSnapshot, part: &str) -> f64 {
    let start = before.ticks.get(part).copied().unwrap_or(0);
    let end = after.ticks.get(part).copied().unwrap_or(0);
    end.saturating_sub(start) as f64 / tick_rate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (tokio (rt) 1) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1234";
        assert_eq!(parse_ticks(stat), Some(300));
    }

    #[test]
    fn parts_that_used_no_cpu_are_left_out_and_the_busiest_comes_first() {
        let before = CpuSnapshot {
            ticks: BTreeMap::from([("a".into(), 100), ("b".into(), 100), ("c".into(), 5)]),
        };
        let after = CpuSnapshot {
            ticks: BTreeMap::from([("a".into(), 100), ("b".into(), 400), ("c".into(), 105)]),
        };
        let parts = cores_between(&before, &after, Duration::from_secs(1000));
        let names: Vec<&str> = parts.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
    }
}
