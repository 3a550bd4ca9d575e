#!/usr/bin/env python3
"""Golden fixtures for the RoBERTa, XLM-RoBERTa, DistilBERT and ELECTRA families
(crates/encoders/tests/families.rs).

For each family, under crates/encoders/tests/fixtures/families/<model_type>/:
  model/               a tiny randomly initialised <Family>ForSequenceClassification saved by
                       transformers (safetensors), with a tiny tokenizer of the family's kind:
                       byte-level BPE (RoBERTa), Unigram with Metaspace (XLM-R), WordPiece
                       (DistilBERT, ELECTRA), trained on the sentences below, saved by the
                       family's fast tokenizer class
  base-bin/            the same base model saved alone as `pytorch_model.bin` (keys without the
                       base-model prefix, no head), as older and base checkpoints come
  adapter/             a PEFT LoRA adapter (SEQ_CLS: the head is trained and saved) after 5 AdamW
                       steps, PeftModel.save_pretrained
  golden.safetensors   a padded batch (three texts, one sentence pair, one text longer than the
                       model's positions, tokenized with truncation as transformers does), the
                       base model's last hidden state and logits, and the logits with the
                       adapter (eval mode)
  tokens.jsonl         the model's positions, then the texts and the pair with the ids (and token
                       types) the fast tokenizer gives each

Rerun (pinned versions, see docs/golden-fixtures.md):
  .venv/bin/python scripts/golden_families.py
"""
import json
from pathlib import Path

import peft
import tokenizers
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2", "tokenizers": "0.20.3"}
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "encoders" / "tests" / "fixtures" / "families"

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
LONG = " ".join(CORPUS[:8] * 2)  # longer than the model's positions: truncated


def check_versions():
    found = {
        "torch": torch.__version__.split("+")[0],
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "tokenizers": tokenizers.__version__,
    }
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


def families():
    t = transformers
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, num_labels=3,
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return {
        "roberta": (byte_level_bpe(t.RobertaTokenizerFast),
                    lambda v: t.RobertaConfig(vocab_size=v, max_position_embeddings=66, type_vocab_size=1,
                                              layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, **common),
                    t.RobertaForSequenceClassification, ["query", "value"]),
        "xlm-roberta": (unigram(t.XLMRobertaTokenizerFast),
                        lambda v: t.XLMRobertaConfig(vocab_size=v, max_position_embeddings=66, type_vocab_size=1,
                                                     layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                                                     eos_token_id=2, **common),
                        t.XLMRobertaForSequenceClassification, ["query", "value"]),
        "distilbert": (wordpiece(t.DistilBertTokenizerFast),
                       lambda v: t.DistilBertConfig(vocab_size=v, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                                    max_position_embeddings=64, num_labels=3, dropout=0.1,
                                                    attention_dropout=0.1, seq_classif_dropout=0.2),
                       t.DistilBertForSequenceClassification, ["q_lin", "v_lin"]),
        "electra": (wordpiece(t.ElectraTokenizerFast),
                    lambda v: t.ElectraConfig(vocab_size=v, embedding_size=16, max_position_embeddings=64, **common),
                    t.ElectraForSequenceClassification, ["query", "value"]),
    }


def main():
    check_versions()
    for model_type, (tokenizer, make_config, model_class, targets) in families().items():
        out = OUT / model_type
        torch.manual_seed(0)
        config = make_config(len(tokenizer))
        model = model_class(config).eval()
        model.save_pretrained(out / "model", safe_serialization=True)
        tokenizer.save_pretrained(out / "model")
        # The base model alone, as an older checkpoint: pytorch_model.bin, no prefix, no head.
        getattr(model, model.base_model_prefix).save_pretrained(out / "base-bin", safe_serialization=False)
        positions = config.max_position_embeddings - (config.pad_token_id + 1 if "roberta" in model_type else 0)

        enc = lambda *a: tokenizer(*a, truncation=True, max_length=positions)  # noqa: E731
        tokens = {
            "texts": [{"text": t, "input_ids": enc(t)["input_ids"]} for t in TEXTS + [LONG]],
            "pairs": [{"a": PAIR[0], "b": PAIR[1], **{k: v for k, v in enc(*PAIR).items() if k != "attention_mask"}}],
        }
        lines = [json.dumps({"max_length": positions})]
        lines += [json.dumps(item, ensure_ascii=False) for item in tokens["texts"] + tokens["pairs"]]
        (out / "tokens.jsonl").write_text("\n".join(lines) + "\n")

        pair = tokenizer(*PAIR, truncation=True, max_length=positions)
        rows = [enc(t) for t in TEXTS] + [pair] + [enc(LONG)]
        batch = tokenizer.pad(rows, return_tensors="pt")
        if "token_type_ids" not in batch:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if model_type != "distilbert":
            inputs["token_type_ids"] = batch["token_type_ids"]
        with torch.no_grad():
            base = getattr(model, model.base_model_prefix)
            hidden = base(**inputs).last_hidden_state
            logits = model(**inputs).logits

        # PEFT: the recipe's LoRA on the family's targets, trained 5 steps so that A, B and the
        # head all move.
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

        save_file(
            {
                "input_ids": batch["input_ids"].contiguous(),
                "attention_mask": batch["attention_mask"].contiguous(),
                "token_type_ids": batch["token_type_ids"].contiguous(),
                "last_hidden_state": hidden.contiguous(),
                "logits": logits.contiguous(),
                "peft_logits": peft_logits.contiguous(),
            },
            out / "golden.safetensors",
        )
        print(model_type, "vocab", len(tokenizer), "positions", positions, "logits", logits[0].tolist())


if __name__ == "__main__":
    main()
