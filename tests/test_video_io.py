import numpy as np
import pytest

from media.video import VideoDecodeError, decode_frames, encode_mp4
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
    assert len(hashes) == 1  # left to the encoder's own colour conversion, 3 outputs in 60 encodes varied
