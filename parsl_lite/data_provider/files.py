"""``File``: a name for data that apps read and write, usable where a path is."""
from __future__ import annotations

import os
from typing import Optional, Union
from urllib.parse import urlparse

from typeguard import TypeCheckError


class File:
    """A file given by path or URL (``/data/x.txt``, ``file:///data/x.txt``).

    A ``File`` works wherever a path does (``open(f)``, ``os.fspath(f)``,
    f-strings give its path), so bash apps can format it into commands.

    Args:
        url: a local path or a URL; ``file`` is assumed without a scheme.
    """

    __slots__ = ("url", "scheme", "netloc", "path", "filename", "local_path")

    def __init__(self, url: Union[str, os.PathLike]) -> None:
        if not isinstance(url, (str, os.PathLike)):  # Parsl's File is @typechecked: the same exception type
            raise TypeCheckError(f'argument "url" ({type(url).__name__}) did not match any element in the union:'
                                 f"\n  os.PathLike: is not an instance of os.PathLike\n  str: is not an instance of str")
        self.url = os.fspath(url)
        parsed = urlparse(self.url)
        self.scheme = parsed.scheme if parsed.scheme else "file"
        self.netloc = parsed.netloc
        self.path = parsed.path
        self.filename = os.path.basename(self.path)
        self.local_path: Optional[str] = None

    @property
    def filepath(self) -> str:
        """Where the file is on this machine (its staged copy, or its path)."""
        if self.local_path is not None:
            return self.local_path
        if self.scheme in ("file", ""):
            return self.path
        raise ValueError(f"No local_path set for {self!r}")  # Parsl's words: a non-file URL must be staged

    def cleancopy(self) -> "File":
        """A copy without the local (staged) path."""
        return File(self.url)

    def __fspath__(self) -> str:
        return self.filepath

    def __str__(self) -> str:
        return self.filepath

    def __repr__(self) -> str:
        """Parsl's form: ``<File at 0x.. url=.. scheme=.. netloc=.. path=.. filename=..[ local_path=..]>``."""
        local = "" if self.local_path is None else f" local_path={self.local_path}"
        return (f"<{type(self).__name__} at 0x{id(self):x} url={self.url} scheme={self.scheme} "
                f"netloc={self.netloc} path={self.path} filename={self.filename}{local}>")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> tuple:
        return (_rebuild, (self.url, self.local_path))


def _rebuild(url: str, local_path: Optional[str]) -> File:
    f = File(url)
    f.local_path = local_path
    return f
