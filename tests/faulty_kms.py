"""A KmsClient wrapper that injects faults, for fault-injection and soak tests.

It stands between KeyManager and a real backend (LocalKms in the tests) and, per call,
may inject:

* transient faults, retried inside the wrapper exactly as a backend retries them
  (:func:`sls_envelope.kms.base.call_with_retries`, bounded attempts, the sleeps
  recorded instead of slept): ``timeout`` (the call hangs, then fails),
  ``throttling`` (``Throttling``), ``5xx`` (``InternalFailure``);
* answers a buggy or hostile KMS could give, passed through unchanged for the caller
  to catch: ``malformed`` (a data key of the wrong type or length, a DataKey with an
  empty blob, a describe_key result without its fields), ``wrong`` (a well-formed
  key that is not the one asked for: another random key, or a DataKey whose plaintext
  is not what its blob unwraps to);
* ``refuse``: the CMK refused (KeyInvalidError ``Rejected.Disabled``), as when a
  customer disables their key.

Every logical call is logged (:attr:`FaultyKms.calls`) with its attempts and outcome,
and the outcomes of the calls made by the current thread since
:meth:`FaultyKms.mark` are available to it (:meth:`FaultyKms.outcomes_since_mark`),
so a test can tell whether an operation it just ran was served a fault.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar

from sls_envelope.exceptions import KeyInvalidError, KmsUnavailableError
from sls_envelope.kms.base import DataKey, EncryptionContext, KmsClient, RetryPolicy, TransientKmsError, call_with_retries

T = TypeVar("T")

TRANSIENT = ("timeout", "throttling", "5xx")
BAD_ANSWERS = ("malformed", "wrong")
ALL_KINDS = TRANSIENT + BAD_ANSWERS + ("refuse",)

_TRANSIENT_CODES = {"timeout": "Timeout", "throttling": "Throttling", "5xx": "InternalFailure"}


@dataclasses.dataclass
class CallRecord:
    """One logical KMS call as the caller saw it."""

    method: str
    attempts: int = 0
    injected: List[str] = dataclasses.field(default_factory=list)
    #: "ok", "malformed", "wrong", "refused", "unavailable" or "error" (the backend's own)
    outcome: str = "ok"


class FaultyKms(KmsClient):
    """Wraps ``inner``; ``rates`` maps a fault kind to its probability per attempt
    (transient kinds) or per call (the others).  ``only`` limits injection to some
    methods (e.g. ``{"decrypt"}``).  Thread-safe."""

    def __init__(
        self,
        inner: KmsClient,
        rates: Optional[Mapping[str, float]] = None,
        *,
        seed: int = 0,
        retry_policy: Optional[RetryPolicy] = None,
        only: Optional[Sequence[str]] = None,
        timeout_seconds: float = 0.0,
        _shared: Optional["_Shared"] = None,
    ) -> None:
        self._inner = inner
        self._s = _shared or _Shared(dict(rates or {}), seed, retry_policy or RetryPolicy(attempts=4),
                                     set(only) if only is not None else None, timeout_seconds)
        unknown = set(self._s.rates) - set(ALL_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")

    # ---- control and observation ---------------------------------------------------

    @property
    def rates(self) -> Dict[str, float]:
        return self._s.rates

    def set_rates(self, **rates: float) -> None:
        with self._s.lock:
            self._s.rates.update(rates)

    def force(self, kind: Optional[str], count: int = 1) -> None:
        """Inject ``kind`` into the next ``count`` calls (None: clear)."""
        with self._s.lock:
            self._s.forced = [kind] * count if kind else []

    @property
    def calls(self) -> List[CallRecord]:
        with self._s.lock:
            return list(self._s.calls)

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._s.policy

    @property
    def sleeps(self) -> List[float]:
        with self._s.lock:
            return list(self._s.sleeps)

    def mark(self) -> None:
        """Start collecting this thread's call outcomes afresh."""
        self._s.local.outcomes = []

    def outcomes_since_mark(self) -> List[str]:
        return list(getattr(self._s.local, "outcomes", []))

    # ---- KmsClient --------------------------------------------------------------------

    def generate_data_key(self, key_id: str, *, context: EncryptionContext, number_of_bytes: int = 32) -> DataKey:
        def bad(kind: str, real: DataKey) -> DataKey:
            if kind == "malformed":
                choice = self._s.rng_choice(["short", "empty_blob", "not_bytes"])
                if choice == "short":
                    return DataKey(real.key_id, real.plaintext[:-1], real.ciphertext_blob)
                if choice == "empty_blob":
                    return DataKey(real.key_id, real.plaintext, b"")
                return DataKey(real.key_id, real.plaintext.hex(), real.ciphertext_blob)  # type: ignore[arg-type]
            # wrong: a plaintext that is not what the blob unwraps to
            return DataKey(real.key_id, os.urandom(len(real.plaintext)), real.ciphertext_blob)

        return self._call("generate_data_key",
                          lambda: self._inner.generate_data_key(key_id, context=context,
                                                                number_of_bytes=number_of_bytes), bad)

    def decrypt(self, ciphertext_blob: bytes, *, context: EncryptionContext) -> bytes:
        def bad(kind: str, real: bytes) -> Any:
            if kind == "malformed":
                return self._s.rng_choice([real[:-1], real + b"\0", b"", None, real.hex(), bytearray(real)[:16]])
            return os.urandom(len(real))  # wrong: well formed, not the key

        return self._call("decrypt", lambda: self._inner.decrypt(ciphertext_blob, context=context), bad)

    def describe_key(self, key_id: str) -> Dict[str, Any]:
        def bad(kind: str, real: Dict[str, Any]) -> Any:
            if kind == "malformed":
                return {"KeyId": key_id}
            return dict(real, KeyId="key-" + os.urandom(8).hex())

        return self._call("describe_key", lambda: self._inner.describe_key(key_id), bad)

    def assume_role(self, arn: str) -> KmsClient:
        role = self._call("assume_role", lambda: self._inner.assume_role(arn), None)
        # The role client shares this wrapper's faults and records.
        return FaultyKms(role, _shared=self._s)

    def create_key(self, description: str = "") -> str:
        return self._inner.create_key(description)

    def close(self) -> None:
        self._inner.close()

    def __repr__(self) -> str:
        return f"<FaultyKms over {self._inner!r} rates={self._s.rates}>"

    # ---- the machinery ------------------------------------------------------------------

    def _call(self, method: str, real: Callable[[], T], bad: Optional[Callable[[str, T], Any]]) -> T:
        s = self._s
        record = CallRecord(method)
        with s.lock:
            s.calls.append(record)
        try:
            if s.applies(method):
                if s.pick("refuse"):
                    record.injected.append("refuse")
                    record.outcome = "refused"
                    raise KeyInvalidError("the CMK is disabled (injected)", code="Rejected.Disabled")

            def attempt() -> T:
                record.attempts += 1
                if s.applies(method):
                    for kind in TRANSIENT:
                        if s.pick(kind):
                            record.injected.append(kind)
                            if kind == "timeout" and s.timeout_seconds:
                                time.sleep(s.timeout_seconds)
                            raise TransientKmsError(f"{kind} (injected)", code=_TRANSIENT_CODES[kind])
                return real()

            try:
                result = call_with_retries(attempt, policy=s.policy, what=f"KMS {method}", sleep=s.record_sleep)
            except KmsUnavailableError:
                record.outcome = "unavailable"
                raise
            except KeyInvalidError:
                record.outcome = "refused"
                raise
            except Exception:
                record.outcome = "error"
                raise
            if bad is not None and s.applies(method):
                for kind in BAD_ANSWERS:
                    if s.pick(kind):
                        record.injected.append(kind)
                        record.outcome = kind
                        return bad(kind, result)  # type: ignore[no-any-return]
            return result
        finally:
            outcomes = getattr(s.local, "outcomes", None)
            if outcomes is not None:
                outcomes.append(record.outcome)


class _Shared:
    """State shared by a wrapper and the role clients it hands out."""

    def __init__(self, rates: Dict[str, float], seed: int, policy: RetryPolicy,
                 only: Optional[set], timeout_seconds: float) -> None:
        self.rates = rates
        self.policy = policy
        self.only = only
        self.timeout_seconds = timeout_seconds
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.calls: List[CallRecord] = []
        self.sleeps: List[float] = []
        self.forced: List[str] = []
        self.local = threading.local()

    def applies(self, method: str) -> bool:
        return self.only is None or method in self.only

    def pick(self, kind: str) -> bool:
        with self.lock:
            if self.forced and self.forced[0] == kind:
                self.forced.pop(0)
                return True
            return self.rng.random() < self.rates.get(kind, 0.0)

    def rng_choice(self, options: Sequence[Any]) -> Any:
        with self.lock:
            return self.rng.choice(list(options))

    def record_sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
