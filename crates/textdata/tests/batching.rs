//! Tokenization of real reviews and batches padded to their own longest review, through Burn's
//! data loader.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use burn::backend::Flex;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use textdata::{LabelSpace, Labels, SourceOptions, SubsetConfig, Targets, TextBatcher, TextDataset, draw, tokenize};
use textdata::{PaddingStats, epoch_batches};

type B = Flex;

#[test]
fn batches_carry_no_padding_beyond_their_longest_review() {
    let Some(assets) = encoders::assets::require_shared_assets("batching") else { return };
    let tokenizer =
        encoders::EncoderTokenizer::from_file(assets.join("bert-base-uncased/tokenizer.json"), 512).unwrap();
    let infer = Labels::Infer { problem_type: None, names: None };
    let (splits, space): (_, LabelSpace) = textdata::load_labelled(
        assets.join("imdb").to_str().unwrap(),
        &SourceOptions::default(),
        &encoders::HubOptions::from_env(),
        infer,
    )
    .unwrap();
    let subsets =
        draw(splits, &SubsetConfig { train_size: Some(200), eval_size: Some(10), ..Default::default() }, &space)
            .unwrap();
    let mut calls = 0;
    let items = tokenize(&subsets.train, &tokenizer, false, |_| calls += 1).unwrap();
    assert_eq!(items.len(), 200);
    assert!(calls >= 1);
    assert!(items.iter().all(|i| i.encoded.len() <= 512 && i.encoded.input_ids[0] == 101));
    assert!(items.iter().any(|i| i.encoded.len() == 512), "some real review is truncated");

    let dataset = TextDataset::new(items.clone());
    let loader =
        DataLoaderBuilder::<B, _, _>::new(TextBatcher::new(tokenizer.pad_id())).batch_size(16).build(dataset.clone());
    let mut seen = 0;
    for (b, batch) in loader.iter().enumerate() {
        let [rows, seq] = batch.input.input_ids.dims();
        let longest = items[seen..seen + rows].iter().map(|i| i.encoded.len()).max().unwrap();
        assert_eq!(seq, longest, "batch {b} is padded to its longest review only");
        let mask_sum = batch.input.attention_mask.clone().sum().into_scalar() as usize;
        assert_eq!(mask_sum, batch.real_tokens);
        let Targets::Classes(labels) = &batch.labels else { panic!("class ids") };
        assert_eq!(labels.dims(), [rows]);
        seen += rows;
    }
    assert_eq!(seen, 200);

    let lengths = dataset.lengths();
    let longest = TextBatcher::new(tokenizer.pad_id());
    let plain = PaddingStats::of(&lengths, &epoch_batches(&lengths, 16, 42, 0, false), &longest);
    let grouped = PaddingStats::of(&lengths, &epoch_batches(&lengths, 16, 42, 0, true), &longest);
    assert!(grouped.waste() < plain.waste(), "grouping by length pads less: {} vs {}", grouped.waste(), plain.waste());

    // pad_to_multiple_of: every batch's length rounds up to the multiple, and the padding stats count it.
    let by_64 = TextBatcher { pad_to_multiple_of: 64, ..longest };
    let batches = epoch_batches(&lengths, 16, 42, 0, true);
    let mut padded = 0;
    for plan in &batches {
        let batch: textdata::TextBatch<B> = by_64.batch(dataset.select(plan), &Default::default());
        let [rows, seq] = batch.input.input_ids.dims();
        let longest_here = plan.iter().map(|&i| lengths[i]).max().unwrap();
        assert!(seq % 64 == 0 && seq >= longest_here && seq < longest_here + 64, "{seq} for {longest_here}");
        assert_eq!(batch.input.attention_mask.clone().sum().into_scalar() as usize, batch.real_tokens);
        padded += rows * seq - batch.real_tokens;
    }
    let stats = PaddingStats::of(&lengths, &batches, &by_64);
    assert_eq!(stats.padded_tokens, padded);
    assert!(stats.padded_tokens > grouped.padded_tokens);
}

#[test]
fn html_breaks_become_spaces_only_when_asked() {
    let Some(assets) = encoders::assets::require_shared_assets("br normalisation") else { return };
    let tokenizer =
        encoders::EncoderTokenizer::from_file(assets.join("bert-base-uncased/tokenizer.json"), 512).unwrap();
    let review = textdata::Example::new("Good.<br /><br />Really good.", 1);
    let kept = tokenize(std::slice::from_ref(&review), &tokenizer, false, |_| {}).unwrap();
    let stripped = tokenize(&[review], &tokenizer, true, |_| {}).unwrap();
    assert!(kept[0].encoded.len() > stripped[0].encoded.len());
    assert_eq!(stripped[0].encoded, tokenizer.encode("Good.  Really good.").unwrap());
}

/// A pair is tokenized as the tokenizer's template joins two texts (`[CLS] a [SEP] b [SEP]`,
/// token types 0 then 1), truncated longest first; its batch carries both segments.
#[test]
fn pairs_tokenize_with_the_pair_template() {
    let Some(assets) = encoders::assets::require_shared_assets("pairs") else { return };
    let tokenizer = encoders::EncoderTokenizer::from_file(assets.join("bert-base-uncased/tokenizer.json"), 12).unwrap();
    let review = textdata::Example {
        text: "a short one".into(),
        text_pair: Some("and a much longer second passage that must be cut".into()),
        label: textdata::Target::Class(1),
    };
    let items = tokenize(&[review], &tokenizer, false, |_| {}).unwrap();
    assert_eq!(
        items[0].encoded,
        tokenizer.encode_pair("a short one", "and a much longer second passage that must be cut").unwrap()
    );
    let types = &items[0].encoded.token_type_ids;
    assert_eq!(items[0].encoded.len(), 12);
    // [CLS] a short one [SEP] = 5 tokens of type 0 (longest first: the long text is cut, the short kept).
    assert_eq!(types.iter().filter(|&&t| t == 0).count(), 5);
    assert_eq!(*items[0].encoded.input_ids.last().unwrap(), 102);
}

/// Pair token ids equal transformers' fast tokenizer's (`tok(a, b, truncation="longest_first",
/// max_length=...)`, goldens from scripts/golden_tasks.py), through the data crate's tokenize.
#[test]
fn pair_tokens_equal_transformers() {
    let Some(assets) = encoders::assets::require_shared_assets("pair tokens") else { return };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pair_tokens.json");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    let mut truncated = 0;
    for row in &rows {
        let max_length = row["max_length"].as_u64().unwrap() as usize;
        let tokenizer =
            encoders::EncoderTokenizer::from_file(assets.join("bert-base-uncased/tokenizer.json"), max_length).unwrap();
        let review = textdata::Example {
            text: row["text"].as_str().unwrap().into(),
            text_pair: Some(row["text_pair"].as_str().unwrap().into()),
            label: textdata::Target::Class(0),
        };
        let ours = &tokenize(&[review], &tokenizer, false, |_| {}).unwrap()[0].encoded;
        assert_eq!(ours.input_ids, ids(&row["input_ids"]), "{row}");
        assert_eq!(ours.token_type_ids, ids(&row["token_type_ids"]), "{row}");
        truncated += usize::from(ours.len() == max_length);
    }
    assert!(truncated >= 8, "the goldens exercise truncation ({truncated} cut)");
}
