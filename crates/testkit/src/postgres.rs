//! A throwaway PostgreSQL cluster for tests and benchmarks, from the distribution's binaries
//! (`scripts/setup` installs them). It listens on 127.0.0.1 only, at a port the system had
//! free, with its files in a fresh temporary folder.
//!
//! The server runs under a small shell that holds the read end of a pipe from this process:
//! when this process ends, however it ends, the shell stops the server and deletes its folder.
//! So a test binary may keep one cluster in a `static` for all its tests.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
    /// Closing it (on drop, or when the process exits) stops the server.
    keeper: Mutex<Option<(Child, ChildStdin)>>,
    databases: AtomicUsize,
}

/// Where `initdb` and `postgres` are: `PHOTOSYNC_PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin` (Debian's layout), else `PATH`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PHOTOSYNC_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .map_err(|e| e.to_string())?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    match Path::new(&path).parent() {
        Some(dir) if found.status.success() => Ok(dir.to_path_buf()),
        _ => Err(
            "PostgreSQL's initdb was not found: run scripts/setup, or set \
                  PHOTOSYNC_PG_BIN to the folder holding initdb and postgres"
                .into(),
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A command run as the `postgres` system user when this process is root (PostgreSQL refuses
/// to run as root), else as this user.
fn as_server_user(script: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

impl Postgres {
    /// Creates and starts a cluster; the error says what is missing or what failed.
    pub fn start() -> Result<Postgres, String> {
        let bin = bin_dir()?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("photosync-pg-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:", &dir.display().to_string()])
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cannot hand the cluster's folder to the postgres user".into());
            }
        }
        let data = dir.join("data");
        let init = as_server_user(&format!(
            "{} -D {} -U postgres -A trust -E UTF8 --no-sync",
            quote(&bin.join("initdb")),
            quote(&data)
        ))
        .output()
        .map_err(|e| e.to_string())?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        // A port found free may be taken before the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            match Self::run(&bin, &dir, &data, port) {
                Ok(pg) => return Ok(pg),
                Err((failed, e)) => {
                    // Its keeper must leave the cluster's files for the next try.
                    let keep = dir.join(".keep");
                    std::fs::write(&keep, b"").map_err(|e| e.to_string())?;
                    drop(failed);
                    let _ = std::fs::remove_file(&keep);
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Starts the server on `port`; on failure, the stopped attempt (to drop) and why.
    fn run(
        bin: &Path,
        dir: &Path,
        data: &Path,
        port: u16,
    ) -> Result<Postgres, (Option<Box<Postgres>>, String)> {
        // Durability is not what a throwaway cluster tests: fsync off keeps it fast.
        let script = format!(
            "{postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 \
               -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
               -c max_connections=200 > {dir}/log 2>&1 &
             pid=$!
             cat > /dev/null
             kill -INT $pid 2>/dev/null
             wait $pid
             [ -e {dir}/.keep ] || rm -rf {dir}",
            postgres = quote(&bin.join("postgres")),
            data = quote(data),
            dir = quote(dir),
        );
        let mut child = as_server_user(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| (None, e.to_string()))?;
        let stdin = child
            .stdin
            .take()
            .ok_or((None, "no pipe to the cluster".to_owned()))?;
        let pg = Postgres {
            port,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            keeper: Mutex::new(Some((child, stdin))),
            databases: AtomicUsize::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(pg);
            }
            let exited = pg
                .keeper
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|(c, _)| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                return Err((
                    Some(Box::new(pg)),
                    format!("PostgreSQL did not start on port {port}: {log}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL with `psql` as the superuser, in `database`.
    pub fn sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `copy` (`COPY table (columns) FROM STDIN`) in `database` with `data` (text
    /// format: tab-separated, one row a line) as its input: the fast way to load many rows.
    pub fn copy_in(&self, database: &str, copy: &str, data: &[u8]) -> Result<(), String> {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", database, "-c", copy])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut stdin = child.stdin.take().ok_or("no pipe to psql")?;
        let written = stdin.write_all(data);
        drop(stdin);
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        written.map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(())
    }

    /// A new, empty database in the cluster; returns its URL.
    pub fn new_database(&self) -> Result<String, String> {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("test_{n}");
        self.sql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url_of(&name))
    }

    /// The cluster's folder (its log is `log` there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let taken = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((mut child, mut stdin)) = taken {
            let _ = stdin.flush();
            drop(stdin);
            let _ = child.wait();
        }
    }
}
