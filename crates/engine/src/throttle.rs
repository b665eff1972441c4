//! The bandwidth limit: one token bucket shaping the bytes of every upload that shares it, as
//! they are written to the network.
//!
//! A writer reserves its bytes before it writes them and sleeps off any debt, so reservations
//! queue in the order they were made and concurrent uploads share the rate fairly. The bucket
//! holds at most one network write's worth of tokens, so over any window the bytes written
//! exceed `rate × window` by at most one write.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Bytes per network write: about a tenth of a second at the rate, so the shaping is smooth,
/// within bounds that keep small rates moving and large ones efficient.
const MIN_WRITE: u64 = 4 << 10;
const MAX_WRITE: u64 = 256 << 10;

/// One network write at `rate` bytes per second; also what the bucket holds at most.
fn write_at(rate: u64) -> u64 {
    (rate / 10).clamp(MIN_WRITE, MAX_WRITE)
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; `None` is no limit.
    rate: Option<u64>,
    /// Tokens in hand; negative while reservations wait for their turn.
    tokens: f64,
    last: Instant,
}

/// A bandwidth limit shared by every upload that holds it (`Arc<Throttle>`).
#[derive(Debug)]
pub struct Throttle {
    bucket: Mutex<Bucket>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(None)
    }
}

impl Throttle {
    /// A limit of `rate` bytes per second (`None` or 0: unlimited).
    pub fn new(rate: Option<u64>) -> Throttle {
        Throttle {
            bucket: Mutex::new(Bucket {
                rate: rate.filter(|r| *r > 0),
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the limit; uploads in flight follow it from their next write.
    pub fn set_rate(&self, rate: Option<u64>) {
        let mut b = self.lock();
        b.rate = rate.filter(|r| *r > 0);
        b.tokens = b.tokens.max(0.0);
        b.last = Instant::now();
    }

    pub fn rate(&self) -> Option<u64> {
        self.lock().rate
    }

    /// The size of one network write at the current rate.
    pub fn write_size(&self) -> usize {
        self.rate().map_or(MAX_WRITE, write_at) as usize
    }

    /// Waits until `bytes` may be written; returns how long it waited.
    pub async fn take(&self, bytes: u64) -> Duration {
        let wait = {
            let mut b = self.lock();
            let Some(rate) = b.rate else {
                return Duration::ZERO;
            };
            let now = Instant::now();
            let burst = write_at(rate) as f64;
            let earned = now.duration_since(b.last).as_secs_f64() * rate as f64;
            b.tokens = (b.tokens + earned).min(burst);
            b.last = now;
            b.tokens -= bytes as f64;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / rate as f64)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Bytes written by `writers` sharing one throttle, with the (virtual) time of each write.
    async fn run(rate: u64, writers: usize, bytes_each: u64) -> Vec<(Duration, u64)> {
        let throttle = Arc::new(Throttle::new(Some(rate)));
        let start = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (t, log) = (throttle.clone(), log.clone());
                tokio::spawn(async move {
                    let write = t.write_size() as u64;
                    let mut left = bytes_each;
                    while left > 0 {
                        let n = left.min(write);
                        t.take(n).await;
                        log.lock().unwrap().push((start.elapsed(), n));
                        left -= n;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut log = log.lock().unwrap().clone();
        log.sort();
        log
    }

    fn max_window(log: &[(Duration, u64)], window: Duration) -> u64 {
        let mut best = 0;
        for (i, (at, _)) in log.iter().enumerate() {
            let sum: u64 = log[i..]
                .iter()
                .take_while(|(t, _)| *t < *at + window)
                .map(|(_, n)| n)
                .sum();
            best = best.max(sum);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_limit_holds_for_one_writer_and_for_many() {
        for (rate, writers) in [(200_000, 1), (200_000, 4), (5_000_000, 4), (1_000, 2)] {
            let log = run(rate, writers, 3 * rate / writers as u64 + 7).await;
            let write = Throttle::new(Some(rate)).write_size() as u64;
            let second = max_window(&log, Duration::from_secs(1));
            assert!(
                second <= rate + write,
                "{writers} writers at {rate} B/s wrote {second} B in one second"
            );
            // And the limit is reached, not undershot: about 3 s for 3 s of bytes.
            let took = log.last().unwrap().0;
            assert!(took >= Duration::from_millis(2_800), "{took:?}");
            assert!(took <= Duration::from_millis(3_200), "{took:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_limit_never_waits_and_a_new_limit_applies_at_once() {
        let t = Throttle::new(None);
        assert_eq!(t.take(1 << 30).await, Duration::ZERO);
        t.set_rate(Some(100_000));
        let start = Instant::now();
        for _ in 0..10 {
            t.take(10_000).await;
        }
        assert!(start.elapsed() >= Duration::from_millis(900));
        t.set_rate(Some(0));
        assert_eq!(t.rate(), None);
    }
}
