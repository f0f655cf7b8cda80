//! `mycelium check`: validate a config file without a running broker, and say what the broker
//! would still refuse in it (`mycelium_broker::preflight`).

use crate::output::outln;
use std::path::PathBuf;
use std::process::ExitCode;

use mycelium_config::BrokerConfig;

/// Arguments of `mycelium check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The config file to validate (environment overrides are applied, as `run` would)
    #[arg(long, default_value = "broker.toml")]
    config: PathBuf,
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    match BrokerConfig::from_file(&args.config) {
        Ok(config) => {
            let refused = mycelium_broker::preflight(&config);
            if !refused.is_empty() {
                for problem in refused {
                    outln!("{}: {problem}", args.config.display());
                }
                return Ok(ExitCode::FAILURE);
            }
            let topics: Vec<String> = config
                .topics
                .iter()
                .map(|t| format!("{} ({})", t.name, t.routing))
                .collect();
            outln!(
                "{}: ok: socket {}, {} topic(s){}{}",
                args.config.display(),
                config.server.socket_path.display(),
                topics.len(),
                if topics.is_empty() { "" } else { ": " },
                topics.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            for line in error.diagnostics() {
                outln!("{line}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
