//! The development kit: what the demo, the benchmark and the tests use to stand up whole
//! federations, and nothing a production node needs.
//!
//! - [`balancer`]: a TCP load balancer (TLS passed through) in front of a zone's replicas;
//! - [`dev`]: a development federation on disk (zone CAs, node and user certificates, keys,
//!   node configs, client profiles, one registry signed by every authority), as `ftzctl dev
//!   init` writes it, and helpers that sign agreements and policies with its authority keys;
//! - [`pkcs12`]: the users' certificates and keys as PKCS#12 files, for a browser;
//! - [`local`]: that federation's nodes started in this process on 127.0.0.1;
//! - [`processes`]: the same nodes as processes of their own (the crash harness kills them, the
//!   benchmark reads their memory), on sled or PostgreSQL, a zone's node as one process or as
//!   replicas behind a [`balancer::Balancer`];
//! - [`postgres`]: a throwaway PostgreSQL cluster in a temporary directory (the `ftz-pgtest`
//!   crate), for the PostgreSQL engine's tests and benchmark.
//!
//! Every private key is generated here, on the machine that uses it; none is ever committed.

#![forbid(unsafe_code)]

pub mod balancer;
pub mod dev;
pub mod local;
pub mod pkcs12;
pub mod processes;

pub use dev::{DevFederation, DevSpec, DevZone, DevZoneSpec};
pub use ftz_pgtest as postgres;
pub use local::{LocalError, LocalFederation};
pub use processes::{ProcessFederation, ProcessOptions, Replica};
