//! The `portcullis` binary: everything lives in the library; see `portcullis --help`.

fn main() -> std::process::ExitCode {
    portcullis::cli::run()
}
