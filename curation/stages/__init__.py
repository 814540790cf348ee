"""One module per curation stage (paper 4.2, appendix A.2); :data:`STAGES` names them for the runner."""

from curation.stage_registry import STAGE_CLASSES, stage_class

# name -> (stage class, its config dataclass), from the one table in curation.stage_registry
STAGES = {name: (cls, cls.config_class) for name, cls in ((n, stage_class(n)) for n in STAGE_CLASSES)}
