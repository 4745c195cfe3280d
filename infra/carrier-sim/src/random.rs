//! A small seeded generator: fault injection must be repeatable from a seed, and needs no more.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Random(AtomicU64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed | 1))
    }

    /// A uniform draw in [0, 1) (xorshift64*).
    pub fn next_unit(&self) -> f64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `rate`.
    pub fn chance(&self, rate: f64) -> bool {
        rate > 0.0 && self.next_unit() < rate
    }
}
