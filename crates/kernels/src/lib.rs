//! The workspace's layers and fused ops for Burn, at the bottom of the crate graph: they know
//! nothing of BERT or PEFT.
//!
//! Each op is generic over `Backend` and does Burn's work itself on the CPU backend (`Flex`, and
//! `Autodiff<Flex>` for training), where Burn's own op was among a training step's largest costs
//! (`docs/benchmarks.md` has the figures); on every other backend and dtype it is Burn's op. On
//! the CPU each is exact to Burn's within float rounding, which its tests check (values and
//! gradients). `host` holds what they share: recognising the CPU backend, dispatching to the
//! kernel and recording it as one autodiff op.
#![warn(unreachable_pub)]

mod add;
mod attention;
pub mod bf16;
mod dropout;
mod gather;
mod gelu;
mod host;
mod layer_norm;
mod math;
mod matmul;
pub mod random;
pub mod read;
mod rotary;
mod softmax;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use add::{add, add_scaled};
pub use attention::attention;
pub use dropout::Dropout;
pub use gather::{RelativeIndex, relative_gather};
pub use gelu::{geglu, gelu};
pub use layer_norm::LayerNorm;
pub use matmul::{dropout_matmul_into_heads, linear, matmul, matmul_into_heads};
pub use read::ReadError;
pub use rotary::{RotaryTables, rotary};
pub use softmax::{Window, masked_softmax, masked_softmax_window};
