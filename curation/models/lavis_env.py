"""The LAVIS environment: salesforce-lavis 1.0.2 pins transformers < 4.27, timm 0.4.12 and an old opencv, none of
which can live beside this project's own, so LAVIS gets a virtual environment of its own
(``curation/models/lavis_requirements.txt``) and the project talks to it across a process boundary
(``curation/models/lavis_side.py`` runs there and exchanges files).

Where it is: ``$VIDRD_LAVIS_PYTHON`` (an interpreter that has LAVIS), else ``$VIDRD_CACHE/envs/lavis`` (VIDRD_CACHE
defaults to ~/.cache/vidrd), made by ``vidrd env lavis``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

REQUIREMENTS = Path(__file__).with_name("lavis_requirements.txt")
SIDE = Path(__file__).with_name("lavis_side.py")
PYTHON_ENV = "VIDRD_LAVIS_PYTHON"
CREATE = "vidrd env lavis"
# Written into every environment `vidrd env lavis` makes: `--force` deletes only a folder that holds it.
MARKER = ".vidrd-lavis-env"


class LavisEnvError(RuntimeError):
    """No usable LAVIS environment (the message says which command makes one)."""


def default_path() -> Path:
    # The per-user root training.model.compile_cache keeps compiled kernels under (not imported: a later stage).
    return Path(os.environ.get("VIDRD_CACHE") or Path.home() / ".cache" / "vidrd") / "envs" / "lavis"


def python(check: bool = True) -> Path:
    """The LAVIS environment's interpreter; LavisEnvError when it is missing or LAVIS does not import there."""
    exe = Path(os.environ[PYTHON_ENV]) if os.environ.get(PYTHON_ENV) else default_path() / "bin" / "python"
    if not exe.exists():
        raise LavisEnvError(f"no LAVIS environment at {exe}: make it with `{CREATE}` (or set {PYTHON_ENV})")
    if check:
        try:
            done = subprocess.run([str(exe), "-c", "import lavis.models"], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired as e:
            raise LavisEnvError(f"importing LAVIS at {exe} took over 5 min: remake it with `{CREATE} --force`") from e
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise LavisEnvError(f"the LAVIS environment at {exe} is broken ({last}): remake it with `{CREATE} --force`")
    return exe


def _refuse_foreign(path: Path) -> None:
    """LavisEnvError unless ``path`` is absent, an empty folder, or an environment this command made (its marker)."""
    if path.is_symlink():
        raise LavisEnvError(f"{path} is a symbolic link: give the folder itself")
    if not path.exists() or (path / MARKER).is_file():
        return
    if not path.is_dir():
        raise LavisEnvError(f"{path} is a file, not a folder")
    if any(path.iterdir()):
        raise LavisEnvError(f"{path} holds files `{CREATE}` did not make (no {MARKER} there): it will not write into "
                            "or delete them; give another --path, or remove the folder yourself")  # fmt: skip


def create(path: Path | None = None, force: bool = False, base_python: str | None = None) -> Path:
    """Make the pinned LAVIS environment at ``path`` (default :func:`default_path`) and check that LAVIS imports;
    returns its interpreter. Several minutes: it installs torch again. ``force`` remakes an environment this
    command made; a folder it did not make is never written into or deleted (LavisEnvError)."""
    path = path or default_path()
    exe = path / "bin" / "python"
    if exe.exists() and not force:
        logger.info("%s: already there (--force remakes it)", path)
    else:
        _refuse_foreign(path)
        if path.exists():
            import shutil

            shutil.rmtree(path)
        path.mkdir(parents=True)
        (path / MARKER).write_text(f"made by `{CREATE}`; `{CREATE} --force` may delete this folder\n")
        subprocess.run([base_python or sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(exe), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    done = subprocess.run([str(exe), "-c", "import lavis.models"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise LavisEnvError(f"LAVIS does not import in {path}: {done.stderr.strip()[-500:]}")
    return exe


def run_side(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``lavis_side.py ARGS`` in the LAVIS environment; LavisEnvError with its error output when it fails."""
    done = subprocess.run([str(python(check=False)), str(SIDE), *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        raise LavisEnvError(f"lavis_side.py {args[0]} failed in the LAVIS environment:\n{done.stderr[-3000:]}")
    return done
