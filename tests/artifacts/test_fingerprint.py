import hashlib

from segtool.artifacts.fingerprint import fingerprint_path


def test_file_and_folder_fingerprints_follow_content_not_location(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGTOOL_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "elsewhere" / "b"
    for d in (a, b):
        (d / "sub").mkdir(parents=True)
        (d / "x.txt").write_text("one")
        (d / "sub" / "y.txt").write_text("two")
    assert fingerprint_path(a / "x.txt") == hashlib.sha256(b"one").hexdigest()
    assert fingerprint_path(a) == fingerprint_path(b)
    (b / "sub" / "y.txt").write_text("tw0")
    assert fingerprint_path(a) != fingerprint_path(b)  # cache keyed by mtime/size notices the edit
    (b / "sub" / "y.txt").write_text("two")
    (b / "sub" / "y.txt").rename(b / "sub" / "z.txt")
    assert fingerprint_path(a) != fingerprint_path(b)  # names are part of a folder's identity
