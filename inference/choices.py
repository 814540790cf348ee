"""Names the ``vidrd generate`` / ``vidrd eval`` parsers offer as choices, in a module that imports nothing, so
``--help`` answers without loading torch. The modules that act on them import them from here."""

PAPER, OFFICIAL = "paper", "official"
SCHEDULES = (PAPER, OFFICIAL)  # long-video loops (inference.long_video)
# Which frame of the previous clip each frame of the next one reuses (inference.long_video): the paper's mirror, or
# the previous clip's last M frames in their own order.
REVERSED, SHIFTED = "reversed", "shifted"
REUSES = (REVERSED, SHIFTED)
# What DSG holds a prompt frame to: the previous clip's latents at the same step (eq. 8), or its finished latents
# noised to the step's level with the noise they started from.
TRAJECTORY, FINISHED = "trajectory", "finished"
HOLDS = (TRAJECTORY, FINISHED)
SUFFIXES = (".mp4", ".gif", ".png")  # output files (inference.video_out); PNG is a frame strip
# vidrd generate --fast (inference.fast_mode picks for auto)
FAST_MODES = ("auto", "compile", "graphs", "off")
# The paper's sampling (section 5.1): 50 DDIM steps, guidance scale w = 10, 256x256 frames, N = 16 frames per clip.
# A long video's default length is four of those clips' worth (``vidrd generate --frames``).
PAPER_STEPS, PAPER_GUIDANCE, PAPER_SIZE, CLIP_FRAMES = 50, 10.0, 256, 16
LONG_VIDEO_FRAMES = 64
