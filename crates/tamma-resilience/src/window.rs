//! Sliding windows of call outcomes: the last N calls, or the calls of the last N seconds.

/// Counts in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Totals {
    #[inline]
    pub(crate) fn add(&mut self, o: u8) {
        self.calls += 1;
        self.failures += u32::from(o & FAILED);
        self.slow += u32::from((o & SLOW) >> 1);
    }

    #[inline]
    fn sub(&mut self, o: u8) {
        self.calls -= 1;
        self.failures -= u32::from(o & FAILED);
        self.slow -= u32::from((o & SLOW) >> 1);
    }

    fn sub_totals(&mut self, b: Totals) {
        self.calls -= b.calls;
        self.failures -= b.failures;
        self.slow -= b.slow;
    }

    /// Failure rate in percent.
    pub(crate) fn failure_rate(self) -> f64 {
        rate(self.failures, self.calls)
    }

    /// Slow-call rate in percent.
    pub(crate) fn slow_rate(self) -> f64 {
        rate(self.slow, self.calls)
    }
}

fn rate(part: u32, of: u32) -> f64 {
    if of == 0 {
        0.0
    } else {
        f64::from(part) * 100.0 / f64::from(of)
    }
}

/// Outcome bit: the call failed.
pub(crate) const FAILED: u8 = 1;
/// Outcome bit: the call was slow.
pub(crate) const SLOW: u8 = 2;

/// The last `capacity` outcomes, in a ring.
#[derive(Debug)]
pub(crate) struct CountWindow {
    ring: Box<[u8]>,
    next: usize,
    len: usize,
    totals: Totals,
}

impl CountWindow {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            ring: vec![0; capacity.max(1)].into_boxed_slice(),
            next: 0,
            len: 0,
            totals: Totals::default(),
        }
    }

    #[inline]
    pub(crate) fn record(&mut self, o: u8) -> Totals {
        if self.len == self.ring.len() {
            self.totals.sub(self.ring[self.next]);
        } else {
            self.len += 1;
        }
        self.ring[self.next] = o;
        self.totals.add(o);
        self.next += 1;
        if self.next == self.ring.len() {
            self.next = 0;
        }
        self.totals
    }

    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    pub(crate) fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
        self.totals = Totals::default();
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    sec: u64,
    totals: Totals,
}

/// The outcomes of the last `seconds` whole seconds, one bucket per second.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[Bucket]>,
    head_sec: u64,
    totals: Totals,
}

impl TimeWindow {
    pub(crate) fn new(seconds: usize) -> Self {
        Self {
            buckets: vec![Bucket::default(); seconds.max(1)].into_boxed_slice(),
            head_sec: 0,
            totals: Totals::default(),
        }
    }

    fn len_u64(&self) -> u64 {
        // A slice length always fits in u64 on supported targets.
        self.buckets.len() as u64
    }

    fn index(&self, sec: u64) -> usize {
        // The remainder is below the slice length, which is a usize.
        #[allow(clippy::cast_possible_truncation)]
        let i = (sec % self.len_u64()) as usize;
        i
    }

    /// Drops the buckets of seconds that left the window when time moved to `now_sec`.
    fn advance(&mut self, now_sec: u64) {
        if now_sec <= self.head_sec {
            return;
        }
        let gap = now_sec - self.head_sec;
        if gap >= self.len_u64() {
            for b in &mut *self.buckets {
                *b = Bucket::default();
            }
            self.totals = Totals::default();
        } else {
            for s in self.head_sec + 1..=now_sec {
                let i = self.index(s);
                let old = self.buckets[i].totals;
                self.totals.sub_totals(old);
                self.buckets[i] = Bucket {
                    sec: s,
                    totals: Totals::default(),
                };
            }
        }
        self.head_sec = now_sec;
    }

    pub(crate) fn record(&mut self, now_sec: u64, o: u8) -> Totals {
        self.advance(now_sec);
        // A call that started in an earlier second but finished now counts in the current second.
        let i = self.index(self.head_sec);
        self.buckets[i].sec = self.head_sec;
        self.buckets[i].totals.add(o);
        self.totals.add(o);
        self.totals
    }

    pub(crate) fn totals(&mut self, now_sec: u64) -> Totals {
        self.advance(now_sec);
        self.totals
    }

    pub(crate) fn clear(&mut self, now_sec: u64) {
        for b in &mut *self.buckets {
            *b = Bucket::default();
        }
        self.totals = Totals::default();
        self.head_sec = now_sec;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_forgets_the_oldest() {
        let mut w = CountWindow::new(3);
        w.record(FAILED);
        w.record(FAILED | SLOW);
        let t = w.record(0);
        assert_eq!(
            t,
            Totals {
                calls: 3,
                failures: 2,
                slow: 1
            }
        );
        let t = w.record(0);
        assert_eq!(
            t,
            Totals {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        let t = w.record(0);
        assert_eq!(
            t,
            Totals {
                calls: 3,
                failures: 0,
                slow: 0
            }
        );
        assert!((t.failure_rate()).abs() < f64::EPSILON);
    }

    #[test]
    fn time_window_drops_old_seconds() {
        let mut w = TimeWindow::new(3);
        w.record(10, FAILED);
        w.record(11, 0);
        w.record(12, FAILED);
        assert_eq!(w.totals(12).calls, 3);
        assert_eq!(
            w.totals(13),
            Totals {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        assert_eq!(w.totals(15).calls, 0);
        w.record(100, FAILED);
        assert_eq!(
            w.totals(100),
            Totals {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
    }
}
