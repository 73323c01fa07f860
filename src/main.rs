//! The `stagecast` binary: see `stagecast --help`.

fn main() -> std::process::ExitCode {
    stagecast::cli::main()
}
