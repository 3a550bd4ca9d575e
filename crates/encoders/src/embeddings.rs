//! `BertEmbeddings`: word + token type + position embeddings, LayerNorm, dropout. Also the
//! embeddings of RoBERTa/XLM-R (positions counted after the padding index), ELECTRA (of
//! `embedding_size`) and DistilBERT (no token types): the same keys, one module.

use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use kernels::{Dropout, LayerNorm, add};

use crate::error::Result;
use crate::weights::{Key, Weights};

/// How position ids are numbered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Positions {
    /// `0, 1, 2, ...` for every sequence (BERT, DistilBERT, ELECTRA).
    #[default]
    FromZero,
    /// RoBERTa's `create_position_ids_from_input_ids`: real tokens count up from
    /// `padding_idx + 1`, padding tokens keep `padding_idx`.
    AfterPadding { padding_idx: usize },
}

/// What the embeddings of a family are: BERT's keys, each family's sizes and position scheme.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSpec {
    pub vocab_size: usize,
    pub width: usize,
    pub max_position_embeddings: usize,
    /// 0: no token type embeddings (DistilBERT).
    pub type_vocab_size: usize,
    pub pad_token_id: usize,
    pub positions: Positions,
    /// DistilBERT's `sinusoidal_pos_embds`: a fixed sinusoidal position table when fresh.
    pub sinusoidal: bool,
    pub layer_norm_eps: f64,
    pub dropout: f64,
}

#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    /// DistilBERT has none.
    pub token_type_embeddings: Option<Embedding<B>>,
    /// Checkpoint key `LayerNorm`.
    pub layer_norm: LayerNorm<B>,
    pub dropout: Dropout,
    pub positions: Positions,
}

impl<B: Backend> BertEmbeddings<B> {
    pub fn load(w: &mut Weights<B>, at: &Key, spec: &EmbeddingSpec) -> Result<Self> {
        let width = spec.width;
        let positions = spec.positions;
        // Fresh weights are drawn from the seeded generator in this order (words, positions,
        // types, LayerNorm): keep it, or a seed gives another model.
        let word_embeddings =
            w.embedding(&at.pp("word_embeddings"), spec.vocab_size, width, Some(spec.pad_token_id))?;
        let position_embeddings = if spec.sinusoidal {
            w.sinusoidal_embedding(&at.pp("position_embeddings"), spec.max_position_embeddings, width)?
        } else {
            // RoBERTa's position table has a padding row, zeroed when fresh as torch does.
            let padding = match positions {
                Positions::AfterPadding { padding_idx } => Some(padding_idx),
                Positions::FromZero => None,
            };
            w.embedding(&at.pp("position_embeddings"), spec.max_position_embeddings, width, padding)?
        };
        let token_type_embeddings = match spec.type_vocab_size {
            0 => None,
            n => Some(w.embedding(&at.pp("token_type_embeddings"), n, width, None)?),
        };
        Ok(Self {
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            layer_norm: w.layer_norm(&at.pp("LayerNorm"), width, spec.layer_norm_eps)?,
            dropout: Dropout::new(spec.dropout),
            positions,
        })
    }

    /// # Shapes
    /// - input_ids, token_type_ids: `[batch, seq]`
    /// - output: `[batch, seq, embedding width]`
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, token_type_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let position_ids = match self.positions {
            Positions::FromZero => {
                Tensor::<B, 1, Int>::arange(0..seq as i64, &device).reshape([1, seq]).expand([batch, seq])
            }
            Positions::AfterPadding { padding_idx } => {
                let real = input_ids.clone().not_equal_elem(padding_idx as i64).int(); // (B, T)
                real.clone().cumsum(1) * real + padding_idx as i64
            }
        };
        let words = self.word_embeddings.forward(input_ids);
        // The order of the sums is transformers' (words + types, then positions).
        let embeddings = match &self.token_type_embeddings {
            Some(types) => add(words, types.forward(token_type_ids)),
            None => words,
        };
        let embeddings = add(embeddings, self.position_embeddings.forward(position_ids));
        self.dropout.forward(self.layer_norm.forward(embeddings))
    }
}
