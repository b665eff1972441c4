//! Upload rate over the last minutes, in one-second buckets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the history reaches.
pub const WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct RateHistory {
    start: Option<Instant>,
    /// (second since start, bytes acknowledged in that second), oldest first.
    buckets: VecDeque<(u64, u64)>,
}

impl RateHistory {
    fn second(&mut self, now: Instant) -> u64 {
        let start = *self.start.get_or_insert(now);
        now.saturating_duration_since(start).as_secs()
    }

    pub fn add(&mut self, now: Instant, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let s = self.second(now);
        match self.buckets.back_mut() {
            Some((last, b)) if *last == s => *b += bytes,
            _ => self.buckets.push_back((s, bytes)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(first, _)| s - first > WINDOW.as_secs())
        {
            self.buckets.pop_front();
        }
    }

    fn sum_since(&self, from: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(s, _)| *s >= from)
            .map(|(_, b)| b)
            .sum()
    }

    /// Bytes per second over the last 5 s.
    pub fn current(&self, now: Instant) -> f64 {
        let Some(start) = self.start else { return 0.0 };
        let s = now.saturating_duration_since(start).as_secs();
        self.sum_since(s.saturating_sub(4)) as f64 / 5.0
    }

    /// Bytes per second in `points` equal steps over the last `WINDOW`, oldest first.
    pub fn series(&self, now: Instant, points: usize) -> Vec<f64> {
        let points = points.max(1);
        let step = (WINDOW.as_secs() / points as u64).max(1);
        let Some(start) = self.start else {
            return vec![0.0; points];
        };
        let s = now.saturating_duration_since(start).as_secs() as i64;
        let step = step as i64;
        (0..points as i64)
            .map(|i| {
                let to = s - (points as i64 - 1 - i) * step;
                let from = to - step + 1;
                let bytes: u64 = self
                    .buckets
                    .iter()
                    .filter(|(b, _)| (from..=to).contains(&(*b as i64)))
                    .map(|(_, n)| n)
                    .sum();
                bytes as f64 / step as f64
            })
            .collect()
    }
}
