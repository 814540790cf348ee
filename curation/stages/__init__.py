"""One module per curation stage (paper 4.2, appendix A.2); :data:`STAGES` names them for the runner."""

from curation.stages.captioned import CaptionedConfig, CaptionedStage
from curation.stages.long_videos import LongVideosConfig, LongVideosStage
from curation.stages.pseudo_videos import PseudoVideoConfig, PseudoVideoStage
from curation.stages.short_videos import ShortVideosConfig, ShortVideosStage

# name -> (stage class, its config dataclass)
STAGES = {
    "captioned": (CaptionedStage, CaptionedConfig),
    "pseudo-videos": (PseudoVideoStage, PseudoVideoConfig),
    "short-videos": (ShortVideosStage, ShortVideosConfig),
    "long-videos": (LongVideosStage, LongVideosConfig),
}
