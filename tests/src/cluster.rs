//! [`Cluster`]: several `nats-server` processes clustered on loopback, each
//! with JetStream, its own `server_name`, store folder, client port and
//! cluster port, and routes to the others (one cluster name), as a
//! production NATS deployment runs. Started through [`NatsServer`]'s config
//! file (the kit writes `listen` and `jetstream`; the cluster adds
//! `server_name` and `cluster`), and waited on until JetStream has a meta
//! leader. Streams made with [`Cluster::create_stream`] are replicated on
//! every server and have a leader before it returns. A server can be killed
//! ([`Cluster::stop`]); dropping the cluster kills them all.

use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::jetstream::{self, stream};

use crate::{NatsServer, WAIT, free_port};

/// The cluster's name, in every server's `cluster` block.
const CLUSTER_NAME: &str = "evhost-test";

/// How long to wait before asking a cluster that is not ready again.
const RETRY: Duration = Duration::from_millis(100);

/// Servers clustered on loopback with JetStream; killed on drop.
pub struct Cluster {
    servers: Vec<NatsServer>,
    names: Vec<String>,
}

impl Cluster {
    /// Starts `n` servers (`n1`, `n2`, ...) routed to one another and waits
    /// until JetStream answers through every one of them (a meta leader is
    /// elected and every server knows it).
    pub async fn start(n: usize) -> Cluster {
        assert!(n >= 1, "a cluster has at least one server");
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let servers = (0..n)
            .map(|i| {
                let routes: Vec<String> = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, port)| format!("\"nats-route://127.0.0.1:{port}\""))
                    .collect();
                NatsServer::start_with_config(&format!(
                    "server_name: {name}\ncluster {{\n  name: {CLUSTER_NAME}\n  \
                     listen: \"127.0.0.1:{port}\"\n  routes: [{routes}]\n}}\n",
                    name = names[i],
                    port = cluster_ports[i],
                    routes = routes.join(", "),
                ))
            })
            .collect();
        let cluster = Cluster { servers, names };
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Every server's client URL, comma-separated: what `--nats` and
    /// `NATS_URL` take.
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// Every server's client URL.
    pub fn url_list(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// How many servers the cluster was started with.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether it has no server (never: [`Cluster::start`] wants one).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Server `i`'s `server_name`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no server named {name:?} in {:?}", self.names))
    }

    /// Kills server `i` (its store stays until the cluster is dropped).
    pub fn stop(&mut self, i: usize) {
        self.servers[i].stop();
    }

    /// A client given every server, so it fails over as a host does.
    pub async fn client(&self) -> Client {
        async_nats::ConnectOptions::new()
            .name("evhost-tests")
            .connect(self.url_list())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.urls()))
    }

    /// Creates the stream `config` (or takes it as it is, when it exists)
    /// with a replica on every server, retrying while the cluster cannot
    /// place it yet, and waits until it has a leader and every replica is
    /// current.
    pub async fn create_stream(
        &self,
        js: &jetstream::Context,
        config: stream::Config,
    ) -> stream::Info {
        let config = stream::Config {
            num_replicas: self.len(),
            ..config
        };
        let name = config.name.clone();
        let deadline = Instant::now() + WAIT;
        loop {
            let last = match js.get_or_create_stream(config.clone()).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) if self.settled(info) => return info.clone(),
                    Ok(info) => format!("not settled: {:?}", info.cluster),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!(
                    "stream {name} was not created with {} replicas within {WAIT:?}: {last}\n{}",
                    self.len(),
                    self.log_report()
                );
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// The server that leads stream `name` now (its index), waiting while
    /// the stream has none.
    pub async fn stream_leader(&self, js: &jetstream::Context, name: &str) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = match js.get_stream(name).await {
                Ok(mut stream) => stream
                    .info()
                    .await
                    .ok()
                    .and_then(|i| i.cluster.as_ref()?.leader.clone()),
                Err(_) => None,
            };
            if let Some(leader) = leader {
                return self.index_of(&leader);
            }
            if Instant::now() >= deadline {
                panic!("stream {name} has no leader\n{}", self.log_report());
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// What every server has logged, framed for a failure message.
    pub fn log_report(&self) -> String {
        self.servers
            .iter()
            .zip(&self.names)
            .map(|(server, name)| {
                format!(
                    "--- nats-server {name} ({}) ---\n{}--- end of {name}'s log ---",
                    server.url(),
                    server.log()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether `info` shows a leader and a current replica on every other
    /// server.
    fn settled(&self, info: &stream::Info) -> bool {
        info.cluster.as_ref().is_some_and(|c| {
            c.leader.is_some()
                && c.replicas.len() + 1 == self.len()
                && c.replicas.iter().all(|r| r.current)
        })
    }

    /// Waits until JetStream answers an account-info request (`$JS.API.INFO`)
    /// through each server without an error: only a cluster with a meta
    /// leader does. (Asked raw: async-nats cannot read nats-server 2.9's
    /// answer.)
    async fn wait_for_jetstream(&self) {
        let deadline = Instant::now() + WAIT;
        for (server, name) in self.servers.iter().zip(&self.names) {
            let client = async_nats::connect(server.url())
                .await
                .unwrap_or_else(|e| panic!("connect to {name} at {}: {e}", server.url()));
            loop {
                let asked = client.send_request(
                    "$JS.API.INFO",
                    async_nats::Request::new().timeout(Some(Duration::from_millis(500))),
                );
                let last = match asked.await {
                    Ok(answer) => {
                        match serde_json::from_slice::<serde_json::Value>(&answer.payload) {
                            Ok(info) if info.get("error").is_none() => break,
                            Ok(info) => info["error"].to_string(),
                            Err(e) => format!("not JSON ({e})"),
                        }
                    }
                    Err(e) => e.to_string(),
                };
                if Instant::now() >= deadline {
                    panic!(
                        "JetStream did not answer through {name} within {WAIT:?}: {last}\n{}",
                        self.log_report()
                    );
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
