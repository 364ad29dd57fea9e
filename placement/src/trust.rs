//! Trust earned from verified agreement and lost on disagreement and missed deadlines.

use serde::{Deserialize, Serialize};

/// z for a 95% one-sided-ish Wilson interval: a worker is trusted for what it has shown,
/// not for what it might be.
const Z: f64 = 1.96;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    /// Results that agreed with the accepted result.
    pub agreements: u64,
    /// Results that disagreed with it, or lost a dispute.
    pub disagreements: u64,
    /// Replicas that missed their deadline.
    pub missed: u64,
}

impl Trust {
    pub fn failures(&self) -> u64 {
        self.disagreements + self.missed
    }

    /// The Wilson score lower bound of the share of good results: 0 for a new worker,
    /// so nobody is trusted on luck, and rising only with evidence.
    pub fn lower_bound(&self) -> f64 {
        let n = (self.agreements + self.failures()) as f64;
        if n == 0.0 {
            return 0.0;
        }
        let p = self.agreements as f64 / n;
        let z2 = Z * Z;
        let centre = p + z2 / (2.0 * n);
        let margin = Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
        ((centre - margin) / (1.0 + z2 / n)).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_starts_at_zero_rises_with_agreement_and_falls_with_failure() {
        assert_eq!(Trust::default().lower_bound(), 0.0);
        let ten = Trust { agreements: 10, ..Trust::default() }.lower_bound();
        let hundred = Trust { agreements: 100, ..Trust::default() }.lower_bound();
        assert!(0.6 < ten && ten < hundred && hundred < 1.0, "{ten} {hundred}");
        let wrong_once = Trust { agreements: 100, disagreements: 1, ..Trust::default() }.lower_bound();
        let late_once = Trust { agreements: 100, missed: 1, ..Trust::default() }.lower_bound();
        assert!(wrong_once < hundred && wrong_once == late_once);
        // It takes about 35 clean results to reach 0.9.
        assert!(Trust { agreements: 34, ..Trust::default() }.lower_bound() < 0.9);
        assert!(Trust { agreements: 40, ..Trust::default() }.lower_bound() >= 0.9);
    }
}
