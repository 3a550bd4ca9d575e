//! Why a run stopped or could not start: each error names the setting, file or step, and keeps
//! its source (the adapter crate's, the file reader's, the operating system's).

use std::path::{Path, PathBuf};

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A `[training]` setting the trainer cannot take: the message names the key and what it
    /// takes.
    #[error("{0}")]
    Setting(String),
    /// A file or directory of the run could not be listed, read, written, moved or removed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The training loss, the weights, the gradients or the evaluation loss stopped being
    /// finite; the message says which, when, and what checkpoint is kept.
    #[error("{0}")]
    Diverged(String),
    /// An [`Interrupt`](crate::Interrupt) stopped the run after writing a checkpoint (or before
    /// training began); the message says where it is and how to continue.
    #[error("{0}")]
    Interrupted(String),
    /// The checkpoint to resume from holds another run's adapter.
    #[error("the adapter in {} is not this run's ([lora] differs from its adapter_config.json)", .0.display())]
    OtherAdapter(PathBuf),
    /// The checkpoint's optimizer state is another run's.
    #[error("{}: {source}", path.display())]
    OtherOptimizer {
        path: PathBuf,
        #[source]
        source: crate::optim::MomentError,
    },
    /// An optimizer step was asked for without a batch.
    #[error("an optimizer step needs a batch")]
    NoBatch,
    /// The evaluation has no value for `metric_for_best_model`.
    #[error("training.metric_for_best_model: the evaluation at step {step} has no {metric}")]
    NoMetric { step: u64, metric: String },
    #[error("cannot write {}: {source}", path.display())]
    TensorBoard {
        path: PathBuf,
        #[source]
        source: tfrecord::Error,
    },
    #[error(transparent)]
    Adapter(#[from] lora_adapter::LoraError),
    #[error(transparent)]
    Read(#[from] kernels::ReadError),
    #[error(transparent)]
    File(#[from] tensor_file::TensorFileError),
    #[error("cannot write the run's JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Stdout(#[from] crate::console::StdoutError),
    /// The loss curves could not be drawn (plotters' error, as text: it is not `Send`).
    #[error("cannot draw the curves: {0}")]
    Curves(String),
    /// A caller's [`Callback`](crate::Callback) ended the run.
    #[error(transparent)]
    Callback(Box<dyn std::error::Error + Send + Sync>),
}

impl TrainError {
    /// An I/O error on `path`, for `map_err`: `io("write", path)`.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { action, path, source }
    }

    /// Whether an interrupt stopped the run (the program exits with its own status then).
    pub fn is_interrupt(&self) -> bool {
        matches!(self, Self::Interrupted(_))
    }
}

/// Returns a [`TrainError::Setting`] with the formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::TrainError::Setting(format!($($arg)*)))
    };
}
pub(crate) use invalid;
