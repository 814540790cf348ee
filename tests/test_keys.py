import pytest

from manifests.keys import InvalidKeyError, check_key, is_valid_key, make_key


def test_make_key_is_deterministic_and_valid():
    k = make_key("webvid", "1234")
    assert k == "webvid-1234"
    assert make_key("webvid", "1234") == k
    assert make_key("videolt", "abc", segment=3) == "videolt-abc-s0003"


def test_make_key_sanitises_and_keeps_distinct_ids_distinct():
    a = make_key("moments", "falling/clip 1.mp4")
    b = make_key("moments", "falling_clip_1_mp4")
    c = make_key("moments", "falling/clip.1.mp4")
    for k in (a, b, c):
        assert is_valid_key(k), k
    assert len({a, b, c}) == 3
    assert "." not in a and "/" not in a


def test_non_ascii_and_long_ids():
    k = make_key("laion", "café " * 50)
    assert is_valid_key(k)
    assert len(k) < 130


@pytest.mark.parametrize("bad", ["a.b", "a/b", "", "a b", "ключ"])
def test_check_key_rejects_with_a_clear_message(bad):
    with pytest.raises(InvalidKeyError, match="A-Za-z0-9_-"):
        check_key(bad)
