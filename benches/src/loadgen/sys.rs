//! What the generator asks of the operating system: clocks, CPU time and memory of a process
//! from `/proc`, the descriptor limit, CPU pinning, and abortive socket closes.

use std::fs;
use std::os::fd::AsRawFd;

/// Nanoseconds on `CLOCK_MONOTONIC`, which every process on the machine shares, so a timestamp
/// taken by the publisher can be compared with one taken by a worker process.
pub(crate) fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time consumed so far by the calling thread, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock ids are constants libc knows.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime cannot fail for a supported clock");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Clock ticks per second of the `utime`/`stime` fields of `/proc/PID/stat`.
pub(crate) fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Where a CPU-time reading came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CpuSource {
    /// Sum over the process's threads of `/proc/PID/task/TID/schedstat` (nanoseconds).
    Schedstat,
    /// `utime + stime` of `/proc/PID/stat` (clock ticks, usually 10 ms each).
    StatTicks,
}

/// CPU time (user + system) used by process `pid`, in nanoseconds, and how it was read.
///
/// Scheduler statistics count nanoseconds; the tick counters of `/proc/PID/stat` only
/// advance every 10 ms, too coarse for short phases. Both measure time on a CPU, not wall time.
pub(crate) fn process_cpu_ns(pid: u32) -> Option<(u64, CpuSource)> {
    if let Some(ns) = schedstat_ns(pid) {
        return Some((ns, CpuSource::Schedstat));
    }
    stat_ticks(pid).map(|t| {
        (
            t * 1_000_000_000 / clock_ticks_per_sec(),
            CpuSource::StatTicks,
        )
    })
}

/// `utime + stime` of `/proc/PID/stat`, in clock ticks.
pub(crate) fn stat_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ... utime is field 14 of the line, index 11 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn schedstat_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading; it then simply does not count.
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        any = true;
    }
    any.then_some(total)
}

/// Resident set size of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Raises the soft open-file limit to the hard limit; returns the resulting soft limit.
pub(crate) fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Pins the calling process (and the threads and children it starts later) to one CPU.
pub(crate) fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: the set is zeroed and filled through libc's own macros before use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPUs this process may run on.
pub(crate) fn cpus_allowed() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Makes the next close of `socket` send a reset instead of entering TIME_WAIT, so thousands
/// of short-lived generator connections do not exhaust the loopback port range.
pub(crate) fn set_linger_zero(socket: &impl AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid descriptor and a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Makes `command`'s process receive SIGTERM when the generator dies, so no server or worker
/// outlives an interrupted run.
pub(crate) fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Load average over the last minute, to warn when the machine is busy.
pub(crate) fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        assert!(process_cpu_ns(pid).is_some());
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(stat_ticks(pid).is_some());
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(b >= a);
    }
}
