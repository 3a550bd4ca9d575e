//! `lora serve`: one base model, any number of PEFT adapters, one HTTP server.
//!
//! text-embeddings-inference's `POST /predict` (same request, answer and error bodies) with an
//! `adapter_id` per request; `GET /health`, `/info`, `/metrics`; adapters loaded and unloaded
//! while running (`POST /adapters`, `DELETE /adapters/{name}`). Requests are batched across
//! clients ([`batcher`]), and a batch mixes adapters: the base computation runs once for all its
//! rows, each adapter's update and head on its own ([`lora_adapter::with_adapters`]).
//!
//! The server is generic over the Burn backend; the program picks it (`--device`).

#![warn(unreachable_pub)]

/// A line on standard error; a closed or full stderr loses the line, never the server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod adapters;
mod api;
mod batcher;
mod classify;
mod metrics;
mod openapi;
mod routes;
mod server;
mod tokenization;
mod tokens;

pub use adapters::{AdapterError, adapter_name};
pub use api::{
    ApiError, DecodeRequest, ErrorType, FunctionToApply, Ids, LoadRequest, Parameters, PredictInput, PredictRequest,
    PredictResponse, Prediction, Rank, RerankRequest, Sequence, SimpleToken, TextOrTexts, TokenizeRequest,
};
pub use batcher::BatchLimits;
pub use server::{Base, ServeError, ServeOptions, serve};
