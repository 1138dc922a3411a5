//! The `bigpipe` binary: parse arguments, load config, start, wait for a signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use bigpipe::config::{self, Settings};
use bigpipe::logging::{self, Target};
use bigpipe::shutdown::{Signal, Signals};
use bigpipe::stats::{self, Stats};

/// A durable, rate-limited asynchronous HTTP call pipe on Kafka.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Config file: `.toml`, or the Go version's flat-key `.json`.
    #[arg(long, short = 'c', default_value = "conf/bigpipe.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config, print every problem, exit non-zero if there is any.
    CheckConfig,
    /// Call the admin API of a running bigpipe (URL and token from the config's
    /// `http.admin.*`, or --url and --token-file).
    Admin(Box<bigpipe::cli::AdminArgs>),
}

/// Exit status for a bad config (sysexits `EX_CONFIG`).
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Admin(admin)) = args.command {
        return bigpipe::cli::run(&args.config, *admin);
    }
    let settings = match config::load(&args.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: invalid config:\n{e}", args.config.display());
            return ExitCode::from(EX_CONFIG);
        }
    };
    for warning in &settings.warnings {
        eprintln!("{}: warning: {warning}", args.config.display());
    }
    if let Some(Command::CheckConfig) = args.command {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    match run(&args.config, &settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bigpipe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let stats = Arc::new(Stats::new(settings.kafka.topics.iter().map(|t| t.name.as_str())));
    stats.set_max_hosts(settings.metrics.max_hosts);
    let target = match &settings.log.directory {
        Some(dir) => Target::Directory(dir.clone()),
        None => Target::Stderr,
    };
    let (log, guard) = logging::init(
        settings.log.level,
        target,
        settings.log.queue_size,
        Arc::clone(&stats.log_dropped),
    )?;
    for warning in &settings.warnings {
        slog::warn!(log, "config warning"; "warning" => warning);
    }
    let listeners = bigpipe::app::Listeners::bind(settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bigpipe")
        .build()?;
    runtime.block_on(async {
        // Installed before anything starts, so an early signal is not lost.
        let mut signals = Signals::new()?;
        let mut running = bigpipe::app::start(settings, listeners, log.clone(), stats)?;
        loop {
            match signals.next().await {
                Signal::Stop => break,
                Signal::ScaleDown => {
                    slog::info!(
                        log,
                        "scale-down signal: static group members will leave their groups"
                    );
                    running.scale_down();
                    break;
                }
                Signal::Reload => match config::load(path) {
                    Ok(new) => {
                        for warning in &new.warnings {
                            slog::warn!(log, "config warning"; "warning" => warning);
                        }
                        guard.set_level(new.log.level);
                        // A new cap applies to hosts not yet labelled; labelled ones keep theirs.
                        running.stats().set_max_hosts(new.metrics.max_hosts);
                        match running.reload(new).await {
                            Ok(_) => stats::inc(&running.stats().reloads),
                            Err(e) => {
                                stats::inc(&running.stats().reloads_rejected);
                                slog::error!(log, "reload failed part-way"; "error" => %e);
                            }
                        }
                    }
                    Err(e) => {
                        stats::inc(&running.stats().reloads_rejected);
                        // The same list check-config prints; the old config stays in force.
                        for problem in &e.problems {
                            slog::error!(log, "reload rejected, keeping the running config";
                                "key" => &problem.key, "problem" => &problem.message);
                        }
                    }
                },
            }
        }
        slog::info!(log, "stop signal received");
        running.shutdown(settings.shutdown.grace).await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    // Dropping the runtime ends the remaining blocking threads; then flush the logs.
    drop(runtime);
    drop(log);
    drop(guard);
    Ok(())
}
