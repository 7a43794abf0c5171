"""Read-only access to a dataset stored as a folder or a zip archive.

A zip is opened lazily and once per process: ``zipfile.ZipFile`` objects hold an OS file
handle whose read position is shared, so a handle inherited through ``fork`` by DataLoader
workers would interleave reads. Pickling (spawned workers) drops the handle as well.
"""

from __future__ import annotations

import os
import posixpath
import zipfile
from collections import Counter

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def is_image_name(name: str) -> bool:
    """True for a file name that the reader treats as an image (by extension, like EG3D)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def unsafe_name_reason(name: str) -> str | None:
    """Why ``name`` is not a safe relative archive path (None when it is)."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if "\\" in name:
        return "backslash in path (use '/')"
    if ".." in name.split("/"):
        return "'..' component (path traversal)"
    return None


class Archive:
    """A dataset container: a directory or a ``.zip`` file, addressed by '/'-separated names.

    Args:
        path: folder or zip file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        if os.path.isdir(self.path):
            self.kind = "dir"
            names = []
            for root, _dirs, files in os.walk(self.path):
                for fname in files:
                    rel = os.path.relpath(os.path.join(root, fname), self.path)
                    names.append(rel.replace(os.sep, "/"))
        elif os.path.isfile(self.path):
            if not zipfile.is_zipfile(self.path):
                raise ValueError(
                    f"{self.path}: not a zip archive or folder (expected a dataset .zip or folder)"
                )
            self.kind = "zip"
            names = [info.filename for info in self._get_zip().infolist() if not info.is_dir()]
        else:
            raise FileNotFoundError(f"{self.path}: no such dataset folder or zip file")
        self.all_names: list[str] = names
        self._name_set = set(names)

    def problems(self) -> list[str]:
        """Unsafe or duplicated member names, one message per problem."""
        found = []
        for name in self.all_names:
            reason = unsafe_name_reason(name)
            if reason is not None:
                found.append(f"{self.path}: member '{name}': {reason}")
        for name, count in sorted(Counter(self.all_names).items()):
            if count > 1:
                found.append(f"{self.path}: member '{name}' appears {count} times (duplicate name)")
        return found

    def image_names(self) -> list[str]:
        """Sorted names of all image members (EG3D's order, which the labels follow)."""
        return sorted(n for n in self.all_names if is_image_name(n))

    def contains(self, name: str) -> bool:
        return name in self._name_set

    def _get_zip(self) -> zipfile.ZipFile:
        pid = os.getpid()
        if self._zip is None or self._zip_pid != pid:
            # A handle from the parent process is left alone (closing it would disturb the parent).
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = pid
        return self._zip

    def read(self, name: str) -> bytes:
        """Bytes of one member; FileNotFoundError naming the member when absent."""
        if self.kind == "dir":
            full = os.path.join(self.path, *name.split("/"))
            try:
                with open(full, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                raise FileNotFoundError(f"{full}: file not found") from None
        try:
            return self._get_zip().read(name)
        except KeyError:
            raise FileNotFoundError(f"{self.path}: member '{name}' not found") from None
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ValueError(f"{self.path}: member '{name}' cannot be read ({err})") from None

    def describe(self, name: str) -> str:
        """How to name a member in messages: 'archive.zip:member' or the file path."""
        if self.kind == "dir":
            return posixpath.join(self.path.replace(os.sep, "/"), name)
        return f"{self.path}:{name}"

    def close(self) -> None:
        if self._zip is not None and self._zip_pid == os.getpid():
            self._zip.close()
        self._zip = None
        self._zip_pid = None

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _zip=None, _zip_pid=None)
