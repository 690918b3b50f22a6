//! Randomness for waits: a fleet of daemons that all lost PostgreSQL at once (or all
//! restarted) must not come back, or start their periodic reads, in the same instant.

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos() as u64);
    let local = 0u8;
    // Time, process and thread (a stack address) differ between daemons and threads.
    let s = nanos ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64);
    s | 1
}

/// A uniformly distributed number in `0..n` (0 when `n` is 0); xorshift64*, not for
/// anything secret.
pub fn below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    })
}

/// "Full jitter": a wait uniformly distributed between zero and `cap`.
pub fn full_jitter(cap: Duration) -> Duration {
    let micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(below(micros.saturating_add(1)))
}

/// The exponential cap of attempt `n` (0-based): `base × 2ⁿ`, at most `max`.
pub fn exponential(base: Duration, n: u32, max: Duration) -> Duration {
    base.saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_spreads_over_the_whole_range() {
        let cap = Duration::from_secs(5);
        let waits: Vec<Duration> = (0..2000).map(|_| full_jitter(cap)).collect();
        assert!(waits.iter().all(|w| *w <= cap));
        // Both ends of the range are used: not the ±20 % around the cap of before.
        assert!(waits.iter().any(|w| *w < cap / 10), "no short waits");
        assert!(waits.iter().any(|w| *w > cap * 9 / 10), "no long waits");
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let base = Duration::from_millis(10);
        let max = Duration::from_secs(1);
        assert_eq!(exponential(base, 0, max), base);
        assert_eq!(exponential(base, 3, max), Duration::from_millis(80));
        assert_eq!(exponential(base, 40, max), max);
        assert!((0..1000).all(|_| below(7) < 7));
    }
}
