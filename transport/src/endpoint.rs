//! QUIC endpoints and the authenticated handshake shared by the coordinator, its workers
//! and members' clients.
//!
//! TLS gives confidentiality and integrity; identity comes from ed25519, not from X.509.
//! The coordinator presents a throwaway self-signed certificate, and clients accept any
//! certificate whose handshake signature is valid. Authentication then happens inside
//! the connection: the client signs a [`Hello`] carrying this connection's TLS exporter
//! value (the channel binding), and the coordinator answers with a [`Welcome`] signed
//! over the same value, which the client checks against the coordinator key it pinned.
//! A man in the middle would hold two TLS sessions with two different exporter values,
//! so neither signature would verify on the other side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use icn_protocol::wire::{Hello, HelloReply, Welcome};
use icn_protocol::{Envelope, Keypair, PublicKey, Seal, SealKeeper};

use crate::Error;
use crate::frame::{FrameReader, FrameWriter};

pub const ALPN: &[u8] = b"icn/1";
const EXPORTER_LABEL: &[u8] = b"EXPORTER-icn-channel-binding";
const SERVER_NAME: &str = "icn-coordinator";
/// A peer silent this long is gone: a worker whose coordinator died (SIGKILL sends
/// nothing over UDP) reconnects after this, so keep it near the coordinator's own
/// worker timeout. Keep-alives make every live peer speak six times in that window.
pub const IDLE_TIMEOUT_MS: u64 = 3_000;
pub const KEEP_ALIVE_INTERVAL_MS: u64 = 500;
/// Streams a peer may hold open at once toward us: member requests, or task streams.
pub const STREAMS_CONCURRENT_MAX: u32 = 4096;
/// Bytes a peer may have in flight toward us over all its streams at once (each stream
/// holds at most quinn's per-stream window): what one connection can make us buffer.
pub const RECEIVE_WINDOW_BYTES: u32 = 32 * 1024 * 1024;
/// Frames during the handshake are small; a larger one is refused unread.
pub const HELLO_SIZE_BYTES_MAX: usize = 8 * 1024;

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(Duration::from_millis(IDLE_TIMEOUT_MS).try_into().expect("idle timeout fits")))
        .keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS)))
        .max_concurrent_bidi_streams(STREAMS_CONCURRENT_MAX.into())
        .receive_window(RECEIVE_WINDOW_BYTES.into())
        .max_concurrent_uni_streams(0u32.into());
    Arc::new(transport)
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A QUIC endpoint that serves the coordinator on `addr`.
pub fn server_endpoint(addr: SocketAddr) -> Result<Endpoint, Error> {
    let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
        .map_err(|e| Error::Transport(format!("cannot make the TLS certificate: {e}")))?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| Error::Transport(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| Error::Transport(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Endpoint::server(config, addr).map_err(|e| Error::Transport(format!("cannot listen on {addr}: {e}")))
}

/// A QUIC endpoint for workers and members' clients.
pub fn client_endpoint() -> Result<Endpoint, Error> {
    let provider = crypto_provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Transport(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::Transport(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    let bind: SocketAddr = "0.0.0.0:0".parse().expect("literal address");
    let mut endpoint = Endpoint::client(bind).map_err(|e| Error::Transport(e.to_string()))?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Accepts any certificate but still checks the handshake signature made with it, so
/// the TLS session is sound; who is on the other end is proven by the [`Welcome`].
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The value both ends sign to prove they hold their keys on this very connection.
pub fn channel_binding(connection: &Connection) -> Result<[u8; 32], Error> {
    let mut value = [0u8; 32];
    connection
        .export_keying_material(&mut value, EXPORTER_LABEL, b"")
        .map_err(|_| Error::Transport("the TLS exporter is not available".into()))?;
    Ok(value)
}

/// A client's authenticated connection to the coordinator.
pub struct Session {
    pub connection: Connection,
    /// The stream the hello went over; workers keep sending heartbeats on it.
    pub control: (FrameWriter<SendStream>, FrameReader<RecvStream>),
    pub welcome: Welcome,
}

/// The two halves of a framed QUIC stream.
pub type Stream = (FrameWriter<SendStream>, FrameReader<RecvStream>);

/// Opens a framed stream on `connection`.
pub async fn open(connection: &Connection) -> Result<Stream, Error> {
    let (send, recv) = connection.open_bi().await.map_err(|e| Error::Transport(e.to_string()))?;
    Ok((FrameWriter::new(send), FrameReader::new(recv)))
}

/// Accepts a framed stream the peer opened on `connection`.
pub async fn accept(connection: &Connection) -> Result<Stream, Error> {
    let (send, recv) = connection.accept_bi().await.map_err(|e| Error::Transport(e.to_string()))?;
    Ok((FrameWriter::new(send), FrameReader::new(recv)))
}

/// Connects to the coordinator at `addr`, proves `key`'s identity and checks that the
/// peer holds `coordinator`'s key and still holds the history `seals` saw.
/// `hello.channel_binding` and `hello.seen` are filled in here.
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    coordinator: PublicKey,
    key: &Keypair,
    mut hello: Hello,
    seals: &mut SealKeeper,
) -> Result<Session, Error> {
    let connection = endpoint
        .connect(addr, SERVER_NAME)
        .map_err(|e| Error::Transport(format!("cannot connect to {addr}: {e}")))?
        .await
        .map_err(|e| match e {
            quinn::ConnectionError::TimedOut => Error::Transport(format!(
                "nothing answered at {addr} within {} s: is the coordinator running, and is that its QUIC \
                 address (the one `icn coordinator` or `icn dev` printed, in ICN_COORDINATOR)?",
                IDLE_TIMEOUT_MS / 1000
            )),
            e => Error::Transport(format!("cannot connect to {addr}: {e}")),
        })?;
    let binding = channel_binding(&connection)?;
    hello.channel_binding = binding;
    hello.seen = seals.kept();
    let (mut send, mut recv) = open(&connection).await?;
    send.write(&Envelope::seal(key, nonce(), &hello)).await?;
    let reply: HelloReply = recv
        .read(HELLO_SIZE_BYTES_MAX)
        .await?
        .ok_or_else(|| Error::Transport("the coordinator closed the connection".into()))?;
    let welcome_envelope = match reply {
        HelloReply::Welcome(envelope) => envelope,
        HelloReply::Refused(reason) => return Err(Error::Refused(reason)),
    };
    if welcome_envelope.signer != coordinator {
        return Err(Error::Transport(format!(
            "the peer at {addr} is coordinator {}, not the expected {coordinator}",
            welcome_envelope.signer
        )));
    }
    let welcome: Welcome = welcome_envelope.open()?;
    if welcome.channel_binding != binding {
        return Err(Error::Transport("the coordinator's welcome is bound to another connection".into()));
    }
    seals.check_known(&welcome.seal, welcome.known.as_ref())?;
    seals.check(&welcome.seal)?;
    Ok(Session { connection, control: (send, recv), welcome })
}

/// The coordinator's side of the hello: reads it, checks its signature and binding, and
/// returns who it is from. Admission is the caller's decision: answer with
/// [`welcome`] or [`refuse`].
pub async fn read_hello(connection: &Connection) -> Result<(PublicKey, Hello, Stream), Error> {
    let (send, mut recv) = accept(connection).await?;
    let envelope: Envelope = recv
        .read(HELLO_SIZE_BYTES_MAX)
        .await?
        .ok_or_else(|| Error::Transport("the peer closed the stream before its hello".into()))?;
    let hello: Hello = envelope.open()?;
    hello.validate()?;
    if hello.channel_binding != channel_binding(connection)? {
        return Err(Error::invalid("the hello is bound to another connection"));
    }
    Ok((envelope.signer, hello, (send, recv)))
}

/// Admits the peer: a signed [`Welcome`] with the latest journal seal and, when the
/// peer named a seal it saw, the coordinator's own seal at that entry.
pub async fn welcome(
    send: &mut FrameWriter<SendStream>,
    key: &Keypair,
    connection: &Connection,
    heartbeat_interval_ms: u64,
    seal: Seal,
    known: Option<Seal>,
) -> Result<(), Error> {
    let welcome =
        Welcome { channel_binding: channel_binding(connection)?, heartbeat_interval_ms, seal, known };
    send.write(&HelloReply::Welcome(Envelope::seal(key, nonce(), &welcome))).await
}

pub async fn refuse(send: &mut FrameWriter<SendStream>, reason: &str) -> Result<(), Error> {
    send.write(&HelloReply::Refused(reason.to_string())).await?;
    let _ = send.get_mut().finish();
    Ok(())
}

/// A sequence number for a one-off envelope: unique enough that no two envelopes a
/// signer makes are byte-for-byte alike.
pub fn nonce() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system has no random source");
    u64::from_le_bytes(bytes)
}
