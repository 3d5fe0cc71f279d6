//! CSV: tokenizing, type inference and decoding into Arrow.

pub mod decode;
pub mod infer;
pub mod tokenize;

pub use decode::{CsvDecoder, CsvLayout};
