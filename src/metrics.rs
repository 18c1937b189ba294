//! Faithfulness metrics of attributions: how well an attribution map predicts what the model does when the
//! input changes. Every metric runs on any [`Backend`], and the perturbed images of a metric go through the
//! model as one batch (one dispatch grid per layer on the GPU).
//!
//! F is the target logit and p the softmax probability of the target. For image x with attribution a:
//!
//! - **Deletion and insertion AUC** (Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for
//!   Explanation of Black-box Models", BMVC 2018). Pixels are ranked by attribution, summed over channels,
//!   highest first. Deletion replaces the top-ranked pixels by a substrate, in `steps` equal steps until
//!   none of x is left; insertion starts from the substrate and puts x's pixels back in the same order.
//!   The score is the area under p against the fraction of pixels moved, by the trapezoid rule on [0, 1].
//!   A faithful map makes deletion fall fast (low AUC) and insertion rise fast (high AUC). The substrate
//!   is black (`zero`) or x blurred with the project's blur baseline (`blur`, sigma 4 pixels), which
//!   removes the strokes without adding the sharp edges of black patches.
//! - **Infidelity** (Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019;
//!   Captum's `infidelity`): E_I[(I . a - (F(x) - F(x - d)))^2] over Gaussian noise d ~ N(0, sigma^2)
//!   per value. Since every attribution here is multiplied by x - b, the perturbation is
//!   I = d / (x - b) (1 where x = b), as Captum's `infidelity_perturb_func_decorator(multiply_by_inputs=True)`
//!   makes it. We use Captum's `normalize=True`: a is first scaled by the beta that minimises the
//!   expectation, so the score is about the shape of the map and not its scale. That keeps IDG (whose sum
//!   is not F(x) - F(b)) and the random baseline comparable with IG.
//! - **Sensitivity-max** (Yeh et al. 2019; Captum's `sensitivity_max`): the largest
//!   |a(x + d) - a(x)| / |a(x)| (L2 norms) over `samples` draws of d uniform in [-r, r] per value, with
//!   Captum's default r = 0.02; baseline and target stay those of x. Lower is more stable.
//! - **Completeness error**: |sum(a) - S| / |S|, where S is what the method's sum should equal
//!   ([`Report::expected_sum`]: F(x) - F(b) for IG, F(cut) - F(b) for Split IG, the integral of
//!   (dF/dalpha)^2 for IDG). The random baseline has no S, so no completeness score.
//!
//! The random baseline ([`Attributor::Random`]) draws every value uniformly from [-1, 1): a map unrelated
//! to the model, the yardstick every score above is read against. Every draw (noise and random maps) is
//! seeded by the seed, the image's id and what it is for, so scores are reproducible and every method
//! sees the same perturbations.

use crate::backend::{Backend, Batch};
use crate::baseline::{Baseline, DEFAULT_BLUR_SIGMA};
use crate::error::{Error, Result};
use crate::method::{self, Method, Report, Settings};
use crate::tensor::Tensor;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A metric as named on the command line; deletion and insertion each give one score per substrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Deletion,
    Insertion,
    Infidelity,
    Sensitivity,
    Completeness,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Deletion,
        Metric::Insertion,
        Metric::Infidelity,
        Metric::Sensitivity,
        Metric::Completeness,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Deletion => "deletion",
            Metric::Insertion => "insertion",
            Metric::Infidelity => "infidelity",
            Metric::Sensitivity => "sensitivity",
            Metric::Completeness => "completeness",
        }
    }

    pub fn parse(name: &str) -> Result<Metric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
                Error::Input(format!(
                    "unknown metric `{name}` (use one of {})",
                    names.join(", ")
                ))
            })
    }

    /// A comma-separated list, in the order given, without repeats.
    pub fn parse_list(text: &str) -> Result<Vec<Metric>> {
        let mut metrics = Vec::new();
        for name in text.split(',').map(str::trim) {
            let m = Metric::parse(name)?;
            if !metrics.contains(&m) {
                metrics.push(m);
            }
        }
        Ok(metrics)
    }
}

/// What replaces removed pixels in deletion, and what insertion starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Substrate {
    Zero,
    Blur,
}

impl Substrate {
    pub const ALL: [Substrate; 2] = [Substrate::Zero, Substrate::Blur];

    pub fn name(self) -> &'static str {
        match self {
            Substrate::Zero => "zero",
            Substrate::Blur => "blur",
        }
    }

    /// The substrate of every image of `inputs` (`n` images of `shape`).
    pub fn make(self, inputs: &[f32], shape: [usize; 3]) -> Result<Vec<f32>> {
        let baseline = match self {
            Substrate::Zero => Baseline::Zero,
            Substrate::Blur => Baseline::Blur {
                sigma: DEFAULT_BLUR_SIGMA,
            },
        };
        let n = inputs.len() / shape.iter().product::<usize>();
        let images = Tensor::new(vec![n, shape[0], shape[1], shape[2]], inputs.to_vec())?;
        Ok(baseline.make(&images)?.data)
    }
}

/// Deletion removes the top-ranked pixels first; insertion puts them back first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    Deletion,
    Insertion,
}

/// One column of the results: a metric, and for deletion and insertion, its substrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    Deletion(Substrate),
    Insertion(Substrate),
    Infidelity,
    Sensitivity,
    Completeness,
}

impl Score {
    pub const ALL: [Score; 7] = [
        Score::Deletion(Substrate::Zero),
        Score::Deletion(Substrate::Blur),
        Score::Insertion(Substrate::Zero),
        Score::Insertion(Substrate::Blur),
        Score::Infidelity,
        Score::Sensitivity,
        Score::Completeness,
    ];

    /// `deletion_zero`, `insertion_blur`, `infidelity`, ...
    pub fn name(self) -> String {
        match self {
            Score::Deletion(s) => format!("deletion_{}", s.name()),
            Score::Insertion(s) => format!("insertion_{}", s.name()),
            Score::Infidelity => "infidelity".into(),
            Score::Sensitivity => "sensitivity".into(),
            Score::Completeness => "completeness".into(),
        }
    }

    pub fn metric(self) -> Metric {
        match self {
            Score::Deletion(_) => Metric::Deletion,
            Score::Insertion(_) => Metric::Insertion,
            Score::Infidelity => Metric::Infidelity,
            Score::Sensitivity => Metric::Sensitivity,
            Score::Completeness => Metric::Completeness,
        }
    }

    /// Insertion is the only score where more is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Score::Insertion(_))
    }

    /// The columns `metrics` produce, in [`Score::ALL`]'s order.
    pub fn of(metrics: &[Metric]) -> Vec<Score> {
        Score::ALL
            .into_iter()
            .filter(|s| metrics.contains(&s.metric()))
            .collect()
    }

    fn index(self) -> usize {
        Score::ALL.iter().position(|s| *s == self).unwrap()
    }
}

/// One image's scores; None where the metric was not asked for or does not apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores([Option<f64>; Score::ALL.len()]);

impl Scores {
    pub fn get(&self, score: Score) -> Option<f64> {
        self.0[score.index()]
    }

    pub fn set(&mut self, score: Score, value: f64) {
        self.0[score.index()] = Some(value);
    }
}

/// How the metrics are run; `Default` gives the values documented in the module comment.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricConfig {
    pub metrics: Vec<Metric>,
    /// Deletion and insertion steps: the curve has `curve_steps + 1` points.
    pub curve_steps: usize,
    pub infidelity_samples: usize,
    /// Standard deviation of infidelity's Gaussian noise, in input units.
    pub infidelity_sigma: f64,
    pub sensitivity_samples: usize,
    /// Half-width of sensitivity's uniform noise, in input units.
    pub sensitivity_radius: f64,
    pub seed: u64,
}

impl Default for MetricConfig {
    fn default() -> MetricConfig {
        MetricConfig {
            metrics: Metric::ALL.to_vec(),
            curve_steps: 28,
            infidelity_samples: 10,
            infidelity_sigma: 0.1,
            sensitivity_samples: 10,
            sensitivity_radius: 0.02,
            seed: 0,
        }
    }
}

impl MetricConfig {
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Input(what.to_string()));
        if self.metrics.is_empty() {
            return bad("no metric to compute");
        }
        if self.curve_steps == 0 {
            return bad("deletion and insertion need at least one step");
        }
        if self.infidelity_samples == 0 || self.sensitivity_samples == 0 {
            return bad("infidelity and sensitivity need at least one perturbation sample");
        }
        if !(self.infidelity_sigma > 0.0 && self.infidelity_sigma.is_finite()) {
            return bad("the infidelity noise sigma must be positive");
        }
        if !(self.sensitivity_radius > 0.0 && self.sensitivity_radius.is_finite()) {
            return bad("the sensitivity radius must be positive");
        }
        Ok(())
    }
}

/// Something that attributes: one of the methods of [`crate::method`], or the random baseline.
#[derive(Clone, Debug, PartialEq)]
pub enum Attributor {
    Method { method: Method, settings: Settings },
    Random,
}

/// What an attributor returns: `dim` values per image, and the methods' reports.
pub struct Attributions {
    pub values: Vec<f64>,
    pub reports: Option<Vec<Report>>,
}

impl Attributor {
    /// `NAME` or `NAME:STEPS` (a method of [`Method::NAMES`] or `random`); STEPS overrides
    /// `settings.steps` for this method.
    pub fn parse(spec: &str, settings: &Settings) -> Result<Attributor> {
        let (name, steps) = spec.split_once(':').unwrap_or((spec, ""));
        if name == "random" {
            if !steps.is_empty() {
                return Err(Error::Input("`random` takes no step count".into()));
            }
            return Ok(Attributor::Random);
        }
        let method = Method::parse(name).map_err(|_| {
            Error::Input(format!(
                "unknown method `{name}` (use one of {}, random)",
                Method::NAMES.join(", ")
            ))
        })?;
        let mut settings = settings.clone();
        if !steps.is_empty() {
            settings.steps = steps.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                Error::Input(format!("`{spec}`: steps must be a positive integer"))
            })?;
        }
        Ok(Attributor::Method { method, settings })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Attributor::Method { method, .. } => method.name(),
            Attributor::Random => "random",
        }
    }

    pub fn steps(&self) -> Option<usize> {
        match self {
            Attributor::Method { settings, .. } => Some(settings.steps),
            Attributor::Random => None,
        }
    }

    /// Attributes every image of `batch`; `ids` name the images for the random baseline's draws.
    pub fn attribute(
        &self,
        backend: &mut dyn Backend,
        batch: &Batch,
        ids: &[u64],
        seed: u64,
    ) -> Result<Attributions> {
        match self {
            Attributor::Method { method, settings } => {
                let e = method::explain(backend, batch, *method, settings)?;
                Ok(Attributions {
                    values: e.values,
                    reports: Some(e.images),
                })
            }
            Attributor::Random => Ok(Attributions {
                values: ids
                    .iter()
                    .flat_map(|&id| random_attribution(seed, id, 0, batch.dim))
                    .collect(),
                reports: None,
            }),
        }
    }
}

/// What each seeded draw is for, so that no two uses share a stream.
#[derive(Clone, Copy)]
enum Purpose {
    Random = 1,
    Infidelity = 2,
    Sensitivity = 3,
}

/// The generator of one draw: a splitmix64 hash of everything that names it.
fn rng(seed: u64, purpose: Purpose, id: u64, draw: u64) -> ChaCha8Rng {
    let mut h = seed;
    for part in [purpose as u64, id, draw] {
        h = (h ^ part).wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// The random baseline's map of image `id`: `dim` values uniform in [-1, 1).
pub fn random_attribution(seed: u64, id: u64, draw: u64, dim: usize) -> Vec<f64> {
    let mut r = rng(seed, Purpose::Random, id, draw);
    (0..dim).map(|_| r.random_range(-1.0..1.0)).collect()
}

/// Infidelity's noise for image `id`: `samples` vectors of `dim` values from N(0, sigma^2).
pub fn infidelity_noise(seed: u64, id: u64, samples: usize, dim: usize, sigma: f64) -> Vec<f32> {
    let mut r = rng(seed, Purpose::Infidelity, id, 0);
    (0..samples * dim)
        .map(|_| {
            // Box-Muller; 1 - u keeps the logarithm finite.
            let (u, v): (f64, f64) = (r.random(), r.random());
            (sigma * (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

/// Sensitivity's noise for image `id`: `samples` vectors of `dim` values uniform in [-radius, radius).
pub fn sensitivity_noise(seed: u64, id: u64, samples: usize, dim: usize, radius: f64) -> Vec<f32> {
    let mut r = rng(seed, Purpose::Sensitivity, id, 0);
    (0..samples * dim)
        .map(|_| r.random_range(-radius..radius) as f32)
        .collect()
}

/// Pixel indices (y * W + x) by attribution summed over channels, highest first; ties keep pixel order.
pub fn pixel_ranking(attribution: &[f64], [c, h, w]: [usize; 3]) -> Vec<usize> {
    let plane = h * w;
    let score: Vec<f64> = (0..plane)
        .map(|p| (0..c).map(|ch| attribution[ch * plane + p]).sum())
        .collect();
    let mut order: Vec<usize> = (0..plane).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    order
}

/// How many pixels of `pixels` are moved after step `step` of `steps`.
pub fn pixels_moved(step: usize, steps: usize, pixels: usize) -> usize {
    (step * pixels + steps / 2) / steps
}

/// The `steps + 1` images of one curve of one image, the untouched start first.
pub fn curve_images(
    input: &[f32],
    substrate: &[f32],
    ranking: &[usize],
    [c, h, w]: [usize; 3],
    steps: usize,
    curve: Curve,
) -> Vec<f32> {
    let plane = h * w;
    let (mut image, source) = match curve {
        Curve::Deletion => (input.to_vec(), substrate),
        Curve::Insertion => (substrate.to_vec(), input),
    };
    let mut out = Vec::with_capacity((steps + 1) * image.len());
    out.extend_from_slice(&image);
    let mut moved = 0;
    for step in 1..=steps {
        let until = pixels_moved(step, steps, plane);
        for &p in &ranking[moved..until] {
            for ch in 0..c {
                image[ch * plane + p] = source[ch * plane + p];
            }
        }
        moved = until;
        out.extend_from_slice(&image);
    }
    out
}

/// The softmax probability of class `target`.
pub fn softmax(logits: &[f64], target: usize) -> f64 {
    let top = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = logits.iter().map(|l| (l - top).exp()).sum();
    (logits[target] - top).exp() / total
}

/// The trapezoid-rule area under `ys` at the points `xs`.
pub fn auc(xs: &[f64], ys: &[f64]) -> f64 {
    xs.windows(2)
        .zip(ys.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum()
}

/// The fraction of pixels moved at each point of a curve of `steps` steps.
pub fn curve_fractions(steps: usize, pixels: usize) -> Vec<f64> {
    (0..=steps)
        .map(|s| pixels_moved(s, steps, pixels) as f64 / pixels as f64)
        .collect()
}

/// For each request (curve, substrates of every image), each image's curve of target probabilities:
/// `result[request][image][step]`. All images of all requests go through `backend` as one batch.
pub fn probability_curves(
    backend: &mut dyn Backend,
    inputs: &[f32],
    attributions: &[f64],
    targets: &[usize],
    requests: &[(Curve, &[f32])],
    steps: usize,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let shape = backend.model().input_shape();
    let dim = backend.model().input_len();
    let n = targets.len();
    let rankings: Vec<Vec<usize>> = attributions
        .chunks(dim)
        .map(|a| pixel_ranking(a, shape))
        .collect();
    let mut images = Vec::with_capacity(requests.len() * n * (steps + 1) * dim);
    for (curve, substrates) in requests {
        for (i, ranking) in rankings.iter().enumerate() {
            let span = i * dim..(i + 1) * dim;
            images.extend(curve_images(
                &inputs[span.clone()],
                &substrates[span],
                ranking,
                shape,
                steps,
                *curve,
            ));
        }
    }
    let logits = backend.logits(&images)?;
    let mut rows = logits.chunks(steps + 1);
    Ok(requests
        .iter()
        .map(|_| {
            (0..n)
                .map(|i| {
                    let curve = rows.next().expect("one row of logits per image");
                    curve.iter().map(|l| softmax(l, targets[i])).collect()
                })
                .collect()
        })
        .collect())
}

/// Captum's normalised infidelity of each image's attribution, with `config`'s samples, sigma and seed
/// (see the module comment).
pub fn infidelity(
    backend: &mut dyn Backend,
    batch: &Batch,
    attributions: &[f64],
    ids: &[u64],
    config: &MetricConfig,
) -> Result<Vec<f64>> {
    let (n, dim) = (batch.len(), batch.dim);
    let (samples, sigma, seed) = (
        config.infidelity_samples,
        config.infidelity_sigma,
        config.seed,
    );
    let noise: Vec<Vec<f32>> = ids
        .iter()
        .map(|&id| infidelity_noise(seed, id, samples, dim, sigma))
        .collect();
    // The inputs first, then every image's perturbed copies.
    let mut images = batch.inputs.clone();
    for (i, d) in noise.iter().enumerate() {
        let x = &batch.inputs[i * dim..(i + 1) * dim];
        for s in 0..samples {
            images.extend(x.iter().zip(&d[s * dim..(s + 1) * dim]).map(|(x, d)| x - d));
        }
    }
    let logits = backend.logits(&images)?;
    Ok((0..n)
        .map(|i| {
            let t = batch.targets[i];
            let span = i * dim..(i + 1) * dim;
            let (x, b, a) = (
                &batch.inputs[span.clone()],
                &batch.baselines[span.clone()],
                &attributions[span],
            );
            let mut projected = Vec::with_capacity(samples);
            let mut change = Vec::with_capacity(samples);
            for s in 0..samples {
                let d = &noise[i][s * dim..(s + 1) * dim];
                projected.push(
                    (0..dim)
                        .map(|k| {
                            let diff = f64::from(x[k]) - f64::from(b[k]);
                            let scale = if diff == 0.0 { 1.0 } else { diff };
                            f64::from(d[k]) / scale * a[k]
                        })
                        .sum::<f64>(),
                );
                change.push(logits[i][t] - logits[n + i * samples + s][t]);
            }
            normalized_infidelity(&projected, &change)
        })
        .collect())
}

/// mean_s (beta p_s - c_s)^2 with the beta that minimises it (0 when every p_s is 0).
pub fn normalized_infidelity(projected: &[f64], change: &[f64]) -> f64 {
    let pp: f64 = projected.iter().map(|p| p * p).sum();
    let pc: f64 = projected.iter().zip(change).map(|(p, c)| p * c).sum();
    let beta = if pp > 0.0 { pc / pp } else { 0.0 };
    projected
        .iter()
        .zip(change)
        .map(|(p, c)| (beta * p - c).powi(2))
        .sum::<f64>()
        / projected.len() as f64
}

/// Sensitivity-max of each image's attribution (`attributions`, by `attributor`), with `config`'s
/// samples, radius and seed (see the module comment). The perturbed copies of every image are attributed
/// in one call.
pub fn sensitivity(
    backend: &mut dyn Backend,
    batch: &Batch,
    attributor: &Attributor,
    attributions: &[f64],
    ids: &[u64],
    config: &MetricConfig,
) -> Result<Vec<f64>> {
    let (n, dim) = (batch.len(), batch.dim);
    let (samples, radius, seed) = (
        config.sensitivity_samples,
        config.sensitivity_radius,
        config.seed,
    );
    let mut inputs = Vec::with_capacity(n * samples * dim);
    let mut baselines = Vec::with_capacity(n * samples * dim);
    let mut targets = Vec::with_capacity(n * samples);
    let mut copy_ids = Vec::with_capacity(n * samples);
    for (i, &id) in ids.iter().enumerate() {
        let span = i * dim..(i + 1) * dim;
        let noise = sensitivity_noise(seed, id, samples, dim, radius);
        for d in noise.chunks(dim) {
            inputs.extend(batch.inputs[span.clone()].iter().zip(d).map(|(x, d)| x + d));
            baselines.extend_from_slice(&batch.baselines[span.clone()]);
            targets.push(batch.targets[i]);
            copy_ids.push(id);
        }
    }
    let perturbed = Batch::new(backend.model(), inputs, baselines, targets)?;
    // The random baseline draws a fresh map for each copy (draws 1..=samples; draw 0 is the original).
    let mut values = Vec::with_capacity(n * samples * dim);
    if *attributor == Attributor::Random {
        for (k, &id) in copy_ids.iter().enumerate() {
            let draw = 1 + (k % samples) as u64;
            values.extend(random_attribution(seed, id, draw, dim));
        }
    } else {
        values = attributor
            .attribute(backend, &perturbed, &copy_ids, seed)?
            .values;
    }
    Ok((0..n)
        .map(|i| {
            let a = &attributions[i * dim..(i + 1) * dim];
            let norm = l2(a);
            // Captum divides by 1 where the original map is all zeros.
            let norm = if norm == 0.0 { 1.0 } else { norm };
            (0..samples)
                .map(|s| {
                    let k = i * samples + s;
                    let other = &values[k * dim..(k + 1) * dim];
                    let diff: f64 = a.iter().zip(other).map(|(x, y)| (x - y) * (x - y)).sum();
                    diff.sqrt() / norm
                })
                .fold(0.0, f64::max)
        })
        .collect())
}

fn l2(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// |sum - expected| / |expected| of one report; the absolute error where nothing is expected.
pub fn completeness_error(report: &Report) -> f64 {
    let error = (report.attribution_sum - report.expected_sum).abs();
    if report.expected_sum == 0.0 {
        error
    } else {
        error / report.expected_sum.abs()
    }
}

/// Every metric of `config` for every image of `batch`, attributed by `attributor`. `ids` name the images
/// for the seeded draws (use the same ids for every attributor so that they see the same noise).
pub fn evaluate(
    backend: &mut dyn Backend,
    batch: &Batch,
    ids: &[u64],
    attributor: &Attributor,
    config: &MetricConfig,
) -> Result<Vec<Scores>> {
    config.check()?;
    if ids.len() != batch.len() {
        return Err(Error::Input(format!(
            "{} ids for {} images",
            ids.len(),
            batch.len()
        )));
    }
    let shape = backend.model().input_shape();
    let n = batch.len();
    let a = attributor.attribute(backend, batch, ids, config.seed)?;
    let mut scores = vec![Scores::default(); n];
    let wants = |m| config.metrics.contains(&m);

    let mut columns = Vec::new();
    let mut requests = Vec::new();
    let substrates: Vec<(Substrate, Vec<f32>)> = Substrate::ALL
        .into_iter()
        .map(|s| Ok((s, s.make(&batch.inputs, shape)?)))
        .collect::<Result<_>>()?;
    for (substrate, images) in &substrates {
        if wants(Metric::Deletion) {
            columns.push(Score::Deletion(*substrate));
            requests.push((Curve::Deletion, images.as_slice()));
        }
        if wants(Metric::Insertion) {
            columns.push(Score::Insertion(*substrate));
            requests.push((Curve::Insertion, images.as_slice()));
        }
    }
    if !requests.is_empty() {
        let curves = probability_curves(
            backend,
            &batch.inputs,
            &a.values,
            &batch.targets,
            &requests,
            config.curve_steps,
        )?;
        let xs = curve_fractions(config.curve_steps, shape[1] * shape[2]);
        for (column, per_image) in columns.into_iter().zip(curves) {
            for (s, curve) in scores.iter_mut().zip(per_image) {
                s.set(column, auc(&xs, &curve));
            }
        }
    }
    if wants(Metric::Infidelity) {
        let values = infidelity(backend, batch, &a.values, ids, config)?;
        for (s, v) in scores.iter_mut().zip(values) {
            s.set(Score::Infidelity, v);
        }
    }
    if wants(Metric::Sensitivity) {
        let values = sensitivity(backend, batch, attributor, &a.values, ids, config)?;
        for (s, v) in scores.iter_mut().zip(values) {
            s.set(Score::Sensitivity, v);
        }
    }
    if let (true, Some(reports)) = (wants(Metric::Completeness), &a.reports) {
        for (s, r) in scores.iter_mut().zip(reports) {
            s.set(Score::Completeness, completeness_error(r));
        }
    }
    Ok(scores)
}

/// Mean and median of the images' values of one score (None where no image has one).
pub fn summary(scores: &[Scores], score: Score) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = scores.iter().filter_map(|s| s.get(score)).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Some((mean, median))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_sums_channels_and_keeps_ties_in_order() {
        // Two channels of a 1x3 image: pixel sums 1, 3, 1.
        let a = [1.0, 1.0, 0.5, 0.0, 2.0, 0.5];
        assert_eq!(pixel_ranking(&a, [2, 1, 3]), vec![1, 0, 2]);
    }

    #[test]
    fn curves_move_pixels_in_rank_order() {
        let input = [1.0, 2.0, 3.0, 4.0];
        let substrate = [0.0; 4];
        let ranking = [2, 0, 3, 1];
        let deletion = curve_images(&input, &substrate, &ranking, [1, 2, 2], 2, Curve::Deletion);
        assert_eq!(
            deletion,
            vec![1., 2., 3., 4., 0., 2., 0., 4., 0., 0., 0., 0.]
        );
        let insertion = curve_images(&input, &substrate, &ranking, [1, 2, 2], 4, Curve::Insertion);
        assert_eq!(&insertion[..4], &[0.; 4]);
        assert_eq!(&insertion[4..8], &[0., 0., 3., 0.]);
        assert_eq!(&insertion[16..], &input);
    }

    #[test]
    fn uneven_steps_cover_every_pixel_once() {
        assert_eq!(
            (0..=3).map(|s| pixels_moved(s, 3, 10)).collect::<Vec<_>>(),
            vec![0, 3, 7, 10]
        );
        assert_eq!(curve_fractions(4, 784), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    #[test]
    fn trapezoid_areas() {
        let xs = [0.0, 0.25, 0.5, 0.75, 1.0];
        assert!((auc(&xs, &[1.0; 5]) - 1.0).abs() < 1e-15);
        assert!((auc(&xs, &[0.0, 0.25, 0.5, 0.75, 1.0]) - 0.5).abs() < 1e-15);
        // A step down after the first point: half a trapezoid of height 1 and width 0.25.
        assert!((auc(&xs, &[1.0, 0.0, 0.0, 0.0, 0.0]) - 0.125).abs() < 1e-15);
        assert!((auc(&[0.0, 0.1, 1.0], &[0.0, 1.0, 1.0]) - 0.95).abs() < 1e-15);
    }

    #[test]
    fn softmax_is_stable_and_normalised() {
        let p = softmax(&[1000.0, 1000.0 + 2f64.ln()], 1);
        assert!((p - 2.0 / 3.0).abs() < 1e-12);
        let total: f64 = (0..3).map(|t| softmax(&[0.1, -3.0, 2.0], t)).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn infidelity_is_scale_free_and_zero_for_proportional_maps() {
        let p = [0.5, -1.0, 2.0];
        assert!(normalized_infidelity(&p, &[1.0, -2.0, 4.0]) < 1e-24);
        // Orthogonal to the changes: beta is 0 and the score is the mean squared change.
        let score = normalized_infidelity(&[1.0, 1.0], &[1.0, -1.0]);
        assert!((score - 1.0).abs() < 1e-15);
        let a = normalized_infidelity(&[1.0, 2.0, 0.0], &[1.0, 1.0, 1.0]);
        let b = normalized_infidelity(&[-7.0, -14.0, 0.0], &[1.0, 1.0, 1.0]);
        assert!((a - b).abs() < 1e-15 && a > 0.1);
    }

    #[test]
    fn draws_depend_on_seed_id_and_purpose_only() {
        assert_eq!(
            random_attribution(3, 7, 0, 50),
            random_attribution(3, 7, 0, 50)
        );
        assert_ne!(
            random_attribution(3, 7, 0, 50),
            random_attribution(4, 7, 0, 50)
        );
        assert_ne!(
            random_attribution(3, 7, 0, 50),
            random_attribution(3, 8, 0, 50)
        );
        assert_ne!(
            random_attribution(3, 7, 0, 50),
            random_attribution(3, 7, 1, 50)
        );
        let u = sensitivity_noise(1, 2, 4, 100, 0.02);
        assert!(u.iter().all(|v| v.abs() <= 0.02) && u.iter().any(|v| v.abs() > 0.015));
        let g = infidelity_noise(1, 2, 100, 100, 0.1);
        let mean = g.iter().map(|&v| f64::from(v)).sum::<f64>() / 1e4;
        let var = g.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / 1e4;
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((var.sqrt() - 0.1).abs() < 0.005, "sd {}", var.sqrt());
    }

    #[test]
    fn names_parse_and_bad_ones_are_errors() {
        assert_eq!(
            Metric::parse_list("insertion,deletion,insertion").unwrap(),
            vec![Metric::Insertion, Metric::Deletion]
        );
        assert!(Metric::parse_list("deletion,auc").is_err());
        let s = Settings::default();
        assert_eq!(Attributor::parse("random", &s).unwrap(), Attributor::Random);
        match Attributor::parse("adaptive:128", &s).unwrap() {
            Attributor::Method { method, settings } => {
                assert_eq!(method, Method::Adaptive);
                assert_eq!(settings.steps, 128);
            }
            other => panic!("{other:?}"),
        }
        assert!(Attributor::parse("gausslegendre:0", &s).is_err());
        assert!(Attributor::parse("random:5", &s).is_err());
        assert!(Attributor::parse("lime", &s).is_err());
        assert_eq!(
            Score::of(&[Metric::Insertion, Metric::Completeness])
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>(),
            vec!["insertion_zero", "insertion_blur", "completeness"]
        );
    }

    #[test]
    fn summary_mean_and_median() {
        let mut all = Vec::new();
        for v in [3.0, 1.0, 2.0, 10.0] {
            let mut s = Scores::default();
            s.set(Score::Infidelity, v);
            all.push(s);
        }
        assert_eq!(summary(&all, Score::Infidelity), Some((4.0, 2.5)));
        assert_eq!(summary(&all, Score::Sensitivity), None);
    }
}
