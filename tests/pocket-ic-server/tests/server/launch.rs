//! The launch protocol the clients rely on, tested on the binary itself: the version line, the exclusive port
//! file, the TTLs, signals, and a closed stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::SERVER;

/// A server launched for one test with its own port file; killed, and the file removed, when dropped.
struct Launched {
    child: Child,
    port_file: PathBuf,
    port: u16,
}

impl Launched {
    fn start(name: &str, extra: &[&str], stderr: Stdio) -> Self {
        let port_file = std::env::temp_dir().join(format!("pocket-ic-server-test-{}-{name}.port", std::process::id()));
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new(SERVER)
            .args(extra)
            .arg("--port-file")
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the server");
        let port = wait_for_port(&port_file);
        Self { child, port_file, port }
    }

    fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::get(format!("http://127.0.0.1:{}{path}", self.port)).expect("the server answers")
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.port_file);
    }
}

/// Waits for the port file to hold `"<port>\n"`, as the clients do.
fn wait_for_port(port_file: &Path) -> u16 {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(port_file) {
            if let Some(port) = text.strip_suffix('\n') {
                return port.parse().expect("the port file holds a port");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no port in {}",
            port_file.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the process to exit; `None` if it still runs after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn version_prints_the_line_the_client_checks() {
    let out = Command::new(SERVER).arg("--version").output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    // pocket-ic 16.1.0 wants `pocket-ic-server X.Y.Z` with 16.0.0 <= X.Y.Z < 17.
    assert_eq!(line, format!("pocket-ic-server {}\n", pocket_ic::LATEST_SERVER_VERSION));
    assert!(line.starts_with("pocket-ic-server 16."), "{line}");
}

#[test]
fn the_port_file_is_created_exclusively_and_holds_the_port() {
    let first = Launched::start("exclusive", &[], Stdio::null());
    assert!(first.get("/status").status().is_success());

    // A second server finds the file taken: it leaves it alone and exits at once, quietly and successfully.
    let mut second = Command::new(SERVER)
        .arg("--port-file")
        .arg(&first.port_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut second, Duration::from_secs(10));
    if status.is_none() {
        second.kill().unwrap();
    }
    let second = second.wait_with_output().unwrap();
    assert!(status.is_some_and(|s| s.success()), "{second:?}");
    assert!(second.stdout.is_empty() && second.stderr.is_empty(), "{second:?}");
    assert_eq!(
        std::fs::read_to_string(&first.port_file).unwrap(),
        format!("{}\n", first.port)
    );
}

#[test]
fn it_exits_after_the_idle_ttl_and_removes_its_port_file() {
    let mut server = Launched::start("ttl", &["--ttl", "1"], Stdio::null());
    assert!(server.get("/status").status().is_success());
    let status = wait_exit(&mut server.child, Duration::from_secs(15)).expect("the server outlived its TTL");
    assert!(status.success(), "{status}");
    assert!(!server.port_file.exists(), "the port file is left behind");
}

#[test]
fn requests_keep_it_alive_past_the_ttl() {
    let mut server = Launched::start("alive", &["--ttl", "2"], Stdio::null());
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert!(server.get("/status").status().is_success());
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = server.child.try_wait().unwrap();
    assert!(status.is_none(), "it exited while requests kept coming");
}

#[test]
fn the_hard_ttl_ends_it_even_when_busy() {
    let mut server = Launched::start("hard", &["--hard-ttl", "1"], Stdio::null());
    let start = Instant::now();
    while server.child.try_wait().unwrap().is_none() {
        let _ = reqwest::blocking::get(format!("http://127.0.0.1:{}/status", server.port));
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "still running past its hard TTL"
        );
    }
    assert!(!server.port_file.exists(), "the port file is left behind");
}

#[test]
fn sigterm_stops_it_and_removes_its_port_file() {
    let mut server = Launched::start("sigterm", &[], Stdio::null());
    // `@dfinity/pic` stops its server this way (`ChildProcess.kill()`).
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait_exit(&mut server.child, Duration::from_secs(10)).expect("SIGTERM did not stop it");
    assert!(status.success(), "{status}");
    assert!(!server.port_file.exists(), "the port file is left behind");
}

fn threads(server: &Launched) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", server.child.id()))
        .unwrap()
        .count()
}

#[test]
fn every_instance_runs_on_its_own_thread_which_deleting_it_ends() {
    let server = Launched::start("threads", &[], Stdio::null());
    let client = reqwest::blocking::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{}/{path}", server.port);
    let config = serde_json::json!({
        "subnet_config_set": { "system": [], "verified_application": [],
            "application": [{ "state_config": "New", "instruction_config": "Production" }] },
    });
    let idle = threads(&server);
    for _ in 0..3 {
        let created = client.post(url("instances")).json(&config).send().unwrap();
        assert_eq!(created.status(), 200, "{:?}", created.text());
    }
    assert_eq!(threads(&server), idle + 3);
    for id in 0..3 {
        assert_eq!(
            client.delete(url(&format!("instances/{id}"))).send().unwrap().status(),
            200
        );
        // The instance's thread, which owned its replica, has ended when the deletion is answered.
        assert_eq!(threads(&server), idle + 2 - id);
    }
}

#[test]
fn a_closed_stderr_does_not_stop_it() {
    let mut server = Launched::start("stderr", &[], Stdio::piped());
    // Close the reading end, as a client does when it drops the server's output stream.
    drop(server.child.stderr.take());
    // Error answers are logged to stderr; each write now fails with EPIPE.
    for _ in 0..3 {
        assert_eq!(server.get("/no/such/endpoint").status(), 404);
    }
    assert!(server.get("/status").status().is_success());
    assert!(server.child.try_wait().unwrap().is_none(), "the server died");
}
