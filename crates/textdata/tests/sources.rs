//! Every source read on small fixtures made here, the real files in `../shared/assets/imdb/`,
//! and the errors for input that cannot be read.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use encoders::HubOptions;
use encoders::testing::FakeHub;
use textdata::class_counts;
use textdata::{Example, LabelSpace, Labels, ProblemType, Source, SourceOptions, Splits, SubsetConfig, Target};

fn offline() -> HubOptions {
    HubOptions { offline: true, ..HubOptions::at("/nonexistent", "http://127.0.0.1:9") }
}

fn load(spec: &Path) -> textdata::Result<Splits> {
    load_with(spec, &SourceOptions::default())
}

fn load_with(spec: &Path, options: &SourceOptions) -> textdata::Result<Splits> {
    let infer = Labels::Infer { problem_type: None, names: None };
    Ok(textdata::load_labelled(spec.to_str().unwrap(), options, &offline(), infer)?.0)
}

fn binary() -> LabelSpace {
    LabelSpace { problem_type: ProblemType::SingleLabelClassification, names: vec!["neg".into(), "pos".into()] }
}

fn draw(splits: Splits, config: &SubsetConfig) -> textdata::Result<textdata::Subsets> {
    textdata::draw(splits, config, &binary())
}

fn positive(r: &Example) -> bool {
    r.label == Target::Class(1)
}

fn split(name: &str, n: usize) -> Vec<Example> {
    // Texts with quotes, commas, newlines, non-ASCII and `<br />`, as real reviews have.
    (0..n)
        .map(|i| {
            Example::new(format!("{name} review {i}: \"great\", or not?<br /><br />Ça, 映画 — line\nbreak"), i % 2)
        })
        .collect()
}

fn sorted(mut r: Vec<Example>) -> Vec<Example> {
    r.sort_by_key(|a| (a.text.clone(), a.label.class()));
    r
}

fn as_sets(s: Splits) -> (Vec<Example>, Vec<Example>) {
    match s {
        Splits::TrainTest { train, test } => (sorted(train), sorted(test)),
        Splits::Unsplit(_) => panic!("expected two splits"),
    }
}

fn write_jsonl(path: &Path, reviews: &[Example]) {
    textdata::write_jsonl(path, reviews).unwrap();
}

fn write_csv(path: &Path, reviews: &[Example]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(["review", "sentiment"]).unwrap();
    for r in reviews {
        w.write_record([r.text.as_str(), if positive(r) { "positive" } else { "negative" }]).unwrap();
    }
    w.flush().unwrap();
}

fn gzip(path: &Path) -> PathBuf {
    let out = PathBuf::from(format!("{}.gz", path.display()));
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&out).unwrap(), flate2::Compression::default());
    enc.write_all(&std::fs::read(path).unwrap()).unwrap();
    enc.finish().unwrap();
    out
}

fn write_parquet(path: &Path, reviews: &[Example]) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY text (UTF8); REQUIRED INT64 label; }",
        )
        .unwrap(),
    );
    let props = Arc::new(WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let texts: Vec<ByteArray> = reviews.iter().map(|r| ByteArray::from(r.text.as_str())).collect();
    let labels: Vec<i64> = reviews.iter().map(|r| r.label.class() as i64).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>().write_batch(&texts, None, None).unwrap();
    col.close().unwrap();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int64Type>().write_batch(&labels, None, None).unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

fn write_tree(root: &Path, train: &[Example], test: &[Example]) {
    for (name, reviews) in [("train", train), ("test", test)] {
        for (i, r) in reviews.iter().enumerate() {
            let dir = root.join(name).join(if positive(r) { "pos" } else { "neg" });
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{i}_{}.txt", if positive(r) { 8 } else { 2 })), &r.text).unwrap();
        }
    }
    std::fs::write(root.join("train/urls_pos.txt"), "http://example.invalid\n").unwrap();
    std::fs::create_dir_all(root.join("train/unsup")).unwrap();
    std::fs::write(root.join("train/unsup/0_0.txt"), "unlabelled").unwrap();
}

fn write_tarball(path: &Path, tree_parent: &Path) {
    let enc = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(enc);
    tar.append_dir_all("aclImdb", tree_parent.join("aclImdb")).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

#[test]
fn every_source_reads_the_same_reviews_and_draws_the_same_subsets() {
    let (train, test) = (split("train", 40), split("test", 30));
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };

    let jsonl = d("jsonl");
    write_jsonl(&jsonl.join("train.jsonl"), &train);
    write_jsonl(&jsonl.join("test.jsonl"), &test);
    let csv_dir = d("csv");
    write_csv(&csv_dir.join("train.csv"), &train);
    write_csv(&csv_dir.join("test.csv"), &test);
    let gz = d("gz");
    write_jsonl(&gz.join("train.jsonl"), &train);
    write_jsonl(&gz.join("test.jsonl"), &test);
    gzip(&gz.join("train.jsonl"));
    gzip(&gz.join("test.jsonl"));
    std::fs::remove_file(gz.join("train.jsonl")).unwrap();
    std::fs::remove_file(gz.join("test.jsonl")).unwrap();
    let parquet_dir = d("parquet");
    write_parquet(&parquet_dir.join("train.parquet"), &train);
    write_parquet(&parquet_dir.join("test.parquet"), &test);
    let tree_parent = d("tree");
    write_tree(&tree_parent.join("aclImdb"), &train, &test);
    let tarball = dir.path().join("aclImdb_v1.tar.gz");
    write_tarball(&tarball, &tree_parent);

    let expected = (sorted(train.clone()), sorted(test.clone()));
    let sources = [&jsonl, &csv_dir, &gz, &parquet_dir, &tree_parent, &tree_parent.join("aclImdb"), &tarball];
    let config = SubsetConfig { train_size: Some(10), eval_size: Some(6), seed: 5, ..Default::default() };
    let mut draws = Vec::new();
    for source in sources {
        let splits = load(source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert_eq!(as_sets(splits.clone()), expected, "{}", source.display());
        draws.push(draw(splits, &config).unwrap());
    }
    assert!(draws.windows(2).all(|w| w[0] == w[1]), "the same subsets from every source");

    // An adapter trained on any copy reads any other: class names "0"/"1" (JSON Lines) or
    // "neg"/"pos" (the tree's, as the Hub's ClassLabel) give the same classes.
    for names in [["0", "1"], ["neg", "pos"]] {
        let space = LabelSpace {
            problem_type: ProblemType::SingleLabelClassification,
            names: names.map(String::from).to_vec(),
        };
        for source in [&jsonl, &tarball, &parquet_dir] {
            let known = Labels::Known(space.clone());
            let (splits, _) =
                textdata::load_labelled(source.to_str().unwrap(), &SourceOptions::default(), &offline(), known)
                    .unwrap();
            assert_eq!(as_sets(splits), expected, "{names:?} on {}", source.display());
        }
    }

    // Single files: an unsplit pool, gzip or not, JSONL or CSV.
    let all: Vec<Example> = train.iter().chain(&test).cloned().collect();
    let single = dir.path().join("IMDB Dataset.csv");
    write_csv(&single, &all);
    for path in [single.clone(), gzip(&single)] {
        match load(&path).unwrap() {
            Splits::Unsplit(reviews) => assert_eq!(sorted(reviews), sorted(all.clone())),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn hub_dataset_downloads_through_hf_hub_and_then_reads_offline() {
    let (train, test) = (split("train", 20), split("test", 12));
    let served = tempfile::tempdir().unwrap();
    let repo = served.path().join("datasets/stanfordnlp/imdb/plain_text");
    std::fs::create_dir_all(&repo).unwrap();
    write_parquet(&repo.join("train-00000-of-00001.parquet"), &train);
    write_parquet(&repo.join("test-00000-of-00001.parquet"), &test);
    let hub = FakeHub::serve(served.path()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let online = HubOptions::at(cache.path(), hub.endpoint.clone());

    let options = SourceOptions::default();
    let source = Source::detect("stanfordnlp/imdb", &options).unwrap();
    assert_eq!(source, Source::Hub("stanfordnlp/imdb".into()));
    let space = Labels::Known(binary());
    let resolve = |raw: textdata::RawSplits| raw.resolve(&binary()).unwrap();
    assert_eq!(
        as_sets(resolve(source.load(&options, &online).unwrap())),
        (sorted(train.clone()), sorted(test.clone()))
    );
    let from_cache = HubOptions { offline: true, ..online };
    let (splits, _) = textdata::load_labelled("stanfordnlp/imdb", &options, &from_cache, space).unwrap();
    assert_eq!(as_sets(splits), (sorted(train), sorted(test)));

    let err = Source::Hub("nobody/imdb".into()).load(&options, &from_cache).unwrap_err().to_string();
    assert!(err.contains("nobody/imdb") && err.contains("HF_HUB_OFFLINE"), "{err}");
}

fn error_of(setup: impl FnOnce(&Path) -> PathBuf) -> String {
    let dir = tempfile::tempdir().unwrap();
    let spec = setup(dir.path());
    let err = load(&spec).unwrap_err().to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    err
}

#[test]
fn bad_input_is_one_clear_error_naming_file_and_line() {
    let train = split("train", 4);
    let err = error_of(|d| d.join("missing"));
    assert!(err.contains("missing"), "{err}");

    let err = error_of(|d| {
        write_jsonl(&d.join("train.jsonl"), &train);
        d.to_path_buf()
    });
    assert!(err.contains("evaluation split") && err.contains("test, validation, eval"), "{err}");

    let err = error_of(|d| {
        write_jsonl(&d.join("train.jsonl"), &train);
        std::fs::write(d.join("test.jsonl"), "\n").unwrap();
        d.to_path_buf()
    });
    assert!(err.contains("test.jsonl") && err.contains("empty"), "{err}");

    let err = error_of(|d| {
        std::fs::write(d.join("x.jsonl"), "{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"broken\", \n").unwrap();
        d.join("x.jsonl")
    });
    assert!(err.contains("x.jsonl:2:") && err.contains("JSON"), "{err}");

    let err = error_of(|d| {
        std::fs::write(d.join("x.jsonl"), "{\"content\": \"ok\", \"label\": 1}\n").unwrap();
        d.join("x.jsonl")
    });
    assert!(err.contains("x.jsonl:1:") && err.contains("text"), "{err}");

    let err = error_of(|d| {
        std::fs::write(d.join("x.jsonl"), "{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"ok\", \"label\": true}\n")
            .unwrap();
        d.join("x.jsonl")
    });
    assert!(err.contains("x.jsonl:2:") && err.contains("true"), "{err}");

    // A class the training split never has is outside the label set: the evaluation file's line.
    let err = error_of(|d| {
        std::fs::write(d.join("train.csv"), "review,sentiment\n\"fine\",positive\n\"bad\",negative\n").unwrap();
        std::fs::write(d.join("test.csv"), "review,sentiment\n\"fine\",positive\n\"meh\",neutral\n").unwrap();
        d.to_path_buf()
    });
    assert!(
        err.contains("test.csv:3:") && err.contains("neutral") && err.contains("not one of the 2 classes"),
        "{err}"
    );

    let err = error_of(|d| {
        std::fs::write(d.join("x.csv"), "text,label\n\"fine\",good\n\"meh\",\n\"bad\",poor\n").unwrap();
        d.join("x.csv")
    });
    assert!(err.contains("x.csv:3:") && err.contains("empty"), "{err}");

    let err = error_of(|d| {
        std::fs::write(d.join("x.csv"), "body,stars\n\"fine\",5\n").unwrap();
        d.join("x.csv")
    });
    assert!(err.contains("x.csv") && err.contains("data.text_column") && err.contains("body"), "{err}");

    let err = error_of(|d| {
        let mut bytes = b"{\"text\": \"ok\", \"label\": 1}\n{\"text\": \"".to_vec();
        bytes.extend([0xff, 0xfe]);
        bytes.extend(b"\", \"label\": 0}\n");
        std::fs::write(d.join("x.jsonl"), bytes).unwrap();
        d.join("x.jsonl")
    });
    assert!(err.contains("x.jsonl:2:") && err.contains("UTF-8"), "{err}");

    let err = error_of(|d| {
        std::fs::write(d.join("notes.txt"), "hello").unwrap();
        d.join("notes.txt")
    });
    assert!(err.contains("notes.txt") && err.contains("recognised"), "{err}");
}

#[test]
fn a_tar_entry_that_escapes_the_tree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.tar");
    // Written by hand: tar's builder refuses `..` itself, a crafted archive need not.
    let mut header = tar::Header::new_gnu();
    let body = b"escaped";
    {
        let name = b"aclImdb/train/pos/../../../../etc/x.txt";
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
    }
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend(body);
    bytes.resize(bytes.len().div_ceil(512) * 512 + 1024, 0);
    std::fs::write(&path, bytes).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("escapes") && err.contains("etc/x.txt"), "{err}");
}

#[test]
fn a_subset_larger_than_its_split_is_refused() {
    let splits = Splits::TrainTest { train: split("train", 10), test: split("test", 10) };
    let err = draw(splits, &SubsetConfig { train_size: Some(4), eval_size: Some(12), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(err.contains("test") && err.contains('6') && err.contains('5'), "{err}");
}

#[test]
fn the_real_dataset_from_jsonl_and_from_the_original_tarball() {
    let Some(assets) = encoders::assets::require_shared_assets("real IMDb") else { return };
    let imdb_dir = assets.join("imdb");
    let jsonl = load(&imdb_dir).unwrap();
    let Splits::TrainTest { train, test } = &jsonl else { panic!("two splits") };
    assert_eq!((train.len(), test.len()), (25_000, 25_000));
    assert_eq!(class_counts(train, 2), [12_500, 12_500]);
    assert_eq!(class_counts(test, 2), [12_500, 12_500]);

    let tarball = std::fs::read_dir(imdb_dir.join("original"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .unwrap();
    let from_tar = load(&tarball).unwrap();

    let config = SubsetConfig::default();
    let a = draw(jsonl.clone(), &config).unwrap();
    let b = draw(from_tar, &config).unwrap();
    assert_eq!(a, b, "the same 1,000/500 from JSONL and from the tarball");
    assert_eq!(class_counts(&a.train, 2), [500, 500]);
    assert_eq!(class_counts(&a.eval, 2), [250, 250]);

    // Disjoint (with overlap removal, which the release needs: 123 test texts are also in train).
    let clean = draw(jsonl, &SubsetConfig { dedup: true, drop_test_overlap: true, ..config }).unwrap();
    assert_eq!(clean.overlap_dropped, 123);
    assert_eq!(clean.duplicates_dropped, 96 + 199);
    let train_texts: std::collections::HashSet<_> = clean.train.iter().map(|r| &r.text).collect();
    assert!(clean.eval.iter().all(|r| !train_texts.contains(&r.text)));
    let counts: BTreeMap<_, _> = clean.train.iter().map(|r| (&r.text, ())).collect();
    assert_eq!(counts.len(), 1000, "no repeated text");
}

/// The 1-10 ratings in the release's file names, as the `rating` column of the tarball: the
/// eight ratings present (1-4, 7-10) as classes, or a number to regress.
#[test]
fn the_real_ratings_are_a_column_of_the_tarball() {
    let Some(assets) = encoders::assets::require_shared_assets("real IMDb ratings") else { return };
    let tarball = assets.join("imdb/original/aclImdb_labelled_from_iamsorenl.tar.gz");
    let options = SourceOptions {
        columns: textdata::Columns { label: Some("rating".into()), ..Default::default() },
        ..Default::default()
    };
    let infer = Labels::Infer { problem_type: None, names: None };
    let (splits, space) = textdata::load_labelled(tarball.to_str().unwrap(), &options, &offline(), infer).unwrap();
    assert_eq!(space.names, ["1", "2", "3", "4", "7", "8", "9", "10"]);
    let config = SubsetConfig { train_size: Some(800), eval_size: Some(400), ..Default::default() };
    let s = textdata::draw(splits, &config, &space).unwrap();
    assert_eq!(class_counts(&s.train, 8), [100; 8]);
    assert_eq!(class_counts(&s.eval, 8), [50; 8]);

    let regress = Labels::Infer { problem_type: Some(ProblemType::Regression), names: None };
    let (splits, space) = textdata::load_labelled(tarball.to_str().unwrap(), &options, &offline(), regress).unwrap();
    assert_eq!(space.num_labels(), 1);
    let Splits::TrainTest { train, .. } = splits else { panic!("two splits") };
    let mean = train.iter().map(|r| if let Target::Value(v) = r.label { f64::from(v) } else { f64::NAN }).sum::<f64>()
        / 25_000.0;
    assert!((4.0..7.0).contains(&mean), "the release's mean rating, {mean}");
}

/// Sentence pairs, string labels of any number and multi-label lists, from JSON Lines and CSV.
#[test]
fn pairs_named_columns_and_label_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.csv");
    std::fs::write(
        &path,
        "id,sentence1,sentence2,label\n1,\"A cat.\",\"A feline.\",equivalent\n2,\"Rain.\",\"Sun.\",not_equivalent\n",
    )
    .unwrap();
    let Splits::Unsplit(rows) = load(&path).unwrap() else { panic!("one file") };
    assert_eq!(rows[0].text_pair.as_deref(), Some("A feline."));
    assert_eq!((rows[0].label.clone(), rows[1].label.clone()), (Target::Class(0), Target::Class(1)));

    let path = dir.path().join("tickets.jsonl");
    std::fs::write(&path, "{\"body\": \"refund please\", \"topics\": [\"billing\", \"urgent\"]}\n{\"body\": \"hello\", \"topics\": []}\n{\"body\": \"crash\", \"topics\": [\"bug\"]}\n").unwrap();
    let options = SourceOptions {
        columns: textdata::Columns { text: Some("body".into()), label: Some("topics".into()), text_pair: None },
        ..Default::default()
    };
    let Splits::Unsplit(rows) = load_with(&path, &options).unwrap() else { panic!("one file") };
    assert_eq!(rows[0].label, Target::MultiHot(vec![1.0, 0.0, 1.0]), "classes billing, bug, urgent");
    assert_eq!(rows[1].label, Target::MultiHot(vec![0.0; 3]));
}

/// A GLUE-shaped Hub dataset: another configuration and split names, sentence pairs, and class
/// names from the parquet export's `ClassLabel` metadata.
#[test]
fn hub_pairs_with_a_config_a_split_and_class_names() {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let write = |path: &Path, n: usize| {
        let schema = Arc::new(
            parquet::schema::parser::parse_message_type(
                "message schema { REQUIRED BYTE_ARRAY sentence1 (UTF8); REQUIRED BYTE_ARRAY sentence2 (UTF8); REQUIRED INT64 label; }",
            )
            .unwrap(),
        );
        let features = r#"{"info": {"features": {"sentence1": {"dtype": "string", "_type": "Value"}, "label": {"names": ["not_equivalent", "equivalent"], "_type": "ClassLabel"}}}}"#;
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                "huggingface".into(),
                features.to_string(),
            )]))
            .build();
        let mut writer =
            SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, Arc::new(props)).unwrap();
        let mut group = writer.next_row_group().unwrap();
        for column in 0..3 {
            let mut col = group.next_column().unwrap().unwrap();
            if column < 2 {
                let texts: Vec<ByteArray> =
                    (0..n).map(|i| ByteArray::from(format!("part {column} of pair {i}").as_str())).collect();
                col.typed::<ByteArrayType>().write_batch(&texts, None, None).unwrap();
            } else {
                let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
                col.typed::<Int64Type>().write_batch(&labels, None, None).unwrap();
            }
            col.close().unwrap();
        }
        group.close().unwrap();
        writer.close().unwrap();
    };
    let served = tempfile::tempdir().unwrap();
    let repo = served.path().join("datasets/someone/glue-like/mrpc");
    std::fs::create_dir_all(&repo).unwrap();
    write(&repo.join("training-00000-of-00001.parquet"), 10);
    write(&repo.join("validation-00000-of-00001.parquet"), 4);
    let hub = FakeHub::serve(served.path()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let online = HubOptions::at(cache.path(), hub.endpoint.clone());
    let options = SourceOptions {
        train_split: Some("training".into()),
        eval_split: Some("validation".into()),
        hub_config: Some("mrpc".into()),
        ..Default::default()
    };
    let infer = Labels::Infer { problem_type: None, names: None };
    let (splits, space) = textdata::load_labelled("someone/glue-like", &options, &online, infer).unwrap();
    assert_eq!(space.names, ["not_equivalent", "equivalent"], "the ClassLabel's names, in its order");
    let Splits::TrainTest { train, test } = splits else { panic!("two splits") };
    assert_eq!((train.len(), test.len()), (10, 4));
    assert_eq!(train[1].text_pair.as_deref(), Some("part 1 of pair 1"));
    assert_eq!(train[1].label, Target::Class(1));

    let wrong = SourceOptions { hub_config: Some("sst2".into()), ..options };
    let infer = Labels::Infer { problem_type: None, names: None };
    let err = textdata::load_labelled("someone/glue-like", &wrong, &online, infer).unwrap_err().to_string();
    assert!(err.contains("sst2/training-00000-of-00001.parquet") && err.contains("data.hub_config"), "{err}");
}
