//! The PostgreSQL engine: the store's trees as rows of one table, `ftz_kv (tree, key, value)`,
//! ordered by `(tree, key)` byte for byte as sled orders them, through tokio-postgres (TLS by
//! rustls with ring, or none on a trusted local link).
//!
//! The store's interface is synchronous (sled answers in microseconds, in place). Here each call
//! runs on this engine's own small runtime and the caller waits for its answer on a channel, so
//! that it works from any thread, inside a tokio runtime or not; async callers can wait without
//! holding a thread (the store's async writes hand the call to a blocking thread). Every write is committed before it returns: a commit
//! is PostgreSQL's durability, so there is nothing left to flush.
//!
//! Connections come from a bounded pool, each with a statement timeout, so a database that stops
//! answering makes calls fail (`StoreError::Postgres`) instead of hanging. Transactions are
//! SERIALIZABLE and retried on a serialization failure: several replicas of a node may run the
//! same transaction at once, and the database, not the replica, decides which one wins.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    ops::Bound,
    path::PathBuf,
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use tokio_postgres::{Client, Statement, types::ToSql};

use crate::StoreError;

/// The schema version this build creates and reads, in `ftz_schema`.
pub const SCHEMA_VERSION: i32 = 1;

/// Rows fetched per round trip when iterating a range.
const PAGE: i64 = 256;

/// Attempts of a transaction that the database aborted as a serialization failure.
const TX_ATTEMPTS: u32 = 64;

/// A pause before attempt `n` again: random, up to twice the last (at most 64 ms), so that
/// transactions that collided do not collide again in step.
fn backoff(n: u32) {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let cap_us = 1000u64 << n.min(6);
    std::thread::sleep(Duration::from_micros(u64::from(nanos) % cap_us));
}

/// A key for `pg_advisory_lock` that serialises schema migrations of concurrent starts.
const MIGRATION_LOCK: i64 = 0x667a_7873_6368_656d; // "fzxschem"

/// One key's value; the same key set to a value (upsert); a key removed, with what it held.
const GET: &str = "SELECT value FROM ftz_kv WHERE tree = $1 AND key = $2";
const UPSERT: &str = "INSERT INTO ftz_kv (tree, key, value) VALUES ($1, $2, $3) \
                      ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE: &str = "DELETE FROM ftz_kv WHERE tree = $1 AND key = $2 RETURNING value";

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// A libpq-style URL or key=value string (`postgresql://user@host:port/db`).
    pub url: String,
    /// Connections at most.
    pub pool_size: usize,
    /// Verify the server's certificate against this CA (PEM) and speak TLS; `None`: no TLS.
    pub tls_ca: Option<PathBuf>,
    /// Each statement's deadline on the server, and each connection attempt's.
    pub timeout: Duration,
    /// Create the schema when it is missing (a node's start); false: only read (`--check`),
    /// and a database without the schema is [`StoreError::Absent`].
    pub create: bool,
}

/// The URL may hold a password: shown without it.
impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("tls_ca", &self.tls_ca)
            .field("timeout", &self.timeout)
            .field("create", &self.create)
            .finish()
    }
}

/// A connection URL or key=value string with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ if url.contains("password") => "(a connection string with a password)".into(),
        _ => url.to_string(),
    }
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), pool_size: 8, tls_ca: None, timeout: Duration::from_secs(10), create: true }
    }
}

fn pg_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Postgres(e.to_string())
}

/// A client error as an operator needs it: a database error as PostgreSQL words it (SQLSTATE
/// and message; tokio-postgres's own display says only "db error"), any other with its causes
/// (its display says only "error connecting to server", not why).
fn db_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.code().code(), db.message());
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// A statement's failure: the database's error, or the client's runtime gone.
#[derive(Debug)]
enum QueryError {
    Db(tokio_postgres::Error),
    Gone,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Db(e) => f.write_str(&db_message(e)),
            Self::Gone => f.write_str("the PostgreSQL client runtime stopped"),
        }
    }
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

/// Whether the database aborted a transaction that may succeed if run again.
fn retryable(e: &QueryError) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(e, QueryError::Db(e)
        if e.code().is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED))
}

/// One pooled connection and the statements prepared on it.
struct Conn {
    client: Arc<Client>,
    statements: HashMap<String, Statement>,
}

struct Inner {
    /// Some until dropped (a runtime must not be dropped inside another one's context).
    rt: Option<tokio::runtime::Runtime>,
    options: PgOptions,
    /// The name the database shows for this engine's connections (`pg_stat_activity`).
    application: &'static str,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    idle: Mutex<(Vec<Conn>, usize)>,
    returned: Condvar,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The engine: a pool of connections to one database.
#[derive(Clone)]
pub struct Pg {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("pool_size", &self.inner.options.pool_size).finish_non_exhaustive()
    }
}

impl Pg {
    /// Connects and creates or checks the schema (serialised among replicas starting at once by
    /// an advisory lock).
    pub fn open(options: PgOptions) -> Result<Pg, StoreError> {
        let pg = Self::start(options, "ftz-node")?;
        if pg.inner.options.create {
            pg.migrate()?;
        } else {
            pg.check_schema()?;
        }
        Ok(pg)
    }

    /// Connects (once, to see that the database answers) and neither creates nor checks the
    /// schema: for a tool that looks at a database that may hold no store yet (`migrate`), as
    /// `application` (the name the database shows for its connections).
    pub(crate) fn connect_only(options: PgOptions, application: &'static str) -> Result<Pg, StoreError> {
        let pg = Self::start(options, application)?;
        let conn = pg.checkout()?;
        pg.checkin(conn);
        Ok(pg)
    }

    /// The engine's runtime and empty pool: no connection yet.
    fn start(options: PgOptions, application: &'static str) -> Result<Pg, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ftz-postgres")
            .enable_all()
            .build()
            .map_err(|e| pg_err(format!("cannot start the PostgreSQL client runtime: {e}")))?;
        let tls = match &options.tls_ca {
            None => None,
            Some(path) => Some(tls_connector(path)?),
        };
        Ok(Pg {
            inner: Arc::new(Inner {
                rt: Some(rt),
                options,
                application,
                tls,
                idle: Mutex::new((Vec::new(), 0)),
                returned: Condvar::new(),
            }),
        })
    }

    /// Each statement's deadline on the server (`PgOptions::timeout`).
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.options.timeout
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.inner.rt.as_ref().expect("the runtime lives as long as the engine")
    }

    /// Runs `fut` on the engine's runtime and waits for it here. A caller on a worker thread of
    /// a multi-thread tokio runtime (a node's request handler) waits in `block_in_place`, so
    /// the runtime moves its other tasks to another thread meanwhile instead of stalling them
    /// for a round trip to the database.
    fn block<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt().spawn(async move {
            let _ = tx.send(fut.await);
        });
        let wait = || rx.recv().map_err(|_| pg_err("the PostgreSQL client runtime stopped"));
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let mut config: tokio_postgres::Config = self.inner.options.url.parse().map_err(pg_err)?;
        let timeout = self.inner.options.timeout;
        config.connect_timeout(timeout);
        // A replica that stops answering in the middle of a transaction (it died, or lost its
        // network) must not hold its locks, the audit log's among them, for longer than a call.
        let ms = timeout.as_millis();
        config.options(format!(
            "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={ms}"
        ));
        config.application_name(self.inner.application);
        let tls = self.inner.tls.clone();
        let client = self.block(async move {
            match tls {
                None => {
                    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok::<_, tokio_postgres::Error>(client)
                }
                Some(tls) => {
                    let (client, conn) = config.connect(tls).await?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok(client)
                }
            }
        })?;
        let client = client.map_err(|e| pg_err(format!("cannot connect to PostgreSQL: {}", db_message(&e))))?;
        Ok(Conn { client: Arc::new(client), statements: HashMap::new() })
    }

    /// A connection of the pool, for one call or one transaction (waits while all are in use).
    fn checkout(&self) -> Result<Conn, StoreError> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(c) = idle.0.pop() {
                if !c.client.is_closed() {
                    return Ok(c);
                }
                idle.1 -= 1;
                continue;
            }
            if idle.1 < self.inner.options.pool_size.max(1) {
                idle.1 += 1;
                drop(idle);
                return self.connect().inspect_err(|_| {
                    self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
                    self.inner.returned.notify_one();
                });
            }
            idle = self.inner.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        if conn.client.is_closed() {
            idle.1 -= 1;
        } else {
            idle.0.push(conn);
        }
        self.inner.returned.notify_one();
    }

    /// Runs `sql` with `params` on a pooled connection: the rows.
    pub(crate) fn query(&self, sql: &str, params: Params) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let mut conn = self.checkout()?;
        let out = self.query_on(&mut conn, sql, params);
        self.checkin(conn);
        out.map_err(pg_err)
    }

    /// Runs `sql` with `params` alone in a transaction whose statement timeout is `timeout`
    /// instead of the connection's (a scan of a large store takes longer than a node's call may):
    /// the rows.
    pub(crate) fn query_with_timeout(
        &self,
        sql: &str,
        params: Params,
        timeout: Duration,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let mut conn = self.checkout()?;
        let begin = format!("BEGIN; SET LOCAL statement_timeout = {}", timeout.as_millis().max(1));
        let out = self
            .batch_on(&conn, &begin)
            .and_then(|()| self.query_on(&mut conn, sql, params))
            .and_then(|rows| self.batch_on(&conn, "COMMIT").map(|()| rows));
        if out.is_err() {
            // Whatever failed, the connection goes back to the pool outside a transaction.
            let _ = self.batch_on(&conn, "ROLLBACK");
        }
        self.checkin(conn);
        out.map_err(pg_err)
    }

    fn query_on(&self, conn: &mut Conn, sql: &str, params: Params) -> Result<Vec<tokio_postgres::Row>, QueryError> {
        let client = conn.client.clone();
        let cached = conn.statements.get(sql).cloned();
        let owned_sql = sql.to_string();
        let result = self.block(async move {
            let statement = match cached {
                Some(s) => s,
                None => client.prepare(&owned_sql).await?,
            };
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
            let rows = client.query(&statement, &refs).await?;
            Ok::<_, tokio_postgres::Error>((statement, rows))
        });
        match result {
            Ok(Ok((statement, rows))) => {
                conn.statements.entry(sql.to_string()).or_insert(statement);
                Ok(rows)
            }
            Ok(Err(e)) => Err(QueryError::Db(e)),
            Err(_) => Err(QueryError::Gone),
        }
    }

    fn batch_on(&self, conn: &Conn, sql: &str) -> Result<(), QueryError> {
        let client = conn.client.clone();
        let sql = sql.to_string();
        match self.block(async move { client.batch_execute(&sql).await }) {
            Ok(r) => r.map_err(QueryError::Db),
            Err(_) => Err(QueryError::Gone),
        }
    }

    /// Checks, writing nothing, that the database holds this build's schema.
    fn check_schema(&self) -> Result<(), StoreError> {
        let rows = self.query("SELECT to_regclass('ftz_schema') IS NOT NULL", vec![])?;
        if !rows.first().is_some_and(|r| r.get::<_, bool>(0)) {
            return Err(StoreError::Absent);
        }
        let rows = self.query("SELECT version FROM ftz_schema", vec![])?;
        match rows.first().map(|r| r.get::<_, i32>(0)) {
            None => Err(StoreError::Absent),
            Some(v) if v != SCHEMA_VERSION => Err(StoreError::Postgres(format!(
                "the database holds schema version {v}, this build reads version {SCHEMA_VERSION}"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Creates the schema, or checks that the database holds this build's.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.checkout()?;
        let run = (|| -> Result<Option<i32>, QueryError> {
            self.query_on(&mut conn, "SELECT pg_advisory_lock($1)", vec![Box::new(MIGRATION_LOCK)])?;
            self.batch_on(
                &conn,
                "CREATE TABLE IF NOT EXISTS ftz_schema (version integer NOT NULL);
                 CREATE TABLE IF NOT EXISTS ftz_kv (
                     tree text COLLATE \"C\" NOT NULL,
                     key bytea NOT NULL,
                     value bytea NOT NULL,
                     PRIMARY KEY (tree, key)
                 );
                 CREATE SEQUENCE IF NOT EXISTS ftz_ids;",
            )?;
            let rows = self.query_on(&mut conn, "SELECT version FROM ftz_schema", vec![])?;
            let found = rows.first().map(|r| r.get::<_, i32>(0));
            if found.is_none() {
                self.query_on(
                    &mut conn,
                    "INSERT INTO ftz_schema (version) VALUES ($1)",
                    vec![Box::new(SCHEMA_VERSION)],
                )?;
            }
            self.query_on(&mut conn, "SELECT pg_advisory_unlock($1)", vec![Box::new(MIGRATION_LOCK)])?;
            Ok(found)
        })();
        self.checkin(conn);
        match run.map_err(pg_err)? {
            Some(v) if v != SCHEMA_VERSION => Err(StoreError::Postgres(format!(
                "the database holds schema version {v}, this build reads version {SCHEMA_VERSION}"
            ))),
            _ => Ok(()),
        }
    }

    /// The next value of the store's id sequence.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT nextval('ftz_ids')", vec![])?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }

    /// The database's size on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT pg_database_size(current_database())", vec![])?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }

    /// A digest of every row of `trees`, computed by the database (one row back): what a
    /// replica compares to tell, cheaply and exactly, whether another changed them.
    pub fn digest_of(&self, trees: &[&str]) -> Result<Vec<u8>, StoreError> {
        let names: Vec<String> = trees.iter().map(|t| (*t).to_string()).collect();
        let rows = self.query(
            "SELECT decode(md5(coalesce(string_agg(tree || ':' || encode(key, 'hex') || ':' || md5(value), ',' \
             ORDER BY tree, key), '')), 'hex') FROM ftz_kv WHERE tree = ANY($1)",
            vec![Box::new(names)],
        )?;
        Ok(first_value(&rows).unwrap_or_default())
    }

    pub fn tree(&self, name: &str) -> PgTree {
        PgTree { pg: self.clone(), name: Arc::from(name) }
    }

    /// Runs `f` in one SERIALIZABLE transaction, again (up to [`TX_ATTEMPTS`] times) when the
    /// database aborts it as a serialization failure; `f` must be safe to run again.
    pub fn transaction<T>(&self, f: impl Fn(&mut PgTx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.checkout()?;
        let mut last = None;
        for attempt in 0..TX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt);
            }
            if let Err(e) = self.batch_on(&conn, "BEGIN ISOLATION LEVEL SERIALIZABLE") {
                self.checkin(conn);
                return Err(pg_err(e));
            }
            let mut tx = PgTx { pg: self, conn: &mut conn, failed: None };
            let out = f(&mut tx);
            let failed = tx.failed.take();
            match (out, failed) {
                (Ok(v), None) => match self.batch_on(&conn, "COMMIT") {
                    Ok(()) => {
                        self.checkin(conn);
                        return Ok(v);
                    }
                    Err(e) if retryable(&e) => last = Some(e),
                    Err(e) => {
                        self.checkin(conn);
                        return Err(pg_err(e));
                    }
                },
                (_, Some(e)) if retryable(&e) => {
                    let _ = self.batch_on(&conn, "ROLLBACK");
                    last = Some(e);
                }
                (_, Some(e)) => {
                    let _ = self.batch_on(&conn, "ROLLBACK");
                    self.checkin(conn);
                    return Err(pg_err(e));
                }
                (Err(e), None) => {
                    let _ = self.batch_on(&conn, "ROLLBACK");
                    self.checkin(conn);
                    return Err(e);
                }
            }
        }
        self.checkin(conn);
        Err(pg_err(format!(
            "a transaction failed {TX_ATTEMPTS} times on conflicts with concurrent ones: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}

impl Pg {
    /// Runs `f` in one READ COMMITTED transaction that holds the advisory lock `lock` from its
    /// first statement to its commit, once (no retry: a READ COMMITTED transaction is not
    /// aborted for serialization, and a caller that lost the connection must read the truth
    /// again before it tries again).
    ///
    /// This is how writers that must not interleave (the audit log's appenders of every
    /// replica) take turns: whoever holds the lock sees, in every statement it runs (on this
    /// connection or any other), everything the previous holders committed, so it can read
    /// the current state, decide, and write it, as the only writer. A replica that dies
    /// holding the lock loses its connection, and with it the lock and its uncommitted writes.
    pub fn exclusive<T>(
        &self,
        lock: i64,
        f: impl FnOnce(&mut PgTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read_committed(Some(lock), f)
    }

    /// Runs `f` in one READ COMMITTED transaction (holding the advisory lock `lock` from its
    /// first statement, if given), once. For writes whose conflicts the primary key decides
    /// (`PgTx::insert_absent`): SERIALIZABLE would abort them on false conflicts, since every
    /// tree shares one index and SSI locks its pages (measured: three retries per pulled
    /// transfer under load).
    pub fn read_committed<T>(
        &self,
        lock: Option<i64>,
        f: impl FnOnce(&mut PgTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.checkout()?;
        if let Err(e) = self.batch_on(&conn, "BEGIN ISOLATION LEVEL READ COMMITTED") {
            self.checkin(conn);
            return Err(pg_err(e));
        }
        let mut tx = PgTx { pg: self, conn: &mut conn, failed: None };
        let out = match lock {
            Some(lock) => tx.run("SELECT pg_advisory_xact_lock($1)", vec![Box::new(lock)]).and_then(|_| f(&mut tx)),
            None => f(&mut tx),
        };
        let failed = tx.failed.take();
        let out = match (out, failed) {
            (Ok(v), None) => self.batch_on(&conn, "COMMIT").map(|()| v).map_err(pg_err),
            (Ok(_), Some(e)) => {
                let _ = self.batch_on(&conn, "ROLLBACK");
                Err(pg_err(e))
            }
            (Err(e), _) => {
                let _ = self.batch_on(&conn, "ROLLBACK");
                Err(e)
            }
        };
        self.checkin(conn);
        out
    }
}

/// Pairs with each key once, the last value given for it kept (one `INSERT ... ON CONFLICT`
/// may not touch a row twice).
fn last_per_key(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<(Vec<u8>, Vec<u8>)> = pairs.into_iter().rev().filter(|(k, _)| seen.insert(k.clone())).collect();
    kept.reverse();
    kept.into_iter().unzip()
}

/// rustls with ring, trusting only `ca` (PEM).
fn tls_connector(ca: &std::path::Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let bad = |e: &dyn std::fmt::Display| pg_err(format!("the PostgreSQL CA {}: {e}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))?.collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
    for c in certs {
        roots.add(c).map_err(|e| bad(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(pg_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// One tree: the rows of `ftz_kv` with its name.
#[derive(Clone)]
pub struct PgTree {
    pg: Pg,
    name: Arc<str>,
}

impl std::fmt::Debug for PgTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTree({})", self.name)
    }
}

/// A statement's parameters.
pub(crate) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// Key and value pairs, in order.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

impl PgTree {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pg(&self) -> &Pg {
        &self.pg
    }

    fn p(&self) -> Box<dyn ToSql + Sync + Send> {
        Box::new(self.name.to_string())
    }

    fn bytes(b: &[u8]) -> Box<dyn ToSql + Sync + Send> {
        Box::new(b.to_vec())
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(first_value(&self.pg.query(GET, vec![self.p(), Self::bytes(key)])?))
    }

    /// Sets `key`; the value it held before.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.pg.query(
            "WITH old AS (SELECT value FROM ftz_kv WHERE tree = $1 AND key = $2) \
             INSERT INTO ftz_kv (tree, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value RETURNING (SELECT value FROM old)",
            vec![self.p(), Self::bytes(key), Self::bytes(value)],
        )?;
        Ok(rows.first().and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
    }

    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(first_value(&self.pg.query(DELETE, vec![self.p(), Self::bytes(key)])?))
    }

    /// Sets `key` to `new` if it holds `old` (`None`: absent); otherwise `Err(current)`.
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
        // Each form is one statement; when it changes nothing, the value read after it is the
        // reason, unless it is what was expected (a concurrent change came and went), then again.
        for _ in 0..TX_ATTEMPTS {
            let (k, p) = (Self::bytes(key), self.p());
            let changed = match (old, new) {
                (None, Some(n)) => self.pg.query(
                    "INSERT INTO ftz_kv (tree, key, value) VALUES ($1, $2, $3) ON CONFLICT (tree, key) DO NOTHING RETURNING 1",
                    vec![p, k, Self::bytes(n)],
                )?,
                (Some(o), Some(n)) => self.pg.query(
                    "UPDATE ftz_kv SET value = $4 WHERE tree = $1 AND key = $2 AND value = $3 RETURNING 1",
                    vec![p, k, Self::bytes(o), Self::bytes(n)],
                )?,
                (Some(o), None) => self.pg.query(
                    "DELETE FROM ftz_kv WHERE tree = $1 AND key = $2 AND value = $3 RETURNING 1",
                    vec![p, k, Self::bytes(o)],
                )?,
                (None, None) => Vec::new(),
            };
            if !changed.is_empty() {
                return Ok(Ok(()));
            }
            let current = self.get(key)?;
            if current.as_deref() != old {
                return Ok(Err(current));
            }
            if new.is_none() && old.is_none() {
                return Ok(Ok(()));
            }
        }
        Err(pg_err("compare-and-swap kept racing with concurrent changes"))
    }

    pub fn len(&self) -> Result<usize, StoreError> {
        let rows = self.pg.query("SELECT count(*) FROM ftz_kv WHERE tree = $1", vec![self.p()])?;
        Ok(rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0) as usize)
    }

    /// The entries between the bounds, in key order (or reversed), fetched a page at a time.
    pub fn range(&self, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, rev: bool) -> PgRange {
        PgRange { tree: self.clone(), lo, hi, rev, buf: VecDeque::new(), done: false }
    }

    fn page(&self, lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>, rev: bool) -> Result<Pairs, StoreError> {
        let mut sql = String::from("SELECT key, value FROM ftz_kv WHERE tree = $1");
        let mut params: Params = vec![self.p()];
        for (bound, incl, excl) in [(lo, ">=", ">"), (hi, "<=", "<")] {
            let (op, k) = match bound {
                Bound::Included(k) => (incl, k),
                Bound::Excluded(k) => (excl, k),
                Bound::Unbounded => continue,
            };
            params.push(Box::new(k.clone()));
            sql.push_str(&format!(" AND key {op} ${}", params.len()));
        }
        sql.push_str(if rev { " ORDER BY key DESC" } else { " ORDER BY key" });
        sql.push_str(&format!(" LIMIT {PAGE}"));
        let rows = self.pg.query(&sql, params)?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// A range of a tree, read lazily.
pub struct PgRange {
    tree: PgTree,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    rev: bool,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>, // one page
    done: bool,
}

impl Iterator for PgRange {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            match self.tree.page(&self.lo, &self.hi, self.rev) {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < PAGE;
                    if let Some((last, _)) = rows.last() {
                        if self.rev {
                            self.hi = Bound::Excluded(last.clone());
                        } else {
                            self.lo = Bound::Excluded(last.clone());
                        }
                    }
                    self.buf.extend(rows);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

/// A transaction's view of the trees (see [`Pg::transaction`]).
pub struct PgTx<'a> {
    pg: &'a Pg,
    conn: &'a mut Conn,
    /// The first database error: the transaction is rolled back (and run again if it may).
    failed: Option<QueryError>,
}

impl PgTx<'_> {
    fn run(&mut self, sql: &str, params: Params) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        if self.failed.is_some() {
            return Err(pg_err("the transaction failed"));
        }
        self.pg.query_on(self.conn, sql, params).map_err(|e| {
            let msg = pg_err(&e);
            self.failed = Some(e);
            msg
        })
    }

    fn keyed(tree: &str, key: &[u8]) -> Params {
        vec![Box::new(tree.to_string()), PgTree::bytes(key)]
    }

    pub fn get(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(first_value(&self.run(GET, Self::keyed(tree, key))?))
    }

    pub fn insert(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut params = Self::keyed(tree, key);
        params.push(PgTree::bytes(value));
        self.run(UPSERT, params).map(|_| ())
    }

    pub fn remove(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(first_value(&self.run(DELETE, Self::keyed(tree, key))?))
    }
}

impl PgTx<'_> {
    /// Sets `key` if `tree` does not hold it; whether it did (the primary key decides between
    /// concurrent transactions: a second one waits for the first and finds the key held).
    pub fn insert_absent(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<bool, StoreError> {
        let rows = self.run(
            "INSERT INTO ftz_kv (tree, key, value) VALUES ($1, $2, $3) ON CONFLICT (tree, key) DO NOTHING RETURNING 1",
            vec![Box::new(tree.to_string()), PgTree::bytes(key), PgTree::bytes(value)],
        )?;
        Ok(!rows.is_empty())
    }

    /// Sets every key of `pairs` in `tree`, in one statement.
    pub fn insert_many(&mut self, tree: &str, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let (keys, values) = last_per_key(pairs);
        self.run(
            "INSERT INTO ftz_kv (tree, key, value) SELECT $1, k, v FROM unnest($2::bytea[], $3::bytea[]) AS t(k, v) \
             ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
            vec![Box::new(tree.to_string()), Box::new(keys), Box::new(values)],
        )
        .map(|_| ())
    }

    /// Sets the keys of `pairs` that `tree` does not hold, in one statement; the keys it set.
    pub fn insert_absent_many(
        &mut self,
        tree: &str,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let (keys, values) = last_per_key(pairs);
        let rows = self.run(
            "INSERT INTO ftz_kv (tree, key, value) SELECT $1, k, v FROM unnest($2::bytea[], $3::bytea[]) AS t(k, v) \
             ON CONFLICT (tree, key) DO NOTHING RETURNING key",
            vec![Box::new(tree.to_string()), Box::new(keys), Box::new(values)],
        )?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}

impl PgTree {
    /// The values of `keys` (absent ones left out), in one statement: (key, value).
    pub fn get_many(&self, keys: Vec<Vec<u8>>) -> Result<Pairs, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.pg.query(
            "SELECT key, value FROM ftz_kv WHERE tree = $1 AND key = ANY($2::bytea[])",
            vec![self.p(), Box::new(keys)],
        )?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// The first row's first column (a value), if there is a row.
fn first_value(rows: &[tokio_postgres::Row]) -> Option<Vec<u8>> {
    rows.first().map(|r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let o = PgOptions::new("postgresql://ftz:s3cret@db.example:5432/shanghai");
        let shown = format!("{o:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("postgresql://ftz:***@db.example:5432/shanghai"),
            "{shown}"
        );
        assert_eq!(redact_url("host=db password=s3cret"), "(a connection string with a password)");
        assert_eq!(redact_url("postgresql://ftz@db/x"), "postgresql://ftz@db/x");
    }

    fn one(pg: &Pg, sql: &str) -> Result<String, StoreError> {
        Ok(pg.query(sql, vec![])?[0].get(0))
    }

    /// An engine that only connects leaves a database without the schema as it is; one
    /// statement may run longer than the connection's timeout, and the connection goes back
    /// to the pool with its own (after a failure too, outside any transaction); database and
    /// connection errors say what the database or the client said, not only "db error".
    #[test]
    fn a_longer_timeout_holds_for_one_statement_and_errors_say_why() {
        let cluster = ftz_pgtest::TempPostgres::start().unwrap();
        cluster.create_database("bare").unwrap();
        let mut o = PgOptions::new(cluster.url("bare"));
        o.timeout = Duration::from_millis(500);
        o.pool_size = 1;
        let pg = Pg::connect_only(o.clone(), "ftz-store test").unwrap();
        assert_eq!(one(&pg, "SELECT coalesce(to_regclass('ftz_kv')::text, 'none')").unwrap(), "none");
        assert_eq!(
            one(&pg, "SELECT application_name::text FROM pg_stat_activity WHERE pid = pg_backend_pid()").unwrap(),
            "ftz-store test"
        );

        let long = Duration::from_secs(60);
        let shown: String = pg.query_with_timeout("SHOW statement_timeout", vec![], long).unwrap()[0].get(0);
        assert_eq!(shown, "1min");
        pg.query_with_timeout("SELECT pg_sleep(0.8)::text", vec![], long).unwrap();
        let e = pg.query("SELECT pg_sleep(0.8)::text", vec![]).unwrap_err().to_string();
        assert!(e.contains("57014") && e.contains("statement timeout"), "{e}");
        assert_eq!(one(&pg, "SHOW statement_timeout").unwrap(), "500ms", "the pool's connection keeps its own");
        let e = pg.query_with_timeout("SELECT (1 / 0)::text", vec![], long).unwrap_err().to_string();
        assert!(e.contains("22012: division by zero"), "{e}");
        assert_eq!(one(&pg, "SELECT 'outside a failed transaction'").unwrap(), "outside a failed transaction");

        let mut missing = o.clone();
        missing.url = cluster.url("no_such_database");
        let e = Pg::connect_only(missing, "t").unwrap_err().to_string();
        assert!(e.contains("cannot connect to PostgreSQL: 3D000: ") && e.contains("no_such_database"), "{e}");
        let mut closed = o;
        closed.url = "postgresql://ftz@127.0.0.1:1/x".into();
        let e = Pg::connect_only(closed, "t").unwrap_err().to_string();
        assert!(e.starts_with("store (PostgreSQL): cannot connect to PostgreSQL: error connecting to server: "), "{e}");
    }
}
