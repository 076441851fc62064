//! TLS for the QUIC plugin: mutual authentication against the fleet CA,
//! identity from the certificate, and a client verifier that refuses
//! deny-listed identities during the handshake.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use haifu_transport_abi::Error;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

/// The identities refused at the handshake, shared with the verifier so an
/// update takes effect for the next handshake.
pub(crate) type DenyList = Arc<RwLock<HashSet<String>>>;

/// Whether any of `names` is denied.
pub(crate) fn is_denied(deny: &DenyList, names: &[String]) -> bool {
    let set = deny.read().unwrap_or_else(|p| p.into_inner());
    names.iter().any(|n| set.contains(n))
}

/// The names a certificate claims: its common name first, then its DNS
/// subject alternative names. The first is the peer's identity.
pub(crate) fn cert_names(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse certificate: {e}"))?;
    let mut names = Vec::new();
    for cn in cert.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            names.push(s.to_owned());
        }
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n
                && !names.iter().any(|x| x == d)
            {
                names.push((*d).to_owned());
            }
        }
    }
    if names.is_empty() {
        return Err("certificate has neither a common name nor a DNS name".into());
    }
    Ok(names)
}

/// haifu's OID arc, `2.25.4633265079750916938`: a UUID-based OID (ITU-T
/// X.667) chosen at random for haifu. A certificate's role is the extended
/// key usage `<arc>.1` (master), `<arc>.2` (relay) or `<arc>.3` (client).
/// `haifu-plugin-host`'s PKI writes the same numbers (a test there reads
/// them back through this plugin).
pub(crate) const ROLE_ARC: [u64; 3] = [2, 25, 4_633_265_079_750_916_938];

/// The role a certificate grants: `master`, `relay` or `client`, or empty
/// when it grants none. A certificate claiming two roles grants none, so a
/// mistake at issue time fails closed.
pub(crate) fn cert_role(der: &[u8]) -> Result<&'static str, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse certificate: {e}"))?;
    let Ok(Some(eku)) = cert.extended_key_usage() else {
        return Ok("");
    };
    let mut roles = eku.value.other.iter().filter_map(|oid| {
        let arcs: Vec<u64> = oid.iter()?.collect();
        match arcs.split_last() {
            Some((last, arc)) if arc == ROLE_ARC => match last {
                1 => Some("master"),
                2 => Some("relay"),
                3 => Some("client"),
                _ => None,
            },
            _ => None,
        }
    });
    Ok(match (roles.next(), roles.next()) {
        (Some(role), None) => role,
        _ => "",
    })
}

/// Wraps the WebPKI client verifier: a chain that verifies is still refused
/// when one of its names is on the deny list.
#[derive(Debug)]
pub(crate) struct DenyingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    deny: DenyList,
}

impl ClientCertVerifier for DenyingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = cert_names(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if is_denied(&self.deny, &names) {
            // Sent to the client as the `access_denied` alert.
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The fleet CA, this node's certificate chain and key, read from PEM files.
#[derive(Debug)]
pub(crate) struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads `ca`, `cert` and `key` (PEM).
    pub(crate) fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, Error> {
        let read_certs = |p: &Path| -> Result<Vec<CertificateDer<'static>>, Error> {
            let certs = CertificateDer::pem_file_iter(p)
                .map_err(|e| Error::invalid(format!("{}: {e}", p.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::invalid(format!("{}: {e}", p.display())))?;
            if certs.is_empty() {
                return Err(Error::invalid(format!(
                    "{}: no certificate in file",
                    p.display()
                )));
            }
            Ok(certs)
        };
        let mut roots = RootCertStore::empty();
        for c in read_certs(ca)? {
            roots
                .add(c)
                .map_err(|e| Error::invalid(format!("{}: not a usable CA: {e}", ca.display())))?;
        }
        let chain = read_certs(cert)?;
        if let Some(leaf) = chain.first() {
            cert_names(leaf).map_err(|e| Error::invalid(format!("{}: {e}", cert.display())))?;
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| Error::invalid(format!("{}: {e}", key.display())))?;
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    /// The key of this endpoint's stateless resets, derived from its
    /// private key: a listener restarted with the same identity resets the
    /// connections its previous run left open, so a peer learns of the
    /// restart at its next packet instead of after its idle timeout. Nobody
    /// without the private key can compute it.
    pub(crate) fn reset_key(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &self.derive(b"stateless reset key"),
        )
    }

    /// The key of this endpoint's connection ids, derived like
    /// [`Identity::reset_key`]: a restarted listener recognises the ids its
    /// previous run handed out (quinn drops packets whose id it did not
    /// make, and would not reset them).
    pub(crate) fn cid_key(&self) -> u64 {
        let d = self.derive(b"connection id key");
        u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }

    fn derive(&self, what: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"haifu quic v1\0");
        ctx.update(what);
        ctx.update(b"\0");
        ctx.update(self.key.secret_der());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// Server side: requires a client certificate from the fleet CA whose
    /// names are not denied.
    pub(crate) fn server_config(
        &self,
        deny: DenyList,
        alpn: &[u8],
    ) -> Result<rustls::ServerConfig, Error> {
        let provider = Self::provider();
        let inner = WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| Error::invalid(format!("client verifier: {e}")))?;
        let verifier = Arc::new(DenyingVerifier { inner, deny });
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::internal(format!("tls versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| Error::invalid(format!("certificate and key do not fit: {e}")))?;
        tls.alpn_protocols = vec![alpn.to_vec()];
        Ok(tls)
    }

    /// Client side: trusts only the fleet CA and presents this node's
    /// certificate.
    pub(crate) fn client_config(&self, alpn: &[u8]) -> Result<rustls::ClientConfig, Error> {
        let mut tls = rustls::ClientConfig::builder_with_provider(Self::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::internal(format!("tls versions: {e}")))?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| Error::invalid(format!("certificate and key do not fit: {e}")))?;
        tls.alpn_protocols = vec![alpn.to_vec()];
        Ok(tls)
    }
}
