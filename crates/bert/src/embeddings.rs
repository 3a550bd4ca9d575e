//! `BertEmbeddings`: word + token type + position embeddings, LayerNorm, dropout.

use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kernels::{Dropout, LayerNorm};

use crate::config::BertConfig;
use crate::error::Result;
use crate::weights::{Key, Weights};

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub token_type_embeddings: Embedding<B>,
    /// Checkpoint key `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
}

impl<B: Backend> BertEmbeddings<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            word_embeddings: w.embedding(&at.pp("word_embeddings"), config.vocab_size, h, Some(config.pad_token_id))?,
            position_embeddings: w.embedding(&at.pp("position_embeddings"), config.max_position_embeddings, h, None)?,
            token_type_embeddings: w.embedding(&at.pp("token_type_embeddings"), config.type_vocab_size, h, None)?,
            layer_norm: w.layer_norm(&at.pp("LayerNorm"), h, config.layer_norm_eps)?,
            dropout: Dropout::new(config.hidden_dropout_prob),
        })
    }

    /// # Shapes
    /// - input_ids, token_type_ids: `[batch, seq]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, token_type_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let position_ids = Tensor::<B, 1, Int>::arange(0..seq as i64, &device).reshape([1, seq]).expand([batch, seq]);
        // The order of the sums is transformers' (words + types, then positions).
        let embeddings = self.word_embeddings.forward(input_ids) + self.token_type_embeddings.forward(token_type_ids);
        let embeddings = embeddings + self.position_embeddings.forward(position_ids);
        self.dropout.forward(self.layer_norm.forward(embeddings))
    }
}
