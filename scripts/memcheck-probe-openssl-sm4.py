"""Is the SM4-GCM tag of the OpenSSL inside the cryptography wheel defined, as memcheck sees it?

No module of sls_envelope is loaded here.  Run it with Debian's python3 and its suppressions:

    PYTHONMALLOC=malloc valgrind -q --suppressions=/usr/lib/valgrind/python3.supp \
        build/c-checks/memcheck-venv/bin/python scripts/memcheck-probe-openssl-sm4.py

With cryptography 50.0.2 and 51.0.1 (2026-12, Intel Xeon, valgrind 3.19) memcheck reports
"Conditional jump or move depends on uninitialised value(s)" at the tag comparison for every
non-empty message, never at the ciphertext's: why the memcheck stage takes its SM4-GCM
references from tests/reference_gcm.py (docs/SECURITY.md, "Hardening checks").

Each result is compared with an equal value made by a second cipher object, so memcheck examines
every byte (an unequal comparison stops at the first difference).  Markers on stderr show which
comparison memcheck flags.
"""
import os
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
import cryptography


def seal(n: int):
    enc = Cipher(algorithms.SM4(bytes(range(16))), modes.GCM(bytes(12))).encryptor()
    enc.authenticate_additional_data(b"h" * 99)
    ct = enc.update(bytes(range(n))) + enc.finalize()
    return ct, enc.tag


for n in [int(a) for a in sys.argv[1:]] or (0, 1, 15, 16, 17, 64, 100):
    (ct, tag), (ct2, tag2) = seal(n), seal(n)
    os.write(2, b"-- %s n=%d ciphertext\n" % (cryptography.__version__.encode(), n))
    assert ct == ct2
    os.write(2, b"-- %s n=%d tag\n" % (cryptography.__version__.encode(), n))
    assert tag == tag2
os.write(2, b"-- end\n")
