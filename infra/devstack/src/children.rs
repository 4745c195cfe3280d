//! Stopping a child together with everything it started. `cargo lambda watch` runs each function
//! in a session of its own, so signalling our child's process group would miss them; instead the
//! descendants are found through /proc (Linux) and signalled one by one.

/// A process as seen at one moment: its start time tells a later process with a reused pid apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: i32,
    start_time: u64,
}

/// `(ppid, start time)` of `pid`, from /proc/<pid>/stat.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 4 is the parent pid, field 22 the start time; `fields[0]` is field 3.
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// `root` and all its descendants, parents before children.
pub(crate) fn tree(root: i32) -> Vec<Proc> {
    let Some((_, root_start)) = stat(root) else {
        return Vec::new();
    };
    let mut all: Vec<(i32, i32, u64)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            {
                if let Some((ppid, start)) = stat(pid) {
                    all.push((pid, ppid, start));
                }
            }
        }
    }
    let mut found = vec![Proc {
        pid: root,
        start_time: root_start,
    }];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].pid;
        for &(pid, ppid, start_time) in &all {
            if ppid == parent && !found.iter().any(|p| p.pid == pid) {
                found.push(Proc { pid, start_time });
            }
        }
        i += 1;
    }
    found
}

fn still_same(p: &Proc) -> bool {
    stat(p.pid).is_some_and(|(_, start)| start == p.start_time)
}

pub(crate) fn signal(procs: &[Proc], sig: i32) {
    for p in procs {
        if still_same(p) {
            // SAFETY: kill(2) has no memory effects; the pid was checked to be the same process.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(p.pid, sig);
            }
        }
    }
}

pub(crate) fn any_alive(procs: &[Proc]) -> bool {
    procs.iter().any(|p| still_same(p) && !is_zombie(p.pid))
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| {
            t.rfind(')')
                .map(|i| t[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Asks the kernel to SIGTERM the child when this process dies, however it dies (SIGKILL
/// included), so a killed devstack leaves no emulator or cargo-lambda behind. Linux ties this to the
/// spawning thread; the supervisor restarts cargo-lambda should that thread ever end early.
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Whether one of `procs` holds the socket listening on 127.0.0.1:`port`. A connection that
/// succeeds only says that something listens there; this says it is ours. Linux only: elsewhere
/// it cannot tell, and answers yes.
pub(crate) fn holds_listener(procs: &[Proc], port: u16) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let wanted = format!("{}:{port:04X}", loopback_hex());
    // Fields: sl, local address, remote address, state (0A: listening), ..., inode (10th).
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 9 && f[1] == wanted && f[3] == "0A")
        .map(|f| format!("socket:[{}]", f[9]))
        .collect();
    !inodes.is_empty()
        && procs.iter().filter(|p| still_same(p)).any(|p| {
            std::fs::read_dir(format!("/proc/{}/fd", p.pid))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
        })
}

/// 127.0.0.1 as /proc/net/tcp prints it: the address's bytes read as a native-endian integer.
fn loopback_hex() -> String {
    format!("{:08X}", u32::from_ne_bytes([127, 0, 0, 1]))
}

/// SIGKILLs `root` and its descendants now.
pub(crate) fn kill_tree(root: i32) {
    signal(&tree(root), libc::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_our_listener_from_anyone_else_s() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let port = listener.local_addr().expect("address").port();
        let me = tree(i32::try_from(std::process::id()).expect("pid fits"));
        assert!(holds_listener(&me[..1], port));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let other = tree(i32::try_from(child.id()).expect("pid fits"));
        if cfg!(target_os = "linux") {
            assert!(!holds_listener(&other, port), "the child holds no socket");
            drop(listener);
            assert!(!holds_listener(&me[..1], port), "nothing listens any more");
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn finds_and_kills_grandchildren() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .expect("sh runs");
        let pid = i32::try_from(child.id()).expect("pid fits");
        // Waits until `done` holds; the limit only guards against a hang.
        let within_a_minute = |done: &mut dyn FnMut() -> bool| {
            let limit = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !done() && std::time::Instant::now() < limit {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        let mut procs = Vec::new();
        within_a_minute(&mut || {
            procs = tree(pid);
            procs.len() == 3
        });
        assert_eq!(procs.len(), 3, "{procs:?}");
        kill_tree(pid);
        let _ = child.wait();
        // A killed process is gone once the kernel has run its exit, which takes a busy
        // machine a while: wait for it rather than for a fixed time.
        within_a_minute(&mut || !any_alive(&procs[1..]));
        assert!(!any_alive(&procs[1..]), "grandchildren survive: {procs:?}");
    }
}
