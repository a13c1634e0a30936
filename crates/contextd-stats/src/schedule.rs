//! The report schedule: every interval, on the wall clock's whole multiples of it since
//! midnight UTC (30 minutes: :00 and :30), as the original product logged its status and
//! statistics at 11:00, 11:30, 12:00….

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use tokio::sync::watch;

/// The shortest interval honoured; shorter ones are read as this.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval honoured (a day: the schedule starts again at every midnight);
/// longer ones are read as this.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// The default interval: 30 minutes, as the original product.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// The next instant strictly after `now` that is a whole multiple of `interval` since
/// midnight UTC of its day: 30 minutes gives :00 and :30, 15 minutes :00, :15, :30 and :45.
/// An interval that does not divide a day starts again at every midnight (7 minutes: …,
/// 23:55, then 00:00). `interval` is clamped to [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
///
/// ```
/// use std::time::Duration;
/// use chrono::{DateTime, Utc};
/// use contextd_stats::next_boundary;
///
/// let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap_or_default();
/// let half_hour = Duration::from_secs(30 * 60);
/// assert_eq!(next_boundary(at("2026-03-01T10:17:12Z"), half_hour), at("2026-03-01T10:30:00Z"));
/// assert_eq!(next_boundary(at("2026-03-01T10:30:00Z"), half_hour), at("2026-03-01T11:00:00Z"));
/// ```
pub fn next_boundary(now: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    let interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    let midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let next_midnight = midnight + TimeDelta::days(1);
    // Both fit an i64 of nanoseconds: at most a day.
    let step = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
    let since = (now - midnight).num_nanoseconds().unwrap_or(0);
    let steps = since / step + 1;
    let next = steps
        .checked_mul(step)
        .map_or(next_midnight, |n| midnight + TimeDelta::nanoseconds(n));
    next.min(next_midnight)
}

/// The time and the waiting of [`report_every`]: the system's clock, or one a test moves.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once [`now`](Clock::now) has reached `at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> impl Future<Output = ()> + Send;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> impl Future<Output = ()> + Send {
        (**self).sleep_until(at)
    }
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// The longest single sleep of [`SystemClock`]: after it the wall clock is read again, so a
/// clock step (NTP) or a suspended machine shifts a report by at most this much.
const RECHECK: Duration = Duration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        // Timers run on the monotonic clock; the wall clock decides when we are there.
        loop {
            let Ok(left) = (at - Utc::now()).to_std() else {
                return;
            };
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(RECHECK)).await;
        }
    }
}

/// A clock that moves only when told to: for tests of what happens at 10:30 without
/// waiting for it.
///
/// ```
/// use std::ops::ControlFlow;
/// use std::sync::Arc;
/// use std::time::Duration;
/// use chrono::{DateTime, Utc};
/// use contextd_stats::{report_every, ManualClock};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap_or_default();
/// let clock = Arc::new(ManualClock::new(at("2026-03-01T10:17:12Z")));
/// let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
/// tokio::spawn(report_every(clock.clone(), Duration::from_secs(1800), move |at| {
///     let _ = tx.send(at);
///     async { ControlFlow::Continue(()) }
/// }));
/// assert_eq!(clock.sleeper().await, at("2026-03-01T10:30:00Z"));
/// clock.set(at("2026-03-01T10:30:00Z"));
/// assert_eq!(reports.recv().await, Some(at("2026-03-01T10:30:00Z")));
/// # }
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
    /// Until when a task sleeps on this clock, if one does.
    sleeping: watch::Sender<Option<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: watch::Sender::new(start),
            sleeping: watch::Sender::new(None),
        }
    }

    /// Moves the clock to `at`, waking every sleeper whose time has come.
    pub fn set(&self, at: DateTime<Utc>) {
        self.now.send_replace(at);
    }

    /// Waits until a task sleeps on this clock until a time still ahead, and tells which.
    pub async fn sleeper(&self) -> DateTime<Utc> {
        let mut sleeping = self.sleeping.subscribe();
        loop {
            let until = *sleeping.borrow_and_update();
            // A sleeper whose time has come is waking up, not sleeping.
            if let Some(at) = until.filter(|at| *at > self.now()) {
                return at;
            }
            // The sender lives as long as `self`: `changed` fails only after it is gone.
            if sleeping.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    async fn sleep_until(&self, at: DateTime<Utc>) {
        let mut now = self.now.subscribe();
        self.sleeping.send_replace(Some(at));
        let _ = now.wait_for(|now| *now >= at).await;
        self.sleeping.send_replace(None);
    }
}

/// Calls `report` at every boundary of `interval` ([`next_boundary`]) on `clock`, with the
/// boundary's time, until a report answers [`ControlFlow::Break`]. A report that overruns
/// the next boundary makes that one be skipped, never run late or twice.
pub async fn report_every<C, F, Fut>(clock: C, interval: Duration, mut report: F)
where
    C: Clock,
    F: FnMut(DateTime<Utc>) -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    loop {
        let at = next_boundary(clock.now(), interval);
        clock.sleep_until(at).await;
        if report(at).await.is_break() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("an RFC 3339 time")
    }

    fn minutes(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    #[test]
    fn half_hours_land_on_00_and_30() {
        let cases = [
            ("2026-03-01T10:00:00.001Z", "2026-03-01T10:30:00Z"),
            ("2026-03-01T10:17:12Z", "2026-03-01T10:30:00Z"),
            ("2026-03-01T10:29:59.999999999Z", "2026-03-01T10:30:00Z"),
            ("2026-03-01T10:30:00.000000001Z", "2026-03-01T11:00:00Z"),
            ("2026-03-01T10:59:59Z", "2026-03-01T11:00:00Z"),
        ];
        for (now, next) in cases {
            assert_eq!(next_boundary(at(now), minutes(30)), at(next), "after {now}");
        }
    }

    #[test]
    fn exactly_on_a_boundary_gives_the_next_one() {
        assert_eq!(
            next_boundary(at("2026-03-01T10:30:00Z"), minutes(30)),
            at("2026-03-01T11:00:00Z")
        );
        assert_eq!(
            next_boundary(at("2026-03-01T00:00:00Z"), minutes(30)),
            at("2026-03-01T00:30:00Z")
        );
        assert_eq!(
            next_boundary(at("2026-03-01T10:45:00Z"), minutes(15)),
            at("2026-03-01T11:00:00Z")
        );
    }

    #[test]
    fn quarter_hours_land_on_every_quarter() {
        let mut now = at("2026-03-01T09:52:10Z");
        let mut seen = Vec::new();
        for _ in 0..5 {
            now = next_boundary(now, minutes(15));
            seen.push(now);
        }
        let expected: Vec<_> = ["10:00", "10:15", "10:30", "10:45", "11:00"]
            .iter()
            .map(|hm| at(&format!("2026-03-01T{hm}:00Z")))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn near_midnight_the_next_day_begins() {
        assert_eq!(
            next_boundary(at("2026-12-31T23:45:01Z"), minutes(30)),
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            next_boundary(at("2026-02-28T23:59:59.5Z"), minutes(30)),
            at("2026-03-01T00:00:00Z")
        );
    }

    #[test]
    fn an_interval_that_does_not_divide_a_day_starts_again_at_midnight() {
        // 7 minutes: 205 × 7 = 1435 → 23:55 is the day's last multiple, then midnight.
        assert_eq!(
            next_boundary(at("2026-03-01T23:50:00Z"), minutes(7)),
            at("2026-03-01T23:55:00Z")
        );
        assert_eq!(
            next_boundary(at("2026-03-01T23:55:00Z"), minutes(7)),
            at("2026-03-02T00:00:00Z")
        );
        assert_eq!(
            next_boundary(at("2026-03-02T00:00:00Z"), minutes(7)),
            at("2026-03-02T00:07:00Z")
        );
        // 7 hours: 00:00, 07:00, 14:00, 21:00, then midnight.
        assert_eq!(
            next_boundary(at("2026-03-01T21:00:00Z"), minutes(7 * 60)),
            at("2026-03-02T00:00:00Z")
        );
    }

    #[test]
    fn intervals_are_clamped_to_a_second_and_a_day() {
        assert_eq!(
            next_boundary(at("2026-03-01T10:00:00.2Z"), Duration::ZERO),
            at("2026-03-01T10:00:01Z")
        );
        assert_eq!(
            next_boundary(at("2026-03-01T10:00:00Z"), Duration::from_secs(7 * 86_400)),
            at("2026-03-02T00:00:00Z")
        );
    }

    /// The schedule on an injected clock: reports land on :00 and :30 wherever the clock
    /// starts and however far it jumps, once per boundary.
    #[tokio::test]
    async fn reports_land_on_the_boundaries_of_an_injected_clock() {
        let clock = Arc::new(ManualClock::new(at("2026-03-01T10:17:12Z")));
        let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let seen = clock.clone();
        let task = tokio::spawn(report_every(clock.clone(), minutes(30), move |boundary| {
            let _ = tx.send((boundary, seen.now()));
            async { ControlFlow::Continue(()) }
        }));

        assert_eq!(clock.sleeper().await, at("2026-03-01T10:30:00Z"));
        clock.set(at("2026-03-01T10:29:59Z"));
        tokio::task::yield_now().await;
        assert!(reports.try_recv().is_err(), "no report before 10:30");

        for boundary in ["10:30", "11:00", "11:30"] {
            let boundary = at(&format!("2026-03-01T{boundary}:00Z"));
            assert_eq!(clock.sleeper().await, boundary);
            clock.set(boundary);
            assert_eq!(reports.recv().await, Some((boundary, boundary)));
        }

        // The clock jumps past a boundary: one report, then back on the half hours.
        assert_eq!(clock.sleeper().await, at("2026-03-01T12:00:00Z"));
        clock.set(at("2026-03-01T12:47:03Z"));
        let (boundary, when) = reports.recv().await.expect("a report");
        assert_eq!(boundary, at("2026-03-01T12:00:00Z"));
        assert_eq!(when, at("2026-03-01T12:47:03Z"));
        assert_eq!(clock.sleeper().await, at("2026-03-01T13:00:00Z"));
        assert!(reports.try_recv().is_err(), "one report per boundary");
        task.abort();
    }

    #[tokio::test]
    async fn a_report_that_breaks_ends_the_schedule() {
        let clock = Arc::new(ManualClock::new(at("2026-03-01T10:17:12Z")));
        let mut left = 2;
        let schedule = report_every(clock.clone(), minutes(30), move |_| {
            left -= 1;
            let flow = if left == 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            };
            async move { flow }
        });
        let task = tokio::spawn(schedule);
        assert_eq!(clock.sleeper().await, at("2026-03-01T10:30:00Z"));
        clock.set(at("2026-03-01T10:30:00Z"));
        assert_eq!(clock.sleeper().await, at("2026-03-01T11:00:00Z"));
        clock.set(at("2026-03-01T11:00:00Z"));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the schedule ends after the report that breaks")
            .expect("no panic");
    }

    #[tokio::test]
    async fn the_system_clock_wakes_no_earlier_than_the_wall_clock_time() {
        let clock = SystemClock;
        clock.sleep_until(clock.now() - TimeDelta::seconds(5)).await;
        let target = clock.now() + TimeDelta::milliseconds(30);
        clock.sleep_until(target).await;
        assert!(clock.now() >= target);
    }
}
