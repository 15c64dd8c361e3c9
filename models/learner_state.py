"""A data-only, versioned file format for the cluster learner's state.

The learner's state travels on the ``segment-models`` topic, which anyone
allowed to write to it could forge: it must never run code when read (the
first format was a pickle, and ``pickle.loads`` of a crafted record executes
whatever it names). The state is an ``npz`` archive (numpy's zip of ``.npy``
arrays) read with ``allow_pickle=False``, so only plain numbers and bytes come
back:

* ``meta``: UTF-8 JSON (as a ``uint8`` array) holding the kind, the format
  version, the constructor parameters and every scalar, id, key and event;
* numeric arrays (``float64`` / ``int64``): the sample store, the model's
  centroids and its standardisation.

:func:`decode` validates everything before anything is built: archive size
and members, the kind and version, the JSON types, array dtypes and shapes,
finite values. A failure raises :class:`LearnerStateError` with the reason.

Examples
--------
>>> import numpy as np
>>> data = encode({"kind": "demo", "version": 1}, {"x": np.arange(3.0)})
>>> meta, arrays = decode(data, kind="demo", version=1)
>>> meta["version"], arrays["x"].tolist()
(1, [0.0, 1.0, 2.0])
>>> import pickle
>>> try:
...     decode(pickle.dumps({"x": 1}), kind="demo", version=1)
... except LearnerStateError as exc:
...     print(exc)
not a learner state: expected an npz archive
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

__all__ = ["MAX_MEMBERS", "MAX_UNCOMPRESSED_BYTES", "LearnerStateError", "decode", "encode"]

MAX_UNCOMPRESSED_BYTES = 64 * 1024 * 1024
"""Largest state accepted (uncompressed): a zip bomb is refused before it is read."""
MAX_MEMBERS = 32
"""Most arrays in one state archive."""


class LearnerStateError(ValueError):
    """The bytes are not a valid learner state of the expected kind and version."""


def encode(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    """An npz archive of ``arrays`` plus ``meta`` as JSON (compressed)."""
    if "meta" in arrays:
        raise ValueError("'meta' is reserved")
    buffer = io.BytesIO()
    payload = {"meta": np.frombuffer(orjson.dumps(dict(meta)), dtype=np.uint8)}
    payload.update({name: np.ascontiguousarray(value) for name, value in arrays.items()})
    np.savez_compressed(buffer, **payload)  # type: ignore[arg-type]
    return buffer.getvalue()


def decode(data: bytes, kind: str, version: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The ``meta`` dict and the numeric arrays of an :func:`encode` archive.

    Raises
    ------
    LearnerStateError
        Not an archive, too large, an array of objects, bad JSON, another kind
        or version.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LearnerStateError("not a learner state: expected bytes")
    raw = bytes(data)
    if not raw.startswith(b"PK"):
        raise LearnerStateError("not a learner state: expected an npz archive")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise LearnerStateError(f"learner state has {len(members)} members")
            if sum(m.file_size for m in members) > MAX_UNCOMPRESSED_BYTES:
                raise LearnerStateError("learner state is too large")
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except LearnerStateError:
        raise
    except Exception as exc:  # zipfile, numpy (object arrays refused), ...
        raise LearnerStateError(f"unreadable learner state: {exc}") from exc
    blob = arrays.pop("meta", None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise LearnerStateError("learner state lacks its metadata")
    try:
        meta = orjson.loads(blob.tobytes())
    except orjson.JSONDecodeError as exc:
        raise LearnerStateError(f"learner state metadata is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise LearnerStateError("learner state metadata is not an object")
    if meta.get("kind") != kind:
        raise LearnerStateError(f"not a {kind} state (kind {meta.get('kind')!r})")
    if meta.get("version") != version:
        raise LearnerStateError(
            f"{kind} state version {meta.get('version')!r} is not supported (expected {version})"
        )
    for name, array in arrays.items():
        if array.dtype.kind not in "fiu":
            raise LearnerStateError(f"array {name!r} is not numeric ({array.dtype})")
    return meta, arrays
