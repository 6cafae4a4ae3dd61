//! `switchboard-load`: a load generator for Socket.IO v4 servers that implement the relay events
//! (`join`, `leave`, `publish` with acks), and a runner that starts the servers for it.
//!
//! Layout: [`cli`] (options) → [`scenario`] (what each scenario reports) → [`coord`] (worker
//! processes, progress, /proc sampling, merging) → [`worker`] (connections, publishing,
//! counting) over [`client`] (the Socket.IO client) and [`plan`] (who connects where and
//! publishes what); [`stats`] and [`procstat`] hold the figures; [`runner`] is `run`.

mod cli;
mod client;
mod coord;
mod plan;
mod polling;
mod procstat;
mod redis_procs;
mod runner;
mod scenario;
mod stats;
mod worker;

use clap::Parser;
use std::process::ExitCode;

/// Exit status for invalid options (EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        cli::Command::Worker { spec } => match worker::main(&spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard-load worker: {e}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Run(a) => match runner::run(&a) {
            Ok(status) if status.success() => ExitCode::SUCCESS,
            Ok(status) => ExitCode::from(status.code().map_or(1, |c| c.clamp(1, 255) as u8)),
            Err(scenario::Failure::Usage(e)) => {
                eprintln!("switchboard-load run: {e}");
                ExitCode::from(EXIT_USAGE)
            }
            Err(scenario::Failure::Run(e)) => {
                eprintln!("switchboard-load run: {e}");
                ExitCode::FAILURE
            }
        },
        command => scenario_main(command),
    }
}

fn scenario_main(command: cli::Command) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard-load: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (result, fail_on_loss) = rt.block_on(async {
        match &command {
            cli::Command::Idle(a) => (scenario::idle(a).await, a.common.fail_on_loss),
            cli::Command::Fanout(a) => (scenario::load("fanout", a).await, a.common.fail_on_loss),
            cli::Command::Crossnode(a) => {
                (scenario::load("crossnode", a).await, a.common.fail_on_loss)
            }
            cli::Command::Storm(a) => (scenario::storm(a).await, a.common.fail_on_loss),
            cli::Command::Sweep(a) => (scenario::sweep(a).await, a.load.common.fail_on_loss),
            cli::Command::Soak(a) => (scenario::soak(a).await, a.load.common.fail_on_loss),
            _ => (
                Err(scenario::Failure::Usage("not a scenario".to_owned())),
                false,
            ),
        }
    });
    match result {
        Ok(report) => {
            report.print();
            if let Some(why) = &report.failed {
                eprintln!("switchboard-load: {why}");
                return ExitCode::FAILURE;
            }
            if fail_on_loss && report.lossy {
                eprintln!(
                    "switchboard-load: loss, failures or disconnects occurred (--fail-on-loss)"
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(scenario::Failure::Usage(e)) => {
            eprintln!("switchboard-load: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(scenario::Failure::Run(e)) => {
            eprintln!("switchboard-load: {e}");
            ExitCode::FAILURE
        }
    }
}
