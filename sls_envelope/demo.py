"""The end-to-end demonstration behind ``sls-envelope demo``.

It does the main job of the library on the embedded default KMS, in a home directory
of its own: a CMK and a RAM role that trusts the log service, a service-key AES
Logstore and a BYOK SM4 Logstore, a realistic access-log stream sealed and opened
through both (every byte compared), then the CMK disabled (the BYOK Logstore refuses
reads and writes, the service-key one goes on) and enabled again.

The library never prints: steps are reported through the ``say`` callback and the
figures come back as a :class:`DemoResult`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Callable, Iterable, List, Optional

from .exceptions import KeyInvalidError
from .home import Home
from .keys import LogstoreCipher
from .kms.local import create_log_service_role

__all__ = ["LogstoreFigures", "DemoResult", "DemoFailure", "access_log_lines", "pack_batches", "run_demo"]

DEFAULT_RECORDS = 200_000
DEFAULT_BATCH_BYTES = 256 * 1024
#: How often the demo's BYOK Logstore re-checks its CMK (KeyManager's default is 60 s).
DEMO_REVALIDATE_AFTER = 0.5
PROJECT = "demo-project"

Say = Callable[[str], None]


class DemoFailure(RuntimeError):
    """The demo saw something the library promises not to do."""


@dataclasses.dataclass(frozen=True)
class LogstoreFigures:
    name: str
    suite: str
    key_type: str
    batches: int
    plaintext_bytes: int
    sealed_bytes: int
    encrypt_seconds: float  #: best of the rounds, all batches
    decrypt_seconds: float

    @property
    def encrypt_bytes_per_second(self) -> float:
        return self.plaintext_bytes / self.encrypt_seconds

    @property
    def decrypt_bytes_per_second(self) -> float:
        return self.plaintext_bytes / self.decrypt_seconds


@dataclasses.dataclass(frozen=True)
class DemoResult:
    records: int
    batches: int
    plaintext_bytes: int
    logstores: List[LogstoreFigures]
    refusals: List[str]  #: what the disabled CMK's Logstore answered, one line each
    seconds: float


# ---- the log stream -------------------------------------------------------------------

_PATHS = [
    "/", "/index.html", "/api/v1/orders", "/api/v1/orders/{id}", "/api/v1/users/{id}", "/api/v1/cart",
    "/api/v1/search?q=shoes&page={page}", "/static/js/app.{id}.js", "/static/css/site.css",
    "/images/products/{id}.jpg", "/healthz", "/login", "/logout", "/checkout",
]
_PATH_WEIGHTS = [5, 8, 12, 10, 9, 6, 7, 10, 6, 14, 4, 3, 1, 2]
_METHODS = ["GET", "POST", "PUT", "DELETE"]
_METHOD_WEIGHTS = [80, 14, 4, 2]
_STATUSES = [200, 201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 502, 503]
_STATUS_WEIGHTS = [700, 30, 20, 10, 90, 15, 10, 5, 60, 8, 6, 3, 3]
_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "curl/8.8.0",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
]
_REFERERS = ["-", "https://shop.example.com/", "https://www.google.com/", "https://shop.example.com/cart"]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def access_log_lines(count: int, *, seed: int = 2024, start: float = 1_717_200_000.0) -> List[bytes]:
    """``count`` nginx "combined" access-log lines (plus request time and upstream),
    deterministic for a seed, about 200 bytes each, one request every ~2 ms."""
    rng = random.Random(seed)
    ips = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
           for _ in range(5000)]
    clients = rng.choices(ips, k=count)
    methods = rng.choices(_METHODS, _METHOD_WEIGHTS, k=count)
    paths = rng.choices(_PATHS, _PATH_WEIGHTS, k=count)
    statuses = rng.choices(_STATUSES, _STATUS_WEIGHTS, k=count)
    agents = rng.choices(_AGENTS, k=count)
    referers = rng.choices(_REFERERS, [6, 2, 1, 1], k=count)
    lines: List[bytes] = []
    now = start
    for i in range(count):
        now += rng.expovariate(500.0)
        t = time.gmtime(now)
        path = paths[i]
        if "{" in path:
            path = path.format(id=rng.randrange(1, 10**6), page=rng.randrange(1, 20))
        status = statuses[i]
        size = 0 if status in (204, 304) else int(rng.lognormvariate(7.5, 1.2))
        lines.append(
            (
                f'{clients[i]} - - [{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:'
                f'{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000] "{methods[i]} {path} HTTP/1.1" '
                f'{status} {size} "{referers[i]}" "{agents[i]}" rt={rng.expovariate(40.0):.3f} '
                f'upstream=10.0.{i % 8}.{11 + i % 5}:8080\n'
            ).encode("ascii")
        )
    return lines


def pack_batches(lines: Iterable[bytes], batch_bytes: int = DEFAULT_BATCH_BYTES) -> List[bytes]:
    """Lines packed into batches of at most batch_bytes (a longer line is a batch alone)."""
    batches: List[bytes] = []
    current: List[bytes] = []
    size = 0
    for line in lines:
        if current and size + len(line) > batch_bytes:
            batches.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        batches.append(b"".join(current))
    return batches


# ---- the flow ----------------------------------------------------------------------------


def _best_of(rounds: int, work: Callable[[], List[bytes]]) -> "tuple[float, List[bytes]]":
    best, out = float("inf"), []
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = work()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _round_trip(name: str, cipher: LogstoreCipher, batches: List[bytes], rounds: int) -> "tuple[LogstoreFigures, List[bytes]]":
    encrypt, decrypt = cipher.encrypt, cipher.decrypt
    enc_s, sealed = _best_of(rounds, lambda: [encrypt(b) for b in batches])
    dec_s, opened = _best_of(rounds, lambda: [decrypt(b) for b in sealed])
    if opened != batches:
        raise DemoFailure(f"{name}: the decrypted stream differs from the original")
    figures = LogstoreFigures(
        name=name, suite=cipher.suite, key_type=cipher.key_type, batches=len(batches),
        plaintext_bytes=sum(map(len, batches)), sealed_bytes=sum(map(len, sealed)),
        encrypt_seconds=enc_s, decrypt_seconds=dec_s,
    )
    return figures, sealed


def _refused(what: str, call: Callable[[], object]) -> str:
    try:
        call()
    except KeyInvalidError as exc:
        return f"{what}: refused ({exc.code})"
    raise DemoFailure(f"{what} succeeded although its CMK is disabled")


def run_demo(
    home_dir: str,
    *,
    records: int = DEFAULT_RECORDS,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    rounds: int = 3,
    say: Optional[Say] = None,
) -> DemoResult:
    """Run the demonstration in ``home_dir`` (an empty directory the caller owns)."""
    report: Say = say or (lambda _line: None)
    started = time.perf_counter()
    home = Home(home_dir)
    kms = home.open_kms()
    manager = home.open_manager(kms, revalidate_after=DEMO_REVALIDATE_AFTER)
    try:
        cmk = kms.create_key("sls-envelope demo: the customer's CMK")
        arn = create_log_service_role(kms, "sls-demo-byok")
        report(f"KMS: CMK {cmk}; RAM role {arn} trusting log.aliyuncs.com")
        service_name, byok_name = "access-log-aes", "access-log-sm4-byok"
        service = manager.create_logstore(PROJECT, service_name, {"enable": True, "encrypt_type": "default"})
        byok = manager.create_logstore(PROJECT, byok_name, {
            "enable": True, "encrypt_type": "sm4",
            "user_cmk_info": {"cmk_key_id": cmk, "arn": arn, "region_id": "cn-hangzhou"},
        })
        assert service is not None and byok is not None
        report(f"Logstores: {PROJECT}/{service_name} (AES-256-GCM, service key), "
               f"{PROJECT}/{byok_name} (SM4-GCM, BYOK)")

        batches = pack_batches(access_log_lines(records), batch_bytes)
        total = sum(map(len, batches))
        report(f"Log stream: {records:,} access-log records, {total / 1e6:.1f} MB in {len(batches)} batches")

        figures = []
        sealed = {}
        for name, cipher in ((service_name, service), (byok_name, byok)):
            fig, sealed[name] = _round_trip(f"{PROJECT}/{name}", cipher, batches, rounds)
            figures.append(fig)
            report(f"{PROJECT}/{name}: encrypted, decrypted and verified {fig.plaintext_bytes:,} bytes")

        kms.disable_key(cmk)
        time.sleep(DEMO_REVALIDATE_AFTER)  # the BYOK cipher's next call re-checks the CMK
        refusals = [
            _refused(f"write to {PROJECT}/{byok_name}", lambda: byok.encrypt(batches[0])),
            _refused(f"read from {PROJECT}/{byok_name}", lambda: byok.decrypt(sealed[byok_name][0])),
        ]
        if service.decrypt(service.encrypt(batches[0])) != batches[0]:
            raise DemoFailure("the service-key Logstore failed while the customer's CMK was disabled")
        report(f"CMK disabled: {'; '.join(refusals)}; {PROJECT}/{service_name} goes on")

        kms.enable_key(cmk)
        time.sleep(DEMO_REVALIDATE_AFTER)  # a refusal is remembered until the next check
        if byok.decrypt(sealed[byok_name][-1]) != batches[-1]:
            raise DemoFailure("the BYOK Logstore did not read its data after the CMK was enabled again")
        report(f"CMK enabled again: {PROJECT}/{byok_name} reads and writes again")
        return DemoResult(
            records=records, batches=len(batches), plaintext_bytes=total, logstores=figures,
            refusals=refusals, seconds=time.perf_counter() - started,
        )
    finally:
        manager.close()
