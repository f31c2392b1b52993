//! `network`: runs a local IC network until killed (`scripts/network.sh` starts and stops it in the background).

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Parser;
use network::{Keys, Network};

/// A local Internet Computer network over the in-process replica, for icp-cli, ic-agent and dfx.
#[derive(Parser)]
struct Args {
    /// The state folder: the network's keys (made on first use and kept), and the `url` and `root_key` files
    /// written once it serves.
    #[arg(long, default_value = ".network")]
    state_dir: PathBuf,
    /// The port to serve on (0: any free port).
    #[arg(long, default_value_t = 4943)]
    port: u16,
    /// The address to serve on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let keys = Keys::load_or_create(&args.state_dir)?;
    let network = Network::start((args.bind, args.port), keys)?;
    let root_key = hex::encode(network.root_key());
    fs::write(args.state_dir.join("url"), network.url() + "\n")?;
    fs::write(args.state_dir.join("root_key"), root_key.clone() + "\n")?;
    println!("Local IC network on {}", network.url());
    println!("Root key: {root_key}");
    println!("Subnet: {}", network.subnet_id());
    network.wait();
    Ok(())
}
