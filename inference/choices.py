"""Names the ``vidrd generate`` / ``vidrd eval`` parsers offer as choices, in a module that imports nothing, so
``--help`` answers without loading torch. The modules that act on them import them from here."""

PAPER, OFFICIAL = "paper", "official"
SCHEDULES = (PAPER, OFFICIAL)  # long-video loops (inference.long_video)
SUFFIXES = (".mp4", ".gif", ".png")  # output files (inference.video_out); PNG is a frame strip
DTYPE_NAMES = ("bf16", "fp16", "fp32")
# vidrd generate --fast (inference.fast_mode picks for auto)
FAST_MODES = ("auto", "compile", "graphs", "off")
