#!/usr/bin/env python3
"""Open a TdeEngine KMS ciphertext blob with nothing but the raw key-version material.

This is the exit door promised in docs/file-format.md: whoever holds the 32 bytes of a key
version (for example material they imported with BYOK) can decrypt every blob sealed under it
with standard tools, without TdeEngine. Needs the `cryptography` package (Debian:
python3-cryptography).

usage: open_kms_blob.py CIPHERTEXT_BLOB_BASE64 MATERIAL_HEX [ENCRYPTION_CONTEXT_JSON]
prints the plaintext, Base64-encoded.
"""
import base64
import json
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def canonical_context(context: dict) -> bytes:
    """The AAD suffix: sorted keys, no whitespace, UTF-8; empty for an empty context."""
    if not context:
        return b""
    return json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def open_blob(blob: bytes, material: bytes, context: dict) -> bytes:
    if blob[:4] != b"TKMS" or blob[4] != 1:
        raise ValueError("not a TdeEngine KMS blob (magic 'TKMS', version 1)")
    algorithm = blob[5]
    l1 = blob[6]
    l2 = blob[7 + l1]
    header_length = 8 + l1 + l2
    aad = blob[:header_length] + canonical_context(context)
    body = blob[header_length:]
    if algorithm == 2:
        # Per-blob subkey: AES-256-CTR keystream of the version key under salt || 00000002.
        salt, body = body[:12], body[12:]
        ctr = Cipher(algorithms.AES(material), modes.CTR(salt + b"\x00\x00\x00\x02")).encryptor()
        key = ctr.update(bytes(32)) + ctr.finalize()
    elif algorithm == 1:
        key = material
    else:
        raise ValueError(f"unknown algorithm {algorithm}")
    nonce, ciphertext_and_tag = body[:12], body[12:]
    return AESGCM(key).decrypt(nonce, ciphertext_and_tag, aad)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    blob = base64.b64decode(sys.argv[1])
    material = bytes.fromhex(sys.argv[2])
    context = json.loads(sys.argv[3]) if len(sys.argv) == 4 else {}
    print(base64.b64encode(open_blob(blob, material, context)).decode("ascii"))
