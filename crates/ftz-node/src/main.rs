//! `ftz-node`: run a zone node (see `ftz_node::process`).

fn main() -> std::process::ExitCode {
    ftz_node::process::main()
}
