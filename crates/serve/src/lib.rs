//! `lora serve`: one base model, any number of PEFT adapters, one HTTP server.
//!
//! text-embeddings-inference's `POST /predict` (same request, answer and error bodies) with an
//! `adapter_id` per request; `GET /health`, `/info`, `/metrics`; adapters loaded and unloaded
//! while running (`POST /adapters`, `DELETE /adapters/{name}`). Requests are batched across
//! clients ([`batcher`]), and a batch mixes adapters: the base computation runs once for all its
//! rows, each adapter's update and head on its own ([`lora_adapter::with_adapters`]).
//!
//! The server is generic over the Burn backend; the program picks it (`--device`).

mod api;
mod batcher;
mod metrics;
mod server;

pub use api::{ApiError, ErrorType, LoadRequest, PredictInput, PredictRequest, PredictResponse, Prediction, Sequence};
pub use batcher::BatchLimits;
pub use server::{Base, ServeError, ServeOptions, adapter_name, serve};
