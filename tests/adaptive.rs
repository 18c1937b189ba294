//! Adaptive placement, Split IG and IDG: closed forms, exact IG, budgets, completeness accounting and
//! bad values.

mod common;
use common::*;
use gig::adaptive::{self, AdaptiveConfig};
use gig::backend::Batch;
use gig::method::{self, Method, Settings};
use gig::study::relative_l2;
use gig::{Backend, CpuBackend, Model};

fn batch(model: &Model, n: usize, seed: u64) -> Batch {
    random_batch(model, n, seed, (-0.5, 0.2))
}

/// One hidden ReLU layer on a 3-value input: F = sum_j v_j relu(w_j . x + c_j) + d. Along a straight
/// path each pre-activation is a line, so unit j is open on a known part of [0, 1] and
/// IG_i = (x_i - b_i) sum_j v_j w_ji (open share of j).
fn one_hidden_layer() -> Model {
    Model::random_from_arch("flatten linear(3,6) relu linear(6,2)", [3, 1, 1], 21).unwrap()
}

fn closed_form_ig(model: &Model, x: &[f32], b: &[f32], target: usize) -> Vec<f64> {
    let (w, c) = (
        &model.params(1).unwrap().weight,
        &model.params(1).unwrap().bias,
    );
    let v = &model.params(3).unwrap().weight;
    let z = |j: usize, p: &[f32]| -> f64 {
        (0..3)
            .map(|i| f64::from(w[j * 3 + i]) * f64::from(p[i]))
            .sum::<f64>()
            + f64::from(c[j])
    };
    (0..3)
        .map(|i| {
            let sum: f64 = (0..6)
                .map(|j| {
                    let (z0, z1) = (z(j, b), z(j, x));
                    // z(alpha) = z0 + alpha (z1 - z0) > 0 on this share of [0, 1].
                    let open = if z0 > 0.0 && z1 > 0.0 {
                        1.0
                    } else if z0 <= 0.0 && z1 <= 0.0 {
                        0.0
                    } else {
                        let root = z0 / (z0 - z1);
                        if z1 > 0.0 { 1.0 - root } else { root }
                    };
                    f64::from(v[target * 6 + j]) * f64::from(w[j * 3 + i]) * open
                })
                .sum();
            (f64::from(x[i]) - f64::from(b[i])) * sum
        })
        .collect()
}

#[test]
fn exact_and_adaptive_ig_equal_the_closed_form() {
    let model = one_hidden_layer();
    let b = batch(&model, 6, 3);
    let cpu = CpuBackend::new(&model);
    let mut crossings = 0;
    for i in 0..6 {
        let (x, base) = (&b.inputs[i * 3..i * 3 + 3], &b.baselines[i * 3..i * 3 + 3]);
        let want = closed_form_ig(&model, x, base, b.targets[i]);
        let (exact, pieces) = cpu
            .exact_ig(&to_f64(x), &to_f64(base), b.targets[i])
            .unwrap();
        crossings += pieces - 1;
        assert!(
            relative_l2(&exact, &want) < 1e-12,
            "image {i}: {exact:?} vs {want:?}"
        );
    }
    assert!(
        crossings >= 3,
        "the paths should cross some kinks ({crossings})"
    );
    // Each cell's pre-activations are exact lines here, so the soft cells are exact at any budget.
    let settings = Settings {
        steps: 12,
        ..Settings::default()
    };
    for backend in [
        &mut engine(&model) as &mut dyn Backend,
        &mut CpuBackend::new(&model),
    ] {
        let e = method::explain(backend, &b, Method::Adaptive, &settings).unwrap();
        for i in 0..6 {
            let want = closed_form_ig(
                &model,
                &b.inputs[i * 3..i * 3 + 3],
                &b.baselines[i * 3..i * 3 + 3],
                b.targets[i],
            );
            let err = relative_l2(&e.values[i * 3..i * 3 + 3], &want);
            assert!(
                err < 1e-5,
                "{}: image {i}: relative L2 {err}",
                backend.device()
            );
        }
    }
}

fn small_cnn() -> Model {
    Model::random_from_arch(
        "conv(1,4,3,p1) relu maxpool2 conv(4,6,3,p1) relu flatten linear(96,16) relu linear(16,4)",
        [1, 8, 8],
        5,
    )
    .unwrap()
}

#[test]
fn exact_ig_is_complete_and_is_the_limit_of_quadrature() {
    let model = small_cnn();
    let b = batch(&model, 2, 7);
    let cpu = CpuBackend::new(&model);
    let dim = model.input_len();
    let fine = gig::integrated_gradients(
        &mut CpuBackend::new(&model),
        &b,
        &gig::Rule::RiemannMiddle.nodes(4000).unwrap(),
    )
    .unwrap();
    for i in 0..2 {
        let (x, base) = (
            to_f64(&b.inputs[i * dim..(i + 1) * dim]),
            to_f64(&b.baselines[i * dim..(i + 1) * dim]),
        );
        let (exact, pieces) = cpu.exact_ig(&x, &base, b.targets[i]).unwrap();
        assert!(pieces > 10, "{pieces} pieces");
        let f = |p: &[f64]| cpu.forward(p).pop().unwrap()[b.targets[i]];
        let delta = exact.iter().sum::<f64>() - (f(&x) - f(&base));
        assert!(delta.abs() < 1e-9, "completeness delta {delta}");
        // Midpoint quadrature converges to it as 1/n.
        let err = relative_l2(&fine.values[i * dim..(i + 1) * dim], &exact);
        assert!(err < 2e-3, "4000 midpoints vs exact: {err}");
    }
}

#[test]
fn adaptive_error_shrinks_with_budget_and_beats_uniform() {
    let model = small_cnn();
    let b = batch(&model, 4, 9);
    let dim = model.input_len();
    let (reference, _) = gig::study::exact_reference(&model, &b, || {}).unwrap();
    let mut gpu = engine(&model);
    let error = |gpu: &mut gig::Engine, method: Method, steps: usize| -> f64 {
        let e = method::explain(
            gpu,
            &b,
            method,
            &Settings {
                steps,
                ..Settings::default()
            },
        )
        .unwrap();
        let mut errs: Vec<f64> = (0..4)
            .map(|i| {
                relative_l2(
                    &e.values[i * dim..(i + 1) * dim],
                    &reference[i * dim..(i + 1) * dim],
                )
            })
            .collect();
        errs.sort_by(f64::total_cmp);
        errs[2]
    };
    let (e16, e64, e256) = (
        error(&mut gpu, Method::Adaptive, 16),
        error(&mut gpu, Method::Adaptive, 64),
        error(&mut gpu, Method::Adaptive, 256),
    );
    assert!(
        e64 < e16 / 2.0 && e256 < e64 / 2.0,
        "adaptive errors at 16, 64, 256: {e16:.2e} {e64:.2e} {e256:.2e}"
    );
    let uniform = error(&mut gpu, Method::Uniform(gig::Rule::RiemannMiddle), 64);
    assert!(
        e64 < uniform,
        "adaptive {e64:.2e} vs midpoint {uniform:.2e} at 64"
    );
}

#[test]
fn placements_are_quadratures_of_the_straight_line_integral_and_keep_to_the_budget() {
    let model = small_cnn();
    let b = batch(&model, 3, 11);
    let mut cpu = CpuBackend::new(&model);
    for method in [Method::Adaptive, Method::Split, Method::Idg] {
        for steps in [14, 20, 33, 64, 101] {
            let settings = Settings {
                steps,
                ..Settings::default()
            };
            let e = method::explain(&mut cpu, &b, method, &settings).unwrap();
            for r in &e.images {
                assert!(
                    r.budget_spent <= steps as f64 + 1e-9,
                    "{method:?} {steps}: spent {}",
                    r.budget_spent
                );
                let cost = r.forward_evaluations as f64 / 3.0
                    + r.gradient_evaluations as f64
                        * if method == Method::Idg {
                            1.0
                        } else {
                            4.0 / 3.0
                        };
                assert!(
                    (cost - r.budget_spent).abs() < 1e-9,
                    "{method:?}: the accounting adds up"
                );
                // The cells partition [0, 1]: widths integrate constants and lines exactly.
                let widths: Vec<f64> = if r.cells.is_empty() {
                    vec![]
                } else {
                    r.cells.clone()
                };
                let w = if widths.is_empty() {
                    idg_widths(&r.path.alphas)
                } else {
                    widths
                };
                let one: f64 = w.iter().sum();
                let half: f64 = w.iter().zip(&r.path.alphas).map(|(w, a)| w * a).sum();
                assert!(
                    (one - 1.0).abs() < 1e-12 && (half - 0.5).abs() < 1e-12,
                    "{method:?}: {one} {half}"
                );
                assert!(r.path.alphas.windows(2).all(|a| a[0] < a[1]));
            }
        }
    }
}

#[test]
fn the_probe_goes_with_the_first_cells_unless_it_shapes_them() {
    let model = small_cnn();
    let b = batch(&model, 3, 13);
    let (reference, _) = gig::study::exact_reference(&model, &b, || {}).unwrap();
    let dim = model.input_len();
    let mut gpu = engine(&model);
    let fx = gpu.logits(&b.inputs).unwrap();
    let fb = gpu.logits(&b.baselines).unwrap();
    let merged = AdaptiveConfig::new(96.0);
    let shaped = AdaptiveConfig {
        probes: 5,
        probe_weight: 0.3,
        ..AdaptiveConfig::new(96.0)
    };
    let mut submissions = Vec::new();
    for config in [&merged, &shaped] {
        let e = adaptive::run(&mut gpu, &b, config).unwrap();
        let rounds = e.images.iter().map(|r| r.rounds).max().unwrap();
        assert_eq!(e.stats.submissions, rounds, "{config:?}");
        submissions.push(rounds);
        for (i, r) in e.images.iter().enumerate() {
            let probe = r.probe.as_ref().unwrap();
            assert_eq!(probe.alphas.len(), config.probes);
            // F(b) and F(x) are measured whether or not the probe shapes the cells.
            let t = b.targets[i];
            assert!((r.f_input - fx[i][t]).abs() < 1e-5 * (1.0 + fx[i][t].abs()));
            assert!((r.f_baseline - fb[i][t]).abs() < 1e-5 * (1.0 + fb[i][t].abs()));
            assert!(r.budget_spent <= 96.0 + 1e-9);
            let err = relative_l2(
                &e.values[i * dim..(i + 1) * dim],
                &reference[i * dim..(i + 1) * dim],
            );
            assert!(err < 5e-3, "{config:?}, image {i}: error {err:.2e}");
        }
    }
    assert_eq!(
        submissions[0] + 1,
        submissions[1],
        "a probe that shapes the cells takes a round of its own, one that does not shares the first"
    );
}

/// IDG's points are cell centres; the cells are recovered from them (each edge halfway between).
fn idg_widths(alphas: &[f64]) -> Vec<f64> {
    let mut edges = vec![0.0];
    for a in alphas {
        let lo: f64 = *edges.last().unwrap();
        edges.push(2.0 * a - lo);
    }
    edges.windows(2).map(|e| e[1] - e[0]).collect()
}

#[test]
fn tolerance_stops_refinement_early_and_the_estimate_tracks_the_error() {
    let model = small_cnn();
    let b = batch(&model, 3, 13);
    let mut gpu = engine(&model);
    let loose = Settings {
        steps: 200,
        tolerance: Some(0.05),
        ..Settings::default()
    };
    let full = Settings {
        steps: 200,
        ..Settings::default()
    };
    let a = method::explain(&mut gpu, &b, Method::Adaptive, &loose).unwrap();
    let c = method::explain(&mut gpu, &b, Method::Adaptive, &full).unwrap();
    let mut stopped_early = 0;
    for (l, f) in a.images.iter().zip(&c.images) {
        let (loose_estimate, full_estimate) =
            (l.error_estimate.unwrap(), f.error_estimate.unwrap());
        assert!(l.budget_spent <= f.budget_spent);
        if l.budget_spent < f.budget_spent {
            // It stopped because the estimate met the tolerance, and spending more lowers it.
            assert!(
                loose_estimate <= 0.05,
                "stopped at estimate {loose_estimate}"
            );
            assert!(
                full_estimate < loose_estimate,
                "{full_estimate} vs {loose_estimate}"
            );
            stopped_early += 1;
        }
    }
    assert!(
        stopped_early > 0,
        "a tolerance of 5% should save budget on some image"
    );
}

#[test]
fn split_sums_add_up_and_only_the_left_part_is_attributed() {
    let model = small_cnn();
    let b = batch(&model, 4, 15);
    let dim = model.input_len();
    for backend in [
        &mut engine(&model) as &mut dyn Backend,
        &mut CpuBackend::new(&model),
    ] {
        let settings = Settings {
            steps: 96,
            split_ratio: 0.7,
            ..Settings::default()
        };
        let e = method::explain(backend, &b, Method::Split, &settings).unwrap();
        for (i, r) in e.images.iter().enumerate() {
            let s = r.split.as_ref().unwrap();
            let change = r.f_input - r.f_baseline;
            assert!(
                s.total_delta.abs() < 1e-2 * change.abs().max(1.0),
                "image {i}: left + right off by {}",
                s.total_delta
            );
            assert!(
                s.left_delta.abs() < 1e-2 * change.abs().max(1.0),
                "image {i}: left off by {}",
                s.left_delta
            );
            let sum: f64 = e.values[i * dim..(i + 1) * dim].iter().sum();
            assert!(
                (sum - s.left_sum).abs() < 1e-4 * (1.0 + sum.abs()),
                "the attribution is the left part"
            );
            // The cut is where F first reaches 70% of its change (to the probe's resolution).
            assert!(s.alpha > 0.0 && s.alpha < 1.0);
            assert!(
                (s.f_cut - (r.f_baseline + 0.7 * change)).abs() < 0.15 * change.abs() + 1e-6,
                "{s:?}"
            );
        }
    }
}

#[test]
fn idg_sum_is_the_integral_of_the_squared_slope() {
    // On a linear model dF/dalpha is a constant s = w . (x - b), so IDG = s (x - b) w and its sum s^2.
    let model = Model::random_from_arch("flatten linear(12,3)", [3, 2, 2], 2).unwrap();
    let b = batch(&model, 3, 17);
    let w = &model.params(1).unwrap().weight;
    let e = method::explain(
        &mut engine(&model),
        &b,
        Method::Idg,
        &Settings {
            steps: 20,
            ..Settings::default()
        },
    )
    .unwrap();
    for (i, r) in e.images.iter().enumerate() {
        let t = b.targets[i];
        let d: Vec<f64> = (0..12)
            .map(|k| f64::from(b.inputs[i * 12 + k]) - f64::from(b.baselines[i * 12 + k]))
            .collect();
        let s: f64 = (0..12).map(|k| d[k] * f64::from(w[t * 12 + k])).sum();
        let want: Vec<f64> = (0..12)
            .map(|k| s * d[k] * f64::from(w[t * 12 + k]))
            .collect();
        assert!(relative_l2(&e.values[i * 12..(i + 1) * 12], &want) < 1e-5);
        assert!(
            (r.expected_sum - s * s).abs() < 1e-4 * s * s && r.delta.abs() < 1e-4 * s * s,
            "{r:?}"
        );
        assert_eq!(r.completeness, "integral of (dF/dalpha)^2");
    }
}

#[test]
fn each_round_is_one_dispatch_grid() {
    let model = small_cnn();
    let b = batch(&model, 5, 19);
    let mut gpu = engine(&model);
    let mut dispatches = Vec::new();
    for steps in [64, 256] {
        let e = method::explain(
            &mut gpu,
            &b,
            Method::Adaptive,
            &Settings {
                steps,
                ..Settings::default()
            },
        )
        .unwrap();
        let rounds = e.images.iter().map(|r| r.rounds).max().unwrap();
        // One submission per round (one chunk each here): the last round, which spends the budget,
        // also takes the weighted sum (`RoundDriver::final_weights`).
        assert!(
            e.stats.submissions <= rounds,
            "{} submissions for {rounds} rounds",
            e.stats.submissions
        );
        dispatches.push((rounds, e.stats.dispatches));
    }
    if dispatches[0].0 == dispatches[1].0 {
        assert_eq!(
            dispatches[0].1, dispatches[1].1,
            "dispatches must not grow with the budget"
        );
    }
}

#[test]
fn bad_values_are_clear_errors() {
    let model = small_cnn();
    let b = batch(&model, 1, 21);
    let mut cpu = CpuBackend::new(&model);
    for ratio in [0.0, 1.0, 1.5, -0.2, f64::NAN] {
        let settings = Settings {
            steps: 64,
            split_ratio: ratio,
            ..Settings::default()
        };
        let err = method::explain(&mut cpu, &b, Method::Split, &settings)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("split ratio") && err.contains("between 0 and 1"),
            "{err}"
        );
    }
    for method in [Method::Adaptive, Method::Split, Method::Idg] {
        let err = method::explain(
            &mut cpu,
            &b,
            method,
            &Settings {
                steps: 3,
                ..Settings::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("needs a budget") && err.contains(method.name()),
            "{err}"
        );
    }
    let err = adaptive::run(
        &mut cpu,
        &b,
        &AdaptiveConfig {
            tolerance: Some(-1.0),
            ..AdaptiveConfig::new(64.0)
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tolerance"), "{err}");
    let err = Method::parse("adaptiv").unwrap_err().to_string();
    assert!(
        err.contains("adaptiv") && err.contains("gausslegendre, adaptive, split, idg"),
        "{err}"
    );
}

#[test]
fn many_accumulators_then_many_images_still_fit_the_device() {
    // IDG at a large budget keeps ~120 accumulators per image; logits of many images next must not get
    // buffers sized for both at once (400 x 122 x 784 floats would pass the binding limit).
    let model = Model::random_from_arch("flatten linear(784,2)", [1, 28, 28], 1).unwrap();
    let mut gpu = engine(&model);
    let b = batch(&model, 2, 23);
    let settings = Settings {
        steps: 128,
        ..Settings::default()
    };
    method::explain(&mut gpu, &b, Method::Idg, &settings).unwrap();
    let many = uniform(400 * 784, 0.0, 1.0, 24);
    let logits = gpu.logits(&many).unwrap();
    assert_eq!(logits.len(), 400);
    let again = method::explain(&mut gpu, &b, Method::Idg, &settings).unwrap();
    assert!(again.values.iter().all(|v| v.is_finite()));
}
