"""
Storage backends, one module each (fsspec's ``implementations/`` is the model), and the registry
that maps a URL scheme to its backend class.

* :mod:`.base`: the public base every backend implements, and the types they hand back;
* :mod:`.local`: local directories, through checked descriptors;
* :mod:`.remote`: what the remote ones share (listing, downloads);
* :mod:`.s3`, :mod:`.sftp`: each its publishing and its sweep of what killed workers left;
* :mod:`.generic`: any other scheme an installed provider has a file system for.

A new backend is one module: a :class:`~.base.Backend` subclass naming its schemes in
``protocols``, registered with :func:`register_backend` (the built-in ones below).
"""

from __future__ import annotations

from typing import TypeVar

from airflow_byo.exceptions import ByoConfigError
from airflow_byo.storage.backends.base import Backend
from airflow_byo.storage.backends.generic import GenericBackend
from airflow_byo.storage.backends.local import LocalBackend
from airflow_byo.storage.backends.s3 import S3Backend
from airflow_byo.storage.backends.sftp import SftpBackend

__all__ = ["Backend", "backend_class", "register_backend"]

B = TypeVar("B", bound=type[Backend])

_REGISTRY: dict[str, type[Backend]] = {}


def register_backend(backend: B, *, clobber: bool = False) -> B:
    """
    Serve each scheme of ``backend.protocols`` with ``backend`` (also a class decorator). A scheme
    served by another backend already is refused unless ``clobber``.
    """
    for protocol in backend.protocols:
        known = _REGISTRY.get(protocol)
        if known is not None and known is not backend and not clobber:
            raise ByoConfigError(
                f"storage backend {backend.__qualname__}: '{protocol}://' is served by {known.__qualname__} "
                "already; choose another scheme, or pass clobber=True to replace it"
            )
        _REGISTRY[protocol] = backend
    return backend


def backend_class(protocol: str) -> type[Backend]:
    """The backend registered for ``protocol``, else the generic one for any fsspec file system."""
    return _REGISTRY.get(protocol, GenericBackend)


for _builtin in (LocalBackend, S3Backend, SftpBackend):
    register_backend(_builtin)
