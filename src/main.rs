fn main() -> std::process::ExitCode {
    match likeguard::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("likeguard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
