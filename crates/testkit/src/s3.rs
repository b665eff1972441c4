//! A real S3-compatible server on loopback for tests and benchmarks: moto's server, from PyPI,
//! in a virtual environment made once under `target/` (or `PHOTOSYNC_MOTO_VENV`). Like the
//! PostgreSQL cluster, it stops when this process ends, however it ends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The moto release the tests were written against.
const MOTO: &str = "moto[server]==5.2.6";

#[derive(Debug)]
pub struct Moto {
    port: u16,
    keeper: Mutex<Option<(Child, ChildStdin)>>,
}

fn venv() -> PathBuf {
    std::env::var_os("PHOTOSYNC_MOTO_VENV").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/moto-venv"
            ))
        },
        PathBuf::from,
    )
}

/// The virtual environment's python, with moto installed (once; test binaries running at
/// the same time wait for each other).
fn python() -> Result<PathBuf, String> {
    let venv = venv();
    let python = venv.join("bin/python");
    let ready = venv.join(".ready");
    if ready.exists() {
        return Ok(python);
    }
    let parent = venv
        .parent()
        .ok_or("no folder for the virtual environment")?;
    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    let lock = std::fs::File::create(parent.join("moto-venv.lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    if ready.exists() {
        return Ok(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    if !made.success() {
        return Err("python3 -m venv failed (Debian: apt-get install python3-venv)".into());
    }
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", MOTO])
        .status()
        .map_err(|e| e.to_string())?;
    if !installed.success() {
        return Err(format!("pip install {MOTO} failed"));
    }
    std::fs::write(&ready, b"").map_err(|e| e.to_string())?;
    Ok(python)
}

impl Moto {
    pub fn start() -> Result<Moto, String> {
        let python = python()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = std::env::temp_dir().join(format!("photosync-moto-{port}.log"));
        let script = format!(
            "'{python}' -m moto.server -H 127.0.0.1 -p {port} > '{log}' 2>&1 &
             pid=$!
             cat > /dev/null
             kill $pid 2>/dev/null
             wait $pid
             rm -f '{log}'",
            python = python.display(),
            log = log.display(),
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = child.stdin.take().ok_or("no pipe to moto")?;
        let moto = Moto {
            port,
            keeper: Mutex::new(Some((child, stdin))),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.request("GET", "/").is_err() {
            if Instant::now() > deadline {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("moto did not start on port {port}: {said}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP request; returns the status code.
    fn request(&self, method: &str, path: &str) -> Result<u16, String> {
        self.exchange(method, path).map(|(code, _)| code)
    }

    /// One plain HTTP request; returns the status code and the body.
    fn exchange(&self, method: &str, path: &str) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        let code = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {answer:.80}"))?;
        let body = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        Ok((code, body))
    }

    /// The keys below `prefix` in `bucket`, with their sizes (the first 1000).
    pub fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, String> {
        let (code, body) =
            self.exchange("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"))?;
        if code != 200 {
            return Err(format!(
                "listing {bucket}/{prefix}: HTTP {code}: {body:.200}"
            ));
        }
        let field = |item: &str, tag: &str| -> Option<String> {
            let start = item.find(&format!("<{tag}>"))? + tag.len() + 2;
            let end = item[start..].find(&format!("</{tag}>"))? + start;
            Some(item[start..end].to_owned())
        };
        Ok(body
            .split("<Contents>")
            .skip(1)
            .filter_map(|item| {
                let key = field(item, "Key")?;
                let size = field(item, "Size")?.parse().ok()?;
                Some((key, size))
            })
            .collect())
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub fn create_bucket(&self, name: &str) -> Result<(), String> {
        match self.request("PUT", &format!("/{name}"))? {
            200 => Ok(()),
            code => Err(format!("creating bucket {name}: HTTP {code}")),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let taken = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }
}
