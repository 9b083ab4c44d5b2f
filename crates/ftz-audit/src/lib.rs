//! The verifiable audit log's algorithms. Pure: no I/O, no clock; the store keeps the nodes,
//! the node signs, the auditor verifies, all with these functions.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod entry;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod offline;
