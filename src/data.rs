//! Labelled image data sets: the IDX format of MNIST and Fashion-MNIST, and folders of PNGs per class.
//!
//! Everything is read into memory as f32 in [0, 1]. Every malformed file is an error that names the file
//! and the problem, so that `gig train` and `gig eval` can print it as it is.

use crate::error::{Error, Result};
use rayon::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The size of the test split of `assets/mnist10k`: its last 2,000 images (the first 8,000 train).
pub const MNIST10K_TEST: usize = 2000;

const IDX_IMAGES: u32 = 0x0000_0803;
const IDX_LABELS: u32 = 0x0000_0801;

/// A labelled image set in memory: images as f32 in [0, 1], NCHW, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `[C, H, W]` of every image.
    pub shape: [usize; 3],
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    /// The number of classes: every label is below it.
    pub classes: usize,
    /// Where the labels came from (the IDX label file, or the root of the class folders), for messages.
    pub source: PathBuf,
    /// Each image's index in the data set as loaded; kept through `split` and `select` so that a report
    /// on a test image or a mini-batch can name the image in the original file.
    pub source_index: Vec<usize>,
}

/// Which part of a data set to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// All but the last `test` images.
    Train,
    /// The last `test` images.
    Test,
    All,
}

impl Split {
    /// `train`, `test` or `all`.
    pub fn parse(s: &str) -> Result<Split> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            "all" => Ok(Split::All),
            _ => Err(Error::Input(format!(
                "unknown split '{s}'; expected train, test or all"
            ))),
        }
    }
}

impl FromStr for Split {
    type Err = Error;

    fn from_str(s: &str) -> Result<Split> {
        Split::parse(s)
    }
}

impl Dataset {
    /// A data set made in memory (for tests and synthetic data): `images` holds `labels.len()` images of
    /// `shape`, and every label is below `classes`.
    pub fn new(
        shape: [usize; 3],
        images: Vec<f32>,
        labels: Vec<u8>,
        classes: usize,
    ) -> Result<Dataset> {
        let per_image: usize = shape.iter().product();
        if per_image == 0 || images.len() != labels.len() * per_image {
            return Err(Error::Input(format!(
                "{} labels of images of shape {shape:?} need {} values, got {}",
                labels.len(),
                labels.len() * per_image,
                images.len()
            )));
        }
        let n = labels.len();
        Dataset {
            shape,
            images,
            labels,
            classes: 0,
            source: PathBuf::from("(in memory)"),
            source_index: (0..n).collect(),
        }
        .with_classes(classes)
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The number of values in one image, C * H * W.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Image `i`, `[C, H, W]` flattened. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Loads a data set from a directory that holds either one IDX pair (`*images*idx3-ubyte[.gz]` and
    /// the matching `*labels*idx1-ubyte[.gz]`) or one sub-folder of PNGs per class (see
    /// [`Dataset::from_png_folders`]). `path` may also be an IDX image file, which picks one pair from a
    /// directory that holds several (MNIST's `train-` and `t10k-` files); its label file is the one whose
    /// name has `labels` for `images` and `idx1` for `idx3`.
    pub fn load(path: impl AsRef<Path>) -> Result<Dataset> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_file() {
            let labels = file_name(path)
                .filter(|name| is_idx_images(name))
                .map(|name| path.with_file_name(label_name_for(&name)))
                .ok_or_else(|| {
                    bad(
                        path,
                        "not a data set: expected a folder, or an IDX image file named \
                         *images*idx3-ubyte[.gz] with its *labels*idx1-ubyte[.gz] beside it",
                    )
                })?;
            return Dataset::from_idx(path, labels);
        }

        let entries = list_dir(path)?;
        let names: Vec<String> = entries.iter().filter_map(|p| file_name(p)).collect();
        let image_files: Vec<&String> = names.iter().filter(|n| is_idx_images(n)).collect();
        let label_files: Vec<&String> = names.iter().filter(|n| is_idx_labels(n)).collect();
        if image_files.is_empty() && label_files.is_empty() {
            if entries.iter().any(|p| is_class_folder(p)) {
                return Dataset::from_png_folders(path);
            }
            return Err(bad(
                path,
                "no data set found: expected IDX files (*images*idx3-ubyte[.gz] and \
                 *labels*idx1-ubyte[.gz]) or one sub-folder of PNG images per class",
            ));
        }

        let pairs: Vec<(&String, String)> = image_files
            .iter()
            .map(|&i| (i, label_name_for(i)))
            .filter(|(_, l)| label_files.contains(&l))
            .collect();
        let (images, labels) = match (&pairs[..], &image_files[..], &label_files[..]) {
            ([(i, l)], _, _) => ((*i).clone(), l.clone()),
            // One of each whatever their names: there is nothing to choose between.
            ([], [i], [l]) => ((*i).clone(), (*l).clone()),
            ([], [], _) => {
                return Err(bad(
                    path,
                    &format!(
                        "holds IDX label files ({}) but no IDX image file (*images*idx3-ubyte[.gz])",
                        list(&label_files)
                    ),
                ));
            }
            ([], [i], []) => {
                return Err(bad(
                    path,
                    &format!(
                        "holds the IDX image file {i} but no label file; expected {}",
                        label_name_for(i)
                    ),
                ));
            }
            ([], _, _) => {
                return Err(bad(
                    path,
                    &format!(
                        "cannot pair the IDX image files ({}) with the label files ({}): a label \
                         file's name must be its image file's with labels for images and idx1 for idx3",
                        list(&image_files),
                        list(&label_files)
                    ),
                ));
            }
            (several, _, _) => {
                let files: Vec<&String> = several.iter().map(|(i, _)| *i).collect();
                return Err(bad(
                    path,
                    &format!(
                        "holds {} IDX data sets ({}); pass the path of one image file instead, e.g. {}",
                        several.len(),
                        list(&files),
                        path.join(files[0]).display()
                    ),
                ));
            }
        };
        Dataset::from_idx(path.join(images), path.join(labels))
    }

    /// Reads an IDX image file and an IDX label file, each gzip-compressed or raw. `classes` is the
    /// largest label + 1; use [`Dataset::with_classes`] to require a class count.
    pub fn from_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset> {
        let (images_path, labels_path) = (images.as_ref(), labels.as_ref());

        let bytes = read_maybe_gzip(images_path)?;
        let (dims, pixels) = idx_body(images_path, &bytes, IDX_IMAGES, "an IDX image file")?;
        let [count, rows, cols] = dims;
        if count == 0 || rows == 0 || cols == 0 {
            return Err(bad(
                images_path,
                &format!("holds no pixels: header says {count} images of {rows}x{cols}"),
            ));
        }
        // In u128 because three u32 dimensions can overflow a u64.
        check_body_len(
            images_path,
            pixels.len(),
            count as u128 * rows as u128 * cols as u128,
            &format!("{count} images of {rows}x{cols}"),
            "pixels",
        )?;

        let bytes = read_maybe_gzip(labels_path)?;
        let ([label_count], labels) =
            idx_body(labels_path, &bytes, IDX_LABELS, "an IDX label file")?;
        check_body_len(
            labels_path,
            labels.len(),
            label_count as u128,
            &format!("{label_count} labels"),
            "labels",
        )?;
        if label_count != count {
            return Err(Error::Input(format!(
                "{} holds {count} images but {} holds {label_count} labels; they must hold one label per image",
                images_path.display(),
                labels_path.display()
            )));
        }

        let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
        Ok(Dataset {
            shape: [1, rows, cols],
            images: pixels.iter().map(|&v| v as f32 / 255.0).collect(),
            labels: labels.to_vec(),
            classes,
            source: labels_path.to_path_buf(),
            source_index: (0..count).collect(),
        })
    }

    /// Reads a root folder with one sub-folder per class: the sub-folders' names, sorted, give the classes
    /// 0, 1, ...; every `*.png` in a class folder (sorted by name) is one image of that class. Images are
    /// grey (1 channel) if all of them are, else RGB (3 channels, grey ones replicated); alpha is
    /// dropped. All images must have the same size. Other files, and hidden ones (`.name`), are skipped.
    pub fn from_png_folders(root: impl AsRef<Path>) -> Result<Dataset> {
        let root = root.as_ref();
        let class_dirs: Vec<PathBuf> = list_dir(root)?
            .into_iter()
            .filter(|p| is_class_folder(p))
            .collect();
        if class_dirs.is_empty() {
            return Err(bad(
                root,
                "no class folders: expected one sub-folder of PNG images per class",
            ));
        }
        if class_dirs.len() > 256 {
            return Err(bad(
                root,
                &format!(
                    "{} class folders; at most 256 classes are supported",
                    class_dirs.len()
                ),
            ));
        }

        let mut files: Vec<(PathBuf, u8)> = Vec::new();
        for (class, dir) in class_dirs.iter().enumerate() {
            let pngs: Vec<PathBuf> = list_dir(dir)?
                .into_iter()
                .filter(|p| p.is_file() && !is_hidden(p) && has_png_extension(p))
                .collect();
            if pngs.is_empty() {
                return Err(bad(dir, "no PNG images in this class folder"));
            }
            // At most 256 classes, checked above, so the class index fits in a u8.
            files.extend(pngs.into_iter().map(|p| (p, class as u8)));
        }

        // Decoded in parallel, but the errors are looked at in file order so that the same file is named
        // on every run.
        let decoded: Vec<image::DynamicImage> = files
            .par_iter()
            .map(|(p, _)| {
                image::open(p).map_err(|e| bad(p, &format!("cannot read the image ({e})")))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<_>>()?;

        let (first_path, first) = (&files[0].0, &decoded[0]);
        let (w, h) = (first.width() as usize, first.height() as usize);
        for ((p, _), img) in files.iter().zip(&decoded) {
            if (img.width() as usize, img.height() as usize) != (w, h) {
                return Err(bad(
                    p,
                    &format!(
                        "{}x{} pixels, but {} is {w}x{h}; all images must have the same size",
                        img.width(),
                        img.height(),
                        first_path.display()
                    ),
                ));
            }
        }

        let channels = if decoded.iter().any(|img| img.color().has_color()) {
            3
        } else {
            1
        };
        let mut images = Vec::with_capacity(decoded.len() * channels * h * w);
        for img in &decoded {
            if channels == 1 {
                images.extend(img.to_luma32f().into_raw());
            } else {
                // The image crate interleaves RGB; the models take planar CHW.
                let rgb = img.to_rgb32f().into_raw();
                for c in 0..3 {
                    images.extend(rgb.iter().skip(c).step_by(3));
                }
            }
        }

        Ok(Dataset {
            shape: [channels, h, w],
            images,
            labels: files.iter().map(|&(_, class)| class).collect(),
            classes: class_dirs.len(),
            source: root.to_path_buf(),
            source_index: (0..files.len()).collect(),
        })
    }

    /// The same data with `classes` classes, checking that every label is below it (say, 10 for a model
    /// with 10 logits, which a data set whose largest label is 7 would not otherwise know).
    pub fn with_classes(mut self, classes: usize) -> Result<Dataset> {
        if classes == 0 {
            return Err(bad(&self.source, "the class count must be at least 1"));
        }
        if let Some(i) = self.labels.iter().position(|&l| l as usize >= classes) {
            return Err(bad(
                &self.source,
                &format!(
                    "label {} of image {} is out of range (the labels must be 0..{})",
                    self.labels[i],
                    self.source_index[i],
                    classes - 1
                ),
            ));
        }
        self.classes = classes;
        Ok(self)
    }

    /// The train/test split: `Train` is all but the last `test` images, `Test` the last `test` images,
    /// `All` everything (and ignores `test`). An error if `test` is more than the data set holds.
    pub fn split(&self, split: Split, test: usize) -> Result<Dataset> {
        let n = self.len();
        let train = match (split, n.checked_sub(test)) {
            (Split::All, _) => return Ok(self.clone()),
            (_, Some(train)) => train,
            (_, None) => {
                return Err(bad(
                    &self.source,
                    &format!(
                        "a test split of {test} images needs at least that many, the data set has {n}"
                    ),
                ));
            }
        };
        let range = if split == Split::Train {
            0..train
        } else {
            train..n
        };
        Ok(self.select(&range.collect::<Vec<_>>()))
    }

    /// The images and labels at `indices`, in that order (for mini-batches). Panics if an index is out of
    /// range, like slice indexing.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            shape: self.shape,
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes,
            source: self.source.clone(),
            source_index: indices.iter().map(|&i| self.source_index[i]).collect(),
        }
    }
}

fn bad(path: &Path, problem: &str) -> Error {
    Error::Input(format!("{}: {problem}", path.display()))
}

/// The file's bytes, decompressed if they start with the gzip magic 1f 8b.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| {
            bad(
                path,
                &format!("the gzip data is truncated or corrupt ({e})"),
            )
        })?;
    Ok(out)
}

/// Checks the IDX header (big-endian magic, then one u32 per dimension) and returns the dimensions and
/// the bytes after the header.
fn idx_body<'a, const D: usize>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    what: &str,
) -> Result<([usize; D], &'a [u8])> {
    let header_len = 4 * (1 + D);
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .take(1 + D)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    // The magic goes first so that a label file passed as the image file (shorter than an image header)
    // is reported as the wrong kind of file rather than as a truncated one.
    match words.first() {
        Some(&found) if found != magic => {
            return Err(bad(
                path,
                &format!("bad magic 0x{found:08x}, expected 0x{magic:08x} ({what})"),
            ));
        }
        _ if words.len() < 1 + D => {
            return Err(bad(
                path,
                &format!(
                    "truncated: {} bytes, shorter than the {header_len}-byte header of {what}",
                    bytes.len()
                ),
            ));
        }
        _ => {}
    }
    Ok((
        std::array::from_fn(|k| words[k + 1] as usize),
        &bytes[header_len..],
    ))
}

/// An IDX file whose data is shorter or longer than its header says is an error either way: a longer
/// one is as likely a wrong header as harmless padding.
fn check_body_len(path: &Path, got: usize, want: u128, header: &str, kind: &str) -> Result<()> {
    if got as u128 == want {
        return Ok(());
    }
    let problem = if (got as u128) < want {
        "truncated"
    } else {
        "extra bytes after the data"
    };
    Err(bad(
        path,
        &format!(
            "{problem}: header says {header} but the file holds {got} bytes of {kind}, {want} expected"
        ),
    ))
}

fn is_idx_images(name: &str) -> bool {
    name.contains("images") && (name.ends_with("idx3-ubyte") || name.ends_with("idx3-ubyte.gz"))
}

fn is_idx_labels(name: &str) -> bool {
    name.contains("labels") && (name.ends_with("idx1-ubyte") || name.ends_with("idx1-ubyte.gz"))
}

/// `train-images-idx3-ubyte.gz` -> `train-labels-idx1-ubyte.gz`, the naming MNIST and Fashion-MNIST use.
fn label_name_for(image_name: &str) -> String {
    image_name
        .replace("images", "labels")
        .replace("idx3", "idx1")
}

fn is_class_folder(path: &Path) -> bool {
    path.is_dir() && !is_hidden(path)
}

/// Names starting with a dot: `.git`, `.ipynb_checkpoints`, macOS's `._name.png` resource files.
fn is_hidden(path: &Path) -> bool {
    file_name(path).is_some_and(|n| n.starts_with('.'))
}

fn has_png_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The directory's entries, sorted by name so that class indices and image order are reproducible.
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = std::fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .map_err(|e| Error::io(dir, e))?;
    paths.sort();
    Ok(paths)
}

fn list(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
