//! Differential privacy: an exact discrete Laplace sampler (Canonne, Kamath, Steinke 2020,
//! "The Discrete Gaussian for Differential Privacy", Algorithms 1 and 2) driven by a
//! cryptographic RNG. Integer arithmetic only: no floating-point noise to attack.

/// Uniform integers; the node uses the system CSPRNG, tests a seeded generator.
pub trait Randomness {
    /// Uniform in `0..n` (`n >= 1`).
    fn below(&mut self, n: u128) -> u128;
}

/// ring's system RNG with rejection sampling.
#[derive(Debug)]
pub struct SystemRandomness(ring::rand::SystemRandom);

impl Default for SystemRandomness {
    fn default() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Randomness for SystemRandomness {
    fn below(&mut self, n: u128) -> u128 {
        use ring::rand::SecureRandom;
        if n <= 1 {
            return 0;
        }
        // The largest multiple of n that fits: values at or above it are rejected, so every
        // residue is equally likely.
        let zone = u128::MAX - (u128::MAX % n);
        loop {
            let mut b = [0u8; 16];
            if self.0.fill(&mut b).is_err() {
                // The OS RNG failing is not recoverable; never fall back to weak randomness.
                std::process::abort();
            }
            let v = u128::from_le_bytes(b);
            if v < zone {
                return v % n;
            }
        }
    }
}

/// Bernoulli(num/den).
fn bernoulli(rng: &mut dyn Randomness, num: u128, den: u128) -> bool {
    rng.below(den) < num
}

/// Bernoulli(exp(-num/den)) for num/den in [0, 1] (Algorithm 1, first case).
fn bernoulli_exp_le1(rng: &mut dyn Randomness, num: u128, den: u128) -> bool {
    let mut k: u128 = 1;
    loop {
        // Bernoulli(gamma / k)
        if !bernoulli(rng, num, den.saturating_mul(k)) {
            break;
        }
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(-num/den)) for any num/den >= 0 (Algorithm 1).
fn bernoulli_exp(rng: &mut dyn Randomness, num: u128, den: u128) -> bool {
    let whole = num / den;
    for _ in 0..whole {
        if !bernoulli_exp_le1(rng, 1, 1) {
            return false;
        }
    }
    bernoulli_exp_le1(rng, num % den, den)
}

/// A sample of the discrete Laplace distribution with scale t/s: P(x) ∝ exp(-|x|·s/t)
/// (Algorithm 2). For ε-differential privacy of a query with L1 sensitivity Δ, the scale is Δ/ε.
pub fn discrete_laplace(rng: &mut dyn Randomness, s: u128, t: u128) -> i128 {
    assert!(s >= 1 && t >= 1, "scale must be positive");
    loop {
        let u = rng.below(t);
        if !bernoulli_exp(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp(rng, 1, 1) {
            v += 1;
        }
        let x = u + t * v;
        let y = x / s;
        let negative = bernoulli(rng, 1, 2);
        if negative && y == 0 {
            continue;
        }
        let y = i128::try_from(y).unwrap_or(i128::MAX);
        return if negative { -y } else { y };
    }
}

/// Noise for a query of sensitivity `sensitivity` at privacy `epsilon_milli` / 1000.
pub fn noise(rng: &mut dyn Randomness, sensitivity: u128, epsilon_milli: u64) -> i128 {
    // scale = Δ / ε = Δ·1000 / ε_milli = t / s
    discrete_laplace(rng, u128::from(epsilon_milli.max(1)), sensitivity.max(1) * 1000)
}

/// Differentially private partition selection: which groups of an answer may be released at
/// all. A group's key comes from the data (an industry code held by few enterprises is itself
/// telling), so releasing exactly the groups over a fixed size would be an exact, differenceable
/// signal. As in Google's differential-privacy library (Laplace thresholding with
/// pre-thresholding, `cc/algorithms/partition-selection.h`): a group with fewer than
/// `min_group_size` enterprises is never released; otherwise its count less `min_group_size - 1`
/// gets discrete Laplace noise of scale `max_groups / epsilon` and the group is released when
/// that reaches a threshold chosen so that a group one enterprise brings over the minimum is
/// released with probability at most `delta` (split over the `max_groups` groups an enterprise
/// can be in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionSelection {
    min_group_size: u64,
    max_groups: u128,
    epsilon_milli: u64,
    threshold: i128,
}

impl PartitionSelection {
    /// `epsilon_milli` / 1000 is the epsilon spent on selection; `0 < delta < 1`.
    pub fn new(min_group_size: u32, max_groups: u32, epsilon_milli: u64, delta: f64) -> Self {
        let max_groups = u128::from(max_groups.max(1));
        let epsilon_milli = epsilon_milli.max(1);
        let delta = delta.clamp(f64::MIN_POSITIVE, 0.5);
        // delta for one group: 1 - (1 - delta)^(1/k), so that k groups together stay within delta.
        let per_group = -f64::exp_m1(f64::ln_1p(-delta) / max_groups as f64);
        // The noise is discrete Laplace with q = exp(-epsilon/k): P(Z >= m) = q^m / (1 + q) for
        // m >= 1. A group at the minimum (count 1 after pre-thresholding) is released when
        // 1 + Z >= T, so T - 1 >= ln(per_group · (1 + q)) / ln q.
        let ln_q = -(epsilon_milli as f64) / (1000.0 * max_groups as f64);
        let m = (f64::ln(per_group * (1.0 + ln_q.exp())) / ln_q).ceil().max(1.0);
        let threshold = 1 + if m.is_finite() && m < 1e15 { m as i128 } else { 1_000_000_000_000_000 };
        Self { min_group_size: u64::from(min_group_size.max(1)), max_groups, epsilon_milli, threshold }
    }

    /// The noisy count a group must reach (after pre-thresholding).
    pub fn threshold(&self) -> i128 {
        self.threshold
    }

    /// Whether a group with `enterprises` distinct contributors is released.
    pub fn keep(&self, rng: &mut dyn Randomness, enterprises: u64) -> bool {
        if enterprises < self.min_group_size {
            return false;
        }
        let above = i128::from(enterprises - (self.min_group_size - 1));
        above + noise(rng, self.max_groups, self.epsilon_milli) >= self.threshold
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator for statistical tests (SplitMix64).
    pub(crate) struct Seeded(pub u64);

    impl Randomness for Seeded {
        fn below(&mut self, n: u128) -> u128 {
            if n <= 1 {
                return 0;
            }
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let hi = u128::from(z ^ (z >> 31));
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let lo = u128::from(z ^ (z >> 31));
            ((hi << 64) | lo) % n
        }
    }

    #[test]
    fn discrete_laplace_matches_its_distribution() {
        // Scale 2 (s = 1, t = 2): P(x) = (1 - e^-1/2) / (1 + e^-1/2) · e^(-|x|/2).
        let mut rng = Seeded(42);
        let n = 200_000;
        let mut counts = std::collections::HashMap::new();
        let mut sum = 0i128;
        for _ in 0..n {
            let x = discrete_laplace(&mut rng, 1, 2);
            sum += x;
            *counts.entry(x).or_insert(0u32) += 1;
        }
        let q = (-0.5f64).exp();
        let p0 = (1.0 - q) / (1.0 + q);
        for x in -4i128..=4 {
            let expected = p0 * q.powi(x.unsigned_abs() as i32) * n as f64;
            let got = f64::from(*counts.get(&x).unwrap_or(&0));
            let sd = expected.sqrt();
            assert!((got - expected).abs() < 5.0 * sd, "P({x}): got {got}, expected {expected:.0}");
        }
        // Symmetric around zero.
        assert!((sum as f64 / n as f64).abs() < 0.05, "mean {}", sum as f64 / n as f64);
    }

    #[test]
    fn noise_scales_with_sensitivity_over_epsilon() {
        let spread = |sens: u128, eps_milli: u64| {
            let mut rng = Seeded(7);
            (0..20_000).map(|_| noise(&mut rng, sens, eps_milli).unsigned_abs() as f64).sum::<f64>() / 20_000.0
        };
        // Mean absolute value of a discrete Laplace of scale b is about b for b >> 1.
        let a = spread(10, 1000); // scale 10
        let b = spread(10, 100); // scale 100
        assert!((8.0..12.0).contains(&a), "{a}");
        assert!((85.0..115.0).contains(&b), "{b}");
    }

    #[test]
    fn partition_selection_releases_a_group_at_the_minimum_at_most_with_probability_delta() {
        // epsilon 0.5 for selection, one group per enterprise, delta 1e-5: scale 2.
        let sel = PartitionSelection::new(5, 1, 500, 1e-5);
        let q = (-0.5f64).exp();
        let m = sel.threshold() - 1;
        // The threshold is the least one that meets delta.
        assert!(q.powi(m as i32) / (1.0 + q) <= 1e-5, "T = {}", sel.threshold());
        assert!(q.powi(m as i32 - 1) / (1.0 + q) > 1e-5, "T = {} is not the least", sel.threshold());
        let mut rng = Seeded(11);
        let released = |n: u64, rng: &mut Seeded| (0..4000).filter(|_| sel.keep(rng, n)).count();
        assert_eq!(released(4, &mut rng), 0, "under the minimum: never");
        assert_eq!(released(5, &mut rng), 0, "at the minimum: at most delta");
        // Around the threshold the decision is noisy, neither always nor never.
        let mid = 4 + sel.threshold() as u64;
        let r = released(mid, &mut rng);
        assert!((1000..3000).contains(&r), "{r} of 4000 released at the threshold");
        assert_eq!(released(mid + 60, &mut rng), 4000, "far above: always");
        // More groups per enterprise: a wider noise and a higher threshold.
        assert!(PartitionSelection::new(5, 3, 500, 1e-5).threshold() > sel.threshold());
    }

    #[test]
    fn system_randomness_is_in_range() {
        let mut r = SystemRandomness::default();
        for n in [1u128, 2, 3, 1000, u128::from(u64::MAX) + 7] {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
    }
}
