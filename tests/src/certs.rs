//! TLS files for a test's nats-server and its clients, made with `rcgen`
//! and written as PEM: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, and a client certificate, all signed by that CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

/// A CA and the certificates it signed, as PEM files in a folder of their own.
pub struct CertFiles {
    dir: tempfile::TempDir,
}

impl CertFiles {
    /// A fresh CA, a server certificate and a client certificate.
    pub fn new() -> CertFiles {
        let dir = tempfile::tempdir().expect("create a folder for certificates");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "evhost test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let files = CertFiles { dir };
        files.write("ca.pem", &ca.pem());
        files.leaf(
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
            &ca_key,
        );
        files.leaf(
            "client",
            &["evhost"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca,
            &ca_key,
        );
        files
    }

    fn leaf(
        &self,
        name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        ca: &Certificate,
        ca_key: &KeyPair,
    ) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("certificate params");
        params.extended_key_usages = vec![usage];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, ca, ca_key).expect("certificate");
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}-key.pem"), &key.serialize_pem());
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).expect("write a PEM file");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate: what a client must trust.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server's certificate and key.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        (self.path("server.pem"), self.path("server-key.pem"))
    }

    /// The client's certificate and key.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (self.path("client.pem"), self.path("client-key.pem"))
    }

    /// A nats-server `tls { … }` block serving the server certificate; with
    /// `verify`, clients must present a certificate signed by the CA.
    pub fn server_block(&self, verify: bool) -> String {
        let (cert, key) = self.server();
        format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify}\n}}\n",
            quoted(&cert),
            quoted(&key),
            quoted(&self.ca())
        )
    }
}

impl Default for CertFiles {
    fn default() -> Self {
        Self::new()
    }
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}
