"""Arweave wallets as RSA-4096 JWKs (pure: no files; see permastore.store.wallet_file)."""

import hashlib

from cryptography.hazmat.primitives.asymmetric import rsa

from . import b64url
from .errors import MalformedData
from .signers import RSA_PUBLIC_EXPONENT

KEY_BITS = 4096


def _b64_int(value: int) -> str:
    return b64url.encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def generate_jwk() -> dict:
    """Return a new RSA-4096 (e = 65537) private JWK in Arweave's keyfile shape."""
    key = rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=KEY_BITS)
    numbers = key.private_numbers()
    public = numbers.public_numbers
    return {
        "kty": "RSA",
        "e": _b64_int(public.e),
        "n": _b64_int(public.n),
        "d": _b64_int(numbers.d),
        "p": _b64_int(numbers.p),
        "q": _b64_int(numbers.q),
        "dp": _b64_int(numbers.dmp1),
        "dq": _b64_int(numbers.dmq1),
        "qi": _b64_int(numbers.iqmp),
    }


def jwk_owner(jwk: dict) -> bytes:
    """Given a JWK, return its owner bytes (the RSA modulus)."""
    if not isinstance(jwk, dict) or "n" not in jwk:
        raise MalformedData("JWK has no modulus field 'n'")
    return b64url.decode(jwk["n"])


def address_of(owner: bytes) -> str:
    """Given owner bytes, return the address: base64url of their SHA-256."""
    return b64url.encode(hashlib.sha256(owner).digest())
