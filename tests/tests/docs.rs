//! Documentation that runs (issue 14): every shell block of `README.md`, `docs/policies.md`
//! and `docs/operations.md` (when it exists) runs as written, in order, against a fresh
//! federation, and the first command that fails fails this test with the file, the line and
//! the command.
//!
//! The conventions a document follows (write new documents to them):
//!
//! - A fenced block tagged `sh` (or `bash`, `shell`) is run; every other block (`text` for a
//!   transcript of output, `toml`, `json`, untagged) never is. Show output as ```text, never as
//!   ```sh.
//! - Each document runs in its own fresh temporary directory as one `bash -Eeuo pipefail`
//!   session: its blocks in order, so shell variables, `export`s, `cd`s and background jobs
//!   carry from one block to the next, and a command that fails (a non-zero exit outside an
//!   `if`/`until`/`||`) stops the document. Write a command whose non-zero exit is expected as
//!   `cmd || test $? -eq 3`.
//! - The directory looks like the repository's root to the commands: `examples/` and `deploy/`
//!   are there (links to the repository's), and `target/release/` holds `ftzctl` and `ftz-node`
//!   as this test built them, so `export PATH="$PWD/target/release:$PATH"` and
//!   `deploy/local/run-federation.sh` work as written. Nothing else of the repository is.
//! - A document starts the federation it needs, as a reader would (`ftzctl dev init` and
//!   `ftz-node ... &`, or `deploy/local/run-federation.sh`), on the ports those use (7443 and
//!   7543 and up): the documents run one after another, never at the same time. Every process
//!   the session starts stays in its process group, which is stopped (SIGTERM, then SIGKILL)
//!   when the document ends, passed or failed.
//! - A block that cannot run here (it builds the workspace, runs the whole test suite, serves
//!   until Ctrl-C, or needs root and a package install) is skipped only by a marker on the line
//!   right above its fence, with the reason: `<!-- docs-test: skip (why) -->`. A marker
//!   without a reason, or any other `docs-test:` marker, fails the test. Every skip is listed
//!   in the test's output.
//! - A document has [`DOC_TIMEOUT`] to run.
//!
//! Also checked: the policy spec shown in `docs/policies.md` is `examples/policies/sh-hn-industry.toml`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fmt::Write as _,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

/// How long one document may take (its federation's start included).
const DOC_TIMEOUT: Duration = Duration::from_secs(240);

/// The documents whose shell blocks run, in this order; `optional` ones are run when present.
const DOCS: &[(&str, bool)] = &[("README.md", false), ("docs/policies.md", false), ("docs/operations.md", true)];

/// The fence tags that run.
const SHELL_TAGS: &[&str] = &["sh", "bash", "shell"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

#[derive(Debug, PartialEq)]
struct Block {
    /// 1-based line of the first command (the line after the opening fence).
    line: usize,
    lines: Vec<String>,
}

#[derive(Debug, PartialEq)]
struct Skip {
    line: usize,
    reason: String,
}

#[derive(Debug, Default, PartialEq)]
struct Extracted {
    run: Vec<Block>,
    skipped: Vec<Skip>,
}

/// The shell blocks of a Markdown text, and the skipped ones with their reasons; an error for
/// a marker that is malformed or not right above a shell block's fence.
fn extract(text: &str) -> Result<Extracted, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Extracted::default();
    let mut pending: Option<Skip> = None;
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let indent = lines[i].len() - trimmed.len();
        if let Some(rest) = trimmed.strip_prefix("<!--").filter(|r| r.trim_start().starts_with("docs-test:")) {
            let body = rest.trim_start().trim_start_matches("docs-test:").trim();
            let body =
                body.strip_suffix("-->").ok_or_else(|| format!("line {}: marker must end with -->", i + 1))?.trim();
            let reason = body
                .strip_prefix("skip")
                .map(str::trim)
                .and_then(|r| r.strip_prefix('('))
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
                .ok_or_else(|| format!("line {}: the only marker is `<!-- docs-test: skip (reason) -->`", i + 1))?;
            if reason.is_empty() {
                return Err(format!("line {}: a skip marker needs its reason in the parentheses", i + 1));
            }
            pending = Some(Skip { line: i + 1, reason: reason.to_string() });
            i += 1;
            continue;
        }
        let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        let Some(fence) = fence else {
            if let Some(p) = &pending {
                return Err(format!("line {}: a skip marker must be right above a shell block's fence", p.line));
            }
            i += 1;
            continue;
        };
        let tag = trimmed[fence.len()..].split_whitespace().next().unwrap_or("");
        let start = i + 1;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with(fence) {
            // Strip the fence's own indentation (a block inside a list item).
            let l = lines[i];
            let cut = l.len() - l.trim_start().len();
            body.push(l[cut.min(indent)..].to_string());
            i += 1;
        }
        if i == lines.len() {
            return Err(format!("line {start}: a fence that is never closed"));
        }
        i += 1;
        let shell = SHELL_TAGS.contains(&tag);
        match pending.take() {
            Some(skip) if shell => out.skipped.push(skip),
            Some(skip) => {
                return Err(format!("line {}: a skip marker above a block that never runs ({tag:?})", skip.line));
            }
            None if shell => out.run.push(Block { line: start + 1, lines: body }),
            None => {}
        }
    }
    if let Some(p) = pending {
        return Err(format!("line {}: a skip marker must be right above a shell block's fence", p.line));
    }
    Ok(out)
}

/// The bash script of a document's blocks, and for each of its lines the document's line.
fn script(doc: &str, blocks: &[Block]) -> (String, Vec<Option<usize>>) {
    let mut s = String::new();
    let mut map = vec![None];
    let mut push = |s: &mut String, line: &str, doc_line: Option<usize>| {
        s.push_str(line);
        s.push('\n');
        map.push(doc_line);
    };
    // The first failing command, reported once (with -E the trap also fires in the shells
    // around it).
    push(
        &mut s,
        r#"trap 'rc=$?; if [ -z "${__docs_failed:-}" ]; then __docs_failed=1; printf "\n__DOCS_TEST_FAILED__ %s %s\n" "$LINENO" "$BASH_COMMAND" >&2; fi; exit $rc' ERR"#,
        None,
    );
    for b in blocks {
        push(&mut s, &format!("printf '\\n==== %s:%s\\n' '{doc}' '{}'", b.line), None);
        for (k, l) in b.lines.iter().enumerate() {
            push(&mut s, l, Some(b.line + k));
        }
    }
    (s, map)
}

/// Where `cargo` put this test: `target/<profile>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).expect("the test runs from target/<profile>/deps").to_path_buf()
}

fn newest_source(dir: &Path, newest: &mut SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                newest_source(&p, newest);
            }
        } else if (name.ends_with(".rs") || name.ends_with(".proto") || name == "Cargo.toml")
            && let Ok(m) = e.metadata().and_then(|m| m.modified())
        {
            *newest = (*newest).max(m);
        }
    }
}

/// `ftzctl` and `ftz-node` of this build: used as they are when both are newer than every
/// source file, built with cargo (same profile) otherwise (only this package's binaries are
/// built for a `cargo nextest run -p ftz-tests`).
fn binaries() -> PathBuf {
    let dir = profile_dir();
    let root = repo();
    let mut newest = SystemTime::UNIX_EPOCH;
    for d in ["crates", "proto"] {
        newest_source(&root.join(d), &mut newest);
    }
    for f in ["Cargo.toml", "Cargo.lock"] {
        if let Ok(m) = std::fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    let fresh = ["ftzctl", "ftz-node"]
        .iter()
        .all(|b| std::fs::metadata(dir.join(b)).and_then(|m| m.modified()).is_ok_and(|m| m >= newest));
    if !fresh {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root).args(["build", "--locked", "-q", "-p", "ftzctl", "-p", "ftz-node"]);
        cmd.arg("--target-dir").arg(dir.parent().unwrap());
        let profile = dir.file_name().unwrap().to_string_lossy().into_owned();
        if profile != "debug" {
            cmd.args(["--profile", &profile]);
        }
        let st = cmd.status().unwrap_or_else(|e| panic!("cannot run {cargo} to build ftzctl and ftz-node: {e}"));
        assert!(st.success(), "building ftzctl and ftz-node failed ({st}): `cargo build -p ftzctl -p ftz-node`");
    }
    dir
}

/// The session's process group: stopped when the document is done, whatever happened.
struct Session {
    child: Child,
}

impl Session {
    fn signal(&self, sig: &str) -> bool {
        Command::new("kill")
            .args([sig, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.signal("-TERM") {
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until && self.signal("-0") {
                std::thread::sleep(Duration::from_millis(100));
            }
            self.signal("-KILL");
        }
    }
}

/// Runs one document's blocks; `Err` says where and why it failed.
fn run_doc(doc: &str, bin: &Path, report: &mut String) -> Result<(), String> {
    let text = std::fs::read_to_string(repo().join(doc)).map_err(|e| format!("{doc}: {e}"))?;
    run_text(doc, &text, bin, report)
}

/// Runs the blocks of `text` (the document `doc`).
fn run_text(doc: &str, text: &str, bin: &Path, report: &mut String) -> Result<(), String> {
    let ex = extract(text).map_err(|e| format!("{doc}: {e}"))?;
    for s in &ex.skipped {
        writeln!(report, "  skipped {doc}:{}: {}", s.line, s.reason).unwrap();
    }
    let lines: usize = ex.run.iter().map(|b| b.lines.len()).sum();
    writeln!(report, "  {doc}: {} block(s), {lines} line(s) run", ex.run.len()).unwrap();
    if ex.run.is_empty() {
        return Ok(());
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for d in ["examples", "deploy"] {
        std::os::unix::fs::symlink(repo().join(d), w.join(d)).unwrap();
    }
    std::fs::create_dir_all(w.join("target/release")).unwrap();
    for b in ["ftzctl", "ftz-node"] {
        std::os::unix::fs::symlink(bin.join(b), w.join("target/release").join(b)).unwrap();
    }
    let (body, map) = script(doc, &ex.run);
    let script_path = w.join(".docs-test.sh");
    std::fs::write(&script_path, body).unwrap();
    let log_path = w.join(".docs-test.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new("bash")
        .args(["-Eeuo", "pipefail"])
        .arg(&script_path)
        .current_dir(w)
        .env("HOME", w)
        .env_remove("FTZ_PROFILE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("bash runs the documents' blocks");
    let mut session = Session { child };
    let started = Instant::now();
    let status = loop {
        if let Some(st) = session.child.try_wait().unwrap() {
            break Some(st);
        }
        if started.elapsed() > DOC_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(session);
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    let tail = |out: &str| {
        let v: Vec<&str> = out.lines().collect();
        v[v.len().saturating_sub(60)..].join("\n")
    };
    match status {
        Some(st) if st.success() => {
            writeln!(report, "  {doc}: passed in {:.1} s", started.elapsed().as_secs_f64()).unwrap();
            Ok(())
        }
        Some(st) => {
            let (at, command) = out
                .lines()
                .find_map(|l| l.strip_prefix("__DOCS_TEST_FAILED__ "))
                .and_then(|l| l.split_once(' '))
                .map(|(n, c)| {
                    let line = n.parse::<usize>().ok().and_then(|n| map.get(n).copied().flatten());
                    (line.map_or_else(|| "?".to_string(), |l| l.to_string()), c.to_string())
                })
                .unwrap_or_else(|| ("?".into(), "(the shell ended)".into()));
            Err(format!("{doc}:{at}: `{command}` failed ({st}); the session's last lines:\n{}", tail(&out)))
        }
        None => Err(format!("{doc}: not done after {DOC_TIMEOUT:?}; the session's last lines:\n{}", tail(&out))),
    }
}

#[test]
fn every_shell_block_of_the_documentation_runs_as_written() {
    let bin = binaries();
    let mut report = String::from("docs that run:\n");
    let mut result = Ok(());
    for (doc, optional) in DOCS {
        if *optional && !repo().join(doc).exists() {
            writeln!(report, "  {doc}: not there (yet)").unwrap();
            continue;
        }
        result = run_doc(doc, &bin, &mut report);
        if result.is_err() {
            break;
        }
    }
    println!("{report}");
    if let Err(e) = result {
        panic!("{report}\n{e}");
    }
}

/// What docs/policies.md shows as the spec is the example file that its commands use.
#[test]
fn the_policy_spec_in_docs_policies_md_is_the_example_file() {
    let text = std::fs::read_to_string(repo().join("docs/policies.md")).unwrap();
    let start = text.find("```toml\n").expect("docs/policies.md shows a TOML spec") + "```toml\n".len();
    let end = start + text[start..].find("```").unwrap();
    let shown: toml::Table = text[start..end].parse().expect("the spec in docs/policies.md is TOML");
    let file: toml::Table = std::fs::read_to_string(repo().join("examples/policies/sh-hn-industry.toml"))
        .unwrap()
        .parse()
        .expect("examples/policies/sh-hn-industry.toml is TOML");
    assert_eq!(shown, file, "docs/policies.md's spec and examples/policies/sh-hn-industry.toml differ");
}

#[test]
fn blocks_and_skip_markers_are_read_as_the_conventions_say() {
    let md = "intro\n```sh\necho one\n  echo two\n```\n```text\n$ not run\n```\n\
              <!-- docs-test: skip (serves until Ctrl-C) -->\n```sh\nsleep infinity\n```\n\
              - item\n\n  ```bash\n  echo three\n  ```\n";
    let ex = extract(md).unwrap();
    assert_eq!(
        ex.run,
        vec![
            Block { line: 3, lines: vec!["echo one".into(), "  echo two".into()] },
            Block { line: 16, lines: vec!["echo three".into()] },
        ]
    );
    assert_eq!(ex.skipped, vec![Skip { line: 9, reason: "serves until Ctrl-C".into() }]);

    for (bad, why) in [
        ("<!-- docs-test: skip () -->\n```sh\nx\n```\n", "needs its reason"),
        ("<!-- docs-test: skip -->\n```sh\nx\n```\n", "the only marker"),
        ("<!-- docs-test: run-later (x) -->\n```sh\nx\n```\n", "the only marker"),
        ("<!-- docs-test: skip (x) -->\ntext\n```sh\nx\n```\n", "right above"),
        ("<!-- docs-test: skip (x) -->\n```text\nx\n```\n", "never runs"),
        ("```sh\nx\n", "never closed"),
    ] {
        let e = extract(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }

    let (s, map) = script("X.md", &ex.run);
    let line_of = |needle: &str| s.lines().position(|l| l == needle).unwrap() + 1;
    assert_eq!(map[line_of("  echo two")], Some(4));
    assert_eq!(map[line_of("echo three")], Some(16));
}

/// A failing command is reported with its document, line and text, after the commands before
/// it ran; what the session left running in the background is stopped.
#[test]
fn a_failing_command_is_named_with_its_line_and_background_processes_are_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let md = format!(
        "# t\n\n```sh\nsleep 600 &\necho $! > {}\necho ran\n```\n\n```sh\ntest -d examples && false\necho never\n```\n",
        pid_file.display()
    );
    let mut report = String::new();
    let e = run_text("t.md", &md, &profile_dir(), &mut report).unwrap_err();
    assert!(e.contains("t.md:10: `false` failed"), "{e}");
    assert!(e.contains("ran") && !e.contains("never"), "{e}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let alive = Command::new("kill").args(["-0", pid.trim()]).stderr(Stdio::null()).status().unwrap().success();
    assert!(!alive, "the background sleep {pid} still runs");
}
