use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = bitfountain::cli::Cli::parse();
    bitfountain::logging::init(cli.verbose);
    match bitfountain::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the problem and its causes; never a backtrace.
            eprintln!("bitfountain: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
