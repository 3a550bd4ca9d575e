#!/usr/bin/env python3
"""Golden fixtures for every family (crates/encoders/tests/families.rs, modern.rs): one script,
one pinned transformers, one fixture directory per family or variant. (BERT also has the older
real-weights goldens of golden_bert.py and golden_peft.py.)

Under crates/encoders/tests/fixtures/families/<model_type>/ (BERT, RoBERTa, XLM-RoBERTa, DistilBERT,
ELECTRA: a tiny model of each with a tokenizer of the family's kind, byte-level BPE (RoBERTa),
Unigram with Metaspace (XLM-R), WordPiece (BERT, DistilBERT, ELECTRA), trained on the sentences below
and saved by the family's fast tokenizer class) and crates/encoders/tests/fixtures/modern/<name>/:
  modernbert       ModernBERT, mean pooling, no biases (ModernBERT-base's choices), global
                   attention every 2nd layer, a sliding window of 8 tokens elsewhere
  modernbert-cls   the same shape with first-token pooling and every bias on (attention, MLP,
                   norms, head)
  deberta-v3       DeBERTa-v3's choices: relative attention with both position terms (p2c, c2p),
                   log buckets (8) past which distances up to 64 are bucketed, shared attention
                   keys, LayerNorm-ed relative embeddings, no absolute positions, no token types,
                   the ContextPooler head; a SentencePiece-style Unigram tokenizer with the
                   [CLS] $A [SEP] $B [SEP] template
  deberta-v2       the other branches: own position projections (pos_key_proj, pos_query_proj),
                   pos_att_type as "c2p|p2c", no buckets, absolute positions and token types
  camembert        CamemBERT: RoBERTa's model with a SentencePiece-style Unigram, <pad> = 1,
                   RoBERTa's template; 64 text positions, a text truncated at them
  mpnet            MPNet (all-mpnet-base-v2's architecture): a lower-cased WordPiece with <s>,
                   <pad>, </s> and RoBERTa's template; relative position buckets shared by the
                   layers; 512 text positions, so distances past the buckets' 128
each holds:
  model/               a tiny random <Family>ForSequenceClassification saved by transformers
                       (safetensors, eager attention), with a tiny tokenizer of the family's kind
                       (ModernBERT: a byte-level BPE with its [CLS] $A [SEP] template)
  base-bin/            the base model alone as pytorch_model.bin (no prefix, no head)
  mlm/                 (modernbert, deberta-v3) the same encoder as a ...ForMaskedLM, the shape of
                       the Hub's checkpoints: ModernBERT's `head` is the classifier's and its
                       `decoder` unused; DeBERTa's `lm_predictions` unused, and an absolute
                       position table that v3 does not use (as microsoft/deberta-v3-base has)
  adapter/             a PEFT LoRA adapter (SEQ_CLS, r 4, the family's query and value, or Wqkv
                       and Wo) after 5 AdamW steps
  golden.safetensors   a padded batch (three texts, one pair, one text of 600 tokens: past the
                       window and past 512, truncated at the model's positions), the base model's
                       last hidden state, the logits, the logits with the adapter (eval mode) and
                       with it merged
  tokens.jsonl         the positions, then each text and the pair with the fast tokenizer's ids

and deberta-spm/: a SentencePiece Unigram (`spm.model`, trained here by sentencepiece with
DeBERTa-v3's [PAD] [CLS] [SEP] [UNK] layout and a user-defined piece; no [MASK], which v3 adds
after its pieces) with its tokenizer_config.json, and tokens.jsonl: the ids and token types that
DebertaV2TokenizerFast gives after converting it (transformers' DebertaV2Converter), for texts
with capitals, runs of spaces and NFKC-normalised characters, a pair, and a truncated text.

Rerun (pinned versions, see docs/golden-fixtures.md):
  python3 -m venv .venv-modern
  .venv-modern/bin/pip install torch==2.8.0 transformers==4.57.1 peft==0.17.1 numpy==2.2.6 sentencepiece==0.2.1 protobuf
  .venv-modern/bin/python scripts/golden_families.py [NAME ...]    (default: all of them)
"""
import inspect
import json
import sys
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

PINNED = {"torch": "2.8.0", "transformers": "4.57.1", "peft": "0.17.1"}
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates" / "encoders" / "tests" / "fixtures"
OUT = FIXTURES / "modern"

CORPUS = [
    "The film was good, a great plot and fine acting.",
    "A dull and boring film; the plot was poor.",
    "Superb music, lovely photography, awful dialogue!",
    "Was it worth it? Not really, but the actors tried.",
    "Ein schöner Film über das Meer und die Menschen.",
    "Une histoire simple, des acteurs remarquables, un peu trop long.",
    "1999 was the year; 42 minutes in, nothing had happened.",
    "Don't watch it late at night — it's scary.",
] * 3
TEXTS = [
    "The film was good.",
    "A dull plot, poor acting; I'd not watch it again!",
    "Ein schöner Film.",
]
PAIR = ("Was the plot good?", "The plot was dull and the acting poor.")



LONG_TOKENS = 600  # past the sliding window, the relative buckets and 512 positions (DeBERTa truncates at its 512)


def check_versions():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
             "peft": peft.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")


def wordpiece(fast_class, lowercase=True):
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
    return fast_class(tokenizer_object=tok, do_lower_case=lowercase, unk_token="[UNK]", sep_token="[SEP]",
                      pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def byte_level_bpe(fast_class):
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                                      trim_offsets=True, add_prefix_space=False)
    return fast_class(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                      unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def unigram(fast_class):
    special = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(tokenizers.Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=250, special_tokens=special, unk_token="<unk>"))
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return fast_class(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                      unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def modernbert_tokenizer():
    """A byte-level BPE with ModernBERT's specials and template (its tokenizer is OLMo's BPE)."""
    special = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0",
                                                       pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]",
                                                sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                                                model_input_names=["input_ids", "attention_mask"])


def modernbert_config(tokenizer, pooling, biases):
    return transformers.ModernBertConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=24, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=1024, global_attn_every_n_layers=2, local_attention=8,
        global_rope_theta=160000.0, local_rope_theta=10000.0, classifier_pooling=pooling, num_labels=3,
        attention_bias=biases, mlp_bias=biases, norm_bias=biases, classifier_bias=biases,
        attention_dropout=0.1, mlp_dropout=0.1, embedding_dropout=0.1, classifier_dropout=0.1,
        pad_token_id=tokenizer.pad_token_id, cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        reference_compile=False, attn_implementation="eager")


def deberta_tokenizer():
    """A Unigram with Metaspace and DeBERTa-v3's template (its tokenizer is a SentencePiece Unigram)."""
    special = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.Strip(), normalizers.Replace(tokenizers.Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=250, special_tokens=special, unk_token="[UNK]"))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0",
                                                       pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return transformers.DebertaV2TokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]",
                                               sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]")


def deberta_config(tokenizer, v3):
    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=512, relative_attention=True, layer_norm_eps=1e-7,
                  pad_token_id=tokenizer.pad_token_id, num_labels=3, hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1, pooler_hidden_size=32, pooler_dropout=0.1,
                  pooler_hidden_act="gelu", legacy=False, initializer_range=0.3)
    if v3:
        return transformers.DebertaV2Config(position_buckets=8, max_relative_positions=64, pos_att_type=["p2c", "c2p"],
                                            share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
                                            type_vocab_size=0, **common)
    return transformers.DebertaV2Config(pos_att_type="c2p|p2c", share_att_key=False, norm_rel_ebd="none",
                                        position_biased_input=True, type_vocab_size=2, **common)


def roberta_template(tok):
    """RoBERTa's template, which CamemBERT and MPNet share: <s> $A </s>, <s> $A </s></s> $B </s>."""
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="<s>:0 $A:0 </s>:0",
                                                       pair="<s>:0 $A:0 </s>:0 </s>:0 $B:0 </s>:0",
                                                       special_tokens=[("<s>", bos), ("</s>", eos)])


SPECIALS = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                pad_token="<pad>", mask_token="<mask>")


def camembert_tokenizer():
    """A SentencePiece-style Unigram with Metaspace (camembert-base's kind), <pad> = 1."""
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.Strip(), normalizers.Replace(tokenizers.Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=250, special_tokens=special, unk_token="<unk>"))
    roberta_template(tok)
    return transformers.CamembertTokenizerFast(tokenizer_object=tok, **SPECIALS)


def mpnet_tokenizer():
    """A lower-cased WordPiece with MPNet's specials (<s>, <pad> = 1, </s>) and RoBERTa's template."""
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    roberta_template(tok)
    return transformers.MPNetTokenizerFast(tokenizer_object=tok, **SPECIALS)


def roberta_like_config(config_class, tokenizer, positions):
    return config_class(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=positions, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, num_labels=3, initializer_range=0.2)


def bert_keyed():
    """The families with BERT's keys (and DistilBERT): (tokenizer, config from the vocabulary size,
    class, targets), under fixtures/families/."""
    t = transformers
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, num_labels=3,
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return {
        "bert": (lambda: wordpiece(t.BertTokenizerFast),
                 lambda v: t.BertConfig(vocab_size=v, max_position_embeddings=64, **common),
                 t.BertForSequenceClassification, ["query", "value"]),
        "roberta": (lambda: byte_level_bpe(t.RobertaTokenizerFast),
                    lambda v: t.RobertaConfig(vocab_size=v, max_position_embeddings=66, type_vocab_size=1,
                                              layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, **common),
                    t.RobertaForSequenceClassification, ["query", "value"]),
        "xlm-roberta": (lambda: unigram(t.XLMRobertaTokenizerFast),
                        lambda v: t.XLMRobertaConfig(vocab_size=v, max_position_embeddings=66, type_vocab_size=1,
                                                     layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                                                     eos_token_id=2, **common),
                        t.XLMRobertaForSequenceClassification, ["query", "value"]),
        "distilbert": (lambda: wordpiece(t.DistilBertTokenizerFast),
                       lambda v: t.DistilBertConfig(vocab_size=v, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                                    max_position_embeddings=64, num_labels=3, dropout=0.1,
                                                    attention_dropout=0.1, seq_classif_dropout=0.2),
                       t.DistilBertForSequenceClassification, ["q_lin", "v_lin"]),
        "electra": (lambda: wordpiece(t.ElectraTokenizerFast),
                    lambda v: t.ElectraConfig(vocab_size=v, embedding_size=16, max_position_embeddings=64, **common),
                    t.ElectraForSequenceClassification, ["query", "value"]),
    }


def fixtures():
    """Every fixture directory: (tokenizer, config from the tokenizer, class, LoRA targets, the
    masked-LM class whose checkpoint shape is also saved, or None)."""
    t = transformers
    families = {f"families/{name}": (make_tokenizer, lambda tok, c=make_config: c(len(tok)), cls, targets, None)
                for name, (make_tokenizer, make_config, cls, targets) in bert_keyed().items()}
    return families | {f"modern/{name}": entry for name, entry in modern().items()}


def modern():
    t = transformers
    return {
        # 66 positions, 64 for text (RoBERTa's padding offset); a text truncated at them.
        "camembert": (camembert_tokenizer, lambda tok: roberta_like_config(t.CamembertConfig, tok, 66),
                      t.CamembertForSequenceClassification, ["query", "value"], None),
        # 514 positions (all-mpnet-base-v2's): distances past the relative buckets' 128.
        "mpnet": (mpnet_tokenizer, lambda tok: roberta_like_config(t.MPNetConfig, tok, 514),
                  t.MPNetForSequenceClassification, ["q", "v"], None),
        "modernbert": (modernbert_tokenizer, lambda tok: modernbert_config(tok, "mean", False),
                       t.ModernBertForSequenceClassification, ["Wqkv", "Wo"], t.ModernBertForMaskedLM),
        "modernbert-cls": (modernbert_tokenizer, lambda tok: modernbert_config(tok, "cls", True),
                           t.ModernBertForSequenceClassification, ["Wqkv", "Wo"], None),
        "deberta-v3": (deberta_tokenizer, lambda tok: deberta_config(tok, True),
                       t.DebertaV2ForSequenceClassification, ["query_proj", "value_proj"], t.DebertaV2ForMaskedLM),
        "deberta-v2": (deberta_tokenizer, lambda tok: deberta_config(tok, False),
                       t.DebertaV2ForSequenceClassification, ["query_proj", "value_proj", "pos_key_proj"], None),
    }


def long_text(tokenizer):
    words = " ".join(CORPUS * 20).split()
    text = ""
    for word in words:
        candidate = f"{text} {word}".strip()
        if len(tokenizer(candidate)["input_ids"]) > LONG_TOKENS:
            break
        text = candidate
    return text


def main(only):
    check_versions()
    for path, (make_tokenizer, make_config, model_class, targets, mlm_class) in fixtures().items():
        name = path.split("/")[1]
        if only and name not in only:
            continue
        out = FIXTURES / path
        torch.manual_seed(0)
        tokenizer = make_tokenizer()
        config = make_config(tokenizer)
        model = model_class(config).eval()
        model.save_pretrained(out / "model", safe_serialization=True)
        tokenizer.save_pretrained(out / "model")
        base = getattr(model, model.base_model_prefix)
        base.save_pretrained(out / "base-bin", safe_serialization=False)
        if mlm_class is not None:
            torch.manual_seed(2)
            mlm = mlm_class(config).eval()
            getattr(mlm, mlm.base_model_prefix).load_state_dict(base.state_dict())
            mlm.save_pretrained(out / "mlm", safe_serialization=True)
            tokenizer.save_pretrained(out / "mlm")
            if model.base_model_prefix == "deberta":
                # microsoft/deberta-v3-base carries an absolute position table it does not use.
                from safetensors.torch import load_file
                tensors = load_file(out / "mlm" / "model.safetensors")
                tensors["deberta.embeddings.position_embeddings.weight"] = torch.randn(512, 32)
                # transformers 4.57 drops the word embeddings here as "tied" (legacy=False has no
                # decoder weight); the Hub's checkpoints have them.
                word = "deberta.embeddings.word_embeddings.weight"
                tensors.setdefault(word, base.embeddings.word_embeddings.weight.detach().clone().contiguous())
                save_file(tensors, out / "mlm" / "model.safetensors", metadata={"format": "pt"})
        positions = config.max_position_embeddings
        if config.model_type in ("roberta", "xlm-roberta", "camembert", "mpnet"):
            positions -= config.pad_token_id + 1  # positions count from padding_idx + 1

        long = long_text(tokenizer)
        enc = lambda *a: tokenizer(*a, truncation=True, max_length=positions)  # noqa: E731
        lines = [json.dumps({"max_length": positions})]
        lines += [json.dumps({"text": t, "input_ids": enc(t)["input_ids"]}, ensure_ascii=False) for t in TEXTS + [long]]
        pair = {k: v for k, v in enc(*PAIR).items() if k != "attention_mask"}
        lines.append(json.dumps({"a": PAIR[0], "b": PAIR[1], **pair}, ensure_ascii=False))
        (out / "tokens.jsonl").write_text("\n".join(lines) + "\n")

        rows = [enc(t) for t in TEXTS] + [enc(*PAIR)] + [enc(long)]
        batch = tokenizer.pad(rows, return_tensors="pt")
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch and "token_type_ids" in inspect.signature(base.forward).parameters:
            inputs["token_type_ids"] = batch["token_type_ids"]
        with torch.no_grad():
            hidden = base(**inputs).last_hidden_state
            logits = model(**inputs).logits
            mlm_hidden = (getattr(mlm, mlm.base_model_prefix)(**inputs).last_hidden_state
                          if mlm_class is not None else None)

        torch.manual_seed(1)
        peft_model = get_peft_model(model_class.from_pretrained(out / "model"),
                                    LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
                                               target_modules=targets))
        peft_model.train()
        optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
        labels = torch.tensor([0, 1, 2, 1, 0])
        for _ in range(5):
            loss = peft_model(**inputs, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        peft_model.save_pretrained(out / "adapter")
        (out / "adapter" / "README.md").unlink(missing_ok=True)
        reloaded = PeftModel.from_pretrained(model_class.from_pretrained(out / "model"), out / "adapter").eval()
        with torch.no_grad():
            peft_logits = reloaded(**inputs).logits
            merged_logits = reloaded.merge_and_unload()(**inputs).logits

        tensors = {
            "input_ids": batch["input_ids"].contiguous(),
            "attention_mask": batch["attention_mask"].contiguous(),
            "token_type_ids": batch.get("token_type_ids", torch.zeros_like(batch["input_ids"])).contiguous(),
            "last_hidden_state": hidden.contiguous(),
            "logits": logits.contiguous(),
            "peft_logits": peft_logits.contiguous(),
            "merged_logits": merged_logits.contiguous(),
        }
        if mlm_hidden is not None:
            tensors["mlm_last_hidden_state"] = mlm_hidden.contiguous()
        save_file(tensors, out / "golden.safetensors")
        print(f"{name}: batch {tuple(batch['input_ids'].shape)}, logits {logits.tolist()}")


def deberta_spm():
    import io
    import sentencepiece as spm
    out = OUT / "deberta-spm"
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS * 4), model_writer=model, vocab_size=110,
                                   model_type="unigram", pad_id=0, pad_piece="[PAD]", bos_id=1, bos_piece="[CLS]",
                                   eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]",
                                   user_defined_symbols=["<br />"], character_coverage=1.0, seed_sentencepiece_size=1000)
    (out / "spm.model").write_bytes(model.getvalue())
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "vocab_type": "spm"}) + "\n")
    fast = transformers.DebertaV2TokenizerFast(vocab_file=str(out / "spm.model"), do_lower_case=False)
    texts = TEXTS + ["  The   FILM was  ＧＯＯＤ — really!  ", "Ein schöner Film.<br />Sehr schön.", "ﬁne ½ café"]
    lines = [json.dumps({"max_length": 24})]
    for t in texts + [" ".join(CORPUS[:4])]:
        enc = fast(t, truncation=True, max_length=24)
        lines.append(json.dumps({"text": t, "input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]},
                                ensure_ascii=False))
    enc = fast(*PAIR, truncation=True, max_length=24)
    lines.append(json.dumps({"a": PAIR[0], "b": PAIR[1], "input_ids": enc["input_ids"],
                             "token_type_ids": enc["token_type_ids"]}, ensure_ascii=False))
    (out / "tokens.jsonl").write_text("\n".join(lines) + "\n")
    print(f"deberta-spm: {len(fast)} tokens, [MASK] = {fast.convert_tokens_to_ids('[MASK]')}")


if __name__ == "__main__":
    # Names to regenerate (default: all); the tokenizer trainers are not bit-reproducible, so
    # regenerating one leaves the others' committed files as they are.
    only = set(sys.argv[1:])
    main(only)
    if not only or "deberta-spm" in only:
        deberta_spm()
