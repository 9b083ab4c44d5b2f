//! One module per command group.

pub mod admin;
pub mod agreement;
pub mod dev;
pub mod issue;
pub mod registry;
pub mod verify;
