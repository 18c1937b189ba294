//! Faithfulness metrics on models where the answer is known (linear models, where IG is exactly
//! (x - b) w), GPU against CPU, and `gig eval-attr` end to end.

mod common;
use common::*;
use gig::backend::Batch;
use gig::method::{Method, Settings};
use gig::metrics::{
    self, Attributor, Curve, Metric, MetricConfig, Score, Substrate, sensitivity_noise,
};
use gig::model::{Params, parse_arch};
use gig::quadrature::Rule;
use gig::{Backend, CpuBackend, Model};
use std::process::{Command, Output};

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// A 2x2 image, two classes: logit 0 = 3 x0 - x1 + x2 (+ 0 x3), logit 1 = 0.
fn tiny_linear() -> Model {
    Model::new(
        parse_arch("flatten linear(4,2)").unwrap(),
        [1, 2, 2],
        vec![
            None,
            Some(Params {
                weight: vec![3.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                bias: vec![0.0, 0.0],
            }),
        ],
    )
    .unwrap()
}

fn gauss_legendre(steps: usize) -> Attributor {
    Attributor::Method {
        method: Method::Uniform(Rule::GaussLegendre),
        settings: Settings {
            steps,
            ..Settings::default()
        },
    }
}

fn only(metrics: &[Metric]) -> MetricConfig {
    MetricConfig {
        metrics: metrics.to_vec(),
        ..MetricConfig::default()
    }
}

#[test]
fn deletion_and_insertion_by_hand_on_a_tiny_linear_model() {
    // IG of x = 1 from a zero baseline is w = (3, -1, 1, 0): pixels go in the order 0, 2, 3, 1.
    let model = tiny_linear();
    let batch = Batch::new(&model, vec![1.0; 4], vec![0.0; 4], vec![0]).unwrap();
    let config = MetricConfig {
        curve_steps: 4,
        ..only(&[Metric::Deletion, Metric::Insertion])
    };
    // Logit 0 as the pixels go: deletion 3, 0, -1, -1, 0; insertion 0, 3, 4, 4, 3. Logit 1 is 0, so the
    // probability of class 0 is the sigmoid of logit 0. One pixel per step: the fractions are k / 4.
    let trapezoid = |z: [f64; 5]| {
        let p = z.map(sigmoid);
        0.25 * (p[0] / 2.0 + p[1] + p[2] + p[3] + p[4] / 2.0)
    };
    let deletion = trapezoid([3.0, 0.0, -1.0, -1.0, 0.0]);
    let insertion = trapezoid([0.0, 3.0, 4.0, 4.0, 3.0]);
    let mut gpu = engine(&model);
    let mut cpu = CpuBackend::new(&model);
    for backend in [&mut gpu as &mut dyn Backend, &mut cpu] {
        let s = metrics::evaluate(backend, &batch, &[0], &gauss_legendre(4), &config).unwrap();
        let got = |score| s[0].get(score).unwrap();
        assert!((got(Score::Deletion(Substrate::Zero)) - deletion).abs() < 1e-6);
        assert!((got(Score::Insertion(Substrate::Zero)) - insertion).abs() < 1e-6);
        // Blurring a constant image leaves it as it is, so both blur curves stay at p(x).
        for score in [
            Score::Deletion(Substrate::Blur),
            Score::Insertion(Substrate::Blur),
        ] {
            assert!((got(score) - sigmoid(3.0)).abs() < 1e-6, "{}", score.name());
        }
        assert_eq!(s[0].get(Score::Infidelity), None);
    }
    assert!(deletion < insertion);
}

#[test]
fn curves_hold_one_probability_per_step() {
    let model = tiny_linear();
    let mut cpu = CpuBackend::new(&model);
    // Ranked by these attributions, pixel 1 goes first: deletion drops it (logit 0 rises to 4).
    let attribution = [0.0, 5.0, 0.0, 0.0];
    let zeros = [0.0f32; 4];
    let curves = metrics::probability_curves(
        &mut cpu,
        &[1.0; 4],
        &attribution,
        &[0],
        &[(Curve::Deletion, &zeros), (Curve::Insertion, &zeros)],
        2,
    )
    .unwrap();
    assert_eq!(curves.len(), 2);
    // Two steps of two pixels: ranking 1, 0, 2, 3.
    let expected_deletion = [3.0, 1.0, 0.0].map(sigmoid);
    let expected_insertion = [0.0, 2.0, 3.0].map(sigmoid);
    for (got, want) in [
        (&curves[0][0], expected_deletion),
        (&curves[1][0], expected_insertion),
    ] {
        assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }
}

/// A linear model over 3x6x6 inputs with inputs away from the zero baseline everywhere.
fn linear_case(n: usize) -> (Model, Batch) {
    let model = Model::random_from_arch("flatten linear(108,4)", [3, 6, 6], 5).unwrap();
    let dim = model.input_len();
    let batch = Batch::new(
        &model,
        uniform(n * dim, 0.2, 1.0, 50),
        vec![0.0; n * dim],
        (0..n).map(|i| i % 4).collect(),
    )
    .unwrap();
    (model, batch)
}

#[test]
fn ig_of_a_linear_model_is_complete_and_has_no_infidelity() {
    // F(x) - F(x - d) = w . d = sum_k (d_k / x_k) (x_k w_k) = I . IG exactly, so infidelity is 0.
    let (model, batch) = linear_case(3);
    let ids = [0, 1, 2];
    let config = only(&[Metric::Infidelity, Metric::Completeness]);
    let mut gpu = engine(&model);
    let ig = metrics::evaluate(&mut gpu, &batch, &ids, &gauss_legendre(8), &config).unwrap();
    let random = metrics::evaluate(&mut gpu, &batch, &ids, &Attributor::Random, &config).unwrap();
    for (i, (s, r)) in ig.iter().zip(&random).enumerate() {
        let infidelity = s.get(Score::Infidelity).unwrap();
        let random_infidelity = r.get(Score::Infidelity).unwrap();
        assert!(
            infidelity < 1e-6 * random_infidelity,
            "image {i}: IG {infidelity}, random {random_infidelity}"
        );
        assert!(s.get(Score::Completeness).unwrap() < 1e-5);
        assert_eq!(r.get(Score::Completeness), None);
    }
}

#[test]
fn sensitivity_of_linear_ig_is_the_closed_form() {
    // With a zero baseline IG(x) = x w_t, so IG(x + d) - IG(x) = d w_t and the score is
    // max_s |d_s w_t| / |x w_t| over the same noise the metric draws.
    let (model, batch) = linear_case(2);
    let (dim, config) = (batch.dim, only(&[Metric::Sensitivity]));
    let ids = [4, 9];
    let w = &model.params(1).unwrap().weight;
    let mut gpu = engine(&model);
    let scores = metrics::evaluate(&mut gpu, &batch, &ids, &gauss_legendre(4), &config).unwrap();
    for (i, s) in scores.iter().enumerate() {
        let t = batch.targets[i];
        let wt = |k: usize| f64::from(w[t * dim + k]);
        let x = &batch.inputs[i * dim..(i + 1) * dim];
        let norm = (0..dim)
            .map(|k| (f64::from(x[k]) * wt(k)).powi(2))
            .sum::<f64>()
            .sqrt();
        let noise = sensitivity_noise(
            config.seed,
            ids[i],
            config.sensitivity_samples,
            dim,
            config.sensitivity_radius,
        );
        let expected = noise
            .chunks(dim)
            .map(|d| {
                (0..dim)
                    .map(|k| (f64::from(d[k]) * wt(k)).powi(2))
                    .sum::<f64>()
                    .sqrt()
                    / norm
            })
            .fold(0.0, f64::max);
        let got = s.get(Score::Sensitivity).unwrap();
        assert!(
            (got - expected).abs() < 1e-4 * expected,
            "image {i}: {got} vs {expected}"
        );
        assert!(got < 0.1, "a 2% perturbation moved linear IG by {got}");
    }
}

#[test]
fn random_baseline_is_reproducible_and_worse_than_ig() {
    let (model, batch) = linear_case(8);
    let ids: Vec<u64> = (0..8).collect();
    let config = MetricConfig {
        curve_steps: 12,
        ..only(&[Metric::Deletion, Metric::Insertion, Metric::Sensitivity])
    };
    let mut cpu = CpuBackend::new(&model);
    let random = metrics::evaluate(&mut cpu, &batch, &ids, &Attributor::Random, &config).unwrap();
    let again = metrics::evaluate(&mut cpu, &batch, &ids, &Attributor::Random, &config).unwrap();
    assert_eq!(random, again);
    let other_seed = MetricConfig {
        seed: 1,
        ..config.clone()
    };
    let reseeded =
        metrics::evaluate(&mut cpu, &batch, &ids, &Attributor::Random, &other_seed).unwrap();
    assert_ne!(random, reseeded);
    let ig = metrics::evaluate(&mut cpu, &batch, &ids, &gauss_legendre(4), &config).unwrap();
    let mean = |s: &[metrics::Scores], score| metrics::summary(s, score).unwrap().0;
    for substrate in Substrate::ALL {
        let (d, i) = (Score::Deletion(substrate), Score::Insertion(substrate));
        assert!(mean(&ig, d) < mean(&random, d), "{}", d.name());
        assert!(mean(&ig, i) > mean(&random, i), "{}", i.name());
    }
    // A fresh random map for each perturbed copy is about sqrt(2) away from the original.
    let s = mean(&random, Score::Sensitivity);
    assert!(s > 1.3 && s < 1.7, "random sensitivity {s}");
}

#[test]
fn gpu_and_cpu_agree_on_a_cnn_for_every_method() {
    let model = Model::random_from_arch(
        "conv(1,3,3,p1) relu maxpool2 flatten linear(48,4)",
        [1, 8, 8],
        6,
    )
    .unwrap();
    let n = 3;
    let batch = Batch::new(
        &model,
        uniform(n * 64, 0.0, 1.0, 60),
        vec![0.0; n * 64],
        vec![0, 1, 2],
    )
    .unwrap();
    let ids = [0, 1, 2];
    let config = MetricConfig {
        curve_steps: 8,
        sensitivity_samples: 3,
        infidelity_samples: 4,
        ..MetricConfig::default()
    };
    let mut gpu = engine(&model);
    let mut cpu = CpuBackend::new(&model);
    for name in [
        "gausslegendre:16",
        "adaptive:24",
        "split:24",
        "idg:24",
        "random",
    ] {
        let a = Attributor::parse(name, &Settings::default()).unwrap();
        let g = metrics::evaluate(&mut gpu, &batch, &ids, &a, &config).unwrap();
        let c = metrics::evaluate(&mut cpu, &batch, &ids, &a, &config).unwrap();
        for score in Score::ALL {
            let (gv, cv) = (
                metrics::summary(&g, score).map(|s| s.0),
                metrics::summary(&c, score).map(|s| s.0),
            );
            assert_eq!(gv.is_some(), cv.is_some(), "{name} {}", score.name());
            if let (Some(gv), Some(cv)) = (gv, cv) {
                assert!(gv.is_finite(), "{name} {}", score.name());
                // Pixels whose attributions tie in f64 may rank differently in f32; the tolerance
                // leaves room for that, not for a wrong curve.
                assert!(
                    (gv - cv).abs() < 2e-3 * (1.0 + cv.abs()),
                    "{name} {}: gpu {gv} cpu {cv}",
                    score.name()
                );
            }
        }
    }
}

fn gig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gig"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

const SMALL_RUN: [&str; 18] = [
    "eval-attr",
    "--model",
    "assets/mnist_cnn.safetensors",
    "--data",
    "assets/mnist10k",
    "--count",
    "3",
    "--methods",
    "gausslegendre:8,random",
    "--curve-steps",
    "7",
    "--infidelity-samples",
    "3",
    "--sensitivity-samples",
    "2",
    "--batch",
    "2",
    "--json",
];

#[test]
fn eval_attr_prints_a_table_json_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("eval-attr.csv");
    let mut args = SMALL_RUN.to_vec();
    args.extend(["--csv", csv.to_str().unwrap()]);
    let o = gig(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(j["count"], 3);
    assert_eq!(j["split"], "test");
    let results = j["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["method"], "gausslegendre");
    assert_eq!(results[0]["steps"], 8);
    assert_eq!(results[1]["method"], "random");
    for r in results {
        for score in Score::ALL {
            let name = score.name();
            let v = &r["scores"][&name];
            if r["method"] == "random" && score == Score::Completeness {
                assert!(v.is_null());
                continue;
            }
            let (mean, median) = (v["mean"].as_f64(), v["median"].as_f64());
            assert!(
                mean.is_some_and(f64::is_finite) && median.is_some_and(f64::is_finite),
                "{name}: {v}"
            );
        }
    }
    let rows = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 3);
    assert!(lines[0].starts_with("method,steps,image,source_index,label,target,deletion_zero"));
    // The test split of mnist10k is its last 2,000 images.
    assert!(
        lines[1].starts_with("gausslegendre,8,0,8000,"),
        "{}",
        lines[1]
    );

    let table = gig(&SMALL_RUN[..SMALL_RUN.len() - 1]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    let header = text.lines().find(|l| l.starts_with("method")).unwrap();
    for score in Score::ALL {
        assert!(header.contains(&score.name()), "{header}");
    }
    assert!(text.lines().any(|l| l.starts_with("gausslegendre:8 ")));
    assert!(text.lines().any(|l| l.starts_with("random ")));
}

#[test]
fn eval_attr_rejects_bad_values() {
    let base = [
        "eval-attr",
        "--model",
        "assets/mnist_cnn.safetensors",
        "--data",
        "assets/mnist10k",
    ];
    for (extra, needle) in [
        (&["--metrics", "deletion,auc"][..], "unknown metric `auc`"),
        (
            &["--methods", "gausslegendre,lime"][..],
            "unknown method `lime`",
        ),
        (&["--methods", "random:5"][..], "takes no step count"),
        (&["--methods", "adaptive:0"][..], "steps must be a positive"),
        (&["--count", "0"][..], "--count must be at least 1"),
        (&["--count", "2001"][..], "more than the 2000 images"),
        (&["--split", "dev"][..], "unknown split"),
        (&["--curve-steps", "0"][..], "at least one step"),
        (&["--sensitivity-radius=-1"][..], "radius must be positive"),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let o = gig(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?} succeeded");
        assert!(
            err.contains(needle),
            "{extra:?}: stderr lacks `{needle}`:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
