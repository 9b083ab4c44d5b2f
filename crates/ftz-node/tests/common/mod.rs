//! What the ftz-node binary tests share: a development federation written to disk, each zone
//! on ports from the OS (none of them started).

use std::path::Path;

use ftz_core::{Clock, SystemClock, ZoneId};
use ftz_devkit::dev::{self, DevFederation, DevSpec, DevZoneSpec};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A federation `id` of `zones` in `root`, each with an ops listener when `ops`.
pub fn federation(root: &Path, id: &str, zones: &[&str], ops: bool) -> DevFederation {
    let zones = zones
        .iter()
        .map(|z| DevZoneSpec {
            id: ZoneId::new(*z).unwrap(),
            display_name: dev::display_name(z),
            endpoint: format!("127.0.0.1:{}", free_port()),
            http_endpoint: None,
            ops_endpoint: ops.then(|| format!("127.0.0.1:{}", free_port())),
        })
        .collect();
    let spec = DevSpec { federation_id: id.into(), zones, quorum: 2, validity_days: 30, now_ms: SystemClock.now_ms() };
    dev::create(&spec, root).unwrap()
}
