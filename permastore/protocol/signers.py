"""Signers for the three ANS-104 signature types, and one function to verify any of them.

    1  Arweave   RSA-4096 PSS/SHA-256; owner = modulus (512 bytes), signature 512 bytes
    2  ed25519   owner = public key (32 bytes), signature 64 bytes
    3  Ethereum  secp256k1 over keccak256 of the EIP-191 personal message;
                 owner = uncompressed public key (65 bytes), signature r || s || v (65 bytes)
"""

from typing import Protocol

import coincurve
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


def _verify_rsa(owner: bytes, message: bytes, signature: bytes) -> bool:
    if len(owner) == 0 or len(signature) != len(owner):
        return False
    public = rsa.RSAPublicNumbers(RSA_PUBLIC_EXPONENT, int.from_bytes(owner, "big")).public_key()
    try:
        # Salt length AUTO: the network holds signatures made with salt 0, 32 and 478.
        public.verify(signature, message, _pss(padding.PSS.AUTO), hashes.SHA256())
    except _CryptoInvalidSignature:
        return False
    return True


def _verify_ed25519(owner: bytes, message: bytes, signature: bytes) -> bool:
    if len(owner) != 32 or len(signature) != 64:
        return False
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(owner).verify(signature, message)
    except _CryptoInvalidSignature:
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
    try:
        recovered = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([recovery_id]), eip191_hash(message), hasher=None
        )
    except Exception:  # coincurve raises plain Exception for unrecoverable signatures
        return False
    return recovered.format(compressed=False) == owner


_VERIFIERS = {ARWEAVE: _verify_rsa, ED25519: _verify_ed25519, ETHEREUM: _verify_ethereum}


def verify_signature(signature_type: int, owner: bytes, message: bytes, signature: bytes) -> bool:
    """Given a signature type, owner, message and signature, return whether it verifies."""
    verifier = _VERIFIERS.get(signature_type)
    if verifier is None:
        raise MalformedData(f"unsupported signature type {signature_type}")
    return verifier(bytes(owner), bytes(message), bytes(signature))
