"""A quick throughput comparison on this CPU: what ``sls-envelope bench`` runs.

For AES-256-GCM and SM4-GCM, every implementation this CPU runs
(:func:`~sls_envelope.available_implementations`) against pyca/cryptography (OpenSSL),
and against gmssl's pure-Python SM4 at small sizes, as

* ``single``: one ``encrypt(nonce, message, aad)`` call per message;
* ``batch``: many messages per call (``encrypt_many``); for `cryptography`, which has
  no batch call, a Python loop over the same messages (gmssl: single calls only).

Each figure is the best of ``repeat`` rounds of at least ``min_time`` seconds (the best
round is the one least disturbed by other work on the machine).  The runner returns
data (:class:`BenchRow`); printing and plotting are the caller's.  The pytest-benchmark
suite in ``benches/`` is the thorough version (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as OpenSslAesGcm

from .aead import AESGCM, SM4GCM, available_implementations
from .sizes import KIB, MIB, format_size

__all__ = ["BenchRow", "DEFAULT_SIZES", "bench_environment", "cpu_model", "openssl_sm4_gcm", "run_bench",
           "series", "plot"]

DEFAULT_SIZES = (64, 256, KIB, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB)
#: gmssl's SM4 is pure Python (~0.1 MB/s): larger sizes would only burn time.
GMSSL_MAX_SIZE = KIB
#: A batch call carries about this many bytes, in 1 to BATCH_MAX_MESSAGES messages.
BATCH_BYTES = MIB
BATCH_MAX_MESSAGES = 1000
AAD = b"project/logstore"

Encrypt = Callable[[bytes, bytes, bytes], Any]


@dataclasses.dataclass(frozen=True)
class BenchRow:
    algorithm: str  #: "aes-256-gcm" or "sm4-gcm"
    library: str  #: "sls-envelope", "cryptography" or "gmssl"
    implementation: str  #: e.g. "aesni", "portable", "openssl", "sm4-ecb (pure Python)"
    mode: str  #: "single" or "batch"
    size: int  #: bytes per message
    messages_per_call: int
    ns_per_message: float
    gbps: float  #: 10^9 bytes per second
    ratio: Optional[float]  #: throughput / cryptography's for the same algorithm, mode and size

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def cpu_model() -> str:
    """The CPU's marketing name (``model name`` in /proc/cpuinfo on Linux), with the x86
    family and model numbers when known: figures mean little without it."""
    fields: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name


def bench_environment() -> Dict[str, Any]:
    """What a throughput figure depends on: CPU, package version, and the implementation
    each algorithm uses by default on this CPU (after ``SLS_ENVELOPE_IMPL``/``_DISABLE``)."""
    from cryptography import __version__ as cryptography_version

    from . import __version__

    return {
        "cpu": cpu_model(),
        "sls_envelope_version": __version__,
        "default_implementation": {
            "aes-256-gcm": AESGCM(bytes(32)).implementation,
            "sm4-gcm": SM4GCM(bytes(16)).implementation,
        },
        "cryptography_version": cryptography_version,
        "python": platform.python_version(),
        "batch": f"encrypt_many of about {format_size(BATCH_BYTES)} per call, at most {BATCH_MAX_MESSAGES} messages",
    }


def _seconds_per_call(call: Callable[[], Any], min_time: float, repeat: int) -> float:
    """Best per-call time over `repeat` rounds, each of enough calls to last min_time."""
    number = 1
    while True:  # calibrate (this also warms caches and the scratch buffers)
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time or number >= 1 << 20:
            break
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.1))
    best = elapsed / number
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def openssl_sm4_gcm(key: bytes) -> Encrypt:
    """SM4-GCM encrypt through pyca/cryptography (OpenSSL), the reference side by side."""
    def encrypt(nonce: bytes, data: bytes, aad: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        return encryptor.update(data) + encryptor.finalize() + encryptor.tag

    return encrypt


def _gmssl_sm4_ecb(key: bytes) -> Optional[Encrypt]:
    try:
        import gmssl.sm4
    except ImportError:
        return None
    cipher = gmssl.sm4.CryptSM4()
    cipher.set_key(key, gmssl.sm4.SM4_ENCRYPT)

    def encrypt(nonce: bytes, data: bytes, aad: bytes) -> Any:
        return cipher.crypt_ecb(data)

    return encrypt


def _contenders(algorithm: str) -> List[Tuple[str, str, Any, bool]]:
    """(library, implementation, object with .encrypt or an encrypt function, has encrypt_many)."""
    out: List[Tuple[str, str, Any, bool]] = []
    if algorithm == "aes-256-gcm":
        key = os.urandom(32)
        out.append(("cryptography", "openssl", OpenSslAesGcm(key).encrypt, False))
        for impl in available_implementations()["aes-gcm"]:
            out.append(("sls-envelope", impl, AESGCM(key, impl=impl), True))
    else:
        key = os.urandom(16)
        out.append(("cryptography", "openssl", openssl_sm4_gcm(key), False))
        for impl in available_implementations()["sm4-gcm"]:
            out.append(("sls-envelope", impl, SM4GCM(key, impl=impl), True))
        gmssl = _gmssl_sm4_ecb(key)
        if gmssl is not None:
            out.append(("gmssl", "sm4-ecb (pure Python, no GCM)", gmssl, False))
    return out


def run_bench(
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    algorithms: Sequence[str] = ("aes-256-gcm", "sm4-gcm"),
    modes_: Sequence[str] = ("single", "batch"),
    min_time: float = 0.02,
    repeat: int = 5,
    progress: Optional[Callable[[str], None]] = None,
) -> List[BenchRow]:
    """Measure every contender at every size; rows in a stable order."""
    if not sizes or any(type(s) is not int or s < 1 for s in sizes):
        raise ValueError("sizes must be positive integers")
    if min_time <= 0 or repeat < 1:
        raise ValueError("min_time must be > 0 and repeat >= 1")
    rows: List[BenchRow] = []
    for algorithm in algorithms:
        if algorithm not in ("aes-256-gcm", "sm4-gcm"):
            raise ValueError(f"unknown algorithm {algorithm!r}")
        contenders = _contenders(algorithm)
        for size in sizes:
            message = os.urandom(size)
            for mode in modes_:
                count = 1 if mode == "single" else max(1, min(BATCH_MAX_MESSAGES, BATCH_BYTES // size))
                nonces = [i.to_bytes(12, "big") for i in range(count)]
                messages = [message] * count
                measured: List[Tuple[str, str, float]] = []
                for library, impl, target, batched in contenders:
                    if library == "gmssl" and (size > GMSSL_MAX_SIZE or mode != "single"):
                        continue
                    call = _call(target, batched, mode, nonces, messages)
                    if progress is not None:
                        progress(f"{algorithm} {library} {impl} {mode} {format_size(size)}")
                    measured.append((library, impl, _seconds_per_call(call, min_time, repeat) / count))
                baseline = next((s for lib, _, s in measured if lib == "cryptography"), None)
                for library, impl, seconds in measured:
                    rows.append(BenchRow(
                        algorithm=algorithm, library=library, implementation=impl, mode=mode, size=size,
                        messages_per_call=count, ns_per_message=seconds * 1e9, gbps=size / seconds / 1e9,
                        ratio=None if baseline is None else baseline / seconds,
                    ))
    return rows


def _call(target: Any, batched: bool, mode: str, nonces: List[bytes], messages: List[bytes]) -> Callable[[], Any]:
    if batched:
        aead = target
        if mode == "single":
            nonce, message = nonces[0], messages[0]
            encrypt = aead.encrypt
            return lambda: encrypt(nonce, message, AAD)
        encrypt_many = aead.encrypt_many
        return lambda: encrypt_many(nonces, messages, AAD)
    encrypt_fn: Encrypt = target
    if mode == "single":
        nonce, message = nonces[0], messages[0]
        return lambda: encrypt_fn(nonce, message, AAD)
    pairs = list(zip(nonces, messages))
    return lambda: [encrypt_fn(n, m, AAD) for n, m in pairs]


def series(rows: Iterable[BenchRow]) -> Dict[Tuple[str, str, str, str], List[Tuple[int, float]]]:
    """Rows grouped for plotting: (algorithm, library, implementation, mode) -> [(size, GB/s)]."""
    out: Dict[Tuple[str, str, str, str], List[Tuple[int, float]]] = {}
    for row in rows:
        out.setdefault((row.algorithm, row.library, row.implementation, row.mode), []).append((row.size, row.gbps))
    return out


def _mode_label(mode: str, rows: Sequence[BenchRow]) -> str:
    if mode != "batch":
        return "single call"
    counts = sorted({row.messages_per_call for row in rows if row.mode == "batch"})
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"batch of {span} msgs (~{format_size(BATCH_BYTES)}/call)"


def plot(rows: Sequence[BenchRow], path: str, environment: Optional[Dict[str, Any]] = None) -> None:
    """A log-log chart of throughput against message size, one panel per algorithm,
    saved as PNG, titled with the CPU, the version and the default implementations
    (``environment``, :func:`bench_environment` by default) and one legend below the
    panels, clear of the curves.  Needs matplotlib (the ``plot`` extra); ImportError otherwise."""
    env = bench_environment() if environment is None else environment
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    algorithms_ = sorted({row.algorithm for row in rows})
    # One colour per library and implementation, one line style per mode.
    contenders = sorted({(row.library, row.implementation) for row in rows})
    palette = plt.get_cmap("tab10")
    colours = {c: palette(i % 10) for i, c in enumerate(contenders)}
    fig, axes = plt.subplots(1, len(algorithms_), figsize=(6.5 * len(algorithms_), 4.8), squeeze=False)
    for ax, algorithm in zip(axes[0], algorithms_):
        for (alg, library, impl, mode), points in sorted(series(rows).items()):
            if alg != algorithm:
                continue
            xs, ys = zip(*sorted(points))
            label = f"{library} {impl}" if library != "sls-envelope" else f"sls-envelope {impl}"
            ax.plot(xs, ys, marker="o", markersize=3, linestyle="-" if mode == "single" else "--",
                    color=colours[(library, impl)], label=f"{label}, {_mode_label(mode, rows)}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{algorithm} encrypt")
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("throughput (GB/s)")
        ax.grid(True, which="both", alpha=0.3)
    # One legend for all panels, below them (the panels share contenders and line styles).
    handles: Dict[str, Any] = {}
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    defaults = ", ".join(f"{alg}: {impl}" for alg, impl in env["default_implementation"].items())
    fig.suptitle(f"{env['cpu']}\nsls-envelope {env['sls_envelope_version']}, defaults {defaults}", fontsize=9)
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=2, fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
