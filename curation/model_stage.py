"""What a model stage is: CPU ``prepare`` per row, batched ``infer`` on a model actor, CPU ``finish``.

Stages that run neural networks (``short-videos``: BLIP-2; ``long-videos``: CLIP + MiniGPT-4) split
their work so that the runner (``curation.model_pipeline``) can put each part where it belongs:

* ``prepare(row)`` decodes and re-encodes on CPU tasks, many at a time;
* ``infer(models, items)`` runs on a GPU actor that loaded the models once, over the items of whole
  partitions at a time, so model batches span many videos;
* ``finish(row, prepared, result)`` builds the samples on CPU tasks, beside the shard writer.

``process(row)`` chains the three for one row (the runner's per-row isolation fallback, and tests).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from curation.stage import StageBase
from shards.writer import Sample


class ModelUnavailableError(RuntimeError):
    """A stage's models could not be loaded (missing weights, a LAVIS server that does not start, no memory):
    the run stops with this message and writes no reject for the rows it could not reach, so the next run
    retries them."""


TINY_SPECS = ("tiny", "tiny-t5")  # random tiny models: the tests' and the demo's, whose outputs are noise


def is_tiny(spec: str) -> bool:
    """Whether a model setting names a random tiny model (``tiny``, ``tiny-t5``, ``lavis:tiny:DIR``)."""
    return spec in TINY_SPECS or spec.startswith("lavis:tiny:")


def require_model(field: str, spec: str, what: str) -> None:
    """Refuse an empty model setting: a curation stage never falls back to a random model unasked."""
    if not spec:
        raise ValueError(f"{field}: name the {what} to load ({field}: tiny for a random test model whose output is "
                         "noise)")  # fmt: skip


class ModelStage(StageBase):
    """Base of the stages whose middle step is a model; subclasses set ``name``, ``config_class`` and the four
    abstract methods below."""

    _models: Any = None

    @abstractmethod
    def prepare(self, row: dict[str, Any]) -> Any:
        """CPU work for one row (decode, pick frames, re-encode); raise ``Rejected`` when it has no use."""

    @abstractmethod
    def load_models(self) -> Any:
        """Load the models (once per actor)."""

    @abstractmethod
    def infer(self, models: Any, items: Sequence[tuple[dict[str, Any], Any]]) -> list[Any]:
        """One result per ``(row, prepared)``, with model calls batched across all the items."""

    @abstractmethod
    def finish(self, row: dict[str, Any], prepared: Any, result: Any) -> list[Sample]:
        """The samples of one row from its prepared inputs and model result; raise ``Rejected`` for none."""

    @abstractmethod
    def model_specs(self) -> dict[str, str]:
        """What each model role will load (as configured: a folder, hub id, ``tiny``...), for the driver to name
        before any worker starts."""

    def models(self) -> Any:
        """The loaded models, loaded on first use."""
        if self._models is None:
            try:
                self._models = self.load_models()
            except Exception as e:
                msg = f"{self.name}: its models could not be loaded ({type(e).__name__}: {e})"
                raise ModelUnavailableError(msg[:2000]) from e
        return self._models

    def process(self, row: dict[str, Any]) -> list[Sample]:
        """The three steps for one row in this process."""
        prepared = self.prepare(row)
        (result,) = self.infer(self.models(), [(row, prepared)])
        return self.finish(row, prepared, result)
