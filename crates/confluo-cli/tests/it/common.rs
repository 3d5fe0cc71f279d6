//! A throwaway project and helpers to run `confluo` in it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub struct TestProject {
    pub dir: tempfile::TempDir,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_confluo")
}

impl TestProject {
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// A project whose confluo.yaml ends with `extra`.
    pub fn with_config(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!("name: test\n{extra}");
        std::fs::write(dir.path().join("confluo.yaml"), yaml).unwrap();
        TestProject { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// `confluo serve ARGS` in the background, its output in serve.log; returns once
    /// something listens on `port` (which ARGS made it listen on).
    pub fn serve(&self, args: &[&str], port: u16) -> Child {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let log = std::fs::File::create(self.path("serve.log")).unwrap();
        let child = self
            .command(&all)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn confluo serve");
        wait_for_port(port, std::time::Duration::from_secs(30), "confluo serve");
        child
    }

    /// `confluo sync <entry> --continuous --quiet` in the background.
    pub fn spawn_sync(&self, entry: &str) -> Child {
        self.command(&["sync", entry, "--continuous", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn confluo")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        command_in(self.dir.path(), args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run confluo")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    /// Runs and expects failure; returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "confluo {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Query rows as CSV fields (header dropped).
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self.ok(&["query", sql, "--format", "csv"]);
        parse_csv(&out).into_iter().skip(1).collect()
    }

    /// A single value.
    pub fn scalar(&self, sql: &str) -> String {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "expected one row from {sql}: {rows:?}");
        rows[0][0].clone()
    }

    /// Ingest with `--json`, returning the summary.
    pub fn ingest(&self, path: &Path, table: &str, extra: &[&str]) -> serde_json::Value {
        let p = path.to_str().unwrap();
        let mut args = vec!["ingest", p, "--into", table, "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(self.ok(&args).trim()).expect("ingest summary")
    }
}

/// `confluo --project dir --quiet args...`, ignoring any CONFLUO_PROJECT of the caller.
pub fn command_in(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--project").arg(dir).arg("--quiet").args(args);
    c.env_remove("CONFLUO_PROJECT");
    c
}

/// The stdout of a `confluo` run that must have succeeded (else both outputs in the panic).
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "confluo {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A minimal CSV reader for test output (quotes and doubled quotes).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_q = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_q) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => in_q = false,
            ('"', false) => in_q = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// The Python interpreter with `deltalake` (set up by scripts/test.sh).
pub fn python() -> String {
    let py = std::env::var("CONFLUO_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import deltalake, pyarrow"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{py} cannot import deltalake and pyarrow; run the tests with scripts/test.sh (it installs them) or set CONFLUO_PYTHON"
    );
    py
}

/// Runs a Python script and returns its stdout.
///
/// The script ends with a flushed `os._exit(0)`: the deltalake binding can abort while the
/// interpreter tears down its runtime threads ("terminate called without an active
/// exception", delta-io/delta-rs#2184), after the script's work is done. An exception in the
/// script itself still exits non-zero before reaching that line.
pub fn run_python(script: &str) -> String {
    let script = format!(
        "{script}\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_sys.stderr.flush()\n_os._exit(0)\n"
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A deterministic CSV of `rows` orders starting at id `start`.
pub fn orders_csv(start: u64, rows: u64) -> String {
    let mut s = String::from("order_id,customer_id,amount,status,order_date\n");
    for i in start..start + rows {
        s.push_str(&format!(
            "{i},{},{}.{:02},{},2025-{:02}-{:02}\n",
            i % 97,
            i % 1000,
            i % 100,
            ["new", "paid", "shipped"][(i % 3) as usize],
            1 + i % 12,
            1 + i % 28
        ));
    }
    s
}

/// A TCP port on 127.0.0.1 nothing listens on now, for a server a test starts itself.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// What an HTTP receiver got: each request's headers (lower-case names) and body.
pub type Received =
    std::sync::Arc<std::sync::Mutex<Vec<(std::collections::BTreeMap<String, String>, String)>>>;

/// An HTTP receiver on a free port: records each request's headers and body and answers
/// 200. With `fail_first`, the first request gets 503 (and is not recorded), so a sender's
/// retry shows.
pub fn receiver(fail_first: bool) -> (u16, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Default::default();
    let seen = got.clone();
    std::thread::spawn(move || {
        let mut first = fail_first;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = std::collections::BTreeMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let status = if first {
                "503 Service Unavailable"
            } else {
                seen.lock()
                    .unwrap()
                    .push((headers, String::from_utf8(body).unwrap()));
                "200 OK"
            };
            first = false;
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (port, got)
}

/// A real SMTP server (aiosmtpd, installed by scripts/setup-python.sh) delivering into a
/// Maildir; stopped when dropped.
pub struct SmtpServer {
    pub port: u16,
    pub maildir: PathBuf,
    child: Child,
    _root: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        let port = free_port();
        let root = tempfile::tempdir().unwrap();
        // A folder of its own: aiosmtpd creates the Maildir only when the folder is new.
        let maildir = root.path().join("mail");
        let child = Command::new(python())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
                maildir.to_str().unwrap(),
            ])
            .spawn()
            .expect("start aiosmtpd (scripts/setup-python.sh installs it)");
        wait_for_port(port, std::time::Duration::from_secs(20), "aiosmtpd");
        SmtpServer {
            port,
            maildir,
            child,
            _root: root,
        }
    }

    /// The messages delivered so far.
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.maildir.join("new"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`; `what` names it if it
/// does not within `within`.
pub fn wait_for_port(port: u16, within: std::time::Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The exactly-once check of a replayable stream: orders 1..=`total` (`order(id)`) are
/// `publish`ed in chunks of 500–1,499 at random moments while `sync --continuous` of entry
/// `ev` runs into `bronze.events`; the source is `bounce`d (stopped and started) once half-way,
/// and the sync SIGKILLed at random between chunks and started again. Then SIGTERM must stop
/// it cleanly, and after one more sync every order is in the table exactly once. `publish`
/// gets a random number for its own use (a partition, say).
pub fn exactly_once_through_kills<S>(
    p: &TestProject,
    source: &mut S,
    total: u64,
    order: fn(u64) -> Vec<u8>,
    mut publish: impl FnMut(&S, &[Vec<u8>], u64),
    mut bounce: impl FnMut(&mut S),
) {
    let mut kills = 0;
    let mut next = 1u64;
    let mut sync = p.spawn_sync("ev");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut bounced = false;
    while next <= total {
        let n = (500 + rand(1000)).min(total - next + 1);
        let batch: Vec<Vec<u8>> = (next..next + n).map(order).collect();
        publish(source, &batch, rand(1 << 16));
        next += n;
        std::thread::sleep(std::time::Duration::from_millis(rand(300)));
        if !bounced && next > total / 2 {
            // The source goes away and comes back; the sync rides it out.
            bounce(source);
            bounced = true;
        } else if rand(3) == 0 {
            // SIGKILL at a random moment, then start again.
            unsafe { libc::kill(sync.id() as i32, libc::SIGKILL) };
            let _ = sync.wait();
            kills += 1;
            sync = p.spawn_sync("ev");
        }
    }
    assert!(kills >= 3, "only {kills} kills");
    // SIGTERM stops the continuous run cleanly.
    std::thread::sleep(std::time::Duration::from_secs(2));
    unsafe { libc::kill(sync.id() as i32, libc::SIGTERM) };
    let status = sync.wait().unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");
    p.ok(&["sync", "ev"]);
    assert_eq!(
        p.scalar("SELECT count(*) FROM bronze.events"),
        total.to_string()
    );
    assert_eq!(
        p.scalar("SELECT count(DISTINCT id) FROM bronze.events"),
        total.to_string()
    );
    assert_eq!(
        p.scalar("SELECT min(id) || '..' || max(id) FROM bronze.events"),
        format!("1..{total}")
    );
}
