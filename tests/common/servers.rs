//! Throwaway MariaDB, PostgreSQL and Redis servers for the integration tests: started from the
//! binaries on PATH, in temp dirs, on free ports, never the servers on this machine's standard
//! ports. Each is stopped (and its directory removed) when dropped; `stop` and `start` let a test
//! take a server away mid-run and bring it back on the same port with the same data.
#![allow(dead_code)] // each test binary uses its own server

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{free_port, require, wait_for, Guard};

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A TCP port that accepts connections (the kernel completes the handshake into the backlog) and
/// never says a word: a server that hangs.
pub struct SilentListener {
    listener: TcpListener,
    pub port: u16,
}

impl SilentListener {
    pub fn start() -> SilentListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        SilentListener { listener, port }
    }
}

/// A file holding `password` (as a secret mounted by a container would), in `dir`.
pub fn password_file(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join("password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

// ---------------------------------------------------------------------------------------- Redis

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    guard: Option<Guard>,
    binary: PathBuf,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let binary = require("redis-server", "apt-get install redis-server");
        require("redis-cli", "apt-get install redis-tools");
        let mut server = RedisServer {
            port: free_port(),
            dir: super::temp_dir(),
            guard: None,
            binary,
        };
        server.start_again();
        server
    }

    /// Starts the server (again) on its port.
    pub fn start_again(&mut self) {
        assert!(self.guard.is_none(), "redis is already running");
        let guard = Guard::spawn(
            Command::new(&self.binary)
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        self.guard = Some(guard);
        wait_for("redis to answer PING", Duration::from_secs(10), || {
            self.try_cli(&["PING"]).is_some_and(|o| o.trim() == "PONG")
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.kill();
        }
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs one command as the default user; its raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
