//! The rules that decide what a zone accepts from another: mutual-recognition agreements and
//! the verdict on a record (authentic, status, recognised). Pure: no I/O, no clock of its own;
//! the node and the offline verifier call the same functions with the same inputs.

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod agreement;
pub mod bundle;
pub mod diff;
pub mod dp;
pub mod examples;
pub mod exchange;
pub mod rows;
pub mod transform;
pub mod verdict;

#[cfg(test)]
mod testkit;

pub use agreement::{Agreement, AgreementError};
pub use verdict::{Recognition, Verdict, VerdictContext, evaluate};
