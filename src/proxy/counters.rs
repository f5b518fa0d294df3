//! Traffic counters kept per frontend, backend and server: the numbers the status page,
//! CSV and Prometheus output show. Plain data updated under the owner's lock; the clock is
//! passed in, so everything here is pure and tested without waiting.

use std::time::Duration;

use tokio::time::Instant;

/// Events per second over a sliding one-second window (HAProxy's `freq_ctr`): the count of
/// the current period plus the previous period's count weighted by how much of the window
/// it still covers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    /// Start of the current one-second period.
    period_start: Option<Instant>,
    curr: u64,
    prev: u64,
}

impl Rate {
    /// Count one event at `now`.
    pub fn hit(&mut self, now: Instant) {
        self.roll(now);
        self.curr += 1;
    }

    /// Events per second at `now`.
    pub fn per_second(&self, now: Instant) -> u64 {
        let mut r = *self;
        r.roll(now);
        let Some(start) = r.period_start else {
            return 0;
        };
        let into = now.saturating_duration_since(start).as_secs_f64().min(1.0);
        r.curr + (r.prev as f64 * (1.0 - into)).round() as u64
    }

    fn roll(&mut self, now: Instant) {
        let Some(start) = self.period_start else {
            self.period_start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(2) {
            self.prev = 0;
            self.curr = 0;
            self.period_start = Some(now);
        } else if elapsed >= Duration::from_secs(1) {
            self.prev = self.curr;
            self.curr = 0;
            self.period_start = Some(start + Duration::from_secs(1));
        }
    }
}

/// A sliding average over the last 1024 samples (HAProxy's `swrate`, used for the
/// `qtime`/`ctime`/`ttime` columns), with the maximum seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Avg {
    sum: u64,
    samples: u64,
    /// Largest sample seen.
    pub max: u64,
}

impl Avg {
    /// Samples the average spans.
    pub const WINDOW: u64 = 1024;

    pub fn add(&mut self, v: u64) {
        // Until the window is full this is the plain mean; then each sample replaces an
        // average one.
        if self.samples < Self::WINDOW {
            self.sum += v;
        } else {
            self.sum = self.sum - self.sum / Self::WINDOW + v;
        }
        self.samples = self.samples.saturating_add(1);
        self.max = self.max.max(v);
    }

    /// The average (0 before the first sample).
    pub fn get(&self) -> u64 {
        let n = self.samples.min(Self::WINDOW);
        self.sum.checked_div(n).unwrap_or(0)
    }
}

/// Counters of one frontend, backend or server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Connections waiting in the queue now, and the most seen.
    pub qcur: u64,
    pub qmax: u64,
    /// Sessions now, the most seen, and in total.
    pub scur: u64,
    pub smax: u64,
    pub stot: u64,
    /// Times a server was picked by load balancing.
    pub lbtot: u64,
    /// Bytes from clients (to servers) and to clients (from servers).
    pub bin: u64,
    pub bout: u64,
    /// Connections that got no server (no server UP, queue timeout; counted on the
    /// backend) or whose connection to the server failed after retries.
    pub econ: u64,
    /// Connection retries.
    pub wretr: u64,
    /// Connection attempts to servers.
    pub connect: u64,
    /// New sessions per second, and the most seen.
    pub rate: Rate,
    pub rate_max: u64,
    /// Time in the queue, to connect, and of whole sessions, in milliseconds.
    pub qtime: Avg,
    pub ctime: Avg,
    pub ttime: Avg,
    /// When the last session started here.
    pub last_session: Option<Instant>,
}

impl Counters {
    /// A new session at `now`.
    pub fn session_started(&mut self, now: Instant) {
        self.scur += 1;
        self.smax = self.smax.max(self.scur);
        self.stot += 1;
        self.rate.hit(now);
        self.rate_max = self.rate_max.max(self.rate.per_second(now));
        self.last_session = Some(now);
    }

    /// A session ended after `lasted`.
    pub fn session_ended(&mut self, lasted: Duration) {
        self.scur = self.scur.saturating_sub(1);
        self.ttime.add(lasted.as_millis() as u64);
    }

    /// One more connection in the queue.
    pub fn queued(&mut self) {
        self.qcur += 1;
        self.qmax = self.qmax.max(self.qcur);
    }

    /// One connection left the queue after `waited`.
    pub fn dequeued(&mut self, waited: Option<Duration>) {
        self.qcur = self.qcur.saturating_sub(1);
        if let Some(w) = waited {
            self.qtime.add(w.as_millis() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_a_sliding_second() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        assert_eq!(r.per_second(t0), 0);
        for _ in 0..10 {
            r.hit(t0);
        }
        assert_eq!(r.per_second(t0), 10);
        // Half a second into the next period, half of the last one still counts.
        let t = t0 + Duration::from_millis(1500);
        assert_eq!(r.per_second(t), 5);
        r.hit(t);
        assert_eq!(r.per_second(t), 6);
        assert_eq!(r.per_second(t0 + Duration::from_secs(5)), 0);
    }

    #[test]
    fn average_and_max() {
        let mut a = Avg::default();
        assert_eq!(a.get(), 0);
        a.add(10);
        a.add(20);
        assert_eq!(a.get(), 15);
        assert_eq!(a.max, 20);
        for _ in 0..5000 {
            a.add(4);
        }
        assert_eq!(a.get(), 4, "old samples fade out");
        assert_eq!(a.max, 20);
    }

    #[test]
    fn sessions_and_queue() {
        let now = Instant::now();
        let mut c = Counters::default();
        c.session_started(now);
        c.session_started(now);
        c.session_ended(Duration::from_millis(30));
        assert_eq!((c.scur, c.smax, c.stot, c.rate_max), (1, 2, 2, 2));
        assert_eq!(c.ttime.get(), 30);
        c.queued();
        c.queued();
        c.dequeued(Some(Duration::from_millis(8)));
        assert_eq!((c.qcur, c.qmax, c.qtime.get()), (1, 2, 8));
        assert_eq!(c.last_session, Some(now));
    }
}
