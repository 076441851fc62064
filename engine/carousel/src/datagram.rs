//! The wire format of one carousel datagram, and its authentication.
//!
//! ```text
//! offset size field
//!      0    2 magic "HC"
//!      2    1 version (1)
//!      3    1 object shift: objects are 2^shift bytes except the last
//!      4    4 session id (u32, big-endian)
//!      8    6 artifact length (u48, big-endian)
//!     14    4 object index (u32, big-endian)
//!     18    1 source blocks in the object, minus one (Z - 1)
//!     19    1 SBN            \ the RFC 6330 payload id
//!     20    3 ESI (u24)      /
//!     23    1 reserved, zero
//!     24    T symbol (T = datagram length - 40, a multiple of 8)
//!   24+T   16 tag = HMAC-SHA256(key, bytes 0..24+T), first 16 bytes
//! ```
//!
//! The symbol size is not in the header: it is what is left between the
//! header and the tag. With the default T = 1408 a datagram is 1,448 bytes.
//!
//! Why HMAC-SHA256 and not `SHA3-256(key || message)`: both are sound MACs,
//! but on the target machines SHA-256 runs on the SHA-NI instructions and
//! SHA3 in software, and the bench measured SHA3 at about 130 MB/s of
//! datagrams: it alone would have capped a client at about 1 Gbit/s, below
//! what RaptorQ decodes. HMAC's keyed inner and outer states are computed once
//! per session key and cloned per datagram. Tags are compared in constant
//! time; truncation to 128 bits follows RFC 2104 section 5.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::layout::{MAX_ESI, ObjectLayout, SessionShape};

/// First two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"HC";
/// The wire version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the symbol.
pub const HEADER_LEN: usize = 24;
/// Bytes of the authentication tag after the symbol.
pub const TAG_LEN: usize = 16;
/// Header and tag together.
pub const OVERHEAD_LEN: usize = HEADER_LEN + TAG_LEN;
/// Largest datagram: a 1,500-byte IPv4 MTU less 28 bytes of IP and UDP.
pub const MAX_DATAGRAM_LEN: usize = 1472;
/// Largest symbol that fits [`MAX_DATAGRAM_LEN`] (a multiple of 8).
pub const MAX_SYMBOL_SIZE: u16 = 1432;
/// Bytes of a session key.
pub const KEY_LEN: usize = 32;

/// A session's identity and its authentication key. The relay makes one per
/// session; each client receives it over its QUIC connection.
#[derive(Clone)]
pub struct CarouselKey {
    id: u32,
    secret: [u8; KEY_LEN],
    /// HMAC with the key's inner and outer pads already absorbed.
    mac: Hmac<Sha256>,
}

impl PartialEq for CarouselKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && tags_equal(&self.secret, &other.secret)
    }
}

impl Eq for CarouselKey {}

impl CarouselKey {
    /// A key for session `id`; `secret` must come from a CSPRNG.
    pub fn new(id: u32, secret: [u8; KEY_LEN]) -> Self {
        // HMAC takes keys of any length, so this cannot fail; the fallback
        // keeps the no-panic rule without an unwrap.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
        Self { id, secret, mac }
    }

    /// The session id every datagram carries.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The secret, to hand to a client over its authenticated channel.
    pub fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    fn tag(&self, message: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(message);
        let digest = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        tag
    }
}

impl std::fmt::Debug for CarouselKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret: keys end up in logs through Debug.
        f.debug_struct("CarouselKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a datagram was dropped. Each variant is a counter the daemon keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DatagramError {
    /// Shorter than a header and a tag.
    #[error("datagram of {0} bytes is too short")]
    Truncated(usize),
    /// Longer than any datagram a sender makes.
    #[error("datagram of {0} bytes is too long")]
    TooLong(usize),
    /// Not a haifu carousel datagram.
    #[error("bad magic")]
    BadMagic,
    /// A datagram format this build does not read.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Another session's datagram (another run or relay).
    #[error("foreign session {0}")]
    ForeignSession(u32),
    /// A header field out of range.
    #[error("malformed header: {0}")]
    Malformed(&'static str),
    /// Its tag is not the session key's: sent by an outsider.
    #[error("authentication tag mismatch")]
    BadTag,
}

impl DatagramError {
    /// A short stable name for metrics and the ledger.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Truncated(_) => "truncated",
            Self::TooLong(_) => "too_long",
            Self::BadMagic => "bad_magic",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::ForeignSession(_) => "foreign_session",
            Self::Malformed(_) => "malformed",
            Self::BadTag => "bad_tag",
        }
    }
}

/// The header fields of one symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymbolHeader {
    /// Session the symbol belongs to.
    pub session_id: u32,
    /// Artifact length, object size and symbol size.
    pub shape: SessionShape,
    /// Object index in the artifact.
    pub object: u32,
    /// Source blocks in the object (`Z`, 1..=256).
    pub blocks: u32,
    /// Source block number.
    pub sbn: u8,
    /// Encoding symbol id (24-bit).
    pub esi: u32,
}

impl SymbolHeader {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.shape.object_shift);
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.extend_from_slice(&self.shape.artifact_len.to_be_bytes()[2..]);
        out.extend_from_slice(&self.object.to_be_bytes());
        // 1..=256 stored as 0..=255; the writer's callers guarantee the range.
        out.push(u8::try_from(self.blocks.saturating_sub(1)).unwrap_or(u8::MAX));
        out.push(self.sbn);
        out.extend_from_slice(&self.esi.to_be_bytes()[1..]);
        out.push(0);
    }
}

/// An authenticated symbol, ready for the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// Where the symbol belongs.
    pub header: SymbolHeader,
    /// The symbol's `T` bytes.
    pub data: Vec<u8>,
    /// The datagram's tag. It fingerprints the header and bytes for free:
    /// two datagrams with the same symbol id and different tags carry
    /// different bytes, so one of them is forged.
    pub tag: [u8; TAG_LEN],
}

/// Appends one datagram (header, symbol, tag) to `out`. `data` shorter than
/// the header's symbol size (the last symbol of a block) is zero-padded, as
/// RFC 6330 pads it; longer data is the caller's bug and is written as is.
pub fn write_datagram(key: &CarouselKey, header: &SymbolHeader, data: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let t = usize::from(header.shape.symbol_size).max(data.len());
    out.reserve(OVERHEAD_LEN + t);
    header.write(out);
    out.extend_from_slice(data);
    out.resize(start + HEADER_LEN + t, 0);
    let tag = key.tag(&out[start..]);
    out.extend_from_slice(&tag);
}

/// Checks and authenticates one datagram. Never panics, whatever the bytes.
///
/// Cheap structural checks come first, so that garbage and foreign sessions
/// cost no hashing; the tag is checked before the symbol is handed out.
pub fn parse_datagram(bytes: &[u8], key: &CarouselKey) -> Result<Symbol, DatagramError> {
    let (header, data, tag) = authenticate(bytes, key)?;
    Ok(Symbol {
        header,
        data: data.to_vec(),
        tag,
    })
}

/// [`parse_datagram`] without copying the symbol out: its header, its
/// bytes where they lie in `bytes`, and its tag.
pub(crate) fn authenticate<'a>(
    bytes: &'a [u8],
    key: &CarouselKey,
) -> Result<(SymbolHeader, &'a [u8], [u8; TAG_LEN]), DatagramError> {
    let len = bytes.len();
    if len > MAX_DATAGRAM_LEN {
        return Err(DatagramError::TooLong(len));
    }
    if len < OVERHEAD_LEN + usize::from(crate::layout::SYMBOL_ALIGNMENT) {
        return Err(DatagramError::Truncated(len));
    }
    let (message, tag) = bytes.split_at(len - TAG_LEN);
    let (h, data) = message.split_at(HEADER_LEN);
    if h[0..2] != MAGIC {
        return Err(DatagramError::BadMagic);
    }
    if h[2] != VERSION {
        return Err(DatagramError::UnsupportedVersion(h[2]));
    }
    let session_id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    if session_id != key.id() {
        return Err(DatagramError::ForeignSession(session_id));
    }
    let header = decode_header(h, data.len(), session_id)?;
    let expected = key.tag(message);
    if !tags_equal(&expected, tag) {
        return Err(DatagramError::BadTag);
    }
    Ok((header, data, expected))
}

fn decode_header(
    h: &[u8],
    symbol_len: usize,
    session_id: u32,
) -> Result<SymbolHeader, DatagramError> {
    let symbol_size =
        u16::try_from(symbol_len).map_err(|_| DatagramError::Malformed("symbol size"))?;
    let artifact_len = u64::from_be_bytes([0, 0, h[8], h[9], h[10], h[11], h[12], h[13]]);
    let shape = SessionShape::new(artifact_len, h[3], symbol_size)
        .map_err(|_| DatagramError::Malformed("session shape"))?;
    let object = u32::from_be_bytes([h[14], h[15], h[16], h[17]]);
    let blocks = u32::from(h[18]) + 1;
    let sbn = h[19];
    let esi = u32::from_be_bytes([0, h[20], h[21], h[22]]);
    if h[23] != 0 {
        return Err(DatagramError::Malformed("reserved byte"));
    }
    if object >= shape.object_count() {
        return Err(DatagramError::Malformed("object index"));
    }
    if u32::from(sbn) >= blocks {
        return Err(DatagramError::Malformed("source block number"));
    }
    // Checks that Z fits this object's symbol count, so the receiver can
    // build the layout without failing.
    let kt = shape
        .object_symbols(object)
        .map_err(|_| DatagramError::Malformed("object index"))?;
    if blocks > kt || kt.div_ceil(blocks) > crate::layout::MAX_BLOCK_SYMBOLS {
        return Err(DatagramError::Malformed("source block count"));
    }
    debug_assert!(esi <= MAX_ESI);
    Ok(SymbolHeader {
        session_id,
        shape,
        object,
        blocks,
        sbn,
        esi,
    })
}

/// Compares two tags without an early exit, so the time taken says nothing
/// about how many leading bytes matched.
fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The layout a symbol's header implies for its object.
pub fn object_layout(header: &SymbolHeader) -> Result<ObjectLayout, DatagramError> {
    ObjectLayout::new(&header.shape, header.object, header.blocks)
        .map_err(|_| DatagramError::Malformed("object layout"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CarouselKey {
        CarouselKey::new(0x0102_0304, [7u8; KEY_LEN])
    }

    fn header() -> SymbolHeader {
        SymbolHeader {
            session_id: 0x0102_0304,
            shape: SessionShape::new(100_000, 16, 16).unwrap(),
            object: 1,
            blocks: 3,
            sbn: 2,
            esi: 0x0a_0b0c,
        }
    }

    #[test]
    fn round_trips() {
        let mut out = Vec::new();
        let data: Vec<u8> = (0..16).collect();
        write_datagram(&key(), &header(), &data, &mut out);
        assert_eq!(out.len(), OVERHEAD_LEN + 16);
        let symbol = parse_datagram(&out, &key()).unwrap();
        assert_eq!(symbol.header, header());
        assert_eq!(symbol.data, data);
    }

    #[test]
    fn golden_header_layout() {
        let mut out = Vec::new();
        let data: Vec<u8> = (0..16).collect();
        write_datagram(&key(), &header(), &data, &mut out);
        let expected_header: [u8; HEADER_LEN] = [
            b'H', b'C', 1, 16, // magic, version, object shift
            0x01, 0x02, 0x03, 0x04, // session id
            0x00, 0x00, 0x00, 0x01, 0x86, 0xa0, // artifact length 100000
            0x00, 0x00, 0x00, 0x01, // object 1
            2,    // Z - 1
            2,    // SBN
            0x0a, 0x0b, 0x0c, // ESI
            0,    // reserved
        ];
        assert_eq!(&out[..HEADER_LEN], &expected_header);
        assert_eq!(&out[HEADER_LEN..HEADER_LEN + 16], &data[..]);
        // The tag is HMAC-SHA256(key, header || symbol), first 16 bytes;
        // pinned so that a change of MAC is a visible wire change.
        assert_eq!(
            out[HEADER_LEN + 16..],
            hex_bytes("c2eeaff1441e869f0202b561bfc8d132")
        );
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn tag_is_truncated_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", "what do ya want for nothing?".
        let mut key = [0u8; KEY_LEN];
        key[..4].copy_from_slice(b"Jefe");
        // A 32-byte key zero-padded is the same HMAC key as "Jefe" (keys are
        // zero-padded to the block size), so the RFC vector applies.
        let tag = CarouselKey::new(0, key).tag(b"what do ya want for nothing?");
        assert_eq!(tag.to_vec(), hex_bytes("5bdcc146bf60754e6a042426089575c7"));
    }

    #[test]
    fn each_rejection_has_its_reason() {
        let mut good = Vec::new();
        write_datagram(&key(), &header(), &[0u8; 16], &mut good);
        let other = CarouselKey::new(0x0102_0304, [8u8; KEY_LEN]);
        assert_eq!(parse_datagram(&good, &other), Err(DatagramError::BadTag));
        let foreign = CarouselKey::new(9, [7u8; KEY_LEN]);
        assert_eq!(
            parse_datagram(&good, &foreign),
            Err(DatagramError::ForeignSession(0x0102_0304))
        );
        assert_eq!(
            parse_datagram(&good[..30], &key()),
            Err(DatagramError::Truncated(30))
        );
        assert_eq!(
            parse_datagram(&[0u8; 2000], &key()),
            Err(DatagramError::TooLong(2000))
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(parse_datagram(&bad, &key()), Err(DatagramError::BadMagic));
        let mut bad = good.clone();
        bad[2] = 2;
        assert_eq!(
            parse_datagram(&bad, &key()),
            Err(DatagramError::UnsupportedVersion(2))
        );
        let mut bad = good.clone();
        bad[23] = 1;
        assert_eq!(
            parse_datagram(&bad, &key()),
            Err(DatagramError::Malformed("reserved byte"))
        );
        let mut bad = good.clone();
        bad[30] ^= 1;
        assert_eq!(parse_datagram(&bad, &key()), Err(DatagramError::BadTag));
        // Symbol size not a multiple of 8.
        let mut odd = Vec::new();
        write_datagram(&key(), &header(), &[0u8; 17], &mut odd);
        assert_eq!(
            parse_datagram(&odd, &key()),
            Err(DatagramError::Malformed("session shape"))
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", CarouselKey::new(1, [0xab; KEY_LEN]));
        assert_eq!(text, "CarouselKey { id: 1, .. }");
    }
}
