//! The rise/fall state machine, exactly as HAProxy keeps it (no IO, no clock).
//!
//! One counter, `health`, runs from 0 to `rise + fall - 1`; the server is UP when
//! `health >= rise`. A failed check decrements it and, once below `rise`, drops it to 0
//! (fully DOWN at once); a passed check increments it and, once at `rise`, lifts it to the
//! top (fully UP at once). So an UP server needs `fall` failures in a row to go DOWN, a DOWN
//! server `rise` passes in a row to come UP, and one result the other way cancels progress.
//! `chkfail` counts failures while `health > 0` (HAProxy's `failed_checks`).

use std::time::Duration;

use super::haproxy_cfg::InitState;

/// The counter and its thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub rise: u32,
    pub fall: u32,
    /// 0 ..= rise + fall - 1.
    pub health: u32,
}

/// What one check did to the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The counter moved (HAProxy logs these steps).
    pub moved: bool,
    /// Crossed the threshold: `Some(true)` came UP, `Some(false)` went DOWN.
    pub crossed: Option<bool>,
    /// This failure counts in `chkfail`.
    pub counted_failure: bool,
}

impl Health {
    /// The counter before the first check, for HAProxy's `init-state`.
    pub fn new(rise: u32, fall: u32, init: InitState) -> Health {
        let rise = rise.max(1);
        let fall = fall.max(1);
        let health = match init {
            InitState::FullyUp => rise + fall - 1,
            InitState::Up => rise,
            InitState::Down => rise - 1,
            InitState::FullyDown => 0,
        };
        Health { rise, fall, health }
    }

    /// The top of the counter.
    pub fn max(&self) -> u32 {
        self.rise + self.fall - 1
    }

    /// An outside source (the leader key in etcd) decided: the counter goes to its end, so
    /// the status reads plain `UP` or `DOWN`, not a check in progress.
    pub fn force(&mut self, up: bool) {
        self.health = if up { self.max() } else { 0 };
    }

    /// UP by the counter.
    pub fn is_up(&self) -> bool {
        self.health >= self.rise
    }

    /// Apply one check result.
    pub fn observe(&mut self, passed: bool) -> Step {
        let was_up = self.is_up();
        let before = self.health;
        let mut counted_failure = false;
        if passed {
            if self.health < self.max() {
                self.health += 1;
                if self.health >= self.rise {
                    self.health = self.max();
                }
            }
        } else if self.health > 0 {
            counted_failure = true;
            self.health -= 1;
            if self.health < self.rise {
                self.health = 0;
            }
        }
        let now_up = self.is_up();
        Step {
            moved: self.health != before,
            crossed: (was_up != now_up).then_some(now_up),
            counted_failure,
        }
    }

    /// The wait before the next check (HAProxy's `srv_getinter`): `inter` when fully UP,
    /// `downinter` when fully DOWN, `fastinter` in between; each falls back to `inter`.
    pub fn next_interval(
        &self,
        inter: Duration,
        fastinter: Option<Duration>,
        downinter: Option<Duration>,
    ) -> Duration {
        if self.health == self.max() {
            inter
        } else if self.health == 0 {
            downinter.unwrap_or(inter)
        } else {
            fastinter.unwrap_or(inter)
        }
    }

    /// The status as HAProxy's stats show it, given the server's state: `UP`,
    /// `UP 3/4` (UP, failing: health - rise + 1 of fall left), `DOWN`, `DOWN 1/2`
    /// (DOWN, passing: health of rise).
    pub fn status_text(&self, up: bool) -> String {
        if up {
            if self.health >= self.max() || self.health < self.rise {
                "UP".into()
            } else {
                format!("UP {}/{}", self.health - self.rise + 1, self.fall)
            }
        } else if self.health == 0 || self.health >= self.rise {
            "DOWN".into()
        } else {
            format!("DOWN {}/{}", self.health, self.rise)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's `fall 4 rise 2`.
    fn seed(init: InitState) -> Health {
        Health::new(2, 4, init)
    }

    #[test]
    fn up_server_needs_fall_failures_in_a_row() {
        let mut h = seed(InitState::FullyUp);
        assert_eq!(h.health, 5);
        for expected in [4, 3, 2] {
            let s = h.observe(false);
            assert_eq!(
                (h.health, s.crossed, s.counted_failure),
                (expected, None, true)
            );
            assert!(h.is_up());
        }
        assert_eq!(h.status_text(true), "UP 1/4");
        let s = h.observe(false);
        assert_eq!((h.health, s.crossed), (0, Some(false)));
        assert_eq!(h.status_text(false), "DOWN");
        // Fully DOWN: further failures neither move nor count.
        let s = h.observe(false);
        assert_eq!((s.moved, s.counted_failure), (false, false));
    }

    #[test]
    fn one_pass_cancels_a_falling_server() {
        let mut h = seed(InitState::FullyUp);
        h.observe(false);
        h.observe(false);
        assert_eq!(h.status_text(true), "UP 2/4");
        let s = h.observe(true);
        assert_eq!(
            (h.health, s.moved, s.crossed),
            (5, true, None),
            "back to fully UP at once"
        );
        assert_eq!(h.status_text(true), "UP");
    }

    #[test]
    fn down_server_needs_rise_passes_and_a_failure_resets() {
        let mut h = seed(InitState::FullyDown);
        assert_eq!(h.observe(true).crossed, None);
        assert_eq!(h.status_text(false), "DOWN 1/2");
        let s = h.observe(false);
        assert_eq!((h.health, s.counted_failure), (0, true));
        h.observe(true);
        let s = h.observe(true);
        assert_eq!((h.health, s.crossed), (5, Some(true)));
    }

    #[test]
    fn init_states() {
        // HAProxy's default: UP, first failure takes it DOWN.
        let mut h = seed(InitState::Up);
        assert!(h.is_up());
        assert_eq!(h.observe(false).crossed, Some(false));
        // manning's default: DOWN, first pass takes it UP.
        let mut h = seed(InitState::Down);
        assert!(!h.is_up());
        assert_eq!(h.observe(true).crossed, Some(true));
        let mut h = seed(InitState::Down);
        let s = h.observe(false);
        assert_eq!((s.crossed, s.counted_failure, h.health), (None, true, 0));
        // rise 1: DOWN starts at 0 and one pass brings it UP.
        let mut h = Health::new(1, 1, InitState::Down);
        assert_eq!(h.health, 0);
        assert_eq!(h.observe(true).crossed, Some(true));
        assert_eq!(h.observe(false).crossed, Some(false));
    }

    #[test]
    fn intervals_follow_srv_getinter() {
        let inter = Duration::from_millis(2500);
        let (fast_d, down_d) = (Duration::from_millis(500), Duration::from_secs(10));
        let (fast, down) = (Some(fast_d), Some(down_d));
        let mut h = seed(InitState::FullyUp);
        assert_eq!(h.next_interval(inter, fast, down), inter);
        h.observe(false);
        assert_eq!(h.next_interval(inter, fast, down), fast_d);
        assert_eq!(h.next_interval(inter, None, None), inter);
        for _ in 0..3 {
            h.observe(false);
        }
        assert_eq!(h.next_interval(inter, fast, down), down_d);
        h.observe(true);
        assert_eq!(h.next_interval(inter, fast, down), fast_d);
    }
}
