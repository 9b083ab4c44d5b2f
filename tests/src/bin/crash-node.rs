//! The `ftz-node` process under another name, so that the crash harness in this package can
//! start, kill and restart real node processes (Cargo gives integration tests the paths of
//! their own package's binaries only).

fn main() -> std::process::ExitCode {
    ftz_node::process::main()
}
