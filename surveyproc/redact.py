"""Credentials out of URLs and messages, before they reach a log line or an error.

Its own module (not part of :mod:`surveyproc.fs`) because both the file-system
layer and :mod:`surveyproc.errors` need it, and those two must not import each
other.
"""

from __future__ import annotations

import re

__all__ = ["USERINFO", "redact", "scrub"]

#: ``scheme://user:password@`` at the start of a URL.
USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def redact(url: str) -> str:
    """Remove any ``user:password@`` part so the URL is safe to log.

    Examples
    --------
    >>> redact("s3://AKIA:secret@bucket/survey.zarr")
    's3://bucket/survey.zarr'
    >>> redact("/data/survey.zarr")
    '/data/survey.zarr'
    """
    return USERINFO.sub(r"\1", url)


def scrub(text: str) -> str:
    """Redact every ``scheme://user:secret@`` inside free text (e.g. a library's error message).

    Examples
    --------
    >>> scrub("cannot open s3://key:secret@bucket/x: denied")
    'cannot open s3://bucket/x: denied'
    """
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@", r"\1", text)
