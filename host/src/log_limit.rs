//! A rate limit for warnings a guest can cause (a refused URL in a loop):
//! at most a few lines per window, and the next line that gets through says
//! how many were left out. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// Lines admitted per window.
const PER_WINDOW: u32 = 5;
/// The window.
const WINDOW: Duration = Duration::from_secs(10);

/// How many lines of one kind were logged in the current window.
#[derive(Debug)]
pub struct LogLimit {
    per_window: u32,
    window: Duration,
    window_start: Option<Instant>,
    admitted: u32,
    suppressed: u64,
}

impl Default for LogLimit {
    /// A few lines per ten seconds: for warnings.
    fn default() -> Self {
        LogLimit::new(PER_WINDOW, WINDOW)
    }
}

impl LogLimit {
    /// At most `per_window` lines per `window`.
    pub const fn new(per_window: u32, window: Duration) -> Self {
        LogLimit {
            per_window,
            window,
            window_start: None,
            admitted: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`; `Some(n)` when it may, `n`
    /// being the lines left out since the last one logged.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= self.window);
        if fresh {
            self.window_start = Some(now);
            self.admitted = 0;
        }
        if self.admitted < self.per_window {
            self.admitted += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_a_few_lines_per_window_and_counted() {
        let mut limit = LogLimit::default();
        let t0 = Instant::now();
        let admitted = (0..1000).filter(|_| limit.admit(t0).is_some()).count();
        assert_eq!(admitted, PER_WINDOW as usize);
        // The next window's first line reports what was left out.
        assert_eq!(limit.admit(t0 + WINDOW), Some(1000 - PER_WINDOW as u64));
        assert_eq!(limit.admit(t0 + WINDOW), Some(0));
    }
}
