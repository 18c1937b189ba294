//! Data sets: the shipped mnist10k, IDX files gzip-compressed or raw, folders of PNGs per class, and every
//! malformed file as an error that names the file and the problem.

use gig::data::{Dataset, MNIST10K_TEST, Split};
use std::io::Write;
use std::path::{Path, PathBuf};

fn asset(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(path)
}

/// A fresh, empty temporary directory for one test, removed when the test ends.
fn temp_dir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gig-data-{test}-"))
        .tempdir()
        .unwrap()
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0803, count, rows, cols] {
        bytes.extend(u32::to_be_bytes(word));
    }
    bytes.extend(pixels);
    bytes
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0801, labels.len() as u32] {
        bytes.extend(u32::to_be_bytes(word));
    }
    bytes.extend(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes an image file and a label file into a fresh directory and returns the error of reading them.
fn idx_error(test: &str, images: &[u8], labels: &[u8]) -> String {
    let dir_tmp = temp_dir(test);
    let dir = dir_tmp.path();
    std::fs::write(dir.join("images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("labels-idx1-ubyte"), labels).unwrap();
    Dataset::load(dir).unwrap_err().to_string()
}

fn assert_names(e: &str, file: &str, problem: &str) {
    assert!(e.contains(file), "error does not name {file}: {e}");
    assert!(e.contains(problem), "error does not say '{problem}': {e}");
}

fn write_png(path: &Path, w: u32, h: u32, value: u8) {
    image::GrayImage::from_pixel(w, h, image::Luma([value]))
        .save(path)
        .unwrap();
}

#[test]
fn mnist10k_loads_with_its_class_counts() {
    let d = Dataset::load(asset("mnist10k")).unwrap();
    assert_eq!((d.len(), d.shape, d.classes), (10_000, [1, 28, 28], 10));
    assert_eq!(d.images.len(), 10_000 * 784);
    let mut counts = [0usize; 10];
    for &l in &d.labels {
        counts[l as usize] += 1;
    }
    assert_eq!(
        counts,
        [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    );
    assert!(d.images.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(d.images.contains(&1.0));
}

#[test]
fn mnist10k_splits_into_8000_train_and_the_last_2000_test() {
    let d = Dataset::load(asset("mnist10k")).unwrap();
    let train = d.split(Split::Train, MNIST10K_TEST).unwrap();
    let test = d.split(Split::Test, MNIST10K_TEST).unwrap();
    assert_eq!((train.len(), test.len()), (8000, 2000));
    assert_eq!(test.images, d.images[8000 * 784..]);
    assert_eq!(test.labels, d.labels[8000..]);
    assert_eq!(train.images, d.images[..8000 * 784]);
    assert_eq!(test.source_index[0], 8000);
    assert_eq!(d.split(Split::All, MNIST10K_TEST).unwrap(), d);
    let e = d.split(Split::Test, 10_001).unwrap_err().to_string();
    assert_names(&e, "labels-idx1-ubyte.gz", "test split of 10001 images");
}

#[test]
fn image_8005_is_the_shipped_seven() {
    let d = Dataset::load(asset("mnist10k")).unwrap();
    assert_eq!(d.labels[8005], 7);
    let png = image::open(asset("digits/7.png")).unwrap().to_luma8();
    let expected: Vec<f32> = png.into_raw().iter().map(|&v| v as f32 / 255.0).collect();
    assert_eq!(d.image(8005), &expected[..]);
}

#[test]
fn raw_idx_files_read_like_gzip_ones() {
    let dir_tmp = temp_dir("raw");
    let dir = dir_tmp.path();
    let pixels = [0, 255, 51, 102, 0, 0, 0, 255];
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx_images(2, 2, 2, &pixels),
    )
    .unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx_labels(&[3, 1])).unwrap();
    let raw = Dataset::load(dir).unwrap();
    assert_eq!(
        (raw.shape, raw.labels.clone(), raw.classes),
        ([1, 2, 2], vec![3, 1], 4)
    );
    assert_eq!(raw.image(0), &[0.0, 1.0, 0.2, 0.4]);

    let gz_tmp = temp_dir("raw-gz");
    let gz = gz_tmp.path();
    let (images, labels) = (
        gz.join("a-images-idx3-ubyte.gz"),
        gz.join("a-labels-idx1-ubyte.gz"),
    );
    std::fs::write(&images, gzip(&idx_images(2, 2, 2, &pixels))).unwrap();
    std::fs::write(&labels, gzip(&idx_labels(&[3, 1]))).unwrap();
    let from_gz = Dataset::from_idx(&images, &labels).unwrap();
    assert_eq!(from_gz.images, raw.images);
    assert_eq!(from_gz.labels, raw.labels);
}

#[test]
fn load_picks_the_one_complete_idx_pair_or_asks_for_one() {
    let dir_tmp = temp_dir("pairs");
    let dir = dir_tmp.path();
    let one = idx_images(1, 1, 1, &[255]);
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), gzip(&one)).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gzip(&one)).unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&idx_labels(&[4])),
    )
    .unwrap();
    // Only the train images have their labels.
    assert_eq!(Dataset::load(dir).unwrap().labels, [4]);

    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gzip(&idx_labels(&[6])),
    )
    .unwrap();
    let e = Dataset::load(dir).unwrap_err().to_string();
    assert_names(&e, "t10k-images-idx3-ubyte.gz", "holds 2 IDX data sets");
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    // Pointing at one image file picks its pair.
    let t10k = Dataset::load(dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(t10k.labels, [6]);
}

#[test]
fn png_folders_give_classes_in_sorted_order() {
    let dir_tmp = temp_dir("png");
    let dir = dir_tmp.path();
    // Made in reverse order: the class index must come from the sorted names, not the creation order.
    for (class, value) in [("zebra", 200), ("ant", 10)] {
        std::fs::create_dir(dir.join(class)).unwrap();
        for i in 0..3 {
            write_png(&dir.join(class).join(format!("{i}.png")), 3, 2, value + i);
        }
    }
    std::fs::write(dir.join("zebra").join("notes.txt"), "not an image").unwrap();
    let d = Dataset::load(dir).unwrap();
    assert_eq!((d.len(), d.shape, d.classes), (6, [1, 2, 3], 2));
    assert_eq!(d.labels, [0, 0, 0, 1, 1, 1]);
    assert_eq!(d.image(1), &[11.0 / 255.0; 6]);
    assert_eq!(d.image(5), &[202.0 / 255.0; 6]);

    // One colour image makes every image RGB, planar, with the grey ones replicated.
    image::RgbImage::from_pixel(3, 2, image::Rgb([255, 0, 51]))
        .save(dir.join("zebra").join("9.png"))
        .unwrap();
    let d = Dataset::from_png_folders(dir).unwrap();
    assert_eq!((d.len(), d.shape), (7, [3, 2, 3]));
    assert_eq!(d.image(0), &[10.0 / 255.0; 18]);
    let rgb: Vec<f32> = [1.0, 0.0, 0.2].iter().flat_map(|&v| [v; 6]).collect();
    assert_eq!(d.image(6), &rgb[..]);
}

#[test]
fn bad_magic_is_named() {
    // A label file where the image file belongs.
    let e = idx_error("magic", &idx_labels(&[1]), &idx_labels(&[1]));
    assert_names(
        &e,
        "images-idx3-ubyte",
        "bad magic 0x00000801, expected 0x00000803 (an IDX image file)",
    );
    let e = idx_error("header", &idx_images(3, 2, 2, &[])[..10], &idx_labels(&[1]));
    assert_names(
        &e,
        "images-idx3-ubyte",
        "truncated: 10 bytes, shorter than the 16-byte header",
    );
}

#[test]
fn truncated_pixels_are_named() {
    let e = idx_error(
        "truncated",
        &idx_images(3, 2, 2, &[0; 11]),
        &idx_labels(&[0, 1, 2]),
    );
    assert_names(&e, "images-idx3-ubyte", "truncated");
    assert!(
        e.contains(
            "header says 3 images of 2x2 but the file holds 11 bytes of pixels, 12 expected"
        ),
        "{e}"
    );
}

#[test]
fn extra_bytes_are_named() {
    let e = idx_error(
        "extra",
        &idx_images(3, 2, 2, &[0; 13]),
        &idx_labels(&[0, 1, 2]),
    );
    assert_names(&e, "images-idx3-ubyte", "extra bytes after the data");
    assert!(
        e.contains(
            "header says 3 images of 2x2 but the file holds 13 bytes of pixels, 12 expected"
        ),
        "{e}"
    );

    let mut labels = idx_labels(&[0, 1, 2]);
    labels.push(9);
    let e = idx_error("extra-labels", &idx_images(3, 2, 2, &[0; 12]), &labels);
    assert_names(&e, "labels-idx1-ubyte", "extra bytes after the data");
    assert!(
        e.contains("header says 3 labels but the file holds 4 bytes"),
        "{e}"
    );
}

#[test]
fn image_and_label_counts_must_agree() {
    let e = idx_error(
        "counts",
        &idx_images(3, 2, 2, &[0; 12]),
        &idx_labels(&[0, 1]),
    );
    assert_names(&e, "images-idx3-ubyte", "holds 3 images");
    assert_names(&e, "labels-idx1-ubyte", "holds 2 labels");
}

#[test]
fn labels_out_of_range_are_named_with_their_image() {
    let e = Dataset::load(asset("mnist10k"))
        .unwrap()
        .with_classes(5)
        .unwrap_err()
        .to_string();
    assert_names(
        &e,
        "labels-idx1-ubyte.gz",
        "is out of range (the labels must be 0..4)",
    );

    let dir_tmp = temp_dir("range");
    let dir = dir_tmp.path();
    std::fs::write(dir.join("images-idx3-ubyte"), idx_images(3, 1, 1, &[0; 3])).unwrap();
    std::fs::write(dir.join("labels-idx1-ubyte"), idx_labels(&[1, 0, 12])).unwrap();
    let d = Dataset::load(dir).unwrap();
    assert_eq!(d.classes, 13);
    // The image is named by its index in the file, also after a split.
    let test = d.split(Split::Test, 1).unwrap();
    let e = test.with_classes(10).unwrap_err().to_string();
    assert_names(
        &e,
        "labels-idx1-ubyte",
        "label 12 of image 2 is out of range (the labels must be 0..9)",
    );
    assert_eq!(d.with_classes(20).unwrap().classes, 20);
}

#[test]
fn truncated_gzip_is_named() {
    let dir_tmp = temp_dir("gzip");
    let dir = dir_tmp.path();
    let gz = gzip(&idx_images(4, 28, 28, &[7; 4 * 784]));
    std::fs::write(dir.join("images-idx3-ubyte.gz"), &gz[..gz.len() / 2]).unwrap();
    std::fs::write(dir.join("labels-idx1-ubyte.gz"), gzip(&idx_labels(&[0; 4]))).unwrap();
    let e = Dataset::load(dir).unwrap_err().to_string();
    assert_names(
        &e,
        "images-idx3-ubyte.gz",
        "gzip data is truncated or corrupt",
    );
}

#[test]
fn png_images_of_different_sizes_are_named() {
    let dir_tmp = temp_dir("png-sizes");
    let dir = dir_tmp.path();
    for class in ["a", "b"] {
        std::fs::create_dir(dir.join(class)).unwrap();
        write_png(&dir.join(class).join("0.png"), 4, 4, 0);
    }
    write_png(&dir.join("b").join("1.png"), 5, 4, 0);
    let e = Dataset::load(dir).unwrap_err().to_string();
    assert_names(&e, "1.png", "5x4 pixels");
    assert!(e.contains("all images must have the same size"), "{e}");
}

#[test]
fn an_empty_directory_says_what_was_expected() {
    let dir_tmp = temp_dir("empty");
    let dir = dir_tmp.path();
    let e = Dataset::load(dir).unwrap_err().to_string();
    assert_names(&e, &dir.display().to_string(), "no data set found");
    assert!(
        e.contains("idx3-ubyte") && e.contains("sub-folder of PNG images"),
        "{e}"
    );

    let e = Dataset::from_png_folders(dir).unwrap_err().to_string();
    assert_names(&e, &dir.display().to_string(), "no class folders");
    std::fs::create_dir(dir.join("cats")).unwrap();
    let e = Dataset::load(dir).unwrap_err().to_string();
    assert_names(&e, "cats", "no PNG images in this class folder");
}

#[test]
fn splits_parse_and_select_copies_in_order() {
    assert_eq!(Split::parse("train").unwrap(), Split::Train);
    assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
    assert_eq!(Split::parse("all").unwrap(), Split::All);
    let e = Split::parse("validation").unwrap_err().to_string();
    assert!(e.contains("unknown split 'validation'"), "{e}");

    let d = Dataset::new(
        [1, 1, 2],
        vec![0.0, 0.1, 1.0, 1.1, 2.0, 2.1],
        vec![0, 1, 2],
        3,
    )
    .unwrap();
    let s = d.select(&[2, 0, 2]);
    assert_eq!(s.images, [2.0, 2.1, 0.0, 0.1, 2.0, 2.1]);
    assert_eq!((s.labels, s.source_index), (vec![2, 0, 2], vec![2, 0, 2]));
    assert!(Dataset::new([1, 1, 2], vec![0.0; 5], vec![0, 1, 2], 3).is_err());
    assert!(Dataset::new([1, 1, 2], vec![0.0; 6], vec![0, 1, 3], 3).is_err());
}
