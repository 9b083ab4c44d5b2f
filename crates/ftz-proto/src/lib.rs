//! The ftz.v1 API: generated messages, clients and servers. Nothing else lives here, so every
//! other crate sees one definition of the wire format (`proto/ftz/v1/*.proto`).

#![forbid(unsafe_code)]

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("ftz.v1");

    /// The encoded `FileDescriptorSet` of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ftz_v1_descriptor");
}

pub use v1::*;
