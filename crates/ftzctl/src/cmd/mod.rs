//! One module per command group.

pub mod admin;
pub mod agreement;
pub mod audit;
pub mod ca;
pub mod data;
#[cfg(feature = "dev")]
pub mod dev;
pub mod issue;
pub mod keys;
pub mod policy;
pub mod registry;
pub mod verify;
