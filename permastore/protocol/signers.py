"""Signers for the three ANS-104 signature types, and one function to verify any of them.

    1  Arweave   RSA-4096 PSS/SHA-256; owner = modulus (512 bytes), signature 512 bytes
    2  ed25519   owner = public key (32 bytes), signature 64 bytes
    3  Ethereum  secp256k1 over keccak256 of the EIP-191 personal message;
                 owner = uncompressed public key (65 bytes), signature r || s || v (65 bytes)

Layer-1 format-2 transactions may also be signed with secp256k1 (Arweave fork 2.9), a
different scheme: ECDSA over SHA-256 of the signed message, signature r || s || recovery
id (0..3, no +27), low s only, and no owner in the tx: the public key is recovered from the
signature and the owner is its compressed form (33 bytes). See ``Secp256k1Signer`` and
``recover_secp256k1``.

Security: verification never raises on hostile input. Keys that the libraries refuse to
build (an RSA modulus < 3 or even, an ed25519 point off the curve, an unparsable ECDSA
signature) simply do not verify; callers turn that into InvalidSignature.
"""

import hashlib
from typing import Protocol

import coincurve
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from . import b64url
from .errors import MalformedData

ARWEAVE = 1
ED25519 = 2
ETHEREUM = 3

RSA_PUBLIC_EXPONENT = 65537
DEFAULT_SALT_LENGTH = 32  # what the Arweave node and arweave-js use when signing
EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class Signer(Protocol):
    """Anything that signs: its signature type, its owner bytes, and ``sign``."""

    signature_type: int
    owner: bytes

    def sign(self, message: bytes) -> bytes: ...


def _pss(salt_length) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)


def _int(jwk: dict, name: str) -> int:
    try:
        return int.from_bytes(b64url.decode(jwk[name]), "big")
    except KeyError:
        raise MalformedData(f"RSA JWK is missing field {name!r}") from None


def rsa_private_key(jwk: dict, trusted: bool = False) -> rsa.RSAPrivateKey:
    """Given an RSA JWK with private fields, return the cryptography private key.

    trusted skips OpenSSL's key consistency check (~0.3 s for RSA-4096): only for a key
    this node generated itself (its own wallet file).
    """
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        raise MalformedData("wallet must be an RSA JWK (kty RSA)")
    n = _int(jwk, "n")
    public = rsa.RSAPublicNumbers(_int(jwk, "e"), n)
    numbers = rsa.RSAPrivateNumbers(
        p=_int(jwk, "p"),
        q=_int(jwk, "q"),
        d=_int(jwk, "d"),
        dmp1=_int(jwk, "dp"),
        dmq1=_int(jwk, "dq"),
        iqmp=_int(jwk, "qi"),
        public_numbers=public,
    )
    return numbers.private_key(unsafe_skip_rsa_key_validation=trusted)


class RsaSigner:
    """Given an Arweave RSA JWK, sign with RSA-PSS SHA-256 at a chosen salt length."""

    signature_type = ARWEAVE

    def __init__(self, jwk: dict, salt_length: int = DEFAULT_SALT_LENGTH, trusted: bool = False):
        self._key = rsa_private_key(jwk, trusted)
        self.owner = b64url.decode(jwk["n"])
        self.salt_length = salt_length

    def sign(self, message: bytes) -> bytes:
        """Given a message, return its 512-byte RSA-PSS signature."""
        return self._key.sign(message, _pss(self.salt_length), hashes.SHA256())


class Ed25519Signer:
    """Given a 32-byte ed25519 private key (seed), sign messages as-is."""

    signature_type = ED25519

    def __init__(self, private_bytes: bytes):
        if len(private_bytes) != 32:
            raise MalformedData(f"ed25519 private key must be 32 bytes, got {len(private_bytes)}")
        self._key = ed25519.Ed25519PrivateKey.from_private_bytes(private_bytes)
        self.owner = self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """Given a message, return its 64-byte ed25519 signature."""
        return self._key.sign(message)


def eip191_hash(message: bytes) -> bytes:
    """Given a message, return keccak256 of its EIP-191 personal-message form."""
    prefixed = EIP191_PREFIX + str(len(message)).encode("ascii") + message
    # Imported here: pycryptodome's loader costs ~70 ms, paid only by Ethereum items.
    from Crypto.Hash import keccak

    return keccak.new(digest_bits=256, data=prefixed).digest()


class EthereumSigner:
    """Given a 32-byte secp256k1 private key, sign as Ethereum's personal_sign (v = 27/28)."""

    signature_type = ETHEREUM

    def __init__(self, private_bytes: bytes):
        if len(private_bytes) != 32:
            raise MalformedData(f"secp256k1 private key must be 32 bytes, got {len(private_bytes)}")
        self._key = coincurve.PrivateKey(private_bytes)
        self.owner = self._key.public_key.format(compressed=False)

    def sign(self, message: bytes) -> bytes:
        """Given a message, return r || s || v over its EIP-191 hash."""
        recoverable = self._key.sign_recoverable(eip191_hash(message), hasher=None)
        return recoverable[:64] + bytes([recoverable[64] + 27])


# Largest RSA owner (modulus) verified: Arweave's own limit on a tx owner (4096 bits).
MAX_RSA_OWNER = 512
# What the libraries raise on keys or signatures they cannot even parse (an all-zero modulus
# gives ValueError "n must be >= 3"). All of them mean "does not verify", never a crash.
_MALFORMED_KEY_ERRORS = (_CryptoInvalidSignature, ValueError, TypeError, OverflowError, ArithmeticError)


def _verify_rsa(owner: bytes, message: bytes, signature: bytes) -> bool:
    if not 0 < len(owner) <= MAX_RSA_OWNER or len(signature) != len(owner):
        return False
    try:
        public = rsa.RSAPublicNumbers(RSA_PUBLIC_EXPONENT, int.from_bytes(owner, "big")).public_key()
        # Salt length AUTO: the network holds signatures made with salt 0, 32 and 478.
        public.verify(signature, message, _pss(padding.PSS.AUTO), hashes.SHA256())
    except _MALFORMED_KEY_ERRORS:
        return False
    return True


def _verify_ed25519(owner: bytes, message: bytes, signature: bytes) -> bool:
    if len(owner) != 32 or len(signature) != 64:
        return False
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(owner).verify(signature, message)
    except _MALFORMED_KEY_ERRORS:
        return False
    return True


def _verify_ethereum(owner: bytes, message: bytes, signature: bytes) -> bool:
    if len(owner) != 65 or len(signature) != 65:
        return False
    # Only low-s signatures, as libsecp256k1 (arbundles) accepts: otherwise (r, n - s) would be
    # a second valid signature, hence a second ID, for the same item.
    if int.from_bytes(signature[32:64], "big") > SECP256K1_ORDER // 2:
        return False
    v = signature[64]
    recovery_id = v - 27 if v >= 27 else v
    if recovery_id not in (0, 1):
        return False
    recovered = _recover(signature[:64] + bytes([recovery_id]), eip191_hash(message))
    return recovered is not None and recovered.format(compressed=False) == owner


def _recover(signature: bytes, digest: bytes):
    """Given r || s || recovery id and a 32-byte digest, return the coincurve PublicKey, or None."""
    try:
        return coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception:  # coincurve raises plain Exception for unrecoverable signatures
        return None


SECP256K1_OWNER_SIZE = 33  # compressed public key: the owner of a secp256k1 L1 tx
SECP256K1_SIGNATURE_SIZE = 65


class Secp256k1Signer:
    """Given a 32-byte secp256k1 private key, sign layer-1 txs as Arweave does since fork 2.9.

    Not an ANS-104 signer (that scheme is ``EthereumSigner``): ``signature_type`` is None so
    that ``ans104.build_header`` refuses it.
    """

    signature_type = None

    def __init__(self, private_bytes: bytes):
        if len(private_bytes) != 32:
            raise MalformedData(f"secp256k1 private key must be 32 bytes, got {len(private_bytes)}")
        self._key = coincurve.PrivateKey(private_bytes)
        self.owner = self._key.public_key.format(compressed=True)

    def sign(self, message: bytes) -> bytes:
        """Given a message, return r || s || recovery id over its SHA-256 (RFC 6979, low s)."""
        return self._key.sign_recoverable(hashlib.sha256(message).digest(), hasher=None)


def recover_secp256k1(message: bytes, signature: bytes) -> bytes | None:
    """Given a signed message and a 65-byte r || s || recovery id, return the signer's
    compressed public key (33 bytes), or None when the signature is not a valid one.

    As Arweave's node: the digest is SHA-256 of the message, the recovery id is 0..3, and
    only low-s signatures count (otherwise (r, n - s) would be a second signature, hence a
    second ID, for the same tx).
    """
    signature = bytes(signature)
    if len(signature) != SECP256K1_SIGNATURE_SIZE or signature[64] > 3:
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if not (0 < r < SECP256K1_ORDER and 0 < s <= SECP256K1_ORDER // 2):
        return None
    digest = hashlib.sha256(bytes(message)).digest()
    recovered = _recover(signature, digest)
    if recovered is None:
        return None
    try:  # the node checks the recovered key with a plain verify too; so do we
        if not recovered.verify(cdata_to_der(deserialize_compact(signature[:64])), digest, hasher=None):
            return None
    except Exception:
        return None
    return recovered.format(compressed=True)


_VERIFIERS = {ARWEAVE: _verify_rsa, ED25519: _verify_ed25519, ETHEREUM: _verify_ethereum}


def verify_signature(signature_type: int, owner: bytes, message: bytes, signature: bytes) -> bool:
    """Given a signature type, owner, message and signature, return whether it verifies."""
    verifier = _VERIFIERS.get(signature_type)
    if verifier is None:
        raise MalformedData(f"unsupported signature type {signature_type}")
    return verifier(bytes(owner), bytes(message), bytes(signature))
