"""Retry transient storage errors with capped exponential backoff, and count the retries.

Object stores answer a small fraction of requests with 5xx, stall, or reset
connections; over a run of days every shard meets some.  The S3 client's own
retries come first (botocore's, unless a job's storage options turn them off);
whatever still escapes them on the data path (reading chunks, writing parts,
commit records and the commit log) is retried here: up to
:attr:`RetryPolicy.attempts` tries, waiting ``base * 2**n`` seconds capped at
``cap``, with jitter so that many actors do not retry in step.  Errors that
no retry can fix (a missing key, refused credentials, a chunk that does not
decode) are raised at once.  Every retry is counted per operation in this
process (:func:`retry_counts`); actors send theirs with each shard's report,
so they reach the metrics.
"""

from __future__ import annotations

import errno
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .redact import scrub

__all__ = ["DEFAULT_POLICY", "RetryPolicy", "is_transient", "retry_counts", "retrying"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: OSError numbers that say the request itself is wrong: retrying cannot help.
_PERMANENT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EINVAL, errno.EISDIR,
                     errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.EROFS}
#: Libraries whose own exception types mean "the connection or the service failed".
_NETWORK_MODULES = {"botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "http"}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry (the default waits about 12 s in all)."""

    attempts: int = 8
    base: float = 0.1
    cap: float = 5.0

    def delay(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1-based): capped, with jitter in [0.5, 1]."""
        return min(self.cap, self.base * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


DEFAULT_POLICY = RetryPolicy()

_counts: Counter[str] = Counter()
_lock = threading.Lock()


def is_transient(error: BaseException) -> bool:
    """True for failures a later try may not meet: timeouts, resets, 5xx answers.

    >>> is_transient(TimeoutError()), is_transient(OSError(errno.EBUSY, "SlowDown"))
    (True, True)
    >>> is_transient(FileNotFoundError("s3://b/k")), is_transient(ValueError("bad zstd"))
    (False, False)
    """
    if isinstance(error, OSError):
        return error.errno not in _PERMANENT_ERRNOS and not isinstance(
            error, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError)
    if isinstance(error, TimeoutError | ConnectionError):
        return True
    return type(error).__module__.split(".")[0] in _NETWORK_MODULES


def retrying(operation: str, call: Callable[[], T], policy: RetryPolicy = DEFAULT_POLICY) -> T:
    """``call()``, tried again after transient errors; ``operation`` names it in the counts.

    >>> attempts = []
    >>> def flaky():
    ...     attempts.append(1)
    ...     if len(attempts) < 3:
    ...         raise ConnectionResetError("reset by peer")
    ...     return "done"
    >>> retrying("doctest", flaky, RetryPolicy(base=0.001)), retry_counts()["doctest"] >= 2
    ('done', True)
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except Exception as error:
            if attempt == policy.attempts or not is_transient(error):
                raise
            with _lock:
                _counts[operation] += 1
            wait = policy.delay(attempt)
            log.info("%s failed (%s: %s); retry %d of %d in %.2f s", operation,
                     type(error).__name__, scrub(str(error)).split("\n")[0][:120],
                     attempt, policy.attempts - 1, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def retry_counts() -> dict[str, int]:
    """Retries made in this process so far, per operation."""
    with _lock:
        return dict(_counts)
