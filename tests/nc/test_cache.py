"""The node image cache against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from eucalypt.nc.api import ImageRef
from eucalypt.nc.cache import FetchSettings, ImageCache
from eucalypt.nc.errors import ImageError
from eucalypt.rpc import ComponentKeys
from tests.nc.conftest import ImageServer, sha256_of

MIB = 2**20


def blob(seed: int, size: int) -> bytes:
    return (seed.to_bytes(2, "big") * (size // 2 + 1))[:size]


def ref(server: ImageServer, name: str, data: bytes, *, digest: bool = True) -> ImageRef:
    url = server.add(f"/bucket/{name}", data)
    return ImageRef(image_id=name, url=url, sha256=sha256_of(data) if digest else None)


def test_five_concurrent_launches_fetch_once_signed(tmp_path: Path) -> None:
    keys = ComponentKeys.generate(tmp_path / "keys")
    nc_key = keys.credential("nc")
    data = blob(1, 3 * MIB)
    with ImageServer(credential=nc_key) as server:
        server.delay = 0.005  # slow enough that the five requests overlap
        image = ref(server, "emi-1", data)
        cache = ImageCache(tmp_path / "cache", 100 * MIB, FetchSettings(credential=nc_key))

        async def go() -> list[Path]:
            try:
                dests = [tmp_path / f"inst{i}" / "root" for i in range(5)]
                for d in dests:
                    d.parent.mkdir()
                await asyncio.gather(*(cache.materialize(image, d) for d in dests))
                return dests
            finally:
                await cache.aclose()

        dests = asyncio.run(go())
    assert server.gets["/bucket/emi-1"] == 1
    assert server.signed == [True], "the GET is signed with the NC's key (SigV4, s3)"
    assert cache.downloads == 1
    for d in dests:
        assert d.read_bytes() == data
    # node-local copies are hard links of the one immutable cache entry
    entry = cache.entries()[0]
    assert os.stat(dests[0]).st_ino == os.stat(entry.path).st_ino
    assert entry.path.stat().st_mode & 0o777 == 0o444


def test_bad_digest_is_an_error_and_nothing_is_cached(tmp_path: Path) -> None:
    data = blob(2, MIB)
    with ImageServer() as server:
        good = ref(server, "emi-2", data)
        bad = good.model_copy(update={"sha256": "0" * 64})
        cache = ImageCache(tmp_path / "cache", 100 * MIB)

        async def go() -> None:
            try:
                with pytest.raises(ImageError, match="sha256 mismatch"):
                    await cache.get(bad)
                assert cache.entries() == []
                # a wrong size is refused too
                with pytest.raises(ImageError, match="size mismatch"):
                    await cache.get(good.model_copy(update={"size": 5}))
                assert cache.entries() == []
            finally:
                await cache.aclose()

        asyncio.run(go())
    objects = tmp_path / "cache" / "objects"
    assert list(objects.iterdir()) == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_corrupted_transfer_without_digest_is_caught_by_the_etag(tmp_path: Path) -> None:
    data = blob(3, MIB)
    with ImageServer() as server:
        image = ref(server, "emi-3", data, digest=False)
        server.corrupt.add("/bucket/emi-3")
        cache = ImageCache(tmp_path / "cache", 100 * MIB)

        async def go() -> None:
            try:
                with pytest.raises(ImageError, match="MD5"):
                    await cache.get(image)
                server.corrupt.clear()
                entry = await cache.get(image)  # the failure is not remembered: retry works
                assert entry.path.read_bytes() == data
                assert entry.sha256 == sha256_of(data)
            finally:
                await cache.aclose()

        asyncio.run(go())
    assert server.gets["/bucket/emi-3"] == 2


def test_missing_object_is_an_image_error(tmp_path: Path) -> None:
    with ImageServer() as server:
        cache = ImageCache(tmp_path / "cache", MIB)
        missing = ImageRef(image_id="emi-x", url=server.url + "/nope", sha256="a" * 64)

        async def go() -> None:
            try:
                with pytest.raises(ImageError, match="404"):
                    await cache.get(missing)
                with pytest.raises(ImageError, match="http"):
                    await cache.get(ImageRef(image_id="f", url="file:///etc/passwd"))
            finally:
                await cache.aclose()

        asyncio.run(go())


def test_lru_eviction_honours_the_cap_and_survives_reopen(tmp_path: Path) -> None:
    images = {f"emi-{i}": blob(10 + i, MIB) for i in range(4)}
    root = tmp_path / "cache"
    with ImageServer() as server:
        refs = {name: ref(server, name, data) for name, data in images.items()}

        async def first() -> list[str]:
            cache = ImageCache(root, int(2.5 * MIB))  # room for two entries
            try:
                await cache.get(refs["emi-0"])
                await cache.get(refs["emi-1"])
                await cache.get(refs["emi-0"])  # emi-0 now more recently used than emi-1
                await cache.get(refs["emi-2"])  # over the cap: evicts emi-1 (LRU)
                assert cache.total_bytes <= cache.max_bytes
                return [e.image_id for e in cache.entries()]
            finally:
                await cache.aclose()

        assert asyncio.run(first()) == ["emi-0", "emi-2"]

        async def second() -> list[str]:
            cache = ImageCache(root, int(2.5 * MIB))  # a restarted NC
            try:
                assert [e.image_id for e in cache.entries()] == []  # not opened yet
                cache.open()
                assert sorted(e.image_id for e in cache.entries()) == ["emi-0", "emi-2"]
                await cache.get(refs["emi-2"])  # cached: no download
                await cache.get(refs["emi-3"])  # evicts emi-0, the least recently used
                return [e.image_id for e in cache.entries()]
            finally:
                await cache.aclose()

        assert asyncio.run(second()) == ["emi-2", "emi-3"]
    assert server.gets == {f"/bucket/emi-{i}": 1 for i in range(4)}
    assert sorted(p.name for p in (root / "objects").iterdir() if p.suffix != ".json") == sorted(
        sha256_of(images[n]) for n in ("emi-2", "emi-3")
    )


def test_half_written_entries_are_dropped_at_open(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "objects").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "tmp" / "abc.part").write_bytes(b"partial download")
    (root / "objects" / ("f" * 64)).write_bytes(b"data without metadata")
    (root / "objects" / ("e" * 64 + ".json")).write_text('{"key": "' + "e" * 64 + '"}')
    cache = ImageCache(root, MIB)
    cache.open()
    assert cache.entries() == []
    assert list((root / "objects").iterdir()) == []
    assert list((root / "tmp").iterdir()) == []


def test_an_entry_bigger_than_the_cap_is_kept_for_the_launch(tmp_path: Path) -> None:
    with ImageServer() as server:
        big = ref(server, "emi-big", blob(5, 2 * MIB))
        cache = ImageCache(tmp_path / "cache", MIB)

        async def go() -> None:
            try:
                entry = await cache.get(big)
                assert entry.path.exists()
            finally:
                await cache.aclose()

        asyncio.run(go())
