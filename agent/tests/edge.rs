//! The process edge through the built binary (issue 9 items 4, 7, 8, 9): the health server
//! under an idle-connection flood with a small descriptor limit, signals at any moment
//! (SIGHUP never kills, bursts coalesce, SIGTERM ends cleanly), and every exit code the
//! binary can produce in a test, checked against the documented table.
//!
//! reference: docs/threat-model.md rules 6 (bounded listeners), 7 (signals), 10 (exit codes).
//!
//! `KEYVAULT_AGENT_TEST_BIN` runs these tests against another build of the binary (that is
//! how they were shown to fail on the previous main).
//!
//! Waits are conditions with a generous failure bound, never latency assertions. The one
//! exception is the SIGHUP burst test, which must show that *nothing more* happens: it
//! watches for a few seconds after the burst has been handled (an absence cannot be awaited).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyvault_emulator::{Fault, FaultKind, Route};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::util::{Harness, http_get as get};

/// The binary under test.
fn binary() -> String {
    std::env::var("KEYVAULT_AGENT_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_keyvault-agent").to_owned())
}

/// Failure bound of every wait.
const BOUND: Duration = Duration::from_secs(60);

/// A running agent whose JSON log lines are collected as they come.
struct Agent {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Collects stderr until EOF.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Spawns the binary with the harness's workload identity; with `nofile`, under that
    /// descriptor limit (through `sh -c 'ulimit -n N; exec ...'`).
    fn spawn(h: &Harness, args: &[&str], nofile: Option<u64>) -> Agent {
        let bin = binary();
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
            None => tokio::process::Command::new(bin),
        };
        cmd.env_clear()
            .envs(h.wi_env())
            .env("SSL_CERT_FILE", h.emu.ca_file())
            .env("KEYVAULT_AGENT_LOG", "info")
            .env("KEYVAULT_AGENT_LOG_FORMAT", "json")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn keyvault-agent");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            let mut rd = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = rd.next_line().await {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                sink.lock().unwrap().push(v);
            }
        });
        Agent {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("running") as i32).unwrap()
    }

    fn signal(&self, sig: Signal) {
        kill_process(self.pid(), sig).unwrap();
    }

    /// Waits until the process has a second thread. In the agent the first thread `main`
    /// starts is the signal forwarder, spawned right after the handlers are registered; on
    /// main (before the fix) it was a runtime worker, started well before any handler. No
    /// code in the process can run before the dynamic loader and the Rust runtime, so a
    /// signal sent between `exec` and `main` still takes its default action: this marks the
    /// earliest moment the agent can answer for.
    async fn started(&mut self) {
        if !self.started_or_exited().await {
            panic!("the agent exited while starting:\n{}", self.log());
        }
    }

    /// Waits until the signal handlers are installed (the forwarder thread exists); false
    /// when the process exited first (e.g. `check` refusing its input at once).
    async fn started_or_exited(&mut self) -> bool {
        let status = format!("/proc/{}/status", self.pid().as_raw_nonzero());
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let threads = std::fs::read_to_string(&status)
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Threads:"))
                        .and_then(|n| n.trim().parse::<u32>().ok())
                })
                .unwrap_or(0);
            if threads >= 2 {
                return true;
            }
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(tokio::time::Instant::now() < deadline, "never started");
            tokio::task::yield_now().await;
        }
    }

    fn count(&self, message: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["message"] == message)
            .count()
    }

    fn log(&self) -> String {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for a log line with `message`; fails at once if the process exits.
    async fn line(&mut self, message: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l["message"] == message)
            {
                return l.clone();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the agent exited ({status:?}) before logging {message:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never logged {message:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit and for the last log line.
    async fn exit(&mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(BOUND, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the agent did not exit:\n{}", self.log()))
            .unwrap();
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(BOUND, reader).await;
        }
        status
    }
}

fn sidecar_args<'a>(config: &'a str, dir: &'a str, listen: &'a str) -> Vec<&'a str> {
    vec![
        "--config",
        config,
        "--dir",
        dir,
        "--listen",
        listen,
        // Only signals cause a refresh within these tests.
        "--interval",
        "1h",
    ]
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns how many connections this
/// process can hold open for the flood (at most `wanted`).
fn flood_size(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let n = wanted.min(usize::try_from(soft.saturating_sub(512)).unwrap_or(usize::MAX));
    if n < wanted {
        eprintln!("RLIMIT_NOFILE {soft}: flooding with {n} connections instead of {wanted}");
    }
    n
}

// reference: docs/threat-model.md rule 6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_leaves_healthz_answering_and_the_refresh_unaffected() {
    let h = Harness::start().await;
    let config = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let (config, dir) = (config.display().to_string(), h.dir.display().to_string());
    // 1,024 descriptors, a common container default: on main ~1,000 idle sockets used them
    // all, /healthz went unanswered and the refresh failed with EMFILE.
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    let mut agent = Agent::spawn(
        &h,
        &sidecar_args(&config, &dir, "127.0.0.1:0"),
        Some(hard.min(1024)),
    );
    let listening = agent.line("health server listening").await;
    let addr: SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();
    agent.line("first sync published").await;

    let flood = flood_size(1500);
    let mut idle = Vec::with_capacity(flood);
    for i in 0..flood {
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(s)) => idle.push(s),
            other => panic!("connection {i} of the flood failed: {other:?}"),
        }
    }

    let started = std::time::Instant::now();
    let (code, body) = tokio::time::timeout(Duration::from_secs(10), get(addr, "/healthz"))
        .await
        .expect("/healthz unanswered under the flood");
    eprintln!(
        "binary, RLIMIT_NOFILE 1024: /healthz under {flood} idle connections: HTTP {code} in {:?}",
        started.elapsed()
    );
    assert_eq!(code, 200, "{body}");

    // The refresh still has descriptors for its own requests.
    h.emu
        .set_secret("demo", "db-password", "rotated-under-flood", None);
    agent.signal(Signal::HUP);
    let deadline = tokio::time::Instant::now() + BOUND;
    while std::fs::read_to_string(h.dir.join("db-password"))
        .ok()
        .as_deref()
        != Some("rotated-under-flood")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refresh under the flood:\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_, metrics) = get(addr, "/metrics").await;
    let open = metric(&metrics, "keyvault_agent_health_connections");
    let limit = metric(&metrics, "keyvault_agent_health_connections_limit");
    assert!(open <= limit && limit <= 64.0, "open {open}, limit {limit}");
    assert!(
        metric(&metrics, "keyvault_agent_health_connections_evicted_total")
            >= (flood as f64 - limit),
        "{metrics}"
    );
    let log = agent.log();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);

    agent.signal(Signal::TERM);
    assert_eq!(agent.exit().await.code(), Some(0), "{}", agent.log());
}

// reference: docs/threat-model.md rule 7 (SIGHUP before the first sync never kills)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_at_startup_never_kills_and_sigterm_then_exits_zero() {
    let h = Harness::start().await;
    // The first sync cannot finish: every secret read fails.
    h.emu
        .add_fault(Fault::new(Route::SecretGet, FaultKind::Status(503)));
    let config = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let (config, dir) = (config.display().to_string(), h.dir.display().to_string());
    let mut args = sidecar_args(&config, &dir, "off");
    args.extend(["--timeout", "2s", "--request-timeout", "1s"]);
    let mut agent = Agent::spawn(&h, &args, None);
    // As soon as `main` runs: on main the handler came only after the runtime and the
    // configuration, and SIGHUP's default action killed the process.
    agent.started().await;
    agent.signal(Signal::HUP);
    agent.signal(Signal::HUP);
    agent.line("first sync failed; not ready, retrying").await;
    agent.signal(Signal::HUP);
    assert!(agent.child.try_wait().unwrap().is_none(), "{}", agent.log());
    agent.signal(Signal::TERM);
    let status = agent.exit().await;
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", agent.log());
}

// reference: docs/threat-model.md rule 7 (SIGTERM in the first millisecond is a clean stop)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_at_startup_ends_the_sidecar_with_zero() {
    let h = Harness::start().await;
    let config = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let (config, dir) = (config.display().to_string(), h.dir.display().to_string());
    let mut agent = Agent::spawn(&h, &sidecar_args(&config, &dir, "off"), None);
    agent.started().await;
    agent.signal(Signal::HUP);
    agent.signal(Signal::TERM);
    let status = agent.exit().await;
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", agent.log());
}

// reference: docs/threat-model.md rule 7 (in --once, SIGHUP is ignored)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_ignores_sighup_and_ends_with_its_own_exit_code() {
    let h = Harness::start().await;
    h.emu
        .add_fault(Fault::new(Route::SecretGet, FaultKind::Status(503)));
    let config = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let (config, dir) = (config.display().to_string(), h.dir.display().to_string());
    let mut agent = Agent::spawn(
        &h,
        &[
            "--config",
            &config,
            "--dir",
            &dir,
            "--once",
            "--timeout",
            "3s",
            "--request-timeout",
            "1s",
        ],
        None,
    );
    agent.started().await;
    for _ in 0..5 {
        agent.signal(Signal::HUP);
    }
    let status = agent.exit().await;
    // 6: unavailable until the deadline, as without the signals.
    assert_eq!(status.code(), Some(6), "{status:?}\n{}", agent.log());
}

// reference: docs/threat-model.md rules 7 and 10 (--once stopped by SIGTERM: documented 143)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_stopped_by_sigterm_exits_143_and_publishes_nothing() {
    let h = Harness::start().await;
    h.emu.add_fault(Fault::new(
        Route::SecretGet,
        FaultKind::Latency(Duration::from_secs(120)),
    ));
    let config = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let (config, dir) = (config.display().to_string(), h.dir.display().to_string());
    let mut agent = Agent::spawn(&h, &["--config", &config, "--dir", &dir, "--once"], None);
    let deadline = tokio::time::Instant::now() + BOUND;
    while h.emu.counts().route(Route::SecretGet) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{}", agent.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.signal(Signal::TERM);
    let status = agent.exit().await;
    assert_eq!(status.code(), Some(143), "{status:?}\n{}", agent.log());
    assert!(
        agent.log().contains("stopped by SIGTERM"),
        "{}",
        agent.log()
    );
    assert!(!h.dir.join("..data").exists());
}

// reference: docs/threat-model.md rules 7 and 10 (`check` stopped by SIGTERM: documented 143)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_stuck_on_a_fifo_stops_on_sigterm_with_143() {
    let h = Harness::start().await;
    // A configuration "file" nobody writes: reading it blocks.
    let fifo = h.tmp.path().join("spc-fifo.yaml");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let fifo = fifo.display().to_string();
    let mut agent = Agent::spawn(&h, &["check", "--config", &fifo], None);
    // `check` may refuse the FIFO (exit 3) before a signal can be sent: either is correct.
    if agent.started_or_exited().await {
        agent.signal(Signal::TERM);
    }
    let status = agent.exit().await;
    // Refused at once as not a regular file, or stopped by the signal: never stuck.
    assert!(
        matches!(status.code(), Some(143) | Some(3)),
        "{status:?}\n{}",
        agent.log()
    );
}

// reference: docs/threat-model.md rule 7 (a SIGHUP burst of any size: at most one more reload)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sighups_causes_at_most_two_refreshes() {
    let h = Harness::start().await;
    let config = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let (config, dir) = (config.display().to_string(), h.dir.display().to_string());
    let mut agent = Agent::spawn(&h, &sidecar_args(&config, &dir, "off"), None);
    agent.line("first sync published").await;
    let pid = agent.pid();
    // 1,000 SIGHUPs half a millisecond apart, as a `kill` loop would send them: the kernel
    // merges only signals that arrive while one is pending, so most are delivered. Main ran
    // one refresh per delivered SIGHUP that found the loop idle (dozens).
    tokio::task::spawn_blocking(move || {
        for _ in 0..1000 {
            kill_process(pid, Signal::HUP).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
    })
    .await
    .unwrap();
    agent.line("refresh done").await;
    // Give any backlog time to show (an absence cannot be awaited).
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.signal(Signal::TERM);
    assert_eq!(agent.exit().await.code(), Some(0), "{}", agent.log());
    let refreshes = agent.count("refresh done");
    eprintln!("1,000 SIGHUPs caused {refreshes} refresh(es)");
    assert!(
        (1..=2).contains(&refreshes),
        "{refreshes} refreshes for one burst:\n{}",
        agent.log()
    );
}

// reference: docs/threat-model.md rule 10 (a --listen bind failure has its own documented code)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_address_in_use_exits_9_naming_the_flag() {
    let h = Harness::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let (config, dir) = (config.display().to_string(), h.dir.display().to_string());
    let mut agent = Agent::spawn(&h, &sidecar_args(&config, &dir, &addr), None);
    let status = agent.exit().await;
    assert_eq!(status.code(), Some(9), "{status:?}\n{}", agent.log());
    let log = agent.log();
    assert!(
        log.contains(&format!("--listen {addr}: cannot bind the health server")),
        "{log}"
    );
}

// reference: docs/threat-model.md rule 9 (no plain http off the pod unless told)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_hook_off_loopback_is_a_configuration_error() {
    let h = Harness::start().await;
    let config = h.spc(&["objectName: db-password\nobjectType: secret"], &[]);
    let (config, dir) = (config.display().to_string(), h.dir.display().to_string());
    let mut args = sidecar_args(&config, &dir, "off");
    args.extend([
        "--on-change-http",
        "http://hooks.example.com/reload?token=abc",
    ]);
    let mut agent = Agent::spawn(&h, &args, None);
    let status = agent.exit().await;
    let log = agent.log();
    assert_eq!(status.code(), Some(3), "{status:?}\n{log}");
    assert!(
        log.contains("--on-change-http http://hooks.example.com/reload")
            && log.contains("--on-change-http-insecure"),
        "{log}"
    );
    assert!(!log.contains("token=abc"), "{log}");
}

// reference: docs/threat-model.md rule 10 (one table: error.rs, README, --help)
#[test]
fn the_exit_code_table_is_the_same_in_the_code_the_readme_and_help() {
    use keyvault_agent::error::EXIT_CODES;
    let documented: Vec<i32> = EXIT_CODES.iter().map(|(c, _)| *c).collect();

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Exit codes")
        .nth(1)
        .expect("README has an Exit codes section");
    let section = section.split("\n## ").next().unwrap();
    let mut in_readme: Vec<i32> = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| ")) {
        let first = row
            .trim_start_matches("| ")
            .split(" |")
            .next()
            .unwrap_or("");
        for c in first.split(',') {
            if let Ok(c) = c.trim().parse() {
                in_readme.push(c);
            }
        }
    }
    assert_eq!(in_readme, documented, "README exit-code table");

    let help = std::process::Command::new(binary())
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let codes = help
        .split("Exit codes:")
        .nth(1)
        .expect("--help lists exit codes");
    let mut in_help: Vec<i32> = Vec::new();
    for line in codes
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
    {
        let first = line.split("  ").next().unwrap_or("");
        for c in first.split(',') {
            if let Ok(c) = c.trim().parse() {
                in_help.push(c);
            }
        }
    }
    assert_eq!(in_help, documented, "--help exit codes:\n{help}");
}
