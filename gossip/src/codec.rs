//! Wire format of gossiped blocks: topics, message ids, and the signed envelope
//! (`snappy_block( signature(65) ++ [parentBeaconBlockRoot(32)] ++ SSZ(payload) )`), built on
//! op-alloy's [`OpNetworkPayloadEnvelope`].

use alloy_consensus::Block;
use alloy_primitives::{keccak256, Address, Signature, B256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use op_alloy_consensus::OpTxEnvelope;
use op_alloy_rpc_types_engine::{
    OpExecutionPayload, OpNetworkPayloadEnvelope, PayloadEnvelopeError, PayloadHash,
};
use sha2::{Digest, Sha256};

/// The four block-gossip versions; each has its own topic (`/optimism/<chain>/<v-1>/blocks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockVersion {
    /// `ExecutionPayloadV1` (pre-Canyon).
    V1,
    /// `ExecutionPayloadV2` with empty withdrawals (Canyon, Delta).
    V2,
    /// `ExecutionPayloadV3` with the parent beacon block root (Ecotone, Fjord, Granite, Holocene).
    V3,
    /// `OpExecutionPayloadV4` with the L2 withdrawals root (Isthmus).
    V4,
}

impl BlockVersion {
    /// All versions, oldest first.
    pub const ALL: [Self; 4] = [Self::V1, Self::V2, Self::V3, Self::V4];

    /// Index in the topic name (0 for v1).
    pub fn index(self) -> u8 {
        match self {
            Self::V1 => 0,
            Self::V2 => 1,
            Self::V3 => 2,
            Self::V4 => 3,
        }
    }

    /// The gossip topic of this version on `chain_id`.
    pub fn topic(self, chain_id: u64) -> String {
        format!("/optimism/{chain_id}/{}/blocks", self.index())
    }

    /// The version a topic carries, if it is one of `chain_id`'s block topics.
    pub fn from_topic(chain_id: u64, topic: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.topic(chain_id) == topic)
    }

    /// The version of a payload variant.
    pub fn of(payload: &OpExecutionPayload) -> Self {
        match payload {
            OpExecutionPayload::V1(_) => Self::V1,
            OpExecutionPayload::V2(_) => Self::V2,
            OpExecutionPayload::V3(_) => Self::V3,
            OpExecutionPayload::V4(_) => Self::V4,
        }
    }

    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::V3 => "v3",
            Self::V4 => "v4",
        }
    }
}

/// Largest gossip message (10 MiB).
pub const MAX_GOSSIP_SIZE: usize = 10 * (1 << 20);
/// Smallest gossip message: a 65-byte signature and at least one byte.
pub const MIN_GOSSIP_SIZE: usize = 66;

/// The devnet's unsafe-block signer key (anvil's tenth dev key,
/// address `0xa0Ee7A142d267C1f36714E4a8F75612F20a79720`): `flashnode devnet` signs every sealed
/// block with it, and nodes following a devnet pass its address as the sequencer address.
/// Public knowledge: for local chains only.
pub const DEV_UNSAFE_BLOCK_SIGNER_KEY: &str =
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6";

/// Which gossipsub message-id function this node computes.
///
/// Both hash the snappy-decoded data (domain `[1,0,0,0]`) or the raw data when it does not
/// decode (domain `[0,0,0,0]`) with SHA-256 and keep 20 bytes. op-node
/// (`op-node/p2p/gossip.go`, `BuildMsgIdFn`) also mixes in the topic (its length as a u64
/// little-endian, then the topic); the spec and kona (`kona-gossip`) do not. Ids are local to
/// each node (they drive dedup and IHAVE/IWANT), so nodes of either kind share one mesh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageIdMode {
    /// op-node's: domain, topic length, topic, data.
    #[default]
    OpNode,
    /// The spec's and kona's: domain, data.
    Spec,
}

/// Computes a gossipsub message id (see [`MessageIdMode`]): 20 bytes of
/// SHA-256(domain ++ [topic length u64 LE ++ topic] ++ data), where data is the
/// snappy-decoded message when it decodes within the size cap, else the raw message.
pub fn message_id(mode: MessageIdMode, topic: &str, data: &[u8]) -> Vec<u8> {
    let decoded = snap::raw::decompress_len(data)
        .ok()
        .filter(|len| *len <= MAX_GOSSIP_SIZE)
        .and_then(|_| snap::raw::Decoder::new().decompress_vec(data).ok());
    let mut h = Sha256::new();
    match &decoded {
        Some(_) => h.update([1u8, 0, 0, 0]),
        None => h.update([0u8, 0, 0, 0]),
    }
    if mode == MessageIdMode::OpNode {
        h.update((topic.len() as u64).to_le_bytes());
        h.update(topic.as_bytes());
    }
    h.update(decoded.as_deref().unwrap_or(data));
    h.finalize()[..20].to_vec()
}

/// Why a block could not be encoded or signed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// SSZ or snappy encoding failed.
    #[error("cannot encode the payload: {0}")]
    Encode(String),
    /// v3/v4 payloads need the parent beacon block root.
    #[error("a v3/v4 payload needs the parent beacon block root")]
    MissingBeaconRoot,
    /// Signing failed.
    #[error("cannot sign the payload: {0}")]
    Sign(String),
}

/// Why a gossip message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Larger than the gossip cap before or after decompression.
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    /// Shorter than a signature plus one byte.
    #[error("message too small ({0} bytes)")]
    TooSmall(usize),
    /// Snappy, signature bytes or SSZ are broken.
    #[error("bad encoding: {0}")]
    Encoding(#[from] PayloadEnvelopeError),
}

/// A signed block ready for the wire, with its encoding.
#[derive(Clone, Debug)]
pub struct SignedBlock {
    /// Version (topic) it goes out on.
    pub version: BlockVersion,
    /// The envelope (payload, signature, payload hash, beacon root).
    pub envelope: OpNetworkPayloadEnvelope,
    /// Snappy-compressed wire bytes.
    pub wire: Vec<u8>,
}

fn encode_envelope(env: &OpNetworkPayloadEnvelope) -> Result<Vec<u8>, EncodeError> {
    if matches!(env.payload, OpExecutionPayload::V3(_) | OpExecutionPayload::V4(_))
        && env.parent_beacon_block_root.is_none()
    {
        return Err(EncodeError::MissingBeaconRoot);
    }
    let res = match env.payload {
        OpExecutionPayload::V1(_) => env.encode_v1(),
        OpExecutionPayload::V2(_) => env.encode_v2(),
        OpExecutionPayload::V3(_) => env.encode_v3(),
        OpExecutionPayload::V4(_) => env.encode_v4(),
    };
    res.map_err(|e| EncodeError::Encode(e.to_string()))
}

/// The bytes the signature covers: `keccak256(domain(32 zero bytes) ++ chainId(32 BE) ++
/// keccak256(payload bytes))`, where payload bytes are `[beacon root ++] SSZ(payload)` (spec,
/// "Block signatures"; op-alloy's [`PayloadHash::signature_message`]).
pub fn signing_hash(payload_hash: &PayloadHash, chain_id: u64) -> B256 {
    payload_hash.signature_message(chain_id)
}

/// Encodes `payload` and signs it with `signer` for `chain_id`.
pub fn sign_payload(
    payload: OpExecutionPayload,
    parent_beacon_block_root: Option<B256>,
    chain_id: u64,
    signer: &PrivateKeySigner,
) -> Result<SignedBlock, EncodeError> {
    let version = BlockVersion::of(&payload);
    // Encode once with a placeholder signature to get the exact payload bytes the library
    // puts on the wire, hash them, then patch the real signature in.
    let mut env = OpNetworkPayloadEnvelope {
        payload,
        signature: Signature::new(Default::default(), Default::default(), false),
        payload_hash: PayloadHash::default(),
        parent_beacon_block_root,
    };
    let draft = encode_envelope(&env)?;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&draft)
        .map_err(|e| EncodeError::Encode(e.to_string()))?;
    let payload_bytes = raw
        .get(65..)
        .ok_or_else(|| EncodeError::Encode("encoding shorter than a signature".into()))?;
    let (wire, payload_hash, sig) = sign_raw(payload_bytes, chain_id, signer)?;
    env.payload_hash = payload_hash;
    env.signature = sig;
    Ok(SignedBlock { version, envelope: env, wire })
}

/// Signs already-encoded payload bytes (`[beacon root ++] SSZ(payload)`) and returns the
/// snappy wire message, the payload hash and the signature. Nothing checks that the bytes
/// decode: adversarial tests and the fuzz targets use it to get arbitrary payload bytes past
/// the signature check.
pub fn sign_raw(
    payload: &[u8],
    chain_id: u64,
    signer: &PrivateKeySigner,
) -> Result<(Vec<u8>, PayloadHash, Signature), EncodeError> {
    let payload_hash = PayloadHash::from(payload);
    let sig = signer
        .sign_hash_sync(&signing_hash(&payload_hash, chain_id))
        .map_err(|e| EncodeError::Sign(e.to_string()))?;
    let mut raw = Vec::with_capacity(65 + payload.len());
    raw.extend_from_slice(&sig.as_bytes());
    // The wire carries v as 0/1 (op-node's `SigningHash`/`verifyBlockSignature`).
    raw[64] = sig.v() as u8;
    raw.extend_from_slice(payload);
    let wire = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|e| EncodeError::Encode(e.to_string()))?;
    Ok((wire, payload_hash, sig))
}

/// Builds and signs the gossip payload of a sealed block: the variant follows the header
/// (Isthmus headers with a requests hash give v4 with the withdrawals root, a beacon root
/// gives v3, withdrawals give v2).
pub fn sign_block(
    block: &Block<OpTxEnvelope>,
    hash: B256,
    chain_id: u64,
    signer: &PrivateKeySigner,
) -> Result<SignedBlock, EncodeError> {
    let (payload, _sidecar) = OpExecutionPayload::from_block_unchecked(hash, block);
    sign_payload(payload, block.header.parent_beacon_block_root, chain_id, signer)
}

/// [`sign_block`] for a sealed header and its transactions (post-Shanghai: empty L1
/// withdrawals list).
pub fn sign_sealed(
    header: alloy_consensus::Header,
    hash: B256,
    transactions: Vec<OpTxEnvelope>,
    chain_id: u64,
    signer: &PrivateKeySigner,
) -> Result<SignedBlock, EncodeError> {
    let withdrawals = header.withdrawals_root.map(|_| Default::default());
    let block = Block {
        header,
        body: alloy_consensus::BlockBody { transactions, ommers: vec![], withdrawals },
    };
    sign_block(&block, hash, chain_id, signer)
}

/// Decodes a gossip message of topic `version`, after the size checks of the spec.
pub fn decode(version: BlockVersion, data: &[u8]) -> Result<OpNetworkPayloadEnvelope, DecodeError> {
    if data.len() > MAX_GOSSIP_SIZE {
        return Err(DecodeError::TooLarge(data.len()));
    }
    // Check the announced decompressed length before decompressing (no snappy bombs).
    let len =
        snap::raw::decompress_len(data).map_err(|_| PayloadEnvelopeError::BrokenSnappyEncoding)?;
    if len > MAX_GOSSIP_SIZE {
        return Err(DecodeError::TooLarge(len));
    }
    if len < MIN_GOSSIP_SIZE {
        return Err(DecodeError::TooSmall(len));
    }
    Ok(match version {
        BlockVersion::V1 => OpNetworkPayloadEnvelope::decode_v1(data)?,
        BlockVersion::V2 => OpNetworkPayloadEnvelope::decode_v2(data)?,
        BlockVersion::V3 => OpNetworkPayloadEnvelope::decode_v3(data)?,
        BlockVersion::V4 => OpNetworkPayloadEnvelope::decode_v4(data)?,
    })
}

/// The signer of an envelope, recovered from its signature over [`signing_hash`].
pub fn recover_signer(env: &OpNetworkPayloadEnvelope, chain_id: u64) -> Option<Address> {
    env.signature.recover_address_from_prehash(&signing_hash(&env.payload_hash, chain_id)).ok()
}

/// Transaction hashes of a payload (keccak of each EIP-2718 encoding).
pub fn tx_hashes(payload: &OpExecutionPayload) -> Vec<B256> {
    payload.transactions().iter().map(keccak256).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloy_consensus::{BlockBody, Header};
    use alloy_primitives::{address, b256, Bytes};

    /// A deterministic test signer.
    pub fn test_signer() -> PrivateKeySigner {
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d".parse().unwrap()
    }

    /// An Isthmus-shaped block at `number` / `timestamp`.
    pub fn test_block(number: u64, timestamp: u64) -> (Block<OpTxEnvelope>, B256) {
        let header = Header {
            number,
            timestamp,
            gas_limit: 30_000_000,
            base_fee_per_gas: Some(1_000_000_000),
            beneficiary: address!("4200000000000000000000000000000000000011"),
            withdrawals_root: Some(b256!(
                "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
            )),
            blob_gas_used: Some(0),
            excess_blob_gas: Some(0),
            parent_beacon_block_root: Some(B256::repeat_byte(7)),
            requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
            extra_data: Bytes::from_static(&[0; 9]),
            ..Default::default()
        };
        let block = Block {
            header,
            body: BlockBody {
                transactions: vec![],
                ommers: vec![],
                withdrawals: Some(Default::default()),
            },
        };
        let hash = block.header.hash_slow();
        (block, hash)
    }

    #[test]
    fn topics_and_versions() {
        assert_eq!(BlockVersion::V1.topic(10), "/optimism/10/0/blocks");
        assert_eq!(BlockVersion::V4.topic(901), "/optimism/901/3/blocks");
        assert_eq!(BlockVersion::from_topic(901, "/optimism/901/2/blocks"), Some(BlockVersion::V3));
        assert_eq!(BlockVersion::from_topic(901, "/optimism/902/2/blocks"), None);
    }

    #[test]
    fn sign_roundtrip_v4() {
        let (block, hash) = test_block(5, 1_700_000_000);
        let signer = test_signer();
        let signed = sign_block(&block, hash, 901, &signer).unwrap();
        assert_eq!(signed.version, BlockVersion::V4);
        let decoded = decode(BlockVersion::V4, &signed.wire).unwrap();
        assert_eq!(decoded.payload.block_hash(), hash);
        assert_eq!(decoded.parent_beacon_block_root, Some(B256::repeat_byte(7)));
        assert_eq!(recover_signer(&decoded, 901), Some(signer.address()));
        // Another chain id gives another signer: the domain separates chains.
        assert_ne!(recover_signer(&decoded, 902), Some(signer.address()));
        // The wrong topic version does not decode to the same block.
        assert!(decode(BlockVersion::V3, &signed.wire)
            .map(|e| e.payload.block_hash() != hash)
            .unwrap_or(true));
    }

    #[test]
    fn message_ids_differ_by_mode_and_domain() {
        let data = snap::raw::Encoder::new().compress_vec(&[1u8; 100]).unwrap();
        let a = message_id(MessageIdMode::OpNode, "/optimism/901/3/blocks", &data);
        let b = message_id(MessageIdMode::Spec, "/optimism/901/3/blocks", &data);
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        // Spec id = sha256([1,0,0,0] ++ decoded)[..20].
        let mut h = Sha256::new();
        h.update([1u8, 0, 0, 0]);
        h.update([1u8; 100]);
        assert_eq!(b, h.finalize()[..20].to_vec());
        // Invalid snappy hashes the raw data under domain 0.
        let raw = vec![0xffu8; 10];
        let mut h = Sha256::new();
        h.update([0u8, 0, 0, 0]);
        h.update(&raw);
        assert_eq!(message_id(MessageIdMode::Spec, "t", &raw), h.finalize()[..20].to_vec());
    }

    #[test]
    fn decode_rejects_bombs_and_runts() {
        assert!(matches!(
            decode(BlockVersion::V4, &[0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(DecodeError::TooLarge(_)) | Err(DecodeError::Encoding(_))
        ));
        let small = snap::raw::Encoder::new().compress_vec(&[0u8; 10]).unwrap();
        assert_eq!(decode(BlockVersion::V1, &small).unwrap_err(), DecodeError::TooSmall(10));
    }
}
