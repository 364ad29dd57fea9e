//! Trust earned from verified agreement and lost on disagreement and missed deadlines.

pub use icn_protocol::governance::Trust;

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
