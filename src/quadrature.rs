//! Quadrature rules over alpha in [0, 1]: where along the path the gradient is evaluated, and with what weight.
//!
//! The alphas follow Captum's `approximation_methods` (riemann_left/right/middle/trapezoid, gausslegendre).
//! One difference: Captum gives every trapezoid node the weight 1/n (halved at the ends), so its weights sum
//! to (n-1)/n and its trapezoid IG is scaled by that factor; here the trapezoid weights are 1/(n-1) (halved at
//! the ends), which integrate constants and linear functions exactly.

use crate::error::{Error, Result};
use std::fmt;

/// A quadrature rule, named as in Captum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    RiemannLeft,
    RiemannRight,
    RiemannMiddle,
    RiemannTrapezoid,
    GaussLegendre,
}

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::RiemannLeft,
        Rule::RiemannRight,
        Rule::RiemannMiddle,
        Rule::RiemannTrapezoid,
        Rule::GaussLegendre,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Rule::RiemannLeft => "riemann_left",
            Rule::RiemannRight => "riemann_right",
            Rule::RiemannMiddle => "riemann_middle",
            Rule::RiemannTrapezoid => "riemann_trapezoid",
            Rule::GaussLegendre => "gausslegendre",
        }
    }

    /// Parses a rule by its Captum name.
    pub fn parse(name: &str) -> Result<Rule> {
        Rule::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown method `{name}`; expected one of {}",
                    Rule::ALL.map(|r| r.name()).join(", ")
                ))
            })
    }

    /// Fewest steps the rule accepts.
    pub fn min_steps(&self) -> usize {
        match self {
            Rule::RiemannTrapezoid => 2,
            _ => 1,
        }
    }

    /// The rule's `n` nodes and weights on [0, 1], alphas ascending.
    pub fn nodes(&self, n: usize) -> Result<Quadrature> {
        if n < self.min_steps() {
            return Err(Error::Input(format!(
                "{} needs at least {} step(s), got {n}",
                self.name(),
                self.min_steps()
            )));
        }
        let nf = n as f64;
        let uniform = |alpha: &dyn Fn(f64) -> f64| Quadrature {
            alphas: (0..n).map(|i| alpha(i as f64)).collect(),
            weights: vec![1.0 / nf; n],
        };
        Ok(match self {
            Rule::RiemannLeft => uniform(&|i| i / nf),
            Rule::RiemannRight => uniform(&|i| (i + 1.0) / nf),
            Rule::RiemannMiddle => uniform(&|i| (i + 0.5) / nf),
            Rule::RiemannTrapezoid => {
                let h = 1.0 / (nf - 1.0);
                let mut weights = vec![h; n];
                weights[0] = h / 2.0;
                weights[n - 1] = h / 2.0;
                Quadrature {
                    alphas: (0..n).map(|i| i as f64 * h).collect(),
                    weights,
                }
            }
            Rule::GaussLegendre => gauss_legendre(n),
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Nodes and weights of a rule on [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Quadrature {
    pub alphas: Vec<f64>,
    pub weights: Vec<f64>,
}

impl Quadrature {
    pub fn len(&self) -> usize {
        self.alphas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alphas.is_empty()
    }

    /// The rule applied to `f`.
    pub fn integrate(&self, f: impl Fn(f64) -> f64) -> f64 {
        self.alphas
            .iter()
            .zip(&self.weights)
            .map(|(&a, &w)| w * f(a))
            .sum()
    }
}

/// Gauss-Legendre nodes by Newton's method on the Legendre recurrence, mapped from [-1, 1] to [0, 1].
fn gauss_legendre(n: usize) -> Quadrature {
    let mut alphas = vec![0.0; n];
    let mut weights = vec![0.0; n];
    let nf = n as f64;
    for i in 0..n.div_ceil(2) {
        // Root i counted from x = 1 downwards; Tricomi's estimate converges in a few steps.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let kf = k as f64;
                (p0, p1) = (p1, ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf);
            }
            // p1 = P_n(x), p0 = P_{n-1}(x); the derivative follows from both.
            dp = nf * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / dp;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        let w = 2.0 / ((1.0 - x * x) * dp * dp);
        // Symmetric pair: -x at the low end, +x at the high end.
        alphas[i] = 0.5 * (1.0 - x);
        alphas[n - 1 - i] = 0.5 * (1.0 + x);
        weights[i] = 0.5 * w;
        weights[n - 1 - i] = 0.5 * w;
    }
    Quadrature { alphas, weights }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Highest polynomial degree each rule integrates exactly on [0, 1].
    fn exact_degree(rule: Rule, n: usize) -> usize {
        match rule {
            Rule::RiemannLeft | Rule::RiemannRight => 0,
            Rule::RiemannMiddle | Rule::RiemannTrapezoid => 1,
            Rule::GaussLegendre => 2 * n - 1,
        }
    }

    #[test]
    fn rules_integrate_polynomials_exactly() {
        for rule in Rule::ALL {
            for n in [rule.min_steps(), 2, 3, 7, 50, 64] {
                let q = rule.nodes(n).unwrap();
                assert_eq!(q.len(), n);
                assert!(
                    q.alphas.windows(2).all(|w| w[0] < w[1]),
                    "{rule} {n} not ascending"
                );
                assert!(q.alphas.iter().all(|a| (0.0..=1.0).contains(a)));
                for d in 0..=exact_degree(rule, n).min(40) {
                    let got = q.integrate(|a| a.powi(d as i32));
                    let want = 1.0 / (d as f64 + 1.0);
                    assert!(
                        (got - want).abs() < 1e-12,
                        "{rule} n={n} degree {d}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn gauss_legendre_matches_known_nodes() {
        // numpy.polynomial.legendre.leggauss(3): nodes -sqrt(3/5), 0, sqrt(3/5); weights 5/9, 8/9, 5/9.
        let q = Rule::GaussLegendre.nodes(3).unwrap();
        let s = (0.6f64).sqrt();
        let want = [0.5 * (1.0 - s), 0.5, 0.5 * (1.0 + s)];
        for (a, w) in q.alphas.iter().zip(want) {
            assert!((a - w).abs() < 1e-15);
        }
        for (a, w) in q.weights.iter().zip([5.0 / 18.0, 8.0 / 18.0, 5.0 / 18.0]) {
            assert!((a - w).abs() < 1e-15);
        }
        assert_eq!(Rule::GaussLegendre.nodes(1).unwrap().alphas, vec![0.5]);
    }

    #[test]
    fn riemann_alphas_match_captum() {
        let q = Rule::RiemannLeft.nodes(4).unwrap();
        assert_eq!(q.alphas, vec![0.0, 0.25, 0.5, 0.75]);
        let q = Rule::RiemannRight.nodes(4).unwrap();
        assert_eq!(q.alphas, vec![0.25, 0.5, 0.75, 1.0]);
        let q = Rule::RiemannMiddle.nodes(4).unwrap();
        assert_eq!(q.alphas, vec![0.125, 0.375, 0.625, 0.875]);
        let q = Rule::RiemannTrapezoid.nodes(5).unwrap();
        assert_eq!(q.alphas, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(q.weights, vec![0.125, 0.25, 0.25, 0.25, 0.125]);
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(
            Rule::GaussLegendre
                .nodes(0)
                .unwrap_err()
                .to_string()
                .contains("at least 1 step")
        );
        assert!(Rule::RiemannTrapezoid.nodes(1).is_err());
        let e = Rule::parse("simpson").unwrap_err().to_string();
        assert!(
            e.contains("unknown method `simpson`") && e.contains("gausslegendre"),
            "{e}"
        );
    }
}
