//! Reading and writing models as .safetensors files in the layout of a PyTorch `nn.Sequential` state_dict.
//!
//! Tensors are named `{index}.weight` / `{index}.bias` by the layer's position in the Sequential; the
//! header metadata holds the layer list ([`ARCH_KEY`], in the grammar of [`super::parse_arch`]) and the
//! input shape ([`INPUT_SHAPE_KEY`], `C,H,W`). `tools/export_torch.py` writes the same layout.

use super::{Model, Params, layer_name, parse_arch, parse_input_shape};
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Metadata key of the layer list, e.g. `conv(1,16,3,p1) relu maxpool2 flatten linear(3136,10)`.
pub const ARCH_KEY: &str = "gig.arch";
/// Metadata key of the input shape `C,H,W`, e.g. `1,28,28`.
pub const INPUT_SHAPE_KEY: &str = "gig.input_shape";

fn tensor_values(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let bytes = view.data();
    match view.dtype() {
        Dtype::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        Dtype::F64 => Some(
            bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect(),
        ),
        _ => None,
    }
}

impl Model {
    /// Loads a model file; every error names the file, and the layer or tensor at fault.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Model::from_safetensors(&bytes).map_err(|e| match e {
            Error::Model(m) => Error::Model(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses the bytes of a .safetensors model file.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Model> {
        let bad = |m: String| Error::Model(m);
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        let tensors = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| {
            meta.get(key).ok_or_else(|| {
                bad(format!(
                    "the header metadata has no `{key}` entry; write the file with \
                     tools/export_torch.py or `gig train`"
                ))
            })
        };
        let layers = parse_arch(get(ARCH_KEY)?).map_err(|e| bad(format!("`{ARCH_KEY}`: {e}")))?;
        let input = parse_input_shape(get(INPUT_SHAPE_KEY)?)
            .map_err(|e| bad(format!("`{INPUT_SHAPE_KEY}`: {e}")))?;

        let mut expected = Vec::new();
        let mut params = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let Some((weight_shape, bias_shape)) = layer.param_shapes() else {
                params.push(None);
                continue;
            };
            let name = layer_name(i, layer);
            let mut read = |suffix: &str, shape: &[usize]| -> Result<Vec<f32>> {
                let key = format!("{i}.{suffix}");
                expected.push(key.clone());
                let view = tensors
                    .tensor(&key)
                    .map_err(|_| bad(format!("{name}: tensor `{key}` is missing")))?;
                if view.shape() != shape {
                    return Err(bad(format!(
                        "{name}: tensor `{key}` has shape {:?} but the layer needs {shape:?}",
                        view.shape()
                    )));
                }
                tensor_values(&view).ok_or_else(|| {
                    bad(format!(
                        "{name}: tensor `{key}` has dtype {:?}; only F32 and F64 are supported",
                        view.dtype()
                    ))
                })
            };
            let weight = read("weight", &weight_shape)?;
            let bias = match bias_shape {
                Some(s) => read("bias", &s)?,
                None => Vec::new(),
            };
            params.push(Some(Params { weight, bias }));
        }
        let mut extra: Vec<String> = tensors
            .names()
            .into_iter()
            .filter(|n| !expected.iter().any(|e| e == n))
            .map(|n| format!("`{n}`"))
            .collect();
        if !extra.is_empty() {
            extra.sort();
            return Err(bad(format!(
                "tensor(s) {} do not belong to any layer of `{}`; the file does not match its architecture",
                extra.join(", "),
                get(ARCH_KEY)?
            )));
        }
        Model::new(layers, input, params)
    }

    /// The model as .safetensors bytes (F32 tensors, PyTorch state_dict names, metadata as above).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut data: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
        for (i, layer) in self.layers().iter().enumerate() {
            let (Some((ws, bs)), Some(p)) = (layer.param_shapes(), self.params(i)) else {
                continue;
            };
            let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            data.insert(format!("{i}.weight"), (ws, bytes(&p.weight)));
            if let Some(bs) = bs {
                data.insert(format!("{i}.bias"), (bs, bytes(&p.bias)));
            }
        }
        let views = data
            .iter()
            .map(|(k, (shape, bytes))| {
                TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (k.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Model(format!("cannot serialise: {e}")))?;
        let [c, h, w] = self.input_shape();
        let meta = HashMap::from([
            (ARCH_KEY.to_string(), self.arch()),
            (INPUT_SHAPE_KEY.to_string(), format!("{c},{h},{w}")),
            ("format".to_string(), "pt".to_string()),
        ]);
        let bytes = safetensors::serialize(views, Some(meta))
            .map_err(|e| Error::Model(format!("cannot serialise: {e}")))?;
        Ok(sorted_header(bytes))
    }

    /// Writes the model as a .safetensors file that PyTorch's `load_state_dict` accepts. The same model
    /// gives the same bytes.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_safetensors()?).map_err(|e| Error::io(path, e))
    }
}

/// The file with its JSON header's keys in sorted order. safetensors takes the metadata as a hash
/// map, whose order changes from process to process; sorted, the same model always gives the same bytes.
/// The header keeps its length (the same entries, then the padding spaces safetensors uses).
fn sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = &bytes[8..8 + n];
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    // serde_json's maps are ordered by key.
    let mut sorted = serde_json::to_vec(&value).unwrap_or_default();
    if sorted.is_empty() || sorted.len() > n {
        return bytes;
    }
    sorted.resize(n, b' ');
    bytes[8..8 + n].copy_from_slice(&sorted);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip() {
        let m = Model::random_from_arch(
            "conv(2,3,3,p1,nobias) relu avgpool2 flatten linear(12,4)",
            [2, 4, 4],
            7,
        )
        .unwrap();
        let back = Model::from_safetensors(&m.to_safetensors().unwrap()).unwrap();
        assert_eq!(back.layers(), m.layers());
        assert_eq!(back.input_shape(), [2, 4, 4]);
        for i in 0..m.layers().len() {
            assert_eq!(back.params(i), m.params(i));
        }
    }

    #[test]
    fn same_model_same_bytes() {
        // Each serialisation hashes the metadata afresh: without sorting, its order would vary.
        let m =
            Model::random_from_arch("conv(1,2,3) relu flatten linear(8,3)", [1, 4, 4], 3).unwrap();
        let first = m.to_safetensors().unwrap();
        for _ in 0..20 {
            assert!(m.to_safetensors().unwrap() == first);
        }
        assert_eq!(
            Model::from_safetensors(&first).unwrap().params(3),
            m.params(3)
        );
    }

    #[test]
    fn truncated_file_is_an_error() {
        let bytes = Model::random_from_arch("flatten linear(4,2)", [1, 2, 2], 0)
            .unwrap()
            .to_safetensors()
            .unwrap();
        let e = Model::from_safetensors(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(
            e.to_string().contains("not a valid safetensors file"),
            "{e}"
        );
        let e = Model::from_safetensors(&bytes[..5]).unwrap_err();
        assert!(
            e.to_string().contains("not a valid safetensors file"),
            "{e}"
        );
    }
}
