use std::process::ExitCode;

fn main() -> ExitCode {
    virtsync::cli::main()
}
