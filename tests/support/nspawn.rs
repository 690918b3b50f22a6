//! A Debian root booted with its own systemd (`systemd-nspawn -b`), driven from the host
//! with `nsenter` into the container's namespaces. The container shares the host's
//! network, so services the test starts on 127.0.0.1 are reachable from inside.
//!
//! The nspawn process dies with the test thread (`setpriv --pdeathsig TERM`: nspawn then
//! powers the container off), and [`Container`]'s Drop powers it off and waits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Container {
    child: Child,
    leader: u32,
    log: PathBuf,
}

/// `(host path, path in the container)`.
pub type Bind<'a> = (&'a Path, &'a str);

impl Container {
    /// Boots `root` and waits until its systemd has finished starting up.
    pub fn boot(root: &Path, binds: &[Bind<'_>], log: &Path) -> Container {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "TERM", "--", "systemd-nspawn"])
            .args([
                "--keep-unit",
                "--register=no",
                "--quiet",
                "--console=passive",
            ])
            .arg("--boot")
            .arg("--directory")
            .arg(root);
        for (from, to) in binds {
            cmd.arg(format!("--bind={}:{to}", from.display()));
        }
        let out = File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // Its own process group: a terminal ^C goes to the test, whose Drop stops it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("systemd-nspawn (package systemd-container): {e}"));
        let mut c = Container {
            child,
            leader: 0,
            log: log.to_owned(),
        };
        let pid = c.child.id();
        // nspawn's first child is a helper that forks the container's init and exits.
        c.leader = c.wait_until("the container's init", Duration::from_secs(30), |_| {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
            let init: u32 = children.ok()?.split_whitespace().next()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{init}/comm")).ok()?;
            (comm.trim() == "systemd").then_some(init)
        });
        // Until its D-Bus and private socket are up, systemctl says nothing.
        let state = c.wait_until("systemd in the container", Duration::from_secs(60), |c| {
            let out = c.sh("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (!state.is_empty()).then_some(state)
        });
        assert!(
            state == "running" || state == "degraded",
            "the container's systemd did not start: {state}\n{}",
            c.log_text()
        );
        c
    }

    /// Runs `script` with `/bin/sh -c` inside the container (as root).
    pub fn sh(&self, script: &str) -> Output {
        // A clean environment, as a root shell in the container would have.
        Command::new("nsenter")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .args(["--target", &self.leader.to_string(), "--all"])
            .args(["/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("nsenter: {e}"))
    }

    /// [`sh`](Self::sh) that must succeed; its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        if !out.status.success() {
            let journal = self.sh("journalctl -b --no-pager -n 40");
            panic!(
                "in the container: `{script}` failed ({}):\n{}{}\nthe journal's end:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&journal.stdout)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One property of a unit (`systemctl show -p NAME --value`).
    pub fn property(&self, unit: &str, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// The unit's journal of this boot (`journalctl -u UNIT`, plus `args`).
    pub fn journal(&self, unit: &str, args: &str) -> String {
        self.ok(&format!("journalctl -b --no-pager -q -u {unit} {args}"))
    }

    /// Polls `f` every 200 ms until it gives a value; panics after `limit` naming `what`.
    pub fn wait_until<T>(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "waited {limit:?} for {what}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What nspawn printed (the container's console is passive: only nspawn's own lines).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.leader != 0 {
            let _ = self.sh("systemctl poweroff --no-block");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("the container did not power off in 30 s: killing it");
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            if self.leader != 0 {
                libc::kill(self.leader as i32, libc::SIGKILL);
            }
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
