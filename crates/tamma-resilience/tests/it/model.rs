//! Property: for any sequence of outcomes, clock moves and operator actions, the breaker behaves
//! like a simple model of resilience4j's state machine.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use tamma_core::DurationMs;
use tamma_resilience::{BreakerConfig, BreakerState, CircuitBreaker, Error, ManualClock};

const WINDOW: usize = 5;
const MIN_CALLS: usize = 3;
const THRESHOLD: usize = 50;
const WAIT_MS: u64 = 10_000;
const PERMITS: usize = 2;
const MAX_HALF_OPEN_MS: u64 = 5_000;

#[derive(Clone, Debug)]
enum Op {
    Call {
        failed: bool,
    },
    /// Take a permit and keep it (a call in flight), if one is given.
    Start,
    /// Finish the oldest call in flight.
    Finish {
        failed: bool,
    },
    Advance(u64),
    Isolate,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<bool>().prop_map(|failed| Op::Call { failed }),
        1 => Just(Op::Start),
        1 => any::<bool>().prop_map(|failed| Op::Finish { failed }),
        3 => (0u64..12_000).prop_map(Op::Advance),
        1 => Just(Op::Isolate),
        1 => Just(Op::Reset),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum S {
    Closed,
    Open { until: u64 },
    HalfOpen { since: u64 },
    Isolated,
}

#[derive(Debug)]
struct Model {
    s: S,
    generation: u64,
    window: VecDeque<bool>,
    trials: Vec<bool>,
    permits: usize,
}

impl Model {
    fn enter(&mut self, s: S) {
        self.s = s;
        self.generation += 1;
        self.trials.clear();
        self.permits = 0;
        if s == S::Closed {
            self.window.clear();
        }
    }

    fn tick(&mut self, now: u64) {
        if let S::HalfOpen { since } = self.s
            && now - since >= MAX_HALF_OPEN_MS
        {
            self.enter(S::Open {
                until: now + WAIT_MS,
            });
        }
    }

    /// `Ok(generation)` or `Err(retry_after_ms or None for isolated)`.
    fn acquire(&mut self, now: u64) -> Result<u64, Option<u64>> {
        if let S::Open { until } = self.s {
            if now < until {
                return Err(Some(until - now));
            }
            self.enter(S::HalfOpen { since: now });
        }
        self.tick(now);
        match self.s {
            S::Closed => Ok(self.generation),
            S::Isolated => Err(None),
            S::Open { until } => Err(Some(until - now)),
            S::HalfOpen { since } => {
                if self.permits < PERMITS {
                    self.permits += 1;
                    Ok(self.generation)
                } else {
                    Err(Some(since + MAX_HALF_OPEN_MS - now))
                }
            }
        }
    }

    fn exceeded(calls: usize, failures: usize) -> bool {
        failures * 100 >= THRESHOLD * calls
    }

    fn record(&mut self, generation: u64, failed: bool, now: u64) {
        if generation != self.generation {
            return;
        }
        match self.s {
            S::Closed => {
                if self.window.len() == WINDOW {
                    self.window.pop_front();
                }
                self.window.push_back(failed);
                let f = self.window.iter().filter(|x| **x).count();
                if self.window.len() >= MIN_CALLS && Self::exceeded(self.window.len(), f) {
                    self.enter(S::Open {
                        until: now + WAIT_MS,
                    });
                }
            }
            S::HalfOpen { .. } => {
                self.trials.push(failed);
                if self.trials.len() >= PERMITS {
                    let f = self.trials.iter().filter(|x| **x).count();
                    if Self::exceeded(self.trials.len(), f) {
                        self.enter(S::Open {
                            until: now + WAIT_MS,
                        });
                    } else {
                        self.enter(S::Closed);
                    }
                }
            }
            S::Open { .. } | S::Isolated => {}
        }
    }

    fn state(&mut self, now: u64) -> BreakerState {
        self.tick(now);
        match self.s {
            S::Closed => BreakerState::Closed,
            S::Open { .. } => BreakerState::Open,
            S::HalfOpen { .. } => BreakerState::HalfOpen,
            S::Isolated => BreakerState::Isolated,
        }
    }
}

fn config() -> BreakerConfig {
    BreakerConfig {
        failure_rate_threshold: 50.0,
        sliding_window_size: 5,
        minimum_number_of_calls: 3,
        wait_duration_in_open_state: DurationMs::from_millis(WAIT_MS),
        permitted_number_of_calls_in_half_open_state: 2,
        max_wait_duration_in_half_open_state: DurationMs::from_millis(MAX_HALF_OPEN_MS),
        ..BreakerConfig::default()
    }
}

fn check(
    got: Result<tamma_resilience::Permit<'_>, Error>,
    want: Result<u64, Option<u64>>,
) -> Option<tamma_resilience::Permit<'_>> {
    match (got, want) {
        (Ok(p), Ok(_)) => Some(p),
        (Err(Error::BreakerOpen { retry_after, .. }), Err(Some(ms))) => {
            assert_eq!(retry_after, Duration::from_millis(ms));
            None
        }
        (Err(Error::BreakerIsolated { .. }), Err(None)) => None,
        (g, w) => panic!("breaker {g:?}, model {w:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new("model.op", &config(), clock.shared());
        let mut m = Model { s: S::Closed, generation: 0, window: VecDeque::new(), trials: Vec::new(), permits: 0 };
        let mut now = 0u64;
        let mut in_flight = VecDeque::new();
        for op in ops {
            match op {
                Op::Call { failed } => {
                    let want = m.acquire(now);
                    if let Some(p) = check(b.try_acquire(), want) {
                        if failed { p.failure() } else { p.success() }
                        m.record(want.unwrap(), failed, now);
                    }
                }
                Op::Start => {
                    let want = m.acquire(now);
                    if let Some(p) = check(b.try_acquire(), want) {
                        in_flight.push_back((p, want.unwrap()));
                    }
                }
                Op::Finish { failed } => {
                    if let Some((p, generation)) = in_flight.pop_front() {
                        if failed { p.failure() } else { p.success() }
                        m.record(generation, failed, now);
                    }
                }
                Op::Advance(ms) => {
                    now += ms;
                    clock.advance(Duration::from_millis(ms));
                }
                Op::Isolate => {
                    b.isolate();
                    if m.s != S::Isolated { m.enter(S::Isolated); }
                }
                Op::Reset => {
                    b.reset();
                    m.enter(S::Closed);
                }
            }
            prop_assert_eq!(b.state(), m.state(now));
        }
    }
}
