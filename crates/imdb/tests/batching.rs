//! Tokenization of real reviews and batches padded to their own longest review, through Burn's
//! data loader.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use burn::backend::Flex;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use imdb::batching::{PaddingStats, epoch_batches};
use imdb::{ReviewBatcher, ReviewDataset, Source, SubsetConfig, draw, tokenize};

type B = Flex;

#[test]
fn batches_carry_no_padding_beyond_their_longest_review() {
    let Some(assets) = bert::assets::require_shared_assets("batching") else { return };
    let tokenizer = bert::BertTokenizer::from_file(assets.join("bert-base-uncased/tokenizer.json"), 512).unwrap();
    let splits =
        Source::detect(assets.join("imdb").to_str().unwrap()).unwrap().load(&bert::HubOptions::from_env()).unwrap();
    let subsets = draw(splits, &SubsetConfig { train_size: 200, eval_size: 10, ..Default::default() }).unwrap();
    let mut calls = 0;
    let items = tokenize(&subsets.train, &tokenizer, false, |_| calls += 1).unwrap();
    assert_eq!(items.len(), 200);
    assert!(calls >= 1);
    assert!(items.iter().all(|i| i.encoded.len() <= 512 && i.encoded.input_ids[0] == 101));
    assert!(items.iter().any(|i| i.encoded.len() == 512), "some real review is truncated");

    let dataset = ReviewDataset::new(items.clone());
    let loader =
        DataLoaderBuilder::<B, _, _>::new(ReviewBatcher::new(tokenizer.pad_id())).batch_size(16).build(dataset.clone());
    let mut seen = 0;
    for (b, batch) in loader.iter().enumerate() {
        let [rows, seq] = batch.input.input_ids.dims();
        let longest = items[seen..seen + rows].iter().map(|i| i.encoded.len()).max().unwrap();
        assert_eq!(seq, longest, "batch {b} is padded to its longest review only");
        let mask_sum = batch.input.attention_mask.clone().sum().into_scalar() as usize;
        assert_eq!(mask_sum, batch.real_tokens);
        assert_eq!(batch.labels.dims(), [rows]);
        seen += rows;
    }
    assert_eq!(seen, 200);

    let lengths = dataset.lengths();
    let longest = ReviewBatcher::new(tokenizer.pad_id());
    let plain = PaddingStats::of(&lengths, &epoch_batches(&lengths, 16, 42, 0, false), &longest);
    let grouped = PaddingStats::of(&lengths, &epoch_batches(&lengths, 16, 42, 0, true), &longest);
    assert!(grouped.waste() < plain.waste(), "grouping by length pads less: {} vs {}", grouped.waste(), plain.waste());

    // pad_to_multiple_of: every batch's length rounds up to the multiple, and the padding stats count it.
    let by_64 = ReviewBatcher { pad_to_multiple_of: 64, ..longest };
    let batches = epoch_batches(&lengths, 16, 42, 0, true);
    let mut padded = 0;
    for plan in &batches {
        let batch: imdb::ReviewBatch<B> = by_64.batch(dataset.select(plan), &Default::default());
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
    let Some(assets) = bert::assets::require_shared_assets("br normalisation") else { return };
    let tokenizer = bert::BertTokenizer::from_file(assets.join("bert-base-uncased/tokenizer.json"), 512).unwrap();
    let review = imdb::Review { text: "Good.<br /><br />Really good.".into(), label: 1 };
    let kept = tokenize(std::slice::from_ref(&review), &tokenizer, false, |_| {}).unwrap();
    let stripped = tokenize(&[review], &tokenizer, true, |_| {}).unwrap();
    assert!(kept[0].encoded.len() > stripped[0].encoded.len());
    assert_eq!(stripped[0].encoded, tokenizer.encode("Good.  Really good.").unwrap());
}
