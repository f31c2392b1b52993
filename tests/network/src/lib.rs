//! A local Internet Computer network: the IC HTTP interface served over the in-process replica (`tests/replica`),
//! so that clients nobody here wrote (icp-cli, ic-agent, dfx) deploy, upgrade and call real canister wasm.
//!
//! One subnet with one node, which is also the root subnet: certificates are signed by the network's BLS root key
//! with no delegation, query responses by the node's Ed25519 key. Rounds run on their own while there is work and
//! the network sleeps otherwise. See README.md.

mod auth;
mod engine;
mod http;
mod keys;
mod read_state;
mod system_canisters;
mod tree;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use candid::Principal;
use replica::{Replica, ReplicaConfig};

pub use keys::Keys;
pub use system_canisters::{CYCLES_LEDGER, CYCLES_MINTING_CANISTER};

use engine::{Command, Engine};
use read_state::Subnet;

/// Canister ids this network hands out start here (as a dfx local replica's do: `bnz7o-iuaaa-aaaaa-qaaaa-cai`).
pub const FIRST_CANISTER_INDEX: u64 = 0x8000_0000_0010_0000;

/// An HTTP answer other than 200/202: the status and a plain-text message, as the IC sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, message)
    }

    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// A running network. Dropping it stops the HTTP server, and with it the replica.
pub struct Network {
    address: SocketAddr,
    root_key: Vec<u8>,
    subnet_id: Principal,
    commands: Option<Sender<Command>>,
    /// The HTTP server's runtime; the replica thread ends once it and `commands` are gone.
    runtime: Option<tokio::runtime::Runtime>,
    replica: Option<JoinHandle<()>>,
}

impl Network {
    /// Starts a network on `address` (port 0 picks a free port) with these keys.
    pub fn start(address: impl ToSocketAddrs, keys: Keys) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let root_key = keys.root_key_der().to_vec();
        let config = ReplicaConfig {
            root_key: Some(root_key.clone()),
            start_time_nanos: engine::now_nanos(),
            // Time is the host's clock, set before every round; rounds run back to back while there is work.
            round_duration: Duration::from_micros(1),
            first_canister_index: FIRST_CANISTER_INDEX,
            ..ReplicaConfig::default()
        };
        let subnet = Subnet {
            id: Principal::self_authenticating(&root_key),
            root_key_der: root_key.clone(),
            node_id: keys.node_id(),
            node_key_der: keys.node_key_der().to_vec(),
        };
        let subnet_id = subnet.id;
        let (commands, receiver) = mpsc::channel();
        let replica = std::thread::Builder::new()
            .name("replica".into())
            .spawn(move || Engine::new(Replica::with_config(config), subnet, receiver).run())?;
        let context = Arc::new(http::Context {
            keys,
            subnet_id,
            commands: commands.clone(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("http")
            .enable_io()
            .build()?;
        let listener = {
            let _runtime = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        runtime.spawn(http::serve(listener, context));
        Ok(Self {
            address,
            root_key,
            subnet_id,
            commands: Some(commands),
            runtime: Some(runtime),
            replica: Some(replica),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The root key as clients pin it (133 bytes of DER).
    pub fn root_key(&self) -> &[u8] {
        &self.root_key
    }

    /// The one subnet's id: the self-authenticating principal of the root key.
    pub fn subnet_id(&self) -> Principal {
        self.subnet_id
    }

    /// Runs `f` on the replica, between rounds, and returns its result (for tests and benchmarks).
    pub fn with_replica<R: Send + 'static>(&self, f: impl FnOnce(&Replica) -> R + Send + 'static) -> R {
        let (reply, result) = mpsc::channel();
        let command = Command::Run(Box::new(move |replica| {
            let _ = reply.send(f(replica));
        }));
        self.commands
            .as_ref()
            .expect("running")
            .send(command)
            .expect("the replica thread runs");
        result.recv().expect("the replica thread answers")
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(replica) = self.replica.take() {
            let _ = replica.join();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Ends the server without waiting (also from async code); a request still waiting on the replica keeps its
        // thread, and the replica thread, until it is answered.
        self.commands = None;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
