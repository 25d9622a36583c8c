"""Big outputs written in chunks, never left half-written.

:class:`Staged` writes a step's files into a staging folder inside the output folder (the
same file system) and moves them into place only once every chunk is written: a chunk
that raises, a full disk or a killed process leaves the previous complete output as it
was and no file under a final name. A full disk or memory running out is reported as a
:class:`WriteError` naming the output, the folder to free and the setting to lower;
anything else keeps its type with a note naming the output. A staging folder left by a
killed run is removed by the next run (its process id is in its name), so a re-run
starts clean.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.logs import log

logger = logging.getLogger(__name__)
PREFIX = ".staged-"  # staging folders: a dot-name readers skip, then the writer's process id
STALE = re.compile(r"^\.(staged-|.+\.tmp-)(\d+)(-|$)")  # staging names that carry a process id


class WriteError(RuntimeError):
    """An output could not be written for want of space or memory; nothing half-written is left."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(directory: Path) -> list[Path]:
    """Remove staging files and folders in ``directory`` whose writing process is gone."""
    directory = Path(directory)
    gone = []
    for entry in directory.iterdir() if directory.is_dir() else []:
        match = STALE.match(entry.name)
        if match and int(match.group(2)) != os.getpid() and not _alive(int(match.group(2))):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)
            gone.append(entry)
    if gone:
        log(logger, "removed what a stopped run left half-written", paths=[str(p) for p in gone])
    return gone


def reworded(exc: BaseException, output: Path, setting: str, what: str) -> WriteError | None:
    """A full disk or a lack of memory while writing ``output`` as a :class:`WriteError`; else None."""
    if isinstance(exc, MemoryError):
        return WriteError(
            f"{what}: out of memory writing {output}: lower {setting} (rows held at once) and run again. "
            "Nothing was left half-written: a re-run starts clean."
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return WriteError(
            f"{what}: no space left on the device writing {output}. Free space at {Path(output).parent} "
            f"(or point the output elsewhere) and run again; a smaller {setting} does not need less disk. "
            "Nothing was left half-written: a re-run starts clean."
        )
    return None


@contextmanager
def explained(output: Path, setting: str, what: str) -> Iterator[None]:
    """Reword a full disk or a lack of memory while writing ``output`` (:func:`reworded`)."""
    try:
        yield
    except (OSError, MemoryError) as exc:
        err = reworded(exc, output, setting, what)
        if err is None:
            raise
        raise err from exc


class Staged:
    """Parquet files under ``directory``, appended chunk by chunk and put in place together.

    ``with Staged(out, setting, what) as s: s.append("impressions.parquet", df) ...``: each
    name gets one file of one row group per append; the files appear under their names only
    when the block ends without an error.
    """

    def __init__(self, directory: Path, setting: str, what: str):
        self.directory, self.setting, self.what = Path(directory), setting, what
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.stage = Path()
        self.current = ""  # the file the last append wrote to
        self.files: list[str] = []  # what is put in place, in the order first written

    def __enter__(self) -> Staged:
        self.directory.mkdir(parents=True, exist_ok=True)
        clean_stale(self.directory)
        self.stage = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.directory))
        return self

    def append(self, name: str, df: pd.DataFrame) -> None:
        """``df``'s rows at the end of file ``name`` (a path relative to the output folder)."""
        table = pa.Table.from_pandas(df, preserve_index=False)
        writer = self.writers.get(name)
        if writer is None:  # a column all null in the first chunk holds text in later ones
            fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            schema = pa.schema(fields, metadata=table.schema.metadata)
            path = self.stage / name
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = self.writers[name] = pq.ParquetWriter(path, schema)
            self.files.append(name)
        self.current = name
        writer.write_table(table.cast(writer.schema))

    def write_text(self, name: str, text: str) -> None:
        """A small file ``name`` put in place with the others."""
        path = self.stage / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.files.append(name)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        problem = exc
        try:
            for writer in self.writers.values():
                try:
                    writer.close()
                except Exception as failed:  # a full disk shows again when the footer is written
                    problem = problem or failed
            if problem is None:
                self._publish()
        except Exception as failed:
            problem = failed
        finally:
            shutil.rmtree(self.stage, ignore_errors=True)
        if problem is None or (problem is exc and isinstance(exc, WriteError)):
            return
        err = reworded(problem, self._writing(), self.setting, self.what)
        if err is not None:
            raise err from problem
        if problem is not exc:
            raise problem
        problem.add_note(
            f"{self.what}: stopped before {self.directory} was written; nothing was left half-written"
        )

    def _writing(self) -> Path:
        """The file being written when a chunk failed: the last one opened."""
        return self.directory / self.current if self.current else self.directory

    def _publish(self) -> None:
        for name in self.files:
            dest = self.directory / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.stage / name, dest)
