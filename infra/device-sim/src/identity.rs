//! Who a simulated device is: thing name, ICCID and IMEI, all derived from its index and the
//! fleet seed so that a rerun with the same seed registers the same devices again.

use cellbridge::common::ids::luhn_check_digit;

/// SplitMix64: tiny, fast and good enough for simulated readings and jitter. Deterministic so a
/// run can be reproduced from its seed; no dependency on a random-number crate.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one device: its stream does not depend on the other devices'.
    pub fn for_device(seed: u64, index: usize) -> Self {
        let mut mixer = Self(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        Self(mixer.next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[low, high)`.
    pub fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform in `[0, bound)`; `bound` must not be 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The thing name (and MQTT client id) of device `index` (0-based): `<prefix>-0001` onwards.
pub fn thing_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{:04}", index + 1)
}

/// A number derived from the seed alone, the same for every device of a fleet.
fn seed_part(seed: u64, salt: u64, modulus: u64) -> u64 {
    SimRng::new(seed ^ salt).next_u64() % modulus
}

/// Maps `index` one-to-one onto `0..modulus` (a power of ten): multiplying by a number coprime
/// with 10 is a bijection modulo a power of ten, so neighbouring devices get unrelated-looking
/// but never colliding serials.
fn scatter(index: u64, offset: u64, modulus: u64) -> u64 {
    const COPRIME_WITH_10: u64 = 7_919;
    ((index % modulus) * COPRIME_WITH_10 + offset) % modulus
}

/// 19 digits: `8901` (telecom, North America), a 4-digit issuer from the seed, a 10-digit serial
/// unique per index, then the Luhn check digit. Unique for the first 10^10 devices of a seed.
pub fn iccid(seed: u64, index: usize) -> String {
    const SERIALS: u64 = 10_000_000_000;
    let issuer = seed_part(seed, 0x1CC1D, 10_000);
    let serial = scatter(index as u64, seed_part(seed, 0x5E41, SERIALS), SERIALS);
    let payload = format!("8901{issuer:04}{serial:010}");
    format!("{payload}{}", luhn_check_digit(&payload))
}

/// 15 digits: an 8-digit type allocation code starting `35` (a common reporting body), a
/// 6-digit serial, then the Luhn check digit. Each block of 10^6 devices gets its own code, so
/// IMEIs stay unique however large the fleet.
pub fn imei(seed: u64, index: usize) -> String {
    const SERIALS: u64 = 1_000_000;
    let index = index as u64;
    let allocation = (seed_part(seed, 0x1AE1, SERIALS) + index / SERIALS) % SERIALS;
    let serial = scatter(index, seed_part(seed, 0x5E42, SERIALS), SERIALS);
    let payload = format!("35{allocation:06}{serial:06}");
    format!("{payload}{}", luhn_check_digit(&payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge::common::ids::{Iccid, Imei};
    use cellbridge::devices::registration::ThingName;
    use std::collections::HashSet;

    #[test]
    fn thing_names_are_numbered_from_one_and_valid() {
        assert_eq!(thing_name("sim", 0), "sim-0001");
        assert_eq!(thing_name("sim", 41), "sim-0042");
        assert_eq!(thing_name("sim", 12_344), "sim-12345");
        assert!(ThingName::parse(&thing_name("fleet_a:x", 9)).is_some());
    }

    #[test]
    fn identities_pass_the_platform_parsers_for_many_seeds_and_indices() {
        for seed in [0, 1, 42, u64::MAX] {
            for index in (0..2_000).chain([999_999, 1_000_000, 123_456_789]) {
                let iccid = iccid(seed, index);
                assert_eq!(iccid.len(), 19);
                assert!(iccid.starts_with("8901"), "{iccid}");
                assert!(Iccid::parse(&iccid).is_ok(), "{iccid}");
                let imei = imei(seed, index);
                assert!(Imei::parse(&imei).is_ok(), "{imei}");
            }
        }
    }

    #[test]
    fn identities_are_deterministic_and_unique_within_a_fleet() {
        assert_eq!(iccid(7, 3), iccid(7, 3));
        assert_eq!(imei(7, 3), imei(7, 3));
        assert_ne!(iccid(7, 3), iccid(8, 3), "the seed changes the fleet");
        let iccids: HashSet<String> = (0..10_000).map(|i| iccid(7, i)).collect();
        let imeis: HashSet<String> = (0..10_000).map(|i| imei(7, i)).collect();
        assert_eq!(iccids.len(), 10_000);
        assert_eq!(imeis.len(), 10_000);
    }

    #[test]
    fn random_values_stay_in_their_ranges() {
        let mut rng = SimRng::for_device(1, 2);
        for _ in 0..10_000 {
            let unit = rng.unit();
            assert!((0.0..1.0).contains(&unit));
            assert!((-3.0..5.0).contains(&rng.range(-3.0, 5.0)));
            assert!(rng.below(7) < 7);
        }
        let first: Vec<u64> = (0..4)
            .map(|i| SimRng::for_device(1, i).next_u64())
            .collect();
        let distinct: HashSet<&u64> = first.iter().collect();
        assert_eq!(distinct.len(), 4, "devices draw different streams");
    }
}
