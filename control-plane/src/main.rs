use clap::Parser;
use meshauth_cp::cli::{run_client, Cli, Cmd};

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve { config } => {
            // Logs go to stderr, coloured only on a terminal: a file, a pipe or a
            // container runtime gets plain text.
            use std::io::IsTerminal;
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("MESHAUTH_LOG")
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(meshauth_cp::serve::serve(config.as_deref())),
                Err(e) => Err(format!("tokio runtime: {e}")),
            }
        }
        cmd => run_client(cli.conn, cmd),
    };
    if let Err(e) = result {
        eprintln!("meshauth: {e}");
        std::process::exit(1);
    }
}
