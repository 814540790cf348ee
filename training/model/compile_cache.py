"""A persistent, keyed home for what ``torch.compile`` builds, so a restart, a resumed training run or
a later ``vidrd generate`` reuses the compiled kernels instead of compiling again.

torch already caches Inductor's compiled graphs (FX graph cache, AOTAutograd cache) and Triton's kernels on disk,
keyed by the graph, shapes and its own version, in ``TORCHINDUCTOR_CACHE_DIR`` (default: a folder under /tmp,
gone at reboot and shared by every project). This module points that variable, before the first compile, at

    $VIDRD_CACHE/compile/<key>/       (VIDRD_CACHE defaults to ~/.cache/vidrd)

where ``key`` hashes the torch, CUDA and Triton versions, the GPU, the Python version and the source of this
package's model code, so an upgrade or a code change starts a fresh folder instead of trusting torch's own keys
with artifacts built by other code. Each process that compiled records a size and SHA-256 of every file in the
folder (``_manifest.json``) when it exits; the next one checks them first: a file that changed or cannot be read
(a disk error, a half-copied cache) makes the folder start over, with one line on stderr, never a crash. A
folder that cannot be written leaves compiling as torch does by default, without persistence, with a warning.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

ENV = "VIDRD_CACHE"
MANIFEST = "_manifest.json"
# The source whose change must not reuse compiled kernels: the model the compiled units come from.
CODE_DIRS = (Path(__file__).resolve().parent,)


@dataclass(frozen=True)
class CompileCache:
    """Where compiled artifacts persist (``folder`` None: not persisted) and what was found there."""

    folder: Path | None
    state: str  # "cold" (empty), "warm" (artifacts from earlier processes), "rebuilt" (damaged, started over), "off"
    note: str = ""

    @property
    def warm(self) -> bool:
        return self.state == "warm"


def cache_root() -> Path:
    """``$VIDRD_CACHE``, else ``~/.cache/vidrd``."""
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "vidrd")


def code_fingerprint() -> str:
    h = hashlib.sha256()
    for d in CODE_DIRS:
        for f in sorted(d.glob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def cache_key(device: torch.device | str | None = None) -> str:
    """16 hex digits over everything that makes a compiled artifact unusable elsewhere."""
    parts = {
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "code": code_fingerprint(),
    }
    try:
        import triton

        parts["triton"] = triton.__version__
    except ImportError:
        parts["triton"] = ""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda" and torch.cuda.is_available():
        i = dev.index if dev.index is not None else torch.cuda.current_device()
        parts["gpu"] = f"{torch.cuda.get_device_name(i)} sm{''.join(map(str, torch.cuda.get_device_capability(i)))}"
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def compile_folder(device: torch.device | str | None = None) -> Path:
    """This machine's keyed folder for ``device`` under :func:`cache_root` (not created here)."""
    return cache_root() / "compile" / cache_key(device)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and "locks" not in p.parts)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# path -> (size, mtime_ns, sha256) of files this process already hashed (checked at start, or written at exit)
_known: dict[str, tuple[int, int, str]] = {}


def _entry(p: Path) -> list:
    """[size, sha256] of ``p``, hashing it only when it is not a file this process hashed as it is now."""
    st = p.stat()
    seen = _known.get(str(p))
    if seen is None or seen[:2] != (st.st_size, st.st_mtime_ns):
        seen = (st.st_size, st.st_mtime_ns, _digest(p))
        _known[str(p)] = seen
    return [seen[0], seen[2]]


def write_manifest(folder: Path) -> None:
    """Record size and SHA-256 of every artifact under ``folder`` (at exit of a process that compiled); the files
    :func:`damage` checked at start and nothing changed since are not read again."""
    try:
        entries = {str(p.relative_to(folder)): _entry(p) for p in _files(folder)}
        tmp = folder / f"{MANIFEST}.{os.getpid()}"
        tmp.write_text(json.dumps(entries))
        tmp.replace(folder / MANIFEST)  # atomic: a reader sees the old manifest or the new one
    except OSError as e:
        logger.warning("vidrd: compile cache %s: manifest not written (%s)", folder, e)


def damage(folder: Path) -> str | None:
    """What is wrong with ``folder``'s recorded artifacts, or None. Files written after the manifest are not
    judged (torch writes each atomically); a recorded file that changed size or content, or cannot be read, is."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return None
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError, RecursionError) as e:
        return f"unreadable manifest ({type(e).__name__})"
    if not _is_manifest(entries):  # valid JSON of another shape: as damaged as a torn file
        return "manifest is not a record of {file: [size, sha256]}"
    for rel, (size, digest) in entries.items():
        p = folder / rel
        try:
            if not p.exists():
                continue  # torch may prune its own cache
            if _entry(p) != [size, digest]:
                return f"{rel} changed since it was written"
        except OSError as e:
            return f"{rel} unreadable ({e})"
    return None


def _is_manifest(entries: object) -> bool:
    return isinstance(entries, dict) and all(
        isinstance(rel, str) and not os.path.isabs(rel) and ".." not in Path(rel).parts
        and isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) and isinstance(e[1], str)
        for rel, e in entries.items()
    )  # fmt: skip


def open_folder(folder: Path) -> CompileCache:
    """Make ``folder`` ready to hold compiled artifacts: created, checked writable, started over when
    :func:`damage` finds something wrong (one line on stderr each time something is off)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        logger.warning("vidrd: compile cache %s is not writable (%s); compiling without persistence (set %s to a "
                       "writable folder)", folder, e.strerror or e, ENV)  # fmt: skip
        return CompileCache(None, "off", str(e))
    why = damage(folder)
    if why:
        logger.warning("vidrd: compile cache %s: %s; starting it over", folder, why)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return CompileCache(folder, "rebuilt", why)
    return CompileCache(folder, "warm" if _files(folder) else "cold")


_active: CompileCache | None = None


def enable_compile_cache(device: torch.device | str | None = None) -> CompileCache:
    """Point torch's compile caches at this machine's keyed folder under :func:`cache_root` (once per process;
    later calls return the first answer). Called before the first ``torch.compile``'d function runs
    (``training.model.fast_paths.compile_regions`` does)."""
    global _active
    if _active is None:
        _active = open_folder(compile_folder(device))
        if _active.folder is not None:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(_active.folder)  # Triton's kernels go under it too
            atexit.register(write_manifest, _active.folder)
    return _active
