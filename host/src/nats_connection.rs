//! Where and how evhost connects to NATS: the server list, the credentials
//! and the TLS files, checked before connecting and applied to the client's
//! options. Nothing here prints a secret: a [`ServerList`] shows its URLs
//! with any `user:password@` replaced by `***@`, and [`Credentials`] shows
//! only which kind it is.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use async_nats::{ConnectOptions, ServerAddr};

/// The NATS servers to try, in the order given; the client connects to any
/// one of them and fails over to the others (and to the servers the cluster
/// announces).
#[derive(Clone, PartialEq, Eq)]
pub struct ServerList {
    /// The servers, with any user information taken out of the URLs.
    servers: Vec<ServerAddr>,
    /// The user information of the first URL that had some, decoded:
    /// `(user, password)`; a user without a password is a token.
    userinfo: Option<(String, Option<String>)>,
}

/// The server list could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerListError {
    /// Nothing but commas and blanks.
    #[error(
        "the NATS URL is empty: give one such as nats://127.0.0.1:4222, or several separated by commas (--nats or NATS_URL)"
    )]
    Empty,
    /// One entry is not a NATS URL; `entry` is redacted.
    #[error(
        "{entry} is not a NATS server URL ({reason}); give URLs such as nats://HOST:PORT or tls://HOST:PORT, separated by commas"
    )]
    Invalid { entry: String, reason: String },
}

impl ServerList {
    /// Reads a comma-separated list of URLs (`nats://`, `tls://`, `ws://`,
    /// `wss://`; a bare `HOST:PORT` is `nats://`). Blank entries are skipped.
    pub fn parse(list: &str) -> Result<ServerList, ServerListError> {
        let mut servers = Vec::new();
        let mut userinfo = None;
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = |reason: String| ServerListError::Invalid {
                entry: redact(entry),
                reason: redact(&reason),
            };
            let addr: ServerAddr = entry.parse().map_err(|e: std::io::Error| {
                let text = e.to_string();
                let reason = text
                    .strip_prefix("NATS server URL is invalid: ")
                    .unwrap_or(&text);
                invalid(reason.to_string())
            })?;
            let mut url = addr.into_inner();
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid("no host".to_string()));
            }
            if userinfo.is_none() && !url.username().is_empty() {
                userinfo = Some((
                    decode(url.username()),
                    url.password().map(decode).filter(|p| !p.is_empty()),
                ));
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
            let addr = ServerAddr::from_url(url).map_err(|e| invalid(e.to_string()))?;
            servers.push(addr);
        }
        if servers.is_empty() {
            return Err(ServerListError::Empty);
        }
        Ok(ServerList { servers, userinfo })
    }

    /// The servers, without user information.
    pub fn addrs(&self) -> Vec<ServerAddr> {
        self.servers.clone()
    }

    /// Whether any URL asks for TLS (`tls://` or `wss://`).
    pub fn wants_tls(&self) -> bool {
        self.servers
            .iter()
            .any(|s| s.tls_required() || s.scheme() == "wss")
    }
}

/// The URLs, comma-separated, without user information.
impl fmt::Display for ServerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, server) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(server.as_url_str().trim_end_matches('/'))?;
        }
        Ok(())
    }
}

impl fmt::Debug for ServerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerList({self})")
    }
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// `text` with the user information of every URL in it (`scheme://INFO@`)
/// replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#', ',' or blank.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | ',') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A secret: shown as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How evhost proves who it is to the server.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Credentials {
    /// Nothing: the server lets anyone in.
    #[default]
    None,
    /// A `.creds` file: a user JWT and the nkey seed that signs with it.
    CredsFile(PathBuf),
    /// An nkey seed (`SU…`), read from a file.
    Nkey { file: PathBuf, seed: Secret },
    /// A user and password.
    UserPassword { user: String, password: Secret },
    /// A token.
    Token(Secret),
}

impl Credentials {
    /// What was used, for an error message: no secret, and where it came from.
    pub fn describe(&self) -> String {
        match self {
            Credentials::None => {
                "no credentials were given (--creds, --nkey, --user/--password or --token)"
                    .to_string()
            }
            Credentials::CredsFile(file) => {
                format!(
                    "the credentials file {} (--creds, NATS_CREDS)",
                    file.display()
                )
            }
            Credentials::Nkey { file, .. } => {
                format!("the nkey seed in {} (--nkey, NATS_NKEY)", file.display())
            }
            Credentials::UserPassword { user, .. } => format!(
                "user {user:?} and its password (--user/--password, NATS_USER/NATS_PASSWORD, or the URL)"
            ),
            Credentials::Token(_) => "the token (--token, NATS_TOKEN, or the URL)".to_string(),
        }
    }
}

/// The TLS files: a CA to trust instead of the system's roots, and a client
/// certificate with its key for servers that verify clients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificate(s) the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and its PEM private key.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// Whether any TLS file was given (which makes TLS required).
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

/// Everything needed to connect: the servers, the credentials, TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConnection {
    /// The servers to try.
    pub servers: ServerList,
    /// Who evhost is.
    pub credentials: Credentials,
    /// TLS files, if any.
    pub tls: TlsFiles,
}

impl NatsConnection {
    /// A connection to `servers` with no credentials other than those in
    /// the URLs, and no TLS files.
    pub fn plain(servers: &str) -> anyhow::Result<NatsConnection> {
        NatsConnection::new(servers, Credentials::None, TlsFiles::default())
    }

    /// Checks what was given: the list parses, credentials given in a URL
    /// are used unless given otherwise, and every file can be read.
    pub fn new(
        servers: &str,
        credentials: Credentials,
        tls: TlsFiles,
    ) -> anyhow::Result<NatsConnection> {
        let servers = ServerList::parse(servers)?;
        let credentials = match (credentials, &servers.userinfo) {
            (Credentials::None, Some((user, Some(password)))) => Credentials::UserPassword {
                user: user.clone(),
                password: Secret(password.clone()),
            },
            (Credentials::None, Some((token, None))) => Credentials::Token(Secret(token.clone())),
            (given, _) => given,
        };
        if let Credentials::CredsFile(file) = &credentials {
            readable(file, "credentials file (--creds, NATS_CREDS)")?;
        }
        if let Some(ca) = &tls.ca {
            readable(ca, "CA file (--tlsca, NATS_CA)")?;
        }
        if let Some((cert, key)) = &tls.client {
            readable(cert, "client certificate (--tlscert, NATS_CERT)")?;
            readable(key, "client key (--tlskey, NATS_KEY)")?;
        }
        Ok(NatsConnection {
            servers,
            credentials,
            tls,
        })
    }

    /// Whether the connection must use TLS: a `tls://` URL or a TLS file.
    pub fn requires_tls(&self) -> bool {
        self.tls.any() || self.servers.wants_tls()
    }

    /// `options` with the credentials and TLS files applied.
    pub fn apply(&self, mut options: ConnectOptions) -> anyhow::Result<ConnectOptions> {
        options = match &self.credentials {
            Credentials::None => options,
            Credentials::CredsFile(file) => {
                let text = std::fs::read_to_string(file).with_context(|| {
                    format!("cannot read the credentials file {}", file.display())
                })?;
                options.credentials(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "the credentials file {} is not a NATS .creds file: {e}",
                        file.display()
                    )
                })?
            }
            Credentials::Nkey { seed, .. } => options.nkey(seed.0.clone()),
            Credentials::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.0.clone())
            }
            Credentials::Token(token) => options.token(token.0.clone()),
        };
        if let Some(ca) = &self.tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls.client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls.any() {
            options = options.require_tls(true);
        }
        Ok(options)
    }
}

/// Reads an nkey seed file: the first line that is a user seed (`SU…`), as
/// `nk -gen user` writes it or inside a decorated block.
pub fn read_nkey_seed(file: &Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read the nkey seed file {} (--nkey, NATS_NKEY)",
            file.display()
        )
    })?;
    parse_nkey_seed(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "the nkey seed file {} holds no user seed (a line starting with SU, as `nk -gen user` writes)",
            file.display()
        )
    })
}

/// The first valid user seed in `text`.
fn parse_nkey_seed(text: &str) -> Option<Secret> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("SU"))
        .find(|l| nkeys::KeyPair::from_seed(l).is_ok())
        .map(|l| Secret(l.to_string()))
}

fn readable(file: &Path, what: &str) -> anyhow::Result<()> {
    std::fs::File::open(file)
        .map(drop)
        .with_context(|| format!("cannot read the {what} {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_split_on_commas() {
        let list = ServerList::parse(" nats://127.0.0.1:4001, nats://127.0.0.1:4002 ,,").unwrap();
        assert_eq!(list.addrs().len(), 2);
        assert_eq!(
            list.to_string(),
            "nats://127.0.0.1:4001,nats://127.0.0.1:4002"
        );
        assert!(!list.wants_tls());
        let bare = ServerList::parse("localhost:4222").unwrap();
        assert_eq!(bare.to_string(), "nats://localhost:4222");
        assert!(
            ServerList::parse("nats://a:1,tls://b:2")
                .unwrap()
                .wants_tls()
        );
    }

    #[test]
    fn an_empty_list_and_a_bad_entry_are_errors() {
        assert_eq!(ServerList::parse(" , "), Err(ServerListError::Empty));
        let err = ServerList::parse("nats://a:1,nats://u:hunter2@b:99999")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("nats://***@b:99999 is not a NATS server URL (invalid port number)"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let scheme = ServerList::parse("http://a:1").unwrap_err().to_string();
        assert!(scheme.contains("invalid scheme"), "{scheme}");
    }

    #[test]
    fn credentials_in_urls_are_taken_out_and_used() {
        let conn = NatsConnection::plain("nats://evhost:p%40ss@127.0.0.1:4222").unwrap();
        assert_eq!(
            conn.credentials,
            Credentials::UserPassword {
                user: "evhost".into(),
                password: Secret("p@ss".into())
            }
        );
        assert_eq!(conn.servers.to_string(), "nats://127.0.0.1:4222");
        assert!(!format!("{conn:?}").contains("p@ss"));
        let token = NatsConnection::plain("nats://s3cret@127.0.0.1:4222").unwrap();
        assert_eq!(
            token.credentials,
            Credentials::Token(Secret("s3cret".into()))
        );
        // Credentials given otherwise win.
        let given = NatsConnection::new(
            "nats://a:b@h:1",
            Credentials::Token(Secret("t".into())),
            TlsFiles::default(),
        )
        .unwrap();
        assert_eq!(given.credentials, Credentials::Token(Secret("t".into())));
    }

    #[test]
    fn redaction_hides_every_userinfo() {
        assert_eq!(
            redact("cannot connect to nats://u:p@h:1,tls://tok@h2:2/x and nats://h3:3"),
            "cannot connect to nats://***@h:1,tls://***@h2:2/x and nats://h3:3"
        );
        assert_eq!(redact("no url here"), "no url here");
    }

    #[test]
    fn tls_is_required_by_a_url_or_a_file() {
        let mut conn = NatsConnection::plain("nats://h:1").unwrap();
        assert!(!conn.requires_tls());
        conn.tls.ca = Some("ca.pem".into());
        assert!(conn.requires_tls());
        assert!(NatsConnection::plain("tls://h:1").unwrap().requires_tls());
    }

    #[test]
    fn missing_files_are_named() {
        let err = NatsConnection::new(
            "nats://h:1",
            Credentials::None,
            TlsFiles {
                ca: Some("/nonexistent/ca.pem".into()),
                client: None,
            },
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("cannot read the CA file (--tlsca, NATS_CA) /nonexistent/ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn nkey_seeds_are_found_in_their_file() {
        let user = nkeys::KeyPair::new_user();
        let seed = user.seed().unwrap();
        let text = format!("# a comment\n\n  {seed}  \n");
        assert_eq!(parse_nkey_seed(&text), Some(Secret(seed)));
        assert_eq!(parse_nkey_seed("SUNOTASEED\n"), None);
        assert_eq!(parse_nkey_seed(&user.public_key()), None);
    }
}
