//! `pocket-ic-server`: the PocketIC REST API over the in-process replica. Launched by the `pocket-ic` crate and
//! `@dfinity/pic` as `pocket-ic-server [--ttl S] --port-file PATH`; see README.md.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pocket_ic_server::{launch, API_VERSION};

#[derive(Parser)]
#[command(name = "pocket-ic-server", version = API_VERSION, about)]
struct Args {
    /// The IP address to listen on.
    #[arg(long, short, default_value = "127.0.0.1")]
    ip_addr: String,
    /// The port to listen on (0: any free port).
    #[arg(long, short, default_value_t = 0)]
    port: u16,
    /// Created exclusively, then holds the port followed by a newline. If it already exists, another server owns
    /// it: this one exits at once, quietly.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Exit after this many seconds without a request.
    #[arg(long, default_value_t = 60)]
    ttl: u64,
    /// Exit this many seconds after the launch, whatever happens.
    #[arg(long)]
    hard_ttl: Option<u64>,
}

fn main() {
    let args = Args::parse();
    let options = launch::Options {
        address: format!("{}:{}", args.ip_addr, args.port),
        port_file: args.port_file,
        ttl: Duration::from_secs(args.ttl),
        hard_ttl: args.hard_ttl.map(Duration::from_secs),
    };
    std::process::exit(launch::run(options));
}
