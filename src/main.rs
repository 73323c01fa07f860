//! The `stagecast` binary: see `stagecast --help`.

/// See Cargo.toml: the system allocator dominated the profile under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stagecast::cli::main()
}
