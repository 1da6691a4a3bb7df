//! Summaries of repeated measurements: every figure in the report is a median with a spread,
//! and the raw samples are kept beside it.

use serde::Serialize;

/// The distribution of one set of samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for no samples (a benchmark that produced nothing is reported as such).
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            min: v[0],
            p50: percentile_sorted(&v, 50.0),
            p99: percentile_sorted(&v, 99.0),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

/// Nearest-rank percentile of sorted samples: always one of the samples, so a p99 of 20
/// samples is honestly the largest one.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats a number with a sensible number of digits for a table.
pub fn fmt(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 1000.0 {
        // Thousands separated by a thin space, no decimals.
        let s = format!("{:.0}", x);
        let (sign, digits) = s.split_at(if x < 0.0 { 1 } else { 0 });
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// "p50 (min–max)" in one cell.
pub fn fmt_spread(s: &Summary) -> String {
    format!("{} ({}–{})", fmt(s.p50), fmt(s.min), fmt(s.max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_samples() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!((s.min, s.p50, s.p99, s.max), (1.0, 50.0, 99.0, 100.0));
        let few = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((few.p50, few.p99), (2.0, 3.0));
        assert_eq!(few.mean, 2.0);
    }

    #[test]
    fn empty_and_non_finite_samples() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert_eq!(Summary::of(&[f64::NAN, 4.0]).unwrap().n, 1);
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt(1234567.0), "1,234,567");
        assert_eq!(fmt(-1234.0), "-1,234");
        assert_eq!(fmt(123.4), "123");
        assert_eq!(fmt(12.34), "12.3");
        assert_eq!(fmt(1.234), "1.23");
        assert_eq!(fmt(0.1234), "0.123");
        assert_eq!(fmt(f64::NAN), "–");
    }
}
