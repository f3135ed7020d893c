"""The filesystem blob store: atomic commit, names it picks itself, sweeping, copying."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from eucalypt.walrus.storage import FilesystemStore


def test_commit_is_atomic_and_named_by_the_store(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    writer = store.create()
    writer.write(b"hello ")
    writer.write(memoryview(b"world"))
    # Until commit the bytes live only in tmp/.
    assert list((tmp_path / "tmp").iterdir()) and not list((tmp_path / "blobs").rglob("*.*"))
    blob_id = writer.commit()
    assert store.count_temp() == 0
    path = store.path_of(blob_id)
    assert path.read_bytes() == b"hello world"
    assert path.resolve().is_relative_to(tmp_path.resolve())
    reader = store.open(blob_id)
    assert reader.size == 11 and reader.read_at(6, 5) == b"world"
    # A reader keeps working after the blob is deleted (the overwrite case).
    store.delete(blob_id)
    store.delete(blob_id)  # idempotent
    assert reader.read_at(0, 5) == b"hello"
    reader.close()
    with pytest.raises(FileNotFoundError):
        store.open(blob_id)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "a" * 31, "g" * 32,
                                 "../" + "a" * 29, "A" * 32, "a" * 31 + "\x00"])
def test_only_store_made_ids_name_files(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        FilesystemStore(tmp_path).path_of(bad)


def test_abort_and_sweep(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    w = store.create()
    w.write(b"partial")
    w.abort()
    assert store.count_temp() == 0
    store.create().write(b"left by a crash")
    (tmp_path / "tmp" / "stray.tmp").write_bytes(b"x")
    assert store.sweep_temp() == 2 and store.count_temp() == 0


def test_copy_from_ranges(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    src = store.create()
    data = os.urandom(3 << 20)
    src.write(data)
    src_id = src.commit()
    reader = store.open(src_id)
    dst = store.create()
    dst.copy_from(reader, 1000, 2 << 20)
    dst.write(b"tail")
    dst_id = dst.commit()
    reader.close()
    assert store.path_of(dst_id).read_bytes() == data[1000:1000 + (2 << 20)] + b"tail"


def test_list_blobs_by_age(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    w = store.create()
    w.write(b"x")
    old_id = w.commit()
    os.utime(store.path_of(old_id), (1_000_000, 1_000_000))
    w = store.create()
    w.write(b"y")
    new_id = w.commit()
    assert list(store.list_blobs(older_than=2_000_000)) == [old_id]
    assert new_id not in list(store.list_blobs(older_than=2_000_000))


@pytest.fixture
def synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories the store fsyncs from now on, relative to ``blobs/``, in order."""
    from eucalypt.walrus import storage

    synced: list[str] = []
    real = storage._fsync_dir

    def record(path: Path | str) -> None:
        synced.append(os.path.relpath(path, tmp_path / "blobs"))
        real(path)

    monkeypatch.setattr(storage, "_fsync_dir", record)
    return synced


def test_new_fan_out_directories_are_synced_up_to_a_durable_one(
        tmp_path: Path, synced: list[str]) -> None:
    """A blob's directory is always synced; so is the one above any directory whose entry
    this process has not made durable yet (made now, or found on disk: a killed process
    may have left it in the page cache only), up to one whose entry is durable."""

    store = FilesystemStore(tmp_path)
    assert synced == [".."]  # the store's root: the entries of blobs/ and tmp/
    synced.clear()

    def put(store: FilesystemStore, blob_id: str) -> list[str]:
        writer = store.create()
        writer.blob_id = blob_id
        writer._tmp = os.path.join(store.tmp_dir, f"{blob_id}.tmp")
        writer.write(b"x")
        writer.commit()
        assert store.path_of(blob_id).read_bytes() == b"x"
        done, synced[:] = sorted(synced), []
        return done

    assert put(store, "ab" + "cd" + "0" * 28) == [".", "ab", "ab/cd"]  # both levels new
    assert put(store, "ab" + "ef" + "0" * 28) == ["ab", "ab/ef"]  # "ab" is durable by now
    assert put(store, "ab" + "ef" + "1" * 28) == ["ab/ef"]
    (tmp_path / "blobs" / "12").mkdir()  # made by someone else: not known durable
    assert put(store, "12" + "34" + "0" * 28) == [".", "12", "12/34"]
    assert put(store, "12" + "34" + "1" * 28) == ["12/34"]
    store.close()

    # A new process (after a kill -9, say) knows nothing durable below blobs/ yet.
    again = FilesystemStore(tmp_path)
    synced.clear()
    assert put(again, "ab" + "cd" + "2" * 28) == [".", "ab", "ab/cd"]
    assert put(again, "ab" + "cd" + "3" * 28) == ["ab/cd"]
    again.close()


def test_blobs_of_one_minute_share_a_fan_out_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synced: list[str]) -> None:
    """Blob ids start with a minute counter: 50 blobs written within one minute make one
    fan-out directory (and sync the ones above it once), not one each."""
    from eucalypt.walrus import storage

    monkeypatch.setattr(storage, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    store = FilesystemStore(tmp_path)
    ids = []
    for _ in range(50):
        writer = store.create()
        writer.write(b"x")
        ids.append(writer.commit())
    store.close()
    assert len(set(ids)) == 50
    assert len({i[:4] for i in ids}) == 1
    assert len(list((tmp_path / "blobs").iterdir())) == 1
    assert len(synced) == 1 + 50 + 2  # the root at start, each blob's dir, two above once



@pytest.mark.parametrize("size", [0, 1, 4096, (1 << 20) + 1, (3 << 20) + 12345])
def test_blob_bytes_round_trip_in_pieces_of_any_size(tmp_path: Path, size: int) -> None:
    store = FilesystemStore(tmp_path)
    data = os.urandom(size)
    writer = store.create()
    pos, step = 0, 1
    while pos < size:  # pieces of 1, 3, 9, ... bytes, up to 2 MiB
        writer.write(memoryview(data)[pos:pos + step])
        pos, step = pos + step, min(step * 3, 2 << 20)
    blob_id = writer.commit()
    assert store.path_of(blob_id).read_bytes() == data
    reader = store.open(blob_id)
    assert reader.size == size
    assert reader.read_at(size // 2, 100) == data[size // 2:size // 2 + 100]
    reader.close()
    assert store.count_temp() == 0
