//! What every family's forward takes and shares: the batch ([`EncoderInput`]), the additive
//! attention mask and first-token pooling.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// A padded batch, with Hugging Face's field names.
///
/// # Shapes
/// - each field: `[batch, seq]`; `attention_mask` is 1 for real tokens and 0 for padding
#[derive(Debug, Clone)]
pub struct EncoderInput<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    pub attention_mask: Tensor<B, 2, Int>,
    pub token_type_ids: Tensor<B, 2, Int>,
}

/// The first token's hidden state (`[CLS]`, `<s>`), as the heads read it: `hidden[:, 0]`.
///
/// # Shapes
/// - hidden: `[batch, seq, hidden]`, output: `[batch, hidden]`
pub(crate) fn first_token<B: Backend>(hidden: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, _, width] = hidden.dims();
    hidden.slice([0..batch, 0..1, 0..width]).reshape([batch, width])
}

/// `(1 - mask) * finfo(float32).min`, shaped to broadcast over heads and query positions (the
/// attention's softmax adds it; see [`kernels::masked_softmax`]).
///
/// # Shapes
/// - attention_mask: `[batch, seq]`, output: `[batch, 1, 1, seq]`
pub(crate) fn attention_bias<B: Backend>(attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 4> {
    let [batch, seq] = attention_mask.dims();
    let mask = attention_mask.float();
    (mask.neg() + 1.0).mul_scalar(f32::MIN).reshape([batch, 1, 1, seq])
}
