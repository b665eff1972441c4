//! Sizes upload parts from the measured rate, so each part takes about a target duration.
//!
//! After each part the sizer takes its throughput, timed up to the server's response (a
//! written body is not a delivered one), and proposes `rate × target` for the next part,
//! clamped to `[min, max]`. Shrinking is immediate, and a failed part cuts the size to a
//! quarter. Growth per step is capped (the Nextcloud client's failure: one fast part makes the
//! next one huge and it breaks on a 100 MB proxy limit; the default maximum stays under that):
//! a part that took a fair share of the target (`measured_fraction`) is believed and may grow
//! the next one up to `max_growth_measured` times; a part too short to say much is smoothed
//! into the running estimate and may grow the next one only `max_growth` times.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizerConfig {
    pub min: u64,
    pub max: u64,
    pub initial: u64,
    /// How long a part should take.
    pub target: Duration,
    /// Growth cap after a part shorter than `measured_fraction` of the target.
    pub max_growth: f64,
    /// Growth cap after a part that took at least `measured_fraction` of the target.
    pub max_growth_measured: f64,
    /// A part this fraction of the target or longer is a trustworthy measurement.
    pub measured_fraction: f64,
    /// Weight of a short part's measurement in the smoothed rate (0..=1).
    pub smoothing: f64,
}

impl Default for SizerConfig {
    fn default() -> Self {
        SizerConfig {
            min: 256 << 10,
            // Under the 100 MB request limit of common proxies, with room for headers.
            max: 64 << 20,
            initial: 1 << 20,
            target: Duration::from_secs(4),
            max_growth: 2.0,
            max_growth_measured: 10.0,
            measured_fraction: 0.1,
            smoothing: 0.5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PartSizer {
    config: SizerConfig,
    /// Smoothed bytes per second, once a part has been measured.
    rate: Option<f64>,
    next: u64,
}

impl PartSizer {
    /// Starts from `remembered` (the last good size for this server) or the configured initial.
    pub fn new(config: SizerConfig, remembered: Option<u64>) -> PartSizer {
        let start = remembered.unwrap_or(config.initial);
        PartSizer {
            next: start.clamp(config.min, config.max),
            config,
            rate: None,
        }
    }

    /// The size to use for the next part.
    pub fn next_size(&self) -> u64 {
        self.next
    }

    /// The largest size the next measurement can propose: what may be prepared ahead.
    pub fn largest_next(&self) -> u64 {
        let growth = self
            .config
            .max_growth_measured
            .max(self.config.max_growth)
            .max(1.0);
        ((self.next as f64 * growth) as u64).clamp(self.config.min, self.config.max)
    }

    /// The smoothed rate in bytes per second, if any part was measured.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// The size of a part that takes the target duration at `rate` bytes per second, within
    /// bounds: what a bandwidth limit allows, whatever the link could do.
    pub fn size_for_rate(&self, rate: f64) -> u64 {
        ((rate * self.config.target.as_secs_f64()) as u64).clamp(self.config.min, self.config.max)
    }

    /// A part of `bytes` was acknowledged `elapsed` after its first byte was sent.
    pub fn record(&mut self, bytes: u64, elapsed: Duration) {
        if bytes == 0 {
            return;
        }
        let secs = elapsed.as_secs_f64().max(1e-6);
        let measured = bytes as f64 / secs;
        let a = self.config.smoothing.clamp(0.0, 1.0);
        let trusted = secs >= self.config.target.as_secs_f64() * self.config.measured_fraction;
        let rate = match self.rate {
            // Falling rates are believed at once: a slow link must not be fed big parts.
            Some(r) if measured < r => measured,
            Some(_) if trusted => measured,
            Some(r) => a * measured + (1.0 - a) * r,
            None => measured,
        };
        self.rate = Some(rate);
        let wanted = rate * self.config.target.as_secs_f64();
        let growth = if trusted {
            self.config.max_growth_measured
        } else {
            self.config.max_growth
        };
        let cap = self.next as f64 * growth.max(1.0);
        let proposed = wanted.min(cap);
        self.next = (proposed as u64).clamp(self.config.min, self.config.max);
    }

    /// A part failed (connection cut, timeout): the next one is a quarter of the size.
    pub fn record_failure(&mut self) {
        self.next = (self.next / 4).clamp(self.config.min, self.config.max);
        self.rate = self.rate.map(|r| r / 4.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> SizerConfig {
        SizerConfig::default()
    }

    /// The time a part of `bytes` takes at `rate` bytes/s with `overhead` per part.
    fn duration(bytes: u64, rate: f64, overhead: f64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / rate + overhead)
    }

    proptest! {
        #[test]
        fn never_leaves_bounds_and_never_grows_past_the_cap(
            steps in proptest::collection::vec((1u64..200_000_000, 1u64..60_000, any::<bool>()), 1..200),
            remembered in proptest::option::of(0u64..u64::MAX / 2),
        ) {
            let c = config();
            let mut s = PartSizer::new(c, remembered);
            prop_assert!((c.min..=c.max).contains(&s.next_size()));
            for (bytes, millis, fail) in steps {
                let before = s.next_size();
                let largest = s.largest_next();
                if fail {
                    s.record_failure();
                    prop_assert!(s.next_size() <= before);
                } else {
                    let elapsed = Duration::from_millis(millis);
                    s.record(bytes, elapsed);
                    let trusted = elapsed.as_secs_f64() >= c.target.as_secs_f64() * c.measured_fraction;
                    let cap = if trusted { c.max_growth_measured } else { c.max_growth };
                    prop_assert!(s.next_size() as f64 <= (before as f64 * cap).max(c.min as f64));
                }
                prop_assert!((c.min..=c.max).contains(&s.next_size()));
                prop_assert!(s.next_size() <= largest, "prepared ahead too little");
            }
        }

        #[test]
        fn converges_to_the_target_for_any_steady_rate(
            rate in 20_000.0f64..200_000_000.0,
            overhead_ms in 0u64..200,
        ) {
            let c = config();
            let overhead = overhead_ms as f64 / 1000.0;
            let mut s = PartSizer::new(c, None);
            for _ in 0..40 {
                let size = s.next_size();
                s.record(size, duration(size, rate, overhead));
            }
            let size = s.next_size();
            let took = duration(size, rate, overhead).as_secs_f64();
            let target = c.target.as_secs_f64();
            if size > c.min && size < c.max {
                // Within 5 % of the target: the measured rate includes the per-part overhead.
                prop_assert!((took - target).abs() <= 0.05 * target, "took {took} s for {size} B");
            } else if size == c.max {
                prop_assert!(took <= target * 1.05);
            } else {
                prop_assert!(took >= target * 0.95);
            }
        }
    }

    #[test]
    fn shrinks_at_once_when_the_rate_falls() {
        let mut s = PartSizer::new(config(), Some(32 << 20));
        s.record(32 << 20, Duration::from_secs(4)); // 8 MiB/s
        assert_eq!(s.next_size(), 32 << 20);
        s.record(32 << 20, Duration::from_secs(40)); // ten times slower
        assert_eq!(s.next_size(), (32 << 20) / 10);
    }

    #[test]
    fn one_fast_part_cannot_make_a_giant_next_part() {
        let mut s = PartSizer::new(config(), None);
        s.record(1 << 20, Duration::from_millis(1)); // 1 GB/s for a moment
        assert_eq!(s.next_size(), 2 << 20, "growth capped at 2x");
    }

    #[test]
    fn a_measured_rise_is_followed_within_one_part() {
        let mut s = PartSizer::new(config(), Some(1 << 20));
        s.record(1 << 20, Duration::from_secs(4)); // 256 KiB/s: on target
        assert_eq!(s.next_size(), 1 << 20);
        s.record(1 << 20, Duration::from_millis(400)); // the link got 10x faster
        assert_eq!(
            s.next_size(),
            10 << 20,
            "next part on target at the new rate"
        );
    }

    #[test]
    fn failure_quarters_the_size() {
        let mut s = PartSizer::new(config(), Some(16 << 20));
        s.record_failure();
        assert_eq!(s.next_size(), 4 << 20);
    }
}
