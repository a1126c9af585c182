//! What to do with a delivery that failed: pure policy.
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Deliver again after this delay.
    Retry(Duration),
    /// Retries are exhausted: mark the file failed and park the message.
    GiveUp,
}

const BASE: Duration = Duration::from_millis(500);
const CEILING: Duration = Duration::from_secs(60);

/// Exponential backoff (0.5 s, 1 s, 2 s, ... capped at 60 s) until `max_deliveries`.
pub fn after_failure(deliveries: u32, max_deliveries: u32) -> AfterFailure {
    if deliveries >= max_deliveries {
        return AfterFailure::GiveUp;
    }
    let factor = 1u32 << deliveries.saturating_sub(1).min(16);
    AfterFailure::Retry(BASE.saturating_mul(factor).min(CEILING))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_then_cap() {
        assert_eq!(
            after_failure(1, 5),
            AfterFailure::Retry(Duration::from_millis(500))
        );
        assert_eq!(
            after_failure(2, 5),
            AfterFailure::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            after_failure(4, 5),
            AfterFailure::Retry(Duration::from_secs(4))
        );
        assert_eq!(after_failure(30, 100), AfterFailure::Retry(CEILING));
    }

    #[test]
    fn the_last_delivery_gives_up() {
        assert_eq!(after_failure(5, 5), AfterFailure::GiveUp);
        assert_eq!(after_failure(9, 5), AfterFailure::GiveUp);
        assert_eq!(after_failure(1, 1), AfterFailure::GiveUp);
    }
}
