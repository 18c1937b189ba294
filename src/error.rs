//! The crate's error type: every failure names what was wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong in gig, with a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file or architecture that is malformed or inconsistent.
    #[error("model: {0}")]
    Model(String),
    /// An input, baseline, target or option that does not fit the model or the method.
    #[error("{0}")]
    Input(String),
    /// No usable adapter, a device limit that cannot be met, or a GPU failure.
    #[error("gpu: {0}")]
    Gpu(String),
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
