import numpy as np
import pytest

from media.video import VideoDecodeError, decode_frames, encode_mp4
from tests.curation_inputs import stored_rotated
from vidrd.synthetic import moving_square


def test_encode_decode_round_trip_keeps_frames_fps_and_content():
    # Smooth content: chroma subsampling would blur a per-pixel random texture far more than crf implies.
    yy, xx = np.mgrid[0:48, 0:64]
    frames = np.stack([np.stack([xx * 3 + t, yy * 4, np.full_like(xx, 128)], -1) for t in range(20)]).astype(np.uint8)
    data = encode_mp4(frames, 12.0, crf=10)
    out, info = decode_frames(data)
    assert out.shape == (20, 48, 64, 3)
    assert (info.frames, info.width, info.height) == (20, 64, 48)
    assert info.fps == pytest.approx(12.0)
    assert np.abs(out.astype(int) - frames.astype(int)).mean() < 3


def test_decode_selected_indices():
    data = encode_mp4(moving_square("blue", "up", frames=10), 10.0)
    out, info = decode_frames(data, indices=[0, 9])
    assert out.shape[0] == 2 and info.frames == 10
    with pytest.raises(VideoDecodeError, match="out of range"):
        decode_frames(data, indices=[10])


def test_odd_sizes_are_cropped_to_even():
    frames = np.zeros((3, 33, 51, 3), np.uint8)
    _, info = decode_frames(encode_mp4(frames, 5.0))
    assert (info.width, info.height) == (50, 32)


@pytest.mark.parametrize("data", [b"", b"<html><body>not a video</body></html>", bytes(range(256)) * 10])
def test_garbage_raises_decode_error(data):
    with pytest.raises(VideoDecodeError):
        decode_frames(data)


def test_truncated_video_raises_decode_error():
    data = encode_mp4(moving_square("green", "down", frames=10), 10.0)
    with pytest.raises(VideoDecodeError):
        decode_frames(data[: len(data) // 3])


def test_the_same_frames_encode_to_the_same_bytes_every_time():
    import hashlib

    from vidrd.synthetic import moving_shape

    video = moving_shape("red", "right", "square", 32, 64, 1.0, "textured", 3)
    hashes = {hashlib.sha256(encode_mp4(video, 8.0, threads=t)).hexdigest() for t in (0, 1) for _ in range(12)}
    assert len(hashes) == 1


def test_encoding_is_byte_identical_whatever_memory_held_before():
    """libx264's AVX-512 routines read memory it never wrote, so the bytes changed with what the heap held before
    (2 outputs in 30 encodes of this clip, every time this test ran against the plain encoder settings);
    :func:`media.video.h264_options` keeps it to AVX2."""
    import hashlib
    import io

    import av

    from media.video import _add_h264, to_yuv420p

    video = moving_square("red", "right", frames=24, width=64, height=48)
    hashes = set()
    for k in range(30):
        junk = [np.random.bytes(997 * (k + 1)) for _ in range(40)]  # a different heap before every encode
        frames = [to_yuv420p(av.VideoFrame.from_ndarray(img, format="rgb24")) for img in video]
        buf = io.BytesIO()
        with av.open(buf, mode="w", format="mp4") as out:
            stream = _add_h264(out, 64, 48, 8.0, 20, "veryfast", 1)
            for frame in frames:
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        del junk
        hashes.add(hashlib.sha256(buf.getvalue()).hexdigest())
    assert len(hashes) == 1


def test_x264_is_kept_to_avx2_only_where_the_cpu_has_avx512():
    from media.video import h264_options, x264_asm

    avx2 = {"sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "abm", "avx", "fma", "bmi1", "bmi2", "avx2"}
    assert x264_asm(avx2) is None  # nothing to leave out: x264 detects the CPU itself
    asm = x264_asm(avx2 | {"avx512f", "avx512bw", "avx512vl"})
    assert asm == "MMX2,SSE,SSE2,SSE3,SSSE3,SSE4.1,SSE4.2,LZCNT,AVX,FMA3,BMI1,BMI2,AVX2"
    # Never a set the CPU lacks: naming one to x264 would run instructions the CPU cannot (SIGILL).
    assert x264_asm({"sse", "sse2", "avx512f"}) == "MMX2,SSE,SSE2"
    assert h264_options(23, "fast")["crf"] == "23" and h264_options(23, "fast")["preset"] == "fast"


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_a_video_stored_rotated_decodes_upright_in_every_decoder(degrees):
    """A portrait clip with a bright block at its top left, stored turned (as phones do): every decoder gives
    portrait frames with the block at the top left, and the fast YUV transcode steps aside for the RGB path."""
    from media.video import decode_clip, decode_resized, decode_sampled, transcode_resized

    upright = np.full((8, 64, 48, 3), 30, np.uint8)
    upright[:, :16, :12] = 230
    mp4 = stored_rotated(upright, degrees)

    def upright_ok(frames: np.ndarray, w: int, h: int) -> None:
        assert frames.shape[1:3] == (h, w), frames.shape
        top_left = frames[:, : h // 4, : w // 4].mean()
        assert top_left > 180 and frames[:, h // 2 :, w // 2 :].mean() < 80, (degrees, top_left)

    frames, info = decode_frames(mp4)
    upright_ok(frames, 48, 64)
    assert (info.width, info.height) == (48, 64)
    resized, src, out = decode_resized(mp4, short_side=24)
    upright_ok(resized, 24, 32)
    assert (src.width, src.height, out.width, out.height) == (48, 64, 24, 32)
    assert transcode_resized(mp4, short_side=24) is None
    upright_ok(decode_clip(mp4, [0, 3], 8.0), 48, 64)
    sampled, _, sinfo = decode_sampled(mp4, every=0.25, short_side=24)
    upright_ok(sampled, 24, 32)
    assert (sinfo.width, sinfo.height) == (48, 64)


def _decode_every_way(data: bytes) -> None:
    from media.video import decode_clip, decode_resized, decode_sampled

    decode_frames(data)
    decode_clip(data, [0, 2], fps=10.0)
    decode_resized(data, short_side=24)
    decode_sampled(data, every=0.2, short_side=24)


def test_a_process_forked_after_decoding_still_decodes():
    # DataLoader workers are forked from a process that has decoded (the data module's start-up check). A
    # swscale context with slice threads inherited through fork hangs the child when it is set up again for
    # another frame size, so every decoder must keep its scaler to itself, never in the parent's thread state.
    import multiprocessing as mp

    _decode_every_way(encode_mp4(moving_square("red", "left", frames=6, width=64, height=48), 10.0))
    child = mp.get_context("fork").Process(
        target=_decode_every_way, args=(encode_mp4(moving_square("blue", "up", frames=6, width=96, height=80), 10.0),)
    )
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("a forked process hung decoding a video of another size")
    assert child.exitcode == 0


def test_no_code_converts_frames_through_pyavs_per_thread_scaler():
    # frame.reformat / frame.to_ndarray(format=...) / frame.to_image use the per-thread context the test above
    # shows hanging forked processes; every conversion goes through a VideoReformatter the caller owns.
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    banned = re.compile(r"\bframe\.reformat\(|\.to_ndarray\(\s*format=|\.to_image\(")
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("media", "curation", "shards", "training", "inference", "vidrd", "examples", "benchmarks")
        for path in (root / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if banned.search(line)
    ]
    assert offenders == []
