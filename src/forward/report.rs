//! Deciding what to log about faults that repeat, so a down target or an exhausted limit
//! gives a few informative lines instead of one per client.
//!
//! No IO and no clock of its own: callers pass `now`, which makes every rule a unit test.
//!
//! For a target that is down the log reads, for example:
//! ```text
//! WARN target unix:///run/patroni/proxy.sock is down: Connection refused (os error 111); clients are closed until it answers
//! WARN target unix:///run/patroni/proxy.sock still down: 37 clients refused in the last 10s (last error: ...)
//! INFO target unix:///run/patroni/proxy.sock answers again after 23.4s down; 12 clients refused since the last message
//! ```
//! A recovery after a reported outage is logged at once. Otherwise at most one line per
//! [`SUMMARY_INTERVAL`]: a target that flaps between up and down is summarised, not echoed.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// The shortest time between two lines about the same fault (except a recovery line).
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// A line to log about the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Connecting failed after the target was up (or at the first client).
    Down { error: String },
    /// Still failing: `refused` clients were closed in the last `window`; `served` got
    /// through in between (a flapping target).
    StillDown {
        refused: u64,
        served: u64,
        window: Duration,
        error: String,
    },
    /// Connecting works again after `down_for`; `refused` clients were closed since the
    /// last line.
    Up { down_for: Duration, refused: u64 },
}

impl Report {
    /// WARN for faults, INFO for the recovery.
    pub fn is_fault(&self) -> bool {
        !matches!(self, Report::Up { .. })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Down { error } => {
                write!(f, "is down: {error}; clients are closed until it answers")
            }
            Report::StillDown {
                refused,
                served,
                window,
                error,
            } => {
                write!(
                    f,
                    "still down: {refused} clients refused in the last {}",
                    secs(*window)
                )?;
                if *served > 0 {
                    write!(f, " ({served} got through in between)")?;
                }
                write!(f, " (last error: {error})")
            }
            Report::Up { down_for, refused } => {
                write!(f, "answers again after {} down", secs(*down_for))?;
                if *refused > 0 {
                    write!(f, "; {refused} clients refused since the last message")?;
                }
                Ok(())
            }
        }
    }
}

/// Seconds with one decimal: `10s`, `23.4s`.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() < 0.05 || s >= 100.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

/// What is known about the target's availability and what was already logged.
#[derive(Debug)]
pub struct OutageLog {
    interval: Duration,
    /// Set while connecting fails: since when.
    down_since: Option<Instant>,
    /// When the last line was produced.
    last_report: Option<Instant>,
    /// The last line said the target is down (so a recovery is news worth a line at once).
    reported_down: bool,
    /// Clients refused since the last line.
    refused: u64,
    /// Clients served since the last line while something is unreported (flapping).
    served: u64,
    /// A recovery not logged yet (it followed an outage that was itself not logged):
    /// how long the target had been down.
    pending_up: Option<Duration>,
    last_error: String,
}

impl Default for OutageLog {
    fn default() -> Self {
        OutageLog::new(SUMMARY_INTERVAL)
    }
}

impl OutageLog {
    pub fn new(interval: Duration) -> OutageLog {
        OutageLog {
            interval,
            down_since: None,
            last_report: None,
            reported_down: false,
            refused: 0,
            served: 0,
            pending_up: None,
            last_error: String::new(),
        }
    }

    /// True while connecting to the target fails.
    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    fn may_report(&self, now: Instant) -> bool {
        self.last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval)
    }

    fn reported(&mut self, now: Instant, down: bool) {
        self.last_report = Some(now);
        self.reported_down = down;
        self.refused = 0;
        self.served = 0;
        self.pending_up = None;
    }

    /// A connect to the target failed with `error`; its client was closed.
    pub fn failure(&mut self, now: Instant, error: &str) -> Option<Report> {
        self.last_error = error.to_string();
        let newly_down = self.down_since.is_none();
        if newly_down {
            self.down_since = Some(now);
        }
        if !self.may_report(now) {
            self.refused += 1;
            return None;
        }
        if newly_down && self.refused == 0 && self.pending_up.is_none() {
            self.reported(now, true);
            return Some(Report::Down {
                error: error.to_string(),
            });
        }
        self.refused += 1;
        let report = self.still_down(now);
        self.reported(now, true);
        Some(report)
    }

    /// A connect to the target succeeded.
    pub fn success(&mut self, now: Instant) -> Option<Report> {
        let Some(since) = self.down_since.take() else {
            if self.pending_up.is_some() || self.refused > 0 {
                self.served += 1;
            }
            return None;
        };
        let down_for = now.saturating_duration_since(since);
        if self.reported_down {
            let report = Report::Up {
                down_for,
                refused: self.refused,
            };
            self.reported(now, false);
            return Some(report);
        }
        self.pending_up = Some(down_for);
        self.served += 1;
        None
    }

    /// Called about once a second: emits a summary that was held back by the interval.
    pub fn tick(&mut self, now: Instant) -> Option<Report> {
        if !self.may_report(now) {
            return None;
        }
        if self.down_since.is_some() && self.refused > 0 {
            let report = self.still_down(now);
            self.reported(now, true);
            return Some(report);
        }
        if self.down_since.is_none() && (self.pending_up.is_some() || self.refused > 0) {
            let report = Report::Up {
                down_for: self.pending_up.unwrap_or_default(),
                refused: self.refused,
            };
            self.reported(now, false);
            return Some(report);
        }
        None
    }

    fn still_down(&self, now: Instant) -> Report {
        Report::StillDown {
            refused: self.refused,
            served: self.served,
            window: self
                .last_report
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
            error: self.last_error.clone(),
        }
    }
}

/// At most one line per interval for a repeating event (accept errors, the connection
/// limit being reached); tells how many were held back in between.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when this occurrence should be logged, `n` being how many were held back
    /// since the last line; `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = "Connection refused (os error 111)";

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn an_outage_is_one_line_then_summaries_then_a_recovery_line() {
        let t0 = Instant::now();
        let mut log = OutageLog::default();
        assert_eq!(log.success(t0), None, "healthy: nothing to say");
        assert_eq!(
            log.failure(at(t0, 1000), REFUSED),
            Some(Report::Down {
                error: REFUSED.into()
            })
        );
        assert!(log.is_down());
        // 100 more clients within the interval: silence.
        for i in 0..100 {
            assert_eq!(log.failure(at(t0, 1100 + i * 50), REFUSED), None);
        }
        assert_eq!(log.tick(at(t0, 9000)), None, "interval not over");
        // The next failure after the interval carries the summary.
        assert_eq!(
            log.failure(at(t0, 11_000), REFUSED),
            Some(Report::StillDown {
                refused: 101,
                served: 0,
                window: Duration::from_secs(10),
                error: REFUSED.into()
            })
        );
        // A few more, then the tick flushes them once the interval is over.
        log.failure(at(t0, 12_000), REFUSED);
        log.failure(at(t0, 13_000), REFUSED);
        assert_eq!(log.tick(at(t0, 20_000)), None);
        assert!(matches!(
            log.tick(at(t0, 21_000)),
            Some(Report::StillDown { refused: 2, .. })
        ));
        assert_eq!(log.tick(at(t0, 40_000)), None, "no clients: nothing new");
        // A failure long after the last line is summarised at once...
        assert!(matches!(
            log.failure(at(t0, 41_000), REFUSED),
            Some(Report::StillDown { refused: 1, .. })
        ));
        log.failure(at(t0, 41_500), REFUSED);
        // ...and the recovery is news: logged at once even inside the interval.
        assert_eq!(
            log.success(at(t0, 42_000)),
            Some(Report::Up {
                down_for: Duration::from_secs(41),
                refused: 1
            })
        );
        assert!(!log.is_down());
        assert_eq!(log.success(at(t0, 42_500)), None);
        assert_eq!(log.tick(at(t0, 60_000)), None);
    }

    #[test]
    fn a_flapping_target_is_summarised_not_echoed() {
        let t0 = Instant::now();
        let mut log = OutageLog::default();
        assert!(matches!(
            log.failure(t0, REFUSED),
            Some(Report::Down { .. })
        ));
        assert!(matches!(log.success(at(t0, 100)), Some(Report::Up { .. })));
        // Down and up again and again within the interval: no line each time.
        let mut lines = 0;
        for i in 0..50u64 {
            lines += log.failure(at(t0, 200 + i * 100), REFUSED).is_some() as u32;
            lines += log.success(at(t0, 250 + i * 100)).is_some() as u32;
        }
        assert_eq!(lines, 0);
        // The tick after the interval says what happened: up now, with the count.
        match log.tick(at(t0, 10_100)) {
            Some(Report::Up { refused, .. }) => assert_eq!(refused, 50),
            other => panic!("{other:?}"),
        }
        assert_eq!(log.tick(at(t0, 30_000)), None);
    }

    #[test]
    fn a_failure_held_back_by_the_interval_is_reported_by_the_tick() {
        let t0 = Instant::now();
        let mut log = OutageLog::default();
        log.failure(t0, REFUSED);
        log.success(at(t0, 1000));
        // Down again 2 s after the recovery line: held back...
        assert_eq!(log.failure(at(t0, 3000), "timed out"), None);
        // ...and summarised when the interval is over.
        match log.tick(at(t0, 11_000)) {
            Some(Report::StillDown { refused, error, .. }) => {
                assert_eq!(refused, 1);
                assert_eq!(error, "timed out");
            }
            other => panic!("{other:?}"),
        }
        // Its recovery is then logged at once.
        assert!(matches!(
            log.success(at(t0, 12_000)),
            Some(Report::Up { .. })
        ));
    }

    #[test]
    fn lines_read_well() {
        let down = Report::Down {
            error: REFUSED.into(),
        };
        assert_eq!(
            down.to_string(),
            "is down: Connection refused (os error 111); clients are closed until it answers"
        );
        assert!(down.is_fault());
        let still = Report::StillDown {
            refused: 37,
            served: 2,
            window: Duration::from_secs(10),
            error: "x".into(),
        };
        assert_eq!(
            still.to_string(),
            "still down: 37 clients refused in the last 10s (2 got through in between) (last error: x)"
        );
        let up = Report::Up {
            down_for: Duration::from_millis(23_400),
            refused: 12,
        };
        assert_eq!(
            up.to_string(),
            "answers again after 23.4s down; 12 clients refused since the last message"
        );
        assert!(!up.is_fault());
    }

    #[test]
    fn throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(at(t0, 1000)), None);
        assert_eq!(t.allow(at(t0, 2000)), None);
        assert_eq!(t.allow(at(t0, 61_000)), Some(2));
        assert_eq!(t.allow(at(t0, 62_000)), None);
    }
}
