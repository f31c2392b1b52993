//! The launch protocol the PocketIC clients follow: an exclusive port file holding `"<port>\n"`, an idle TTL, and an
//! exit that removes the port file (on idle, on the hard TTL, on SIGINT/SIGTERM/SIGHUP).

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::log;

pub struct Options {
    /// `ip:port` to listen on (port 0: any free port).
    pub address: String,
    pub port_file: Option<PathBuf>,
    pub ttl: Duration,
    pub hard_ttl: Option<Duration>,
}

/// The port file this process created, removed on every exit.
static OWNED_PORT_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Runs the server until it has been idle for the TTL; returns the process exit code. Exits with 0 at once, without
/// a word, if the port file exists: another server owns it and the client reads that server's port.
pub fn run(options: Options) -> i32 {
    let port_file = match &options.port_file {
        None => None,
        Some(path) => match File::options().write(true).create_new(true).open(path) {
            Ok(file) => {
                let _ = OWNED_PORT_FILE.set(path.clone());
                Some(file)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return 0,
            Err(e) => {
                log!("cannot create the port file {}: {e}", path.display());
                return 1;
            }
        },
    };
    if let Err(e) = ctrlc::set_handler(|| exit(0)) {
        log!("cannot install the signal handler: {e}");
    }
    if let Some(hard_ttl) = options.hard_ttl {
        std::thread::spawn(move || {
            std::thread::sleep(hard_ttl);
            exit(0)
        });
    }
    let http = match tiny_http::Server::http(&options.address) {
        Ok(http) => http,
        Err(e) => {
            log!("cannot listen on {}: {e}", options.address);
            exit(1)
        }
    };
    let Some(port) = http.server_addr().to_ip().map(|a| a.port()) else {
        log!("{} is not an IP address", options.address);
        exit(1)
    };
    if let Some(mut file) = port_file {
        if let Err(e) = file
            .write_all(format!("{port}\n").as_bytes())
            .and_then(|()| file.flush())
        {
            log!("cannot write the port file: {e}");
            exit(1)
        }
    }
    log!("listening on port {port}");
    crate::server::serve(http, options.ttl);
    exit(0)
}

/// Removes the port file (if this process created it) and exits.
fn exit(code: i32) -> ! {
    if let Some(path) = OWNED_PORT_FILE.get() {
        let _ = std::fs::remove_file(path);
    }
    std::process::exit(code)
}
