//! The API's description: OpenAPI 3.0 at `GET /api-doc/openapi.json` (every route, request and
//! answer, `adapter_id` and the adapter API included) and `GET /docs`, a page that renders it.
//! Both are served from the binary: nothing is fetched at run time, no CDN.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use burn::tensor::backend::Backend;
use serde_json::{Value, json};

use crate::routes::AppState;

/// `GET /api-doc/openapi.json`, with this server's model and limits in the description.
pub(crate) async fn document<B: Backend>(State(state): State<Arc<AppState<B>>>) -> Json<Value> {
    let mut doc = spec();
    doc["info"]["description"] = json!(format!(
        "{} Serving {} ({}) on {}; at most {} inputs a request, {} tokens an input.",
        doc["info"]["description"].as_str().unwrap_or_default(),
        state.model_id,
        state.model_type,
        state.device_name,
        state.options.max_client_batch_size,
        state.max_input_length
    ));
    Json(doc)
}

/// `GET /docs`.
pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A JSON body of the schema `name`.
fn body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema(name)}}})
}

/// An answer of status `code` with a JSON body of the schema `name`.
fn answer(description: &str, name: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema(name)}}})
}

/// TEI's errors for a route that runs the model.
fn model_errors(mut responses: Value) -> Value {
    let errors = [
        ("400", "`inputs` or `texts` is empty (Empty), or the body is not JSON"),
        ("401", "`--api-key` is set and `Authorization: Bearer KEY` is missing or wrong (Unauthorized)"),
        ("413", "the body is over `--payload-limit`"),
        ("415", "the body is not sent as `Content-Type: application/json`"),
        (
            "422",
            "a field is wrong: types, unknown field, unknown `adapter_id`, a text too long without `truncate`, too many inputs (Validation, Tokenizer)",
        ),
        ("424", "the forward failed or gave non-finite logits (Backend)"),
        ("429", "more than `--max-concurrent-requests` requests at once (Overloaded)"),
        ("503", "no adapter is loaded, or the server is stopping (Unhealthy)"),
    ];
    for (code, description) in errors {
        responses[code] = answer(description, "ErrorResponse");
    }
    responses
}

/// The document without this server's particulars (a unit test checks it is whole).
pub(crate) fn spec() -> Value {
    let predict = json!({
        "tags": ["Text Embeddings Inference"],
        "summary": "Classify texts or text pairs with an adapter",
        "description": "TEI's /predict, plus `adapter_id`. With `parameters` (the Hugging Face inference clients' body) the answer is one list of classes per input, as the Inference API's.",
        "requestBody": body("PredictRequest"),
        "responses": model_errors(json!({"200": answer("each class with its score, highest first: a list for one input, a list of lists for a batch (or with `parameters`)", "PredictResponse")})),
    });
    let health = json!({
        "tags": ["Text Embeddings Inference"],
        "summary": "Health: 200 while the server answers",
        "responses": {"200": {"description": "ready"}, "503": answer("the batching thread has stopped", "ErrorResponse")},
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "lora serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Many PEFT LoRA adapters over one encoder, behind text-embeddings-inference's API. Every route but GET /health, /, /ping, /docs and this document needs `Authorization: Bearer KEY` when the server has --api-key.",
            "license": {"name": "MIT OR Apache-2.0"},
        },
        "paths": {
            "/predict": {"post": predict.clone()},
            "/": {"post": predict.clone(), "get": health.clone()},
            "/invocations": {"post": predict},
            "/rerank": {"post": {
                "tags": ["Text Embeddings Inference"],
                "summary": "Rank texts against a query with a reranker adapter (one output)",
                "description": "Each (query, text) pair is scored by the sigmoid of the adapter's logit (`raw_scores`: the logit), answers highest first. The adapter must have `num_labels` 1.",
                "requestBody": body("RerankRequest"),
                "responses": model_errors(json!({"200": answer("the texts' ranks, highest score first", "RerankResponse")})),
            }},
            "/tokenize": {"post": {
                "tags": ["Text Embeddings Inference"],
                "summary": "The model's tokens of each input, never truncated",
                "requestBody": body("TokenizeRequest"),
                "responses": model_errors(json!({"200": answer("one list of tokens per input", "TokenizeResponse")})),
            }},
            "/decode": {"post": {
                "tags": ["Text Embeddings Inference"],
                "summary": "The text of token ids",
                "requestBody": body("DecodeRequest"),
                "responses": model_errors(json!({"200": answer("one text per list of ids", "DecodeResponse")})),
            }},
            "/health": {"get": health.clone()},
            "/ping": {"get": health},
            "/info": {"get": {
                "tags": ["Text Embeddings Inference"],
                "summary": "The base model, device, limits and adapters",
                "responses": {"200": answer("what is served", "Info")},
            }},
            "/metrics": {"get": {
                "tags": ["Text Embeddings Inference"],
                "summary": "Prometheus (OpenMetrics) text",
                "responses": {"200": {"description": "the metrics", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}},
            }},
            "/adapters": {
                "get": {
                    "tags": ["Adapters"],
                    "summary": "The adapters loaded",
                    "responses": {"200": answer("each adapter", "Adapters")},
                },
                "post": {
                    "tags": ["Adapters"],
                    "summary": "Load an adapter from a directory on the server's machine or a Hub id (unless --no-adapter-api)",
                    "requestBody": body("LoadRequest"),
                    "responses": {
                        "201": answer("loaded", "Adapter"),
                        "403": answer("outside --adapter-root", "ErrorResponse"),
                        "409": answer("the name is taken", "ErrorResponse"),
                        "422": answer("the adapter cannot be read or does not fit the base", "ErrorResponse"),
                    },
                },
            },
            "/adapters/{name}": {"delete": {
                "tags": ["Adapters"],
                "summary": "Unload an adapter (unless --no-adapter-api)",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": answer("unloaded", "Adapter"), "404": answer("no such adapter", "ErrorResponse")},
            }},
            "/docs": {"get": {
                "tags": ["Documentation"],
                "summary": "This description, rendered",
                "responses": {"200": {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
            }},
            "/api-doc/openapi.json": {"get": {
                "tags": ["Documentation"],
                "summary": "This description (OpenAPI 3.0)",
                "responses": {"200": {"description": "the document", "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
        },
        "components": {"schemas": schemas()},
    })
}

fn schemas() -> Value {
    let string = json!({"type": "string"});
    let single = json!({"type": "array", "items": string, "minItems": 1, "maxItems": 1, "description": "one text"});
    let pair = json!({"type": "array", "items": string, "minItems": 2, "maxItems": 2, "description": "a pair [text, text_pair]"});
    let prediction = json!({"type": "object", "required": ["score", "label"], "properties": {
        "score": {"type": "number", "example": 0.93}, "label": {"type": "string", "example": "pos"}}});
    let direction = json!({"type": "string", "enum": ["left", "right"], "default": "right",
        "description": "which end `truncate` cuts"});
    let adapter_id = json!({"type": "string", "nullable": true,
        "description": "the adapter to use (optional when one is loaded or --default-adapter is set)"});
    json!({
        "PredictInput": {
            "description": "A text, a pair [text, text_pair] (a flat list of two is one pair), or a batch: a list of [text] and [text, text_pair] lists.",
            "oneOf": [string, pair, {"type": "array", "items": {"oneOf": [single, pair]}, "description": "a batch"}],
            "example": "A wonderful film.",
        },
        "PredictRequest": {"type": "object", "required": ["inputs"], "additionalProperties": false, "properties": {
            "inputs": schema("PredictInput"),
            "truncate": {"type": "boolean", "nullable": true, "default": false, "description": "cut texts longer than the model takes (else they are refused)"},
            "truncation_direction": direction,
            "raw_scores": {"type": "boolean", "default": false, "description": "the logits instead of probabilities"},
            "adapter_id": adapter_id,
            "parameters": schema("Parameters"),
        }},
        "Parameters": {"type": "object", "nullable": true, "additionalProperties": false,
            "description": "The Hugging Face inference clients' text-classification parameters; a body with them gets one list of classes per input.",
            "properties": {
                "top_k": {"type": "integer", "minimum": 1, "nullable": true, "description": "only the k highest classes"},
                "function_to_apply": {"type": "string", "enum": ["softmax", "sigmoid", "none"], "nullable": true,
                    "description": "what turns logits into scores (default: the adapter's task)"},
            }},
        "Prediction": prediction,
        "PredictResponse": {"oneOf": [
            {"type": "array", "items": schema("Prediction")},
            {"type": "array", "items": {"type": "array", "items": schema("Prediction")}},
        ]},
        "RerankRequest": {"type": "object", "required": ["query", "texts"], "additionalProperties": false, "properties": {
            "query": {"type": "string", "example": "What is Deep Learning?"},
            "texts": {"type": "array", "items": string, "example": ["Deep Learning is ..."]},
            "truncate": {"type": "boolean", "nullable": true, "default": false},
            "truncation_direction": direction,
            "raw_scores": {"type": "boolean", "default": false, "description": "the logit instead of its sigmoid"},
            "return_text": {"type": "boolean", "default": false},
            "adapter_id": adapter_id,
        }},
        "Rank": {"type": "object", "required": ["index", "score"], "properties": {
            "index": {"type": "integer", "description": "the text's place in `texts`"},
            "text": {"type": "string", "description": "with `return_text`"},
            "score": {"type": "number"},
        }},
        "RerankResponse": {"type": "array", "items": schema("Rank")},
        "TokenizeRequest": {"type": "object", "required": ["inputs"], "additionalProperties": false, "properties": {
            "inputs": {"oneOf": [string, {"type": "array", "items": string}]},
            "add_special_tokens": {"type": "boolean", "default": true},
            "prompt_name": {"type": "string", "nullable": true, "description": "not supported: only null"},
        }},
        "SimpleToken": {"type": "object", "required": ["id", "text", "special"], "properties": {
            "id": {"type": "integer"},
            "text": {"type": "string", "description": "the text's own bytes start..stop; a special token's vocabulary text"},
            "special": {"type": "boolean"},
            "start": {"type": "integer", "nullable": true, "description": "byte offset in the input; null for a special token"},
            "stop": {"type": "integer", "nullable": true},
        }},
        "TokenizeResponse": {"type": "array", "items": {"type": "array", "items": schema("SimpleToken")}},
        "DecodeRequest": {"type": "object", "required": ["ids"], "additionalProperties": false, "properties": {
            "ids": {"oneOf": [
                {"type": "array", "items": {"type": "integer", "minimum": 0}},
                {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}},
            ]},
            "skip_special_tokens": {"type": "boolean", "default": true},
        }},
        "DecodeResponse": {"type": "array", "items": string},
        "ErrorResponse": {"type": "object", "required": ["error", "error_type"], "properties": {
            "error": {"type": "string"},
            "error_type": {"type": "string", "enum": ["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty", "Unauthorized"]},
        }},
        "Adapter": {"type": "object", "properties": {
            "name": string, "path": string, "task": string,
            "labels": {"type": "array", "items": string},
            "r": {"type": "integer"}, "lora_alpha": {"type": "number"},
            "target_modules": {"type": "array", "items": string},
            "modules_to_save": {"type": "array", "items": string},
            "bytes": {"type": "integer"},
        }},
        "Adapters": {"type": "array", "items": schema("Adapter")},
        "LoadRequest": {"type": "object", "required": ["name", "path"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "description": "what requests give as `adapter_id`"},
            "path": {"type": "string", "description": "a directory on the server's machine, or a Hub id"},
        }},
        "Info": {"type": "object", "properties": {
            "model_id": string, "model_type": string, "model_dtype": string, "device": string,
            "max_input_length": {"type": "integer"}, "max_concurrent_requests": {"type": "integer"},
            "max_client_batch_size": {"type": "integer"}, "max_batch_tokens": {"type": "integer"},
            "max_wait_ms": {"type": "number"}, "payload_limit": {"type": "integer"},
            "default_adapter": {"type": "string", "nullable": true}, "adapter_api": {"type": "boolean"},
            "version": string, "adapters": schema("Adapters"),
        }},
    })
}

/// `/docs`: the document rendered by a few lines of script, from this server.
const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lora serve: API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ddd}
.route{margin:1rem 0;padding:.5rem 1rem;border:1px solid #ddd;border-radius:6px}
.method{font-weight:bold;text-transform:uppercase;margin-right:.5rem}
pre{background:#f6f6f6;padding:.5rem;overflow:auto;font-size:13px}
</style></head>
<body><h1>lora serve</h1><p id="about">Loading <a href="/api-doc/openapi.json">/api-doc/openapi.json</a>...</p>
<div id="routes"></div><h2>Schemas</h2><div id="schemas"></div>
<script>
fetch('/api-doc/openapi.json').then(r => r.json()).then(doc => {
  const esc = s => String(s).replace(/[&<>]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;'})[c]);
  document.getElementById('about').innerHTML = esc(doc.info.description) +
    ' (<a href="/api-doc/openapi.json">OpenAPI ' + esc(doc.openapi) + '</a>)';
  const ref = s => s && s.$ref ? s.$ref.split('/').pop() : null;
  let html = '';
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const request = op.requestBody ? ref(op.requestBody.content['application/json'].schema) : null;
      const answers = Object.entries(op.responses).map(([code, r]) => {
        const c = r.content && r.content['application/json'];
        const name = c ? ref(c.schema) : null;
        return '<li>' + code + ': ' + esc(r.description) + (name ? ' (<a href="#' + name + '">' + name + '</a>)' : '') + '</li>';
      }).join('');
      html += '<div class="route"><span class="method">' + method + '</span><code>' + esc(path) + '</code> ' +
        esc(op.summary || '') + (op.description ? '<p>' + esc(op.description) + '</p>' : '') +
        (request ? '<p>Body: <a href="#' + request + '">' + request + '</a></p>' : '') + '<ul>' + answers + '</ul></div>';
    }
  }
  document.getElementById('routes').innerHTML = html;
  document.getElementById('schemas').innerHTML = Object.entries(doc.components.schemas).map(([name, s]) =>
    '<h3 id="' + name + '">' + name + '</h3><pre>' + esc(JSON.stringify(s, null, 2)) + '</pre>').join('');
}).catch(e => { document.getElementById('about').textContent = 'Cannot read /api-doc/openapi.json: ' + e; });
</script></body></html>
"##;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every `$ref` in `value`.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_whole() {
        let doc = spec();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20);
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(doc["components"]["schemas"].get(name).is_some(), "{r} is not defined");
        }
        for (path, methods) in doc["paths"].as_object().unwrap() {
            for (method, op) in methods.as_object().unwrap() {
                assert!(["get", "post", "delete"].contains(&method.as_str()), "{method} {path}");
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path}");
            }
        }
        // The fields each request takes are the structs' (deny_unknown_fields): a field added to
        // one and not here fails below.
        let props = |name: &str| -> Vec<String> {
            let mut p: Vec<String> =
                doc["components"]["schemas"][name]["properties"].as_object().unwrap().keys().cloned().collect();
            p.sort();
            p
        };
        assert_eq!(
            props("PredictRequest"),
            ["adapter_id", "inputs", "parameters", "raw_scores", "truncate", "truncation_direction"]
        );
        assert_eq!(
            props("RerankRequest"),
            ["adapter_id", "query", "raw_scores", "return_text", "texts", "truncate", "truncation_direction"]
        );
        let every = r#"{"inputs": "a", "truncate": true, "truncation_direction": "left", "raw_scores": false,
            "adapter_id": "x", "parameters": {"top_k": 1, "function_to_apply": "none"}}"#;
        assert!(serde_json::from_str::<crate::api::PredictRequest>(every).is_ok());
        let every = r#"{"query": "q", "texts": ["a"], "truncate": true, "truncation_direction": "left",
            "raw_scores": true, "return_text": true, "adapter_id": "x"}"#;
        assert!(serde_json::from_str::<crate::api::RerankRequest>(every).is_ok());
        assert_eq!(props("TokenizeRequest"), ["add_special_tokens", "inputs", "prompt_name"]);
        assert_eq!(props("DecodeRequest"), ["ids", "skip_special_tokens"]);
    }
}
