#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    ocisync::main()
}
