//! Cell averages of a ReLU network's piecewise choices, for the soft kernels.
//!
//! Along a straight path every pre-activation is a line near a path point: v + vd t, with t the offset
//! in alpha. Over the cell t in [-half, half] a ReLU is open for a share of the cell and each element of a
//! max-pool window is the maximum for a share; using those shares in place of the point's 0/1 choices
//! makes one gradient evaluation stand for the whole cell (to first order). A max-pool's tangent, which
//! shapes the next layers' lines, is its lines' slopes by their shares: the maximum's mean slope over
//! the cell. At half = 0 the shares are the point's own choices.

/// Share of the cell in which line i is the first maximum of `v[i] + vd[i] t`. With `relu` a zero line
/// comes first (it wins ties), so a line must be strictly positive to count; the zero line's own share
/// is not returned.
pub fn shares(v: &[f64], vd: &[f64], half: f64, relu: bool) -> Vec<f64> {
    let n = v.len();
    // Candidates in tie order: the zero line first, then the lines.
    let line = |k: usize| -> (f64, f64) {
        match (relu, k) {
            (true, 0) => (0.0, 0.0),
            (true, k) => (v[k - 1], vd[k - 1]),
            (false, k) => (v[k], vd[k]),
        }
    };
    let count = n + usize::from(relu);
    let mut out = Vec::with_capacity(n);
    for i in usize::from(relu)..count {
        let (vi, di) = line(i);
        let (mut lo, mut hi) = (-half, half);
        let mut none = false;
        for j in 0..count {
            if j == i {
                continue;
            }
            let (vj, dj) = line(j);
            // Line i must exceed line j (or equal it, if j comes later in tie order).
            let (dv, dd) = (vi - vj, di - dj);
            if half == 0.0 || dd == 0.0 {
                if dv < 0.0 || (dv == 0.0 && j < i) {
                    none = true;
                }
                continue;
            }
            let t = -dv / dd;
            if dd > 0.0 {
                lo = lo.max(t);
            } else {
                hi = hi.min(t);
            }
        }
        out.push(if none {
            0.0
        } else if half == 0.0 {
            1.0
        } else {
            ((hi - lo) / (2.0 * half)).clamp(0.0, 1.0)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shares;

    #[test]
    fn relu_share_is_the_open_part_of_the_cell() {
        // z = 0.1 + 1 t on [-0.2, 0.2]: positive for t > -0.1, three quarters of the cell.
        assert!((shares(&[0.1], &[1.0], 0.2, true)[0] - 0.75).abs() < 1e-12);
        assert_eq!(shares(&[0.1], &[1.0], 0.0, true), vec![1.0]);
        assert_eq!(shares(&[0.0], &[1.0], 0.0, true), vec![0.0]);
        assert_eq!(shares(&[-1.0], &[0.0], 0.3, true), vec![0.0]);
    }

    #[test]
    fn max_shares_sum_to_one_and_break_ties_first() {
        let s = shares(&[0.0, 0.1, -0.1], &[1.0, -1.0, 2.0], 0.5, false);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{s:?}");
        assert_eq!(shares(&[1.0, 1.0], &[0.0, 0.0], 0.5, false), vec![1.0, 0.0]);
        assert_eq!(shares(&[1.0, 1.0], &[0.0, 0.0], 0.0, false), vec![1.0, 0.0]);
        // With a ReLU the shares are below one where every line is negative.
        let s = shares(&[-0.1, -0.2], &[1.0, 1.0], 0.2, true);
        assert!((s[0] - 0.25).abs() < 1e-12 && s[1] == 0.0, "{s:?}");
    }
}
