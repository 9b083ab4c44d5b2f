#![forbid(unsafe_code)]

//! A throwaway PostgreSQL cluster for tests and the benchmark: `initdb` in a temporary
//! directory, `pg_ctl start` on a free port of 127.0.0.1, stopped (immediately) and removed when
//! dropped. No system service is used and nothing is left behind.
//!
//! The binaries are Debian's (`postgresql` package: `/usr/lib/postgresql/<version>/bin`), or the
//! directory `FTZ_PG_BIN` names, or `initdb` on the PATH. When they are missing, [`TempPostgres::start`]
//! fails saying how to install them: a test that needs PostgreSQL never passes without it.
//!
//! PostgreSQL refuses to run as root; run as root (a CI machine), the cluster runs as the
//! `postgres` user (which Debian's package creates), or `nobody`, owning its directory.

use std::{
    io,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PgError {
    #[error(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql/*/bin, \
         in $FTZ_PG_BIN or on the PATH: install them with `apt-get install postgresql` (Debian), \
         or set FTZ_PG_BIN to the directory that holds initdb"
    )]
    NotInstalled,
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{what} failed ({status}):\n{output}")]
    Failed { what: String, status: String, output: String },
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// uid and gid the cluster runs as, when this process is root.
    run_as: Option<(u32, u32)>,
}

/// The superuser `initdb` creates, and the password-less local access it is given.
pub const USER: &str = "ftz";

impl TempPostgres {
    /// Creates and starts a cluster, and waits until it accepts connections (at most 60 s).
    pub fn start() -> Result<Self, PgError> {
        let bin = find_bin().ok_or(PgError::NotInstalled)?;
        let dir = tempfile::Builder::new()
            .prefix("ftz-postgres-")
            .tempdir()
            .map_err(|source| PgError::Io { what: "a temporary directory".into(), source })?;
        let run_as = if running_as_root() { Some(unprivileged_user()?) } else { None };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|source| PgError::Io { what: format!("chown {}", dir.path().display()), source })?;
        }
        let port = free_port()?;
        let pg = TempPostgres { dir, bin, port, run_as };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
        )?;
        // Throwaway: durability of the test cluster itself is not what is tested (the node's
        // own acknowledgements are, through commits); still fsync on, as deployed.
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 200\n\
             shared_buffers = 64MB\nlog_min_messages = warning\n",
            pg.dir.path().display()
        );
        append(&pg.data().join("postgresql.conf"), &conf)?;
        pg.start_server()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the superuser, without TLS.
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) -> Result<(), PgError> {
        self.run("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, name]).map(|_| ())
    }

    /// Drops a database (its connections are ended first).
    pub fn drop_database(&self, name: &str) -> Result<(), PgError> {
        self.run("dropdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "--force", name]).map(|_| ())
    }

    /// Starts the server again after [`TempPostgres::stop`] (same data, same port).
    pub fn start_server(&self) -> Result<(), PgError> {
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &["-D", &self.data().display().to_string(), "-l", &log.display().to_string(), "-w", "-t", "60", "start"],
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(PgError::Failed {
                    what: "waiting for PostgreSQL to listen".into(),
                    status: "timeout".into(),
                    output: log,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the server at once (`-m immediate`: as if the machine lost it; clients see their
    /// connections drop).
    pub fn stop(&self) -> Result<(), PgError> {
        self.run("pg_ctl", &["-D", &self.data().display().to_string(), "-m", "immediate", "-w", "stop"]).map(|_| ())
    }

    /// The CPU time (user and system) the server has used so far: the postmaster, its live
    /// processes (backends, writers), and those it has reaped. `None` if it is not running or
    /// `/proc` cannot be read. Assumes the usual 100 clock ticks a second.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        let postmaster: u32 = pid_file.lines().next()?.trim().parse().ok()?;
        // Fields after the command: state, ppid, ..., utime (14), stime (15), cutime (16),
        // cstime (17), numbered from 1 as in proc(5).
        let stat = |pid: u32| -> Option<(u32, u64, u64)> {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &text[text.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            Some((n(4) as u32, n(14) + n(15), n(16) + n(17)))
        };
        let (_, own, reaped) = stat(postmaster)?;
        let mut ticks = own + reaped;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some((ppid, t, _)) = stat(pid)
                && ppid == postmaster
            {
                ticks += t;
            }
        }
        Some(Duration::from_millis(ticks * 10))
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, PgError> {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args).current_dir(self.dir.path()).env("LC_ALL", "C").env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let what = format!("{program} {}", args.join(" "));
        let out = cmd.output().map_err(|source| PgError::Io { what: what.clone(), source })?;
        if !out.status.success() {
            return Err(PgError::Failed {
                what,
                status: out.status.to_string(),
                output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(out)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Where `initdb` and `pg_ctl` are: `$FTZ_PG_BIN`, the newest `/usr/lib/postgresql/<v>/bin`,
/// or the PATH.
fn find_bin() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("FTZ_PG_BIN").map(PathBuf::from) {
        return has(&d).then_some(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has(d)))
}

fn running_as_root() -> bool {
    // The effective uid, from /proc (no libc call: this crate has no unsafe code).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// uid and gid of `postgres`, else `nobody`, from /etc/passwd.
fn unprivileged_user() -> Result<(u32, u32), PgError> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|source| PgError::Io { what: "reading /etc/passwd".into(), source })?;
    for name in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3
                && f[0] == name
                && let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse())
            {
                return Ok((uid, gid));
            }
        }
    }
    Err(PgError::Failed {
        what: "finding a user to run PostgreSQL as (it refuses root)".into(),
        status: "no postgres or nobody user".into(),
        output: String::new(),
    })
}

fn free_port() -> Result<u16, PgError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|source| PgError::Io { what: "a free port".into(), source })?;
    l.local_addr().map(|a| a.port()).map_err(|source| PgError::Io { what: "a free port".into(), source })
}

fn append(path: &Path, text: &str) -> Result<(), PgError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|source| PgError::Io { what: format!("opening {}", path.display()), source })?;
    f.write_all(text.as_bytes()).map_err(|source| PgError::Io { what: format!("writing {}", path.display()), source })
}
