//! A TCP proxy on loopback that forwards every connection to one upstream address and records
//! when the client→server bytes went through, so tests and benchmarks can see the rate a
//! client really puts on the wire (bandwidth limits) without trusting the client's own figures.
//! Given several upstreams it is a round-robin load balancer: each new connection goes to the
//! next one that accepts it, as a balancer with health checks would.
//!
//! Plain std threads and sockets: two threads per connection, one per direction.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The size of one read from either side; each client→server read is one recorded chunk.
const BUFFER: usize = 64 << 10;

/// Forwards connections from `127.0.0.1:PORT` to an upstream address, recording every chunk
/// the clients send as (time it was read, bytes). Stops (closing every connection) when
/// dropped or on [`CountingProxy::stop`]; the record stays readable after that.
#[derive(Debug)]
pub struct CountingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    upstreams: Vec<SocketAddr>,
    /// The upstream the next connection tries first.
    next: std::sync::atomic::AtomicUsize,
    stopped: AtomicBool,
    /// (when the proxy read it from the client, bytes), in the order recorded.
    chunks: Mutex<Vec<(Instant, u64)>>,
    connections: Mutex<Vec<Connection>>,
}

/// One proxied connection: both sockets (to shut them down at stop) and both pumps.
#[derive(Debug)]
struct Connection {
    client: TcpStream,
    server: TcpStream,
    pumps: [JoinHandle<()>; 2],
}

impl Connection {
    fn finished(&self) -> bool {
        self.pumps.iter().all(JoinHandle::is_finished)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> CountingProxy {
        CountingProxy::balance(vec![upstream])
    }

    /// Listens on a free loopback port and hands connections to `upstreams` in turn.
    pub fn balance(upstreams: Vec<SocketAddr>) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstreams,
            next: Default::default(),
            stopped: AtomicBool::new(false),
            chunks: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("counting-proxy".into())
                .spawn(move || accept_loop(&listener, &shared))
                .unwrap()
        };
        CountingProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Starts a proxy in front of an `http://HOST:PORT` URL (as [`crate::ServerProcess`]
    /// gives it); returns the proxy.
    pub fn for_url(url: &str) -> CountingProxy {
        let hostport = url
            .strip_prefix("http://")
            .unwrap_or(url)
            .trim_end_matches('/');
        CountingProxy::start(hostport.parse().unwrap())
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every client→server chunk so far, as (time read from the client, bytes), in time order.
    pub fn chunks(&self) -> Vec<(Instant, u64)> {
        let mut c = lock(&self.shared.chunks).clone();
        c.sort_by_key(|(t, _)| *t);
        c
    }

    /// All bytes the clients sent through the proxy so far.
    pub fn total_upstream_bytes(&self) -> u64 {
        lock(&self.shared.chunks).iter().map(|(_, n)| n).sum()
    }

    /// The largest number of client→server bytes in any window of length `window` (both ends
    /// included), sliding over the recorded chunk times.
    pub fn max_window(&self, window: Duration) -> u64 {
        max_window(&self.chunks(), window)
    }

    /// Client→server bytes per second from the first recorded chunk to the last (0 with fewer
    /// than two chunks).
    pub fn average_rate(&self) -> f64 {
        average_rate(&self.chunks())
    }

    /// Stops accepting, closes every connection both ways and joins every thread. Idempotent.
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees `stopped` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let _ = accept.join();
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for c in &connections {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
        }
        for c in connections {
            for pump in c.pumps {
                let _ = pump.join();
            }
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        let first = shared.next.fetch_add(1, Ordering::SeqCst);
        let n = shared.upstreams.len();
        let Some(server) =
            (0..n).find_map(|i| TcpStream::connect(shared.upstreams[(first + i) % n]).ok())
        else {
            continue; // dropping `client` closes it: no upstream is there
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        let up = {
            let shared = shared.clone();
            std::thread::spawn(move || pump(c2, s2, Some(&shared.chunks)))
        };
        let down = std::thread::spawn(move || pump(s3, c3, None));
        let mut connections = lock(&shared.connections);
        connections.retain(|c| !c.finished());
        connections.push(Connection {
            client,
            server,
            pumps: [up, down],
        });
    }
}

/// Copies `from` into `to` until either side ends, recording each chunk read into `record`.
/// At the end of `from` the write side of `to` is shut (a half close, passed on); when `to`
/// fails, `from` is shut both ways so its peer notices.
fn pump(mut from: TcpStream, mut to: TcpStream, record: Option<&Mutex<Vec<(Instant, u64)>>>) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Some(record) = record {
            let at = Instant::now();
            lock(record).push((at, n as u64));
        }
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The largest sum of bytes over chunks whose times fit in one closed window of `window`;
/// `chunks` sorted by time. A window's best placement starts at some chunk's time.
pub fn max_window(chunks: &[(Instant, u64)], window: Duration) -> u64 {
    let (mut best, mut sum, mut end) = (0u64, 0u64, 0usize);
    for (i, &(start, bytes)) in chunks.iter().enumerate() {
        if end <= i {
            end = i;
            sum = 0;
        }
        while end < chunks.len() && chunks[end].0.saturating_duration_since(start) <= window {
            sum += chunks[end].1;
            end += 1;
        }
        best = best.max(sum);
        sum -= bytes;
    }
    best
}

/// Bytes per second from the first chunk's time to the last's (0 with fewer than two chunks
/// or no time between them); `chunks` sorted by time.
pub fn average_rate(chunks: &[(Instant, u64)]) -> f64 {
    let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
        return 0.0;
    };
    let span = last.0.saturating_duration_since(first.0).as_secs_f64();
    if span <= 0.0 {
        return 0.0;
    }
    chunks.iter().map(|(_, n)| *n as f64).sum::<f64>() / span
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes every connection back; returns its address.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut back = conn.try_clone().unwrap();
                    let _ = std::io::copy(&mut conn, &mut back);
                    let _ = back.shutdown(Shutdown::Write);
                });
            }
        });
        addr
    }

    #[test]
    fn bytes_go_through_intact_both_ways_and_are_counted() {
        let proxy = CountingProxy::start(echo_server());
        let payload = crate::noise(3 << 20, 7);
        let mut conns = Vec::new();
        for _ in 0..2 {
            let conn = TcpStream::connect(proxy.addr()).unwrap();
            let mut writer = conn.try_clone().unwrap();
            let sent = payload.clone();
            let w = std::thread::spawn(move || {
                writer.write_all(&sent).unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
            });
            conns.push((conn, w));
        }
        for (mut conn, w) in conns {
            let mut back = Vec::new();
            conn.read_to_end(&mut back).unwrap();
            w.join().unwrap();
            assert!(back == payload, "echoed bytes differ");
        }
        assert_eq!(proxy.total_upstream_bytes(), 2 * payload.len() as u64);
    }

    #[test]
    fn bursts_apart_are_seen_apart() {
        let proxy = CountingProxy::start(echo_server());
        let mut conn = TcpStream::connect(proxy.addr()).unwrap();
        let mut reader = conn.try_clone().unwrap();
        let drain = std::thread::spawn(move || {
            let mut sink = Vec::new();
            reader.read_to_end(&mut sink).unwrap();
            sink.len()
        });
        for (i, len) in [10_000usize, 30_000, 20_000].into_iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(400));
            }
            conn.write_all(&crate::noise(len, i as u64 + 1)).unwrap();
        }
        conn.shutdown(Shutdown::Write).unwrap();
        assert_eq!(drain.join().unwrap(), 60_000);
        assert_eq!(proxy.total_upstream_bytes(), 60_000);
        // A short window holds one burst at most; one spanning two gaps holds them all.
        assert_eq!(proxy.max_window(Duration::from_millis(100)), 30_000);
        assert_eq!(proxy.max_window(Duration::from_secs(2)), 60_000);
        let rate = proxy.average_rate();
        // 60,000 bytes over the two 400 ms gaps.
        assert!((55_000.0..78_000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn max_window_of_a_known_pattern() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 100 bytes every 100 ms for 2 s, with a 1,000-byte chunk at 1,050 ms.
        let mut chunks: Vec<_> = (0..20).map(|i| (at(i * 100), 100)).collect();
        chunks.push((at(1050), 1000));
        chunks.sort_by_key(|c| c.0);
        let ms = Duration::from_millis;
        assert_eq!(max_window(&chunks, ms(0)), 1000);
        assert_eq!(max_window(&chunks, ms(50)), 1100); // 1,000 or 1,050 with 1,050
        assert_eq!(max_window(&chunks, ms(99)), 1100);
        assert_eq!(max_window(&chunks, ms(100)), 1200); // both ends count
        assert_eq!(max_window(&chunks, ms(500)), 1600);
        assert_eq!(max_window(&chunks, ms(10_000)), 3000);
        assert_eq!(max_window(&[], ms(100)), 0);
        // 3,000 bytes from 0 to 1,900 ms.
        let rate = average_rate(&chunks);
        assert!((rate - 3000.0 / 1.9).abs() < 1e-6, "{rate}");
        assert_eq!(average_rate(&chunks[..1]), 0.0);
    }

    #[test]
    fn stop_closes_the_listener_and_open_connections() {
        let mut proxy = CountingProxy::start(echo_server());
        let addr = proxy.addr();
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        conn.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        proxy.stop();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        // The connection ends (EOF or reset), it does not hang.
        let _ = conn.read_to_end(&mut rest);
        assert!(rest.is_empty());
        assert!(TcpStream::connect(addr).is_err(), "still listening");
        assert_eq!(proxy.total_upstream_bytes(), 5);
        proxy.stop();
    }
}
