//! The command-line flags and environment variables that say how to reach
//! NATS, shared (flattened) by every command that connects: the server list
//! ([`NatsArgs`]) and the credentials and TLS files ([`NatsAuthArgs`]). The
//! names follow the `nats` CLI's. Secret values are never shown in `--help`.

use std::path::PathBuf;

use crate::nats_connection::{self, Credentials, NatsConnection, Secret, TlsFiles};

/// The default server.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Where the NATS servers are, and how to log in.
#[derive(clap::Args, Clone)]
pub struct NatsArgs {
    /// The NATS servers: a URL, or several separated by commas
    /// (nats://HOST:PORT, tls://HOST:PORT).
    #[arg(long, env = "NATS_URL", default_value = DEFAULT_NATS_URL, value_name = "URL[,URL...]", hide_env_values = true)]
    pub nats: String,
    #[command(flatten)]
    pub auth: NatsAuthArgs,
}

impl NatsArgs {
    /// The connection these flags describe, checked.
    pub fn connection(&self) -> anyhow::Result<NatsConnection> {
        self.auth.connection(&self.nats)
    }
}

/// How to log in to NATS and which TLS files to use. At most one kind of
/// credentials may be given.
#[derive(clap::Args, Clone, Default)]
pub struct NatsAuthArgs {
    /// A credentials file (user JWT and nkey seed).
    #[arg(long, env = "NATS_CREDS", value_name = "FILE", hide_env_values = true,
          conflicts_with_all = ["nkey", "user", "token"])]
    pub creds: Option<PathBuf>,
    /// A file holding a user nkey seed (SU...).
    #[arg(long, env = "NATS_NKEY", value_name = "FILE", hide_env_values = true,
          conflicts_with_all = ["user", "token"])]
    pub nkey: Option<PathBuf>,
    /// The user name.
    #[arg(
        long,
        env = "NATS_USER",
        hide_env_values = true,
        requires = "password",
        conflicts_with = "token"
    )]
    pub user: Option<String>,
    /// The user's password.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, requires = "user")]
    pub password: Option<String>,
    /// A token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM CA certificate the servers' certificates must chain to
    /// (instead of the system's roots); makes TLS required.
    #[arg(
        long = "tlsca",
        env = "NATS_CA",
        value_name = "FILE",
        hide_env_values = true
    )]
    pub tls_ca: Option<PathBuf>,
    /// A PEM client certificate, for servers that verify clients.
    #[arg(
        long = "tlscert",
        env = "NATS_CERT",
        value_name = "FILE",
        hide_env_values = true,
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(
        long = "tlskey",
        env = "NATS_KEY",
        value_name = "FILE",
        hide_env_values = true,
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
}

impl NatsAuthArgs {
    /// The connection to `servers` with these credentials and TLS files.
    pub fn connection(&self, servers: &str) -> anyhow::Result<NatsConnection> {
        let credentials = if let Some(file) = &self.creds {
            Credentials::CredsFile(file.clone())
        } else if let Some(file) = &self.nkey {
            Credentials::Nkey {
                file: file.clone(),
                seed: nats_connection::read_nkey_seed(file)?,
            }
        } else if let (Some(user), Some(password)) = (&self.user, &self.password) {
            Credentials::UserPassword {
                user: user.clone(),
                password: Secret(password.clone()),
            }
        } else if let Some(token) = &self.token {
            Credentials::Token(Secret(token.clone()))
        } else {
            Credentials::None
        };
        let tls = TlsFiles {
            ca: self.tls_ca.clone(),
            client: self.tls_cert.clone().zip(self.tls_key.clone()),
        };
        NatsConnection::new(servers, credentials, tls)
    }
}
