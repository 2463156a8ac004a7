"""Open a survey store and read contiguous objects from it.

:class:`SurveyStore` is the only reader of survey stores in the package.  A
read of objects ``[i, j)`` asks Zarr for each column once; Zarr fetches every
chunk the range touches with one request (one per shard when a whole Zarr
shard is read), and the 1-D columns are fetched concurrently with the images
so that on an object store their latency hides behind the image transfer.
:meth:`SurveyStore.iter_batches` adds read-ahead so decoding of the next range
overlaps the caller's work on the current one.

Transient storage errors are retried (:mod:`surveyproc.retry`).  An inference
read may ask for ``quarantine=True``: pixels that stay unreadable (a chunk that
does not decode, a key that answers 5xx however often it is asked) then come
back as NaN with the ``UNREADABLE`` flag and the cause in
:attr:`CutoutBatch.unreadable`, so one bad chunk costs its objects' estimates,
not the run.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr

from ..errors import InvalidParameterError, StoreAccessError, StoreNotFoundError, describe_error
from ..flags import Flag
from ..fs import normalize, redact, resolve, zarr_store
from ..retry import DEFAULT_POLICY, RetryPolicy, is_transient, retrying
from . import layout
from .batch import CutoutBatch
from .shards import Shard, plan_shards
from .validate import StoreLayout, validate_group, zarr_array

__all__ = ["SurveyStore", "open_store"]

_COLUMN_WINDOW = 8192  # objects of 1-D columns read at once (~90 bytes each for 20 columns)
_CACHED_WINDOWS = 4  # windows kept: enough for a few read-ahead threads


def open_store(
    url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    check_ids: bool = True,
) -> SurveyStore:
    """Open and validate the survey store at ``url``.

    Parameters
    ----------
    url
        Any fsspec URL or local path of a Zarr v3 group.
    storage_options
        Passed to fsspec (e.g. ``{"endpoint_url": ...}`` for S3); credentials
        otherwise come from the environment's standard chain.
    check_ids
        Read ``object_id`` and reject duplicates (8 bytes per object; linear
        time when ids are sorted, as surveyproc writes them).

    Raises
    ------
    StoreNotFoundError
        Nothing, or no Zarr group, at ``url``.
    StoreFormatError
        The group breaks the store contract; the message names the rule.
    """
    url = normalize(url)
    shown = redact(url)
    try:
        store = zarr_store(url, storage_options, read_only=True)
        group = retrying("open", lambda: zarr.open_group(store=store, mode="r"))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError):
        msg = f"store {shown}: no Zarr group found there (check the path or URL)"
        raise StoreNotFoundError(msg) from None
    except Exception as error:  # network, permissions, credentials: say which, in one line
        raise StoreAccessError(f"store {shown}: cannot open it ({describe_error(error)})") \
            from error
    store_layout = retrying("open", lambda: validate_group(shown, group, check_ids=check_ids))
    return SurveyStore(url, storage_options, group, store_layout)


class SurveyStore:
    """A validated, read-only survey store.

    Use :func:`open_store` to get one.  Instances pickle as their URL and
    options, so they can be passed to Ray tasks and actors, which reopen the
    store on arrival.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None,
                 group: zarr.Group, store_layout: StoreLayout) -> None:
        self._url = url
        self._storage_options = storage_options
        self.group = group
        self.layout = store_layout
        self.attrs: dict[str, Any] = dict(group.attrs)
        self._arrays: dict[str, zarr.Array] = {}
        self._column_pool: ThreadPoolExecutor | None = None
        self._window_lock = threading.Lock()
        self._windows: collections.OrderedDict[tuple, Future] = collections.OrderedDict()
        chunk = int(self.array(layout.OBJECT_ID).chunks[0])
        #: Objects per cached window of 1-D columns: whole column chunks, at least 8,192.
        self.column_window = -(-max(chunk, _COLUMN_WINDOW) // chunk) * chunk

    def __reduce__(self):
        return (_reopen, (self._url, self._storage_options))

    def __repr__(self) -> str:
        lay = self.layout
        return (f"SurveyStore({self.url!r}, n_objects={lay.n_objects}, bands={list(lay.bands)}, "
                f"size={lay.height}x{lay.width})")

    # -- description -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store's URL, safe to print."""
        return redact(self._url)

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options the store was opened with (to reopen it elsewhere)."""
        return dict(self._storage_options or {})

    def filesystem(self):
        """``(fsspec filesystem, path)`` of the store, e.g. to measure its stored size."""
        return resolve(self._url, self._storage_options)

    @property
    def n_objects(self) -> int:
        return self.layout.n_objects

    def __len__(self) -> int:
        return self.layout.n_objects

    @property
    def bands(self) -> tuple[str, ...]:
        return self.layout.bands

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.layout.labels

    # -- reading -----------------------------------------------------------------------------

    def array(self, name: str) -> zarr.Array:
        """The Zarr array ``name`` (metadata fetched once per store object)."""
        if name not in self._arrays:
            self._arrays[name] = zarr_array(self.url, self.group, name)
        return self._arrays[name]

    def read_column(self, name: str) -> np.ndarray:
        """A whole 1-D column, e.g. ``"object_id"`` or ``"labels/redshift"``."""
        if name == layout.FLAGS and not self.layout.has_flags:
            return np.zeros(self.n_objects, dtype=np.int32)
        return np.asarray(self.array(name)[:])

    def _check_range(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.n_objects:
            msg = (f"store {self.url}: object range [{start}, {stop}) is outside "
                   f"[0, {self.n_objects})")
            raise InvalidParameterError(msg)

    def _columns(self, labels: bool | Sequence[str], photometry: bool) -> list[str]:
        names = [layout.OBJECT_ID, layout.RA, layout.DEC]
        if self.layout.has_flags:
            names.append(layout.FLAGS)
        if photometry:
            names += [f"{layout.PHOTOMETRY}/{b}" for b in self.layout.photometry_bands]
            names += [f"{layout.PHOTOMETRY_ERROR}/{b}"
                      for b in self.layout.photometry_error_bands]
        wanted = self.layout.labels if labels is True else (labels or ())
        unknown = [name for name in wanted if name not in self.layout.labels]
        if unknown:
            msg = (f"store {self.url}: no label(s) {unknown}; it has "
                   f"{list(self.layout.labels) or 'none'}")
            raise InvalidParameterError(msg)
        names += [f"{layout.LABELS}/{name}" for name in wanted]
        return names

    def read(
        self,
        start: int,
        stop: int,
        *,
        images: bool = True,
        labels: bool | Sequence[str] = True,
        photometry: bool = True,
        quarantine: bool = False,
        measures: bool = False,
    ) -> CutoutBatch:
        """Objects ``[start, stop)`` with the requested columns (``quarantine``: see above);
        a photometry-only store's batches have no images, whatever ``images`` says.
        ``measures``: also the pixel measures the store keeps, if it keeps them (else the
        batch's ``measures`` is None and a caller measures the pixels itself).

        Examples
        --------
        >>> from surveyproc.testing import tiny_store
        >>> store = tiny_store(n=10, chunk=4)
        >>> batch = store.read(2, 7)
        >>> batch.images.shape, batch.object_id.tolist()
        ((5, 2, 8, 8), [2, 3, 4, 5, 6])
        """
        self._check_range(start, stop)
        names = tuple(self._columns(labels, photometry))
        unreadable: list[str] = []
        lost = np.zeros(stop - start, dtype=bool)  # objects of quarantined chunks
        pixels = None
        wants_measures = measures and images and self.layout.has_pixel_measures
        # fetched beside the pixels, so that their request's latency hides behind them
        kept_future = (self._pool().submit(self._read_rows, layout.PIXEL_MEASURES,
                                           slice(start, stop)) if wants_measures else None)
        if images and self.layout.has_images:
            try:
                pixels = self._read_images(start, stop)
            except Exception as error:
                if not (quarantine and _unreadable(error)):
                    raise
                pixels, lost, unreadable = self._quarantined(start, stop, error)
        values = self._column_values(names, start, stop)
        kept = None if kept_future is None else _kept_measures(kept_future, lost, quarantine)
        flags = values.get(layout.FLAGS, np.zeros(stop - start, dtype=np.int32))
        if unreadable:
            flags = np.asarray(flags, dtype=np.int32) | np.where(
                lost, np.int32(Flag.UNREADABLE), np.int32(0))
        return CutoutBatch(
            start=start,
            object_id=values[layout.OBJECT_ID],
            ra=values[layout.RA],
            dec=values[layout.DEC],
            images=pixels,
            flags=flags,
            photometry={n.split("/", 1)[1]: v for n, v in values.items()
                        if n.startswith(layout.PHOTOMETRY + "/")},
            photometry_error={n.split("/", 1)[1]: v for n, v in values.items()
                              if n.startswith(layout.PHOTOMETRY_ERROR + "/")},
            labels={n.split("/", 1)[1]: v for n, v in values.items()
                    if n.startswith(layout.LABELS + "/")},
            unreadable=unreadable,
            measures=kept,
        )

    def _read_images(self, start: int, stop: int, policy: RetryPolicy = DEFAULT_POLICY
                     ) -> np.ndarray:
        return retrying("read", lambda: np.asarray(self.array(layout.IMAGES)[start:stop]),
                        policy)

    def _quarantined(self, start: int, stop: int, error: Exception
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Pixels of ``[start, stop)`` read chunk by chunk after a read of them failed: the
        chunks that stay unreadable become NaN (``lost``), each named with its cause.  The
        failed read has spent its retries, so each chunk gets a few more, not a full set."""
        lay = self.layout
        pixels = np.full((stop - start, len(lay.bands), lay.height, lay.width), np.nan,
                         dtype=self.array(layout.IMAGES).dtype)
        step = lay.chunk_objects
        chunks = [(a, min(a - a % step + step, stop)) for a in
                  [start, *range(start - start % step + step, stop, step)]]
        lost = np.ones(stop - start, dtype=bool)
        if len(chunks) == 1:
            return pixels, lost, [f"objects {start}-{stop}: {describe_error(error)}"]
        unreadable = []
        for a, b in chunks:
            try:
                pixels[a - start:b - start] = self._read_images(a, b, _CHUNK_REREAD)
                lost[a - start:b - start] = False
            except Exception as chunk_error:
                if not _unreadable(chunk_error):
                    raise
                unreadable.append(f"objects {a}-{b}: {describe_error(chunk_error)}")
        return pixels, lost, unreadable

    def _column_values(self, names: tuple[str, ...], start: int, stop: int) -> dict[str, Any]:
        """1-D columns of ``[start, stop)``, served from a cached window when one covers it.

        Each Zarr read costs about a millisecond of Python before any I/O, so
        reading twenty label columns chunk by chunk would cost more than the
        images.  Ranges that fit in one aligned window of
        :attr:`column_window` objects are cut from that window, read once with
        one call per column (its chunks fetched concurrently).
        """
        window = self.column_window
        w0 = start - start % window
        w1 = min(w0 + window, self.n_objects)
        if stop > w1:
            return self._read_columns(names, start, stop)
        key = (w0, names)
        with self._window_lock:
            cached_future = self._windows.get(key)
            owner = cached_future is None
            future: Future = Future() if cached_future is None else cached_future
            if owner:
                self._windows[key] = future
                while len(self._windows) > _CACHED_WINDOWS:
                    self._windows.popitem(last=False)
            else:
                self._windows.move_to_end(key)
        if owner:
            try:
                future.set_result(self._read_columns(names, w0, w1))
            except BaseException as error:
                future.set_exception(error)
                with self._window_lock:
                    self._windows.pop(key, None)
                raise
        cached = future.result()
        return {name: values[start - w0:stop - w0] for name, values in cached.items()}

    def _pool(self) -> ThreadPoolExecutor:
        if self._column_pool is None:
            self._column_pool = ThreadPoolExecutor(max_workers=8,
                                                   thread_name_prefix="surveyproc-read")
        return self._column_pool

    def _read_columns(self, names: tuple[str, ...], start: int, stop: int) -> dict[str, Any]:
        rows = slice(start, stop)
        pool = self._pool()
        futures = {name: pool.submit(self._read_rows, name, rows) for name in names}
        return {name: future.result() for name, future in futures.items()}

    def _read_rows(self, name: str, rows: slice) -> np.ndarray:
        return retrying("read", lambda: np.asarray(self.array(name)[rows]))

    def iter_batches(
        self,
        ranges: Iterable[tuple[int, int] | Shard],
        *,
        prefetch: int = 2,
        **columns: Any,
    ) -> Iterator[CutoutBatch]:
        """Read ``ranges`` in order, keeping up to ``prefetch`` reads ahead of the caller.

        ``columns`` are passed to :meth:`read` (``images``, ``labels``, ``photometry``).
        Memory held is bounded by ``prefetch + 1`` batches.
        """
        spans = [(r.start, r.stop) if isinstance(r, Shard) else tuple(r) for r in ranges]
        if prefetch < 1:
            for start, stop in spans:
                yield self.read(start, stop, **columns)
            return
        pending: collections.deque[Future[CutoutBatch]] = collections.deque()
        with ThreadPoolExecutor(max_workers=prefetch,
                                thread_name_prefix="surveyproc-prefetch") as pool:
            queue = iter(spans)
            try:
                for start, stop in queue:
                    pending.append(pool.submit(self.read, start, stop, **columns))
                    if len(pending) > prefetch:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    # -- planning ----------------------------------------------------------------------------

    def chunk_ranges(self) -> list[Shard]:
        """One range per image chunk (the smallest readable unit)."""
        return plan_shards(self.n_objects, self.layout.chunk_objects)

    def plan_shards(self, *, objects_per_shard: int | None = None,
                    n_shards: int | None = None) -> list[Shard]:
        """Shards aligned to the store's write unit; see :func:`~.shards.plan_shards`."""
        return plan_shards(self.n_objects, self.layout.write_unit,
                           objects_per_shard=objects_per_shard, n_shards=n_shards)

    def drop_cache(self) -> None:
        """Forget cached column windows (benchmarks; or after the store was rewritten)."""
        with self._window_lock:
            self._windows.clear()

    def close(self) -> None:
        """Release the reader threads and cached columns (the store stays usable)."""
        self.drop_cache()
        if self._column_pool is not None:
            self._column_pool.shutdown(wait=False)
            self._column_pool = None


#: Retries of one chunk re-read after a multi-chunk read failed (see ``_quarantined``)
_CHUNK_REREAD = RetryPolicy(attempts=3)


def _kept_measures(future: Future, lost: np.ndarray, quarantine: bool) -> np.ndarray | None:
    """The pixel measures ``future`` read, NaN for objects whose pixels were lost (their
    placeholders measure as NaN too); None where they could not be read under
    ``quarantine``: the caller then measures the pixels it has."""
    try:
        values = future.result()
    except Exception as error:
        if not (quarantine and _unreadable(error)):
            raise
        return None
    if lost.any():
        values = values.copy()
        values[lost] = np.nan
    return values


def _unreadable(error: Exception) -> bool:
    """Errors that quarantine pixels: storage failures that outlived their retries, and
    chunks that do not decode (codecs raise RuntimeError or ValueError), never bugs."""
    return is_transient(error) or isinstance(error, OSError | RuntimeError | ValueError)


def _reopen(url: str, storage_options: dict[str, Any] | None) -> SurveyStore:
    # Workers trust the driver's validation; skip the id scan on arrival.
    return open_store(url, storage_options, check_ids=False)
