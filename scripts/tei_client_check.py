#!/usr/bin/env python3
"""huggingface_hub's InferenceClient against a running `lora serve`, unchanged: the usual Python
way to call a TEI classifier endpoint (it posts to the base URL, `POST /`).

    python3 -m venv .venv-tei && .venv-tei/bin/pip install huggingface_hub==2.4.0
    .venv-tei/bin/python scripts/tei_client_check.py http://127.0.0.1:8080 "A wonderful film."

Prints what the client returned, as JSON: `text_classification(text)`, with `top_k=1`, and with
`function_to_apply="sigmoid"`. tests/tei.rs runs it when LORA_TEST_PYTHON names a Python with
huggingface_hub (.ci/run makes one).
"""
import json
import sys

from huggingface_hub import InferenceClient


def plain(elements):
    return [{"score": e.score, "label": e.label} for e in elements]


def main():
    base_url, text = sys.argv[1], sys.argv[2]
    client = InferenceClient(base_url=base_url, timeout=60)
    out = {
        "text_classification": plain(client.text_classification(text)),
        "top_k_1": plain(client.text_classification(text, top_k=1)),
        "sigmoid": plain(client.text_classification(text, function_to_apply="sigmoid")),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
