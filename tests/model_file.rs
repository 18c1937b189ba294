//! Model files: every malformed or mismatched file is an error that names the layer and the problem.

use gig::Model;
use safetensors::{Dtype, tensor::TensorView};
use std::collections::HashMap;

const ARCH: &str = "conv(1,2,3,p1) relu maxpool2 flatten linear(8,3)";

/// A file with the given tensors (name, dtype, shape, value) and metadata.
fn file(tensors: &[(&str, Dtype, Vec<usize>, f32)], meta: &[(&str, &str)]) -> Vec<u8> {
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, dtype, shape, value)| {
            let n: usize = shape.iter().product();
            let bytes = match dtype {
                Dtype::F64 => (0..n).flat_map(|_| (*value as f64).to_le_bytes()).collect(),
                Dtype::F16 => vec![0u8; 2 * n],
                _ => (0..n).flat_map(|_| value.to_le_bytes()).collect(),
            };
            (name.to_string(), *dtype, shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let meta: HashMap<String, String> = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn good_tensors() -> Vec<(&'static str, Dtype, Vec<usize>, f32)> {
    vec![
        ("0.weight", Dtype::F32, vec![2, 1, 3, 3], 0.1),
        ("0.bias", Dtype::F32, vec![2], 0.0),
        ("4.weight", Dtype::F32, vec![3, 8], 0.2),
        ("4.bias", Dtype::F32, vec![3], 0.0),
    ]
}

const META: &[(&str, &str)] = &[("gig.arch", ARCH), ("gig.input_shape", "1,4,4")];

fn error_of(bytes: &[u8]) -> String {
    Model::from_safetensors(bytes).unwrap_err().to_string()
}

#[test]
fn a_good_file_loads() {
    let m = Model::from_safetensors(&file(&good_tensors(), META)).unwrap();
    assert_eq!(m.arch(), ARCH);
    assert_eq!((m.input_shape(), m.classes()), ([1, 4, 4], 3));
}

#[test]
fn float64_tensors_are_converted() {
    let mut t = good_tensors();
    t[2].1 = Dtype::F64;
    let m = Model::from_safetensors(&file(&t, META)).unwrap();
    assert_eq!(m.params(4).unwrap().weight, vec![0.2; 24]);
}

#[test]
fn truncated_and_garbage_files() {
    let bytes = file(&good_tensors(), META);
    for cut in [bytes.len() - 1, bytes.len() / 2, 9, 3] {
        let e = error_of(&bytes[..cut]);
        assert!(
            e.contains("not a valid safetensors file"),
            "cut at {cut}: {e}"
        );
    }
    assert!(error_of(b"hello world, not a model").contains("not a valid safetensors file"));
}

#[test]
fn metadata_problems() {
    let t = good_tensors();
    let e = error_of(&file(&t, &[("gig.input_shape", "1,4,4")]));
    assert!(e.contains("no `gig.arch` entry"), "{e}");
    let e = error_of(&file(&t, &[("gig.arch", ARCH)]));
    assert!(e.contains("no `gig.input_shape` entry"), "{e}");
    let e = error_of(&file(
        &t,
        &[
            ("gig.arch", "conv(1,2,3,p1) relu swish"),
            ("gig.input_shape", "1,4,4"),
        ],
    ));
    assert!(
        e.contains("layer 2 `swish`") && e.contains("unknown layer"),
        "{e}"
    );
    let e = error_of(&file(
        &t,
        &[("gig.arch", ARCH), ("gig.input_shape", "3,4,4")],
    ));
    assert!(
        e.contains("layer 0 (conv(1,2,3,p1)): expects 1 input channels"),
        "{e}"
    );
    let e = error_of(&file(
        &t,
        &[("gig.arch", ARCH), ("gig.input_shape", "1,6,6")],
    ));
    assert!(
        e.contains("layer 4 (linear(8,3)): expects 8 input features but the input has 18"),
        "{e}"
    );
}

#[test]
fn tensor_problems_name_the_layer() {
    let mut t = good_tensors();
    t[0].2 = vec![2, 1, 5, 5];
    let e = error_of(&file(&t, META));
    assert!(
        e.contains("layer 0 (conv(1,2,3,p1)): tensor `0.weight` has shape [2, 1, 5, 5] but the layer needs [2, 1, 3, 3]"),
        "{e}"
    );

    let mut t = good_tensors();
    t.remove(3);
    let e = error_of(&file(&t, META));
    assert!(
        e.contains("layer 4 (linear(8,3)): tensor `4.bias` is missing"),
        "{e}"
    );

    let mut t = good_tensors();
    t.push(("7.weight", Dtype::F32, vec![1], 0.0));
    let e = error_of(&file(&t, META));
    assert!(e.contains("`7.weight` do not belong to any layer"), "{e}");

    let mut t = good_tensors();
    t[1].3 = f32::INFINITY;
    let e = error_of(&file(&t, META));
    assert!(
        e.contains("layer 0 (conv(1,2,3,p1)): bias value 0 is inf"),
        "{e}"
    );

    let mut t = good_tensors();
    t[2].1 = Dtype::F16;
    let e = error_of(&file(&t, META));
    assert!(
        e.contains("tensor `4.weight` has dtype F16; only F32 and F64"),
        "{e}"
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, &file(&good_tensors(), META)[..40]).unwrap();
    let e = Model::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("bad.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
    let e = Model::load(dir.path().join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
}
