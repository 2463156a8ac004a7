"""Exception hierarchy of surveyproc.

Every error a user can cause (a bad store, a bad job file, an unreadable FITS
file) is a :class:`SurveyprocError`.  The command line turns these into one
line on stderr and exit code 2, so the message must stand on its own: it names
the thing, the rule, what was received and, where possible, the fix.  Leaves
also inherit the matching built-in so that callers who catch ``ValueError`` or
``FileNotFoundError`` keep working.
"""

from __future__ import annotations

from .redact import scrub

__all__ = [
    "CatalogMismatchError",
    "CatalogNotFoundError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "ClusterError",
    "IngestError",
    "InvalidParameterError",
    "JobSpecError",
    "StoreAccessError",
    "StoreExistsError",
    "StoreFormatError",
    "StoreNotFoundError",
    "SurveyprocError",
    "credentials_problem",
    "describe_error",
]

#: Exceptions (botocore's, by name: no import of an optional dependency) that mean the
#: object store could not be reached for want of credentials.
_CREDENTIAL_ERRORS = frozenset({"NoCredentialsError", "PartialCredentialsError",
                                "CredentialRetrievalError"})


class SurveyprocError(Exception):
    """Base class of every error surveyproc raises on bad input."""


class StoreNotFoundError(SurveyprocError, FileNotFoundError):
    """No survey store at the given URL."""


class StoreAccessError(SurveyprocError, PermissionError):
    """A store exists (or may) but cannot be read: permissions, network, credentials."""


class StoreExistsError(SurveyprocError, FileExistsError):
    """A store already exists where a new one was to be created."""


class StoreFormatError(SurveyprocError, ValueError):
    """A store exists but breaks the store contract (arrays, shapes, attributes)."""


class InvalidParameterError(SurveyprocError, ValueError):
    """A function or command argument is out of its allowed range."""


class IngestError(SurveyprocError, ValueError):
    """Input files for ingest are missing, unreadable or inconsistent."""


class ClusterError(SurveyprocError, ConnectionError):
    """A remote Ray cluster cannot be used: bad address, unreachable, token refused, no such
    job."""


class JobSpecError(SurveyprocError, ValueError):
    """A job file (or an override of it) does not validate."""


class CheckpointMismatchError(SurveyprocError, ValueError):
    """A checkpoint does not fit the store or model it is used with, or is not a checkpoint."""


class CheckpointNotFoundError(SurveyprocError, FileNotFoundError):
    """No checkpoint at the given URL."""


class CatalogMismatchError(SurveyprocError, ValueError):
    """A catalog is incomplete, or was made from another store, shard plan or models."""


class CatalogNotFoundError(SurveyprocError, FileNotFoundError):
    """No catalog at the given URL."""


def credentials_problem(error: BaseException) -> str | None:
    """One line for an error caused by missing object-store credentials, else None.

    Looks through the chain of causes (and a Ray task error's ``cause``), since the
    credentials are first needed deep inside s3fs, often in a Ray worker.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__name__ in _CREDENTIAL_ERRORS:
            return ("no object-store credentials found: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment, or pass "
                    "-o anon=true (--set ...storage_options.anon=true) for a public bucket")
        pending += [c for c in (current.__cause__, current.__context__,
                                getattr(current, "cause", None))
                    if isinstance(c, BaseException)]
    return None


def describe_error(error: BaseException, limit: int = 200) -> str:
    """``"TypeName: first line of the message"``, shortened, for one-line reports of causes."""
    text = scrub(str(error).strip().splitlines()[0] if str(error).strip() else "")
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
