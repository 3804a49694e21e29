//! What the PostgreSQL and MariaDB launchers share: temporary directories, free ports,
//! passwords, signals, and bounded waits for a server process to start or end.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

static INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// How long a server may take to start, or to stop after being asked.
pub(crate) const SERVER_WAIT: Duration = Duration::from_secs(20);

/// A fresh, empty directory `ferrocast-KIND-PID-N` under the system's temporary directory.
pub(crate) fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ferrocast-{kind}-{}-{}",
        std::process::id(),
        INSTANCES.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temporary directory {dir:?}: {e}"));
    dir
}

/// A loopback port nobody listens on right now (it can be taken before the server binds it,
/// so the launchers retry on another port).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// A password unique to this process and instance, made of URL-safe characters only so that
/// it needs no escaping in a connection URL.
pub(crate) fn password() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "pw{:x}{:x}{:x}",
        std::process::id(),
        nanos,
        INSTANCES.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
pub(crate) fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false)
}

/// The user and group ids of `nobody` from /etc/passwd, for servers that refuse to run as root.
pub(crate) fn nobody() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["nobody", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .expect("a `nobody` user in /etc/passwd")
}

/// Sends `signal` (`INT`, `TERM`, `QUIT`, `KILL`) to `pid`; a process already gone is fine.
pub(crate) fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `limit` for `child` to exit; whether it did.
pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks `child` to end with `first` and, if it has not within `limit`, kills it; never hangs.
pub(crate) fn end(child: &mut Child, first: &str, limit: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), first);
    if !wait_exit(child, limit) {
        let _ = child.kill();
        let _ = wait_exit(child, Duration::from_secs(5));
    }
}

/// Runs `command` to its end with output captured, killing it after `limit`.
pub(crate) fn run_bounded(command: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    // Read both pipes on threads so that a chatty command cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    if !wait_exit(&mut child, limit) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{command:?} did not finish within {limit:?}"));
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The last lines of a server's log file, for a failure message.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Panics unless `table` is a plain SQL identifier, since it is spliced into statistics queries.
pub(crate) fn check_identifier(table: &str) {
    let mut chars = table.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    assert!(
        first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{table:?} is not a plain table name (letters, digits, underscores)"
    );
}
