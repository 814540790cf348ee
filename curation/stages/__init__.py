"""One module per curation stage (paper 4.2, appendix A.2); :data:`STAGES` names them for the runner."""

from curation.stage_registry import STAGE_CLASSES, stage_class

# name -> (stage class, its config dataclass), from the one table in curation.stage_registry
STAGES = {name: (stage_class(name), stage_class(name).config_class) for name in STAGE_CLASSES}
