//! One module per command group.

pub mod admin;
pub mod agreement;
pub mod data;
pub mod dev;
pub mod issue;
pub mod policy;
pub mod registry;
pub mod verify;
