"""The ``-o`` folder as one unit: locked for the run, written all at once, never mixing two runs.

A reader of an output folder must never see files of two runs side by side, half a set, or files
an earlier run wrote that this run did not (a stale ``side_by_side.md`` after a rerun without
variants, another endpoint's ``per_patient/*.csv`` after ``--only``). So:

* :meth:`OutputFolder.open` (before any computation) creates the folder if needed and takes an
  exclusive lock (``flock`` on ``.endpointkit.lock``: a second run into the same folder gets a clear
  error; the lock of a killed run vanishes with its process). It then finishes or removes whatever a
  killed earlier run left behind (its staging folder, ``.endpointkit-*.tmp`` files).
* :meth:`OutputFolder.commit` writes every file into ``.endpointkit-staging/``, then, with SIGINT,
  SIGTERM and SIGHUP held back, writes a journal, renames every file into place (``results.json``,
  which lists the files with their SHA-256, last), removes the files that the previous
  ``results.json`` listed and this run did not write (never any other file), and drops the journal.
  A run killed during those renames (SIGKILL, power loss) is rolled forward from the journal by the
  next run into the folder, so the folder ends as the complete new set.
* :meth:`OutputFolder.close` releases the lock and removes the folder again when this run created
  it and wrote nothing into it (a failed data load leaves no empty folder behind).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .errors import UsageError
from .output import check_writable, file_mode, write_payloads

LOCK_NAME = ".endpointkit.lock"
STAGING_NAME = ".endpointkit-staging"
JOURNAL_NAME = ".journal.json"
MANIFEST_NAME = "results.json"
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_MANIFEST_LIMIT = 256 * 1024 * 1024  # an earlier results.json larger than this is not read for its file list


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP until the block ends, then deliver them.

    The Python handlers are swapped for ones that only note the signal: blocking the signals in the
    main thread (pthread_sigmask) is not enough, since the kernel then delivers a signal to another
    thread (Arrow's, a thread pool's) and Python still runs its handler in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {}
    for number in _HELD_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            previous[number] = signal.signal(number, lambda signum, frame: noted.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(noted):
            signal.raise_signal(number)  # now handled as it would have been


def _sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _inside(folder: Path, relative: str) -> Path | None:
    """``folder / relative`` when ``relative`` is a plain relative path that stays inside ``folder``."""
    if not isinstance(relative, str) or not relative or os.path.isabs(relative) or "\\" in relative:
        return None
    parts = Path(relative).parts
    if any(part in ("..", ".", "") for part in parts):
        return None
    return folder / relative


class OutputFolder:
    """One run's output folder: see the module docstring."""

    def __init__(self, path: Path, option: str = "-o"):
        self.path = Path(path)
        self.option = option
        self.created: list[Path] = []  # folders this run created, outermost first
        self.committed = False
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ lock

    def open(self) -> OutputFolder:
        check_writable(self.path, self.option)
        missing = []
        folder = self.path.absolute()
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc) from None
        self.created = list(reversed(missing))
        try:
            self._lock()
            self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def _lock(self) -> None:
        lock_path = self.path / LOCK_NAME
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise self._error(exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode("ascii", "replace").strip()
                os.close(fd)
                who = f" (process {holder})" if holder.isdigit() else ""
                raise UsageError(
                    f"{self.option}: another endpointkit run is writing to {self.path}{who}; "
                    "wait for it to finish or choose another output folder"
                ) from None
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a lock file that its holder removed while we waited for it
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock; remove the folders this run created if it wrote nothing into them."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                (self.path / LOCK_NAME).unlink()
            os.close(self._lock_fd)
            self._lock_fd = None
        if not self.committed:
            for folder in reversed(self.created):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty

    def __enter__(self) -> OutputFolder:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        """Finish the commit of a run killed while renaming (journal present); remove other leftovers."""
        staging = self.path / STAGING_NAME
        journal = staging / JOURNAL_NAME
        if journal.is_file():
            try:
                plan = json.loads(journal.read_text(encoding="utf-8"))
                self._apply(plan)
            except (OSError, ValueError, KeyError, TypeError):
                pass  # an unreadable journal: the staged files are dropped below
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.is_symlink():
            staging.unlink()
        for leftover in [*self.path.glob(".endpointkit-*.tmp"), *self.path.glob("*/.endpointkit-*.tmp")]:
            with contextlib.suppress(OSError):
                leftover.unlink()

    def _apply(self, plan: dict) -> None:
        """Rename staged files into place (results.json last), then remove the previous run's extras."""
        for source, target in plan["renames"]:
            if os.path.lexists(source):
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
        for stale in plan["remove"]:
            path = Path(stale)
            with contextlib.suppress(OSError):
                if path.is_file() or path.is_symlink():  # never a folder
                    path.unlink()
            with contextlib.suppress(OSError):
                if path.parent != self.path and not any(path.parent.iterdir()):
                    path.parent.rmdir()

    # ------------------------------------------------------------------ commit

    def previous_files(self) -> set[str]:
        """The files the previous run listed in its results.json (relative paths inside the folder)."""
        manifest = self.path / MANIFEST_NAME
        try:
            if not manifest.is_file() or manifest.stat().st_size > _MANIFEST_LIMIT:
                return set()
            listed = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
            return {entry["path"] for entry in listed if isinstance(entry, dict) and _inside(self.path, entry.get("path"))}
        except (OSError, ValueError, AttributeError, TypeError):
            return set()

    def commit(self, files: dict[str, str | bytes | pd.DataFrame | dict], outside: dict[Path, bytes] | None = None) -> list[Path]:
        """Write ``files`` (relative path -> text, bytes, a frame written as CSV, or the results.json
        payload as a dict) and ``outside`` (absolute path -> bytes, e.g. a plot elsewhere) as one unit."""
        staging = self.path / STAGING_NAME
        outside = outside or {}
        staged_outside: list[tuple[str, Path]] = []
        try:
            staging.mkdir()
            manifest_payload = files.get(MANIFEST_NAME)
            content = {name: value for name, value in files.items() if name != MANIFEST_NAME}
            write_payloads(staging, content)
            listing = [
                {"path": name, "bytes": (staging / name).stat().st_size, "sha256": _sha256(staging / name)}
                for name in sorted(content)
            ]
            if isinstance(manifest_payload, dict):
                write_payloads(staging, {MANIFEST_NAME: json.dumps({**manifest_payload, "files": listing}, indent=2) + "\n"})
            elif manifest_payload is not None:
                write_payloads(staging, {MANIFEST_NAME: manifest_payload})
            for target, data in outside.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".endpointkit-", suffix=".tmp")
                staged_outside.append((temp, target))
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                os.chmod(temp, file_mode())
        except BaseException as exc:
            self._discard(staged_outside)
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise self._error(exc) from None
            raise
        order = sorted(content) + ([MANIFEST_NAME] if manifest_payload is not None else [])
        renames = [[str(staging / name), str(self.path / name)] for name in sorted(content)]
        renames += [[temp, str(target)] for temp, target in staged_outside]
        if manifest_payload is not None:  # last: a results.json always describes the files beside it
            renames.append([str(staging / MANIFEST_NAME), str(self.path / MANIFEST_NAME)])
        stale = self.previous_files() - set(order)
        plan = {"renames": renames, "remove": [str(self.path / name) for name in sorted(stale)]}
        with signals_held():
            try:
                journal = staging / JOURNAL_NAME
                with open(journal, "w", encoding="utf-8") as stream:
                    json.dump(plan, stream)
                    stream.flush()
                    os.fsync(stream.fileno())
                self._apply(plan)
                self.committed = True
                shutil.rmtree(staging, ignore_errors=True)
            except OSError as exc:
                raise self._error(exc) from None
        return [self.path / name for name in order] + [target for _, target in staged_outside]

    @staticmethod
    def _discard(staged: list[tuple[str, Path]]) -> None:
        for temp, _ in staged:
            Path(temp).unlink(missing_ok=True)

    def _error(self, exc: OSError) -> UsageError:
        return UsageError(f"{self.option}: cannot write to the output folder {self.path}: {exc.strerror or exc}")
