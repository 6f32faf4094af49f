fn main() -> std::process::ExitCode {
    nsdb::cli::main()
}
