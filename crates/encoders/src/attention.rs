//! `BertAttention`: multi-head self-attention (`self`) and its output projection (`output`).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::{Dropout, LayerNorm, Window, add, attention, dropout_matmul_into_heads, masked_softmax_window, matmul};
use lora_adapter::LoraLinear;

use crate::error::Result;
use crate::spec::EncoderSpec;
use crate::weights::{Key, Weights};

/// `BertSelfAttention`. The projections are [`LoraLinear`]s, so that any of them can take an
/// adapter by configuration.
#[derive(Module, Debug)]
pub struct BertSelfAttention<B: Backend> {
    pub query: LoraLinear<B>,
    pub key: LoraLinear<B>,
    pub value: LoraLinear<B>,
    pub dropout: Dropout,
    pub num_attention_heads: usize,
}

impl<B: Backend> BertSelfAttention<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        let h = spec.hidden_size;
        Ok(Self {
            query: w.linear(&at.pp("query"), h, h)?,
            key: w.linear(&at.pp("key"), h, h)?,
            value: w.linear(&at.pp("value"), h, h)?,
            dropout: Dropout::new(spec.attention_dropout),
            num_attention_heads: spec.num_attention_heads,
        })
    }

    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`
    /// - mask_bias: `[batch, 1, 1, seq]`, 0 where attended and `f32::MIN` at padded keys
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let heads = self.num_attention_heads;
        // The 1/sqrt(hs) scale goes on q rather than on the scores (B, nh, T, T): the same
        // product, a T/hs times smaller tensor to scale forward and backward; and on q before
        // the head split, while it is contiguous (a strided view is scaled element by element).
        let [_, _, width] = hidden.dims();
        let q = self.query.forward(hidden.clone()) / ((width / heads) as f64).sqrt();
        let k = self.key.forward(hidden.clone());
        let v = self.value.forward(hidden);
        attend(q, k, v, mask_bias, heads, &self.dropout)
    }
}

/// Scaled dot-product attention over `heads` heads, with `q` already scaled by `1/sqrt(hs)`:
/// `softmax(q kᵀ + mask_bias)`, dropout on the probabilities, `@ v`, heads merged. Shared by
/// BERT's `BertSelfAttention` and DistilBERT's `MultiHeadSelfAttention` (whose `masked_fill`
/// with the float minimum gives the same probabilities as adding it).
///
/// # Shapes
/// - q, k, v: `[batch, seq, hidden]`; mask_bias: `[batch, 1, 1, seq]`; output: `[batch, seq, hidden]`
pub(crate) fn attend<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    mask_bias: Tensor<B, 4>,
    heads: usize,
    dropout: &Dropout,
) -> Tensor<B, 3> {
    let [batch, seq, width] = q.dims();
    let head_dim = width / heads;
    let split = |x: Tensor<B, 3>| x.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2); // (B, nh, T, hs)
    attend_heads(split(q), split(k), split(v), mask_bias, None, dropout)
}

/// [`attend`] on heads already split, `q` scaled: `[batch, heads, seq, head_dim]` each; with
/// `window`, each query attends to keys within `window` positions of it only (ModernBERT's
/// local layers), computed one block of queries at a time against the keys around it (the
/// scores a window can reach, not `seq x seq`). Output `[batch, seq, heads * head_dim]`.
pub(crate) fn attend_heads<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask_bias: Tensor<B, 4>,
    window: Option<usize>,
    dropout: &Dropout,
) -> Tensor<B, 3> {
    let [batch, heads, seq, head_dim] = q.dims();
    let context = match window {
        Some(half) if seq > 4 * half.max(MIN_BLOCK) => banded(q, k, v, mask_bias, half, dropout),
        Some(half) => {
            let scores = matmul(q, k.swap_dims(2, 3)); // (B, nh, T, T)
            let window = Some(Window { half, offset: 0 });
            // Dropout on the probabilities, then @ v, as one op that does not keep the dropped
            // copy: (B, nh, T, hs), laid out as (B, T, nh, hs).
            dropout_matmul_into_heads(masked_softmax_window(scores, mask_bias, window), v, dropout)
        }
        // Softmax, dropout and @ v as one op that keeps no (B, nh, T, T) tensor for the backward.
        None => attention(q, k, v, mask_bias, dropout),
    };
    context.swap_dims(1, 2).reshape([batch, seq, heads * head_dim])
}

/// The fewest queries a block of [`banded`] attention holds.
const MIN_BLOCK: usize = 32;

/// Sliding-window attention in blocks of `max(half, MIN_BLOCK)` queries, each against the keys
/// within `half` of it: `seq x (block + 2 half)` scores instead of `seq x seq`, in time and in
/// what the backward keeps. `(B, nh, T, hs)`.
fn banded<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask_bias: Tensor<B, 4>,
    half: usize,
    dropout: &Dropout,
) -> Tensor<B, 4> {
    let [batch, heads, seq, head_dim] = q.dims();
    let block = half.max(MIN_BLOCK);
    let mut blocks = Vec::with_capacity(seq.div_ceil(block));
    for start in (0..seq).step_by(block) {
        let end = (start + block).min(seq);
        let (first, last) = (start.saturating_sub(half), (end + half).min(seq));
        let keys = |x: &Tensor<B, 4>| x.clone().slice([0..batch, 0..heads, first..last, 0..head_dim]);
        let scores = matmul(q.clone().slice([0..batch, 0..heads, start..end, 0..head_dim]), keys(&k).swap_dims(2, 3));
        let mask = mask_bias.clone().slice([0..batch, 0..1, 0..1, first..last]);
        let probs = masked_softmax_window(scores, mask, Some(Window { half, offset: start - first }));
        blocks.push(dropout_matmul_into_heads(probs, keys(&v), dropout));
    }
    Tensor::cat(blocks, 2)
}

/// `BertSelfOutput`: dense, dropout, residual, LayerNorm.
#[derive(Module, Debug)]
pub struct BertSelfOutput<B: Backend> {
    pub dense: LoraLinear<B>,
    /// Checkpoint key `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertSelfOutput<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        let h = spec.hidden_size;
        Ok(Self {
            dense: w.linear(&at.pp("dense"), h, h)?,
            layer_norm: w.layer_norm(&at.pp("LayerNorm"), h, spec.layer_norm_eps)?,
            dropout: Dropout::new(spec.hidden_dropout),
        })
    }

    pub fn forward(&self, hidden: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = self.dropout.forward(self.dense.forward(hidden));
        self.layer_norm.forward(add(hidden, residual))
    }
}

/// `BertAttention`.
#[derive(Module, Debug)]
pub struct BertAttention<B: Backend> {
    /// Checkpoint key `self`.
    pub self_attention: BertSelfAttention<B>,
    pub output: BertSelfOutput<B>,
}

impl<B: Backend> BertAttention<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, spec: &EncoderSpec) -> Result<Self> {
        Ok(Self {
            self_attention: BertSelfAttention::load(w, &at.pp("self"), spec)?,
            output: BertSelfOutput::load(w, &at.pp("output"), spec)?,
        })
    }

    pub fn forward(&self, hidden: Tensor<B, 3>, mask_bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let attended = self.self_attention.forward(hidden.clone(), mask_bias);
        self.output.forward(attended, hidden)
    }
}
