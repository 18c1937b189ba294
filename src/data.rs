//! Labelled image data sets: the IDX format of MNIST and Fashion-MNIST, and folders of PNGs per class.
