//! Tokenization for the routes that run the model: a tokenizer for each `truncate` /
//! `truncation_direction`, built once at start from the model's, and a request's rows
//! tokenized with them, a text longer than the model takes cut or refused with its count.

use encoders::{Encoded, EncoderTokenizer, Truncation};

use crate::api::{ApiError, ErrorType, TruncationDirection};

/// Tokenizers for each `truncate` / `truncation_direction`.
pub(crate) struct Tokenizers {
    /// `truncate: false`: cuts at one token past the model's, so that a text too long to
    /// answer is read only that far (in pieces past the tokenizer's window) before it is refused:
    /// a refused text costs no more than an accepted one.
    pub(crate) probe: EncoderTokenizer,
    /// Never cuts: counts the tokens of a refused text that is short enough to read whole, for
    /// the error, and answers `/tokenize` and `/decode`.
    pub(crate) whole: EncoderTokenizer,
    pub(crate) right: EncoderTokenizer,
    pub(crate) left: EncoderTokenizer,
}

impl Tokenizers {
    /// The four tokenizers from the model's, which truncates at its `positions`.
    pub(crate) fn new(tokenizer: &EncoderTokenizer) -> encoders::Result<Self> {
        let positions = tokenizer.max_length();
        let cut = |truncation, at| tokenizer.truncating_at(truncation, at);
        Ok(Self {
            probe: cut(Truncation::Right, positions + 1)?,
            whole: cut(Truncation::None, positions)?,
            right: cut(Truncation::Right, positions)?,
            left: cut(Truncation::Left, positions)?,
        })
    }
}

/// How a request's rows are tokenized and named in errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowOptions {
    pub(crate) truncate: bool,
    pub(crate) direction: TruncationDirection,
    /// The request field the rows come from (`inputs`, `texts`).
    pub(crate) field: &'static str,
    /// One input, named `inputs` rather than `inputs[0]` in errors.
    pub(crate) single: bool,
}

/// Each row's tokens; a text longer than the model takes is cut (`truncate`) or refused.
pub(crate) fn tokenize(
    tokenizers: &Tokenizers,
    pairs: &[(&str, Option<&str>)],
    options: RowOptions,
    limit: usize,
) -> Result<Vec<Encoded>, ApiError> {
    let tokenizer = match (options.truncate, options.direction) {
        (false, _) => &tokenizers.probe,
        (true, TruncationDirection::Right) => &tokenizers.right,
        (true, TruncationDirection::Left) => &tokenizers.left,
    };
    let encoded =
        tokenizer.encode_batch_pairs(pairs).map_err(|e| ApiError::new(ErrorType::Tokenizer, e.to_string()))?;
    for (i, e) in encoded.iter().enumerate() {
        if e.len() > limit {
            let field = options.field;
            let which = if options.single { format!("`{field}`") } else { format!("`{field}[{i}]`") };
            let which = if field == "texts" { format!("{which} with the query") } else { which };
            // The exact count where the text is short enough to read whole.
            let window = tokenizers.whole.window();
            let (a, b) = pairs[i];
            let count = if a.len() <= window && b.is_none_or(|b| b.len() <= window) {
                let whole = tokenizers.whole.encode_batch_pairs(&pairs[i..=i]);
                whole.ok().and_then(|w| w.first().map(|w| w.len().to_string()))
            } else {
                None
            };
            let says = match count {
                Some(n) => format!("has {n} tokens, more than the model's {limit}"),
                None => format!("has more tokens than the model's {limit}"),
            };
            return Err(ApiError::validation(format!("{which} {says}; send \"truncate\": true to cut it")));
        }
    }
    Ok(encoded)
}
