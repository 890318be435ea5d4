"""Helpers shared by every test folder: the test wallet, signed objects, real server processes.

Fixtures built on them (``jwk``, ``rsa_signer``, ``ed_signer``) live in ``tests/conftest.py``.
"""
