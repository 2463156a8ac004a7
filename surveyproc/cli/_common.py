"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..jobs import parse_assignment
from ..store.layout import COMPRESSIONS, DEFAULT_COMPRESSION

__all__ = [
    "add_job_arguments",
    "add_layout_options",
    "add_storage_option",
    "bands",
    "layout_kwargs",
    "storage_options",
]


def storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}`` (values parsed as YAML scalars)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        keys, value = parse_assignment(pair)
        node = options
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return options


def bands(text: str) -> tuple[str, ...]:
    """Comma-separated band names."""
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    if not names:
        msg = "give bands as a comma-separated list, e.g. g,r,i,z"
        raise argparse.ArgumentTypeError(msg)
    return names


def add_storage_option(parser: argparse.ArgumentParser, flag: str = "--storage-option",
                       short: str | None = "-o", what: str = "the store") -> None:
    names = [short, flag] if short else [flag]
    parser.add_argument(*names, action="append", default=[], metavar="KEY=VALUE",
                        dest=flag.lstrip("-").replace("-", "_"),
                        help=f"fsspec option for {what} (repeatable), e.g. "
                             "endpoint_url=http://127.0.0.1:9000; credentials come from the "
                             "environment (AWS_ACCESS_KEY_ID, ...), never from here")


def add_job_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The job file and its ``--set`` overrides, shared by the job-driven commands."""
    parser.add_argument("job", help="job file (YAML), e.g. jobs/quickstart.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a job-file value, e.g. --set {example}")


def add_layout_options(parser: argparse.ArgumentParser) -> None:
    """Options of a new store's layout: chunking, sharding, compression, dtype."""
    group = parser.add_argument_group("store layout")
    group.add_argument("--chunk", type=int, default=256, help="objects per chunk (256)")
    group.add_argument("--shard-chunks", type=int, default=None,
                       help="chunks per Zarr v3 shard (object stores); default unsharded")
    group.add_argument("--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
                       help=f"image compression ({DEFAULT_COMPRESSION}: lz4 after a bit "
                       "shuffle, small and fast to decode)")
    group.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    group.add_argument("--overwrite", action="store_true", help="replace an existing store")
    group.add_argument("--serial", action="store_true", help="run in this process, no Ray")
    group.add_argument("--ray-address", default=None, help="join this Ray cluster")
    group.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded Ray")


def layout_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of the store writers from :func:`add_layout_options`' options."""
    return {"chunk_objects": args.chunk, "shard_chunks": args.shard_chunks,
            "compression": args.compression, "dtype": args.dtype,
            "overwrite": args.overwrite, "parallel": not args.serial,
            "storage_options": storage_options(args.storage_option)}
