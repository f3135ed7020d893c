"""Failed launches clean up after themselves (qemu driver; nothing boots here).

Each test drives a real NC over HTTP whose launch fails at one step: the
image, the network endpoint, QEMU itself. The instance must end terminated
with the reason, its tap and files gone and its resources free again.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from eucalypt.nc.api import BootImages, ImageRef, InstanceState, NcClient, NetworkSpec
from eucalypt.nc.app import create_app
from eucalypt.nc.hypervisors import HostResources, QemuDriver
from eucalypt.rpc import ComponentKeys
from tests.nc.conftest import FakeIp, ImageServer, Nc, nc_config, run_request, sha256_of
from tests.support.servers import serve_in_thread

S = InstanceState
pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None,
    reason="needs qemu-system-x86 and qemu-utils",
)
ROOT = b"\0" * (1 << 20)


class BigHostQemu(QemuDriver):
    """The qemu driver on a node reporting 16 cores (this test machine has 2)."""

    def host_resources(self, instances_dir: Path) -> HostResources:
        return HostResources(cores=16, memory_mib=16384, disk_gib=100)


@pytest.fixture
def qemu_nc(tmp_path: Path) -> Iterator[tuple[Nc, ImageServer, FakeIp]]:
    config = nc_config(tmp_path, hypervisor="qemu", qemu_accel="tcg")
    ip = FakeIp(delegate=True)
    nc_key = ComponentKeys.load(config.keys_dir).credential("nc")
    driver = BigHostQemu(accel="tcg", probe_dir=tmp_path)
    with (
        ImageServer(credential=nc_key) as images,
        serve_in_thread(create_app(config, runner=ip, driver=driver), config.nc.port) as url,
    ):
        yield Nc(url, config), images, ip


def boot_images(images: ImageServer, *, kernel: bytes | None = None) -> BootImages:
    root = ImageRef(
        image_id="emi-root", url=images.add("/b/root", ROOT), sha256=sha256_of(ROOT), size=len(ROOT)
    )
    if kernel is None:
        return BootImages(root=root)
    return BootImages(
        root=root,
        kernel=ImageRef(image_id="eki-1", url=images.add("/b/kernel", kernel)),
        ramdisk=ImageRef(image_id="eri-1", url=images.add("/b/ramdisk", b"\x1f\x8b" + b"0" * 99)),
    )


def assert_cleaned(nc: Nc, instance_id: str) -> None:
    assert not (Path(nc.config.nc.instances_dir) / instance_id).exists()
    res = nc.call(lambda c: c.describe_resource()).resources
    assert res.cores_free == res.cores_total
    assert res.memory_mib_free == res.memory_mib_total


def test_bad_image_digest_fails_the_launch(qemu_nc: tuple[Nc, ImageServer, FakeIp]) -> None:
    nc, images, _ = qemu_nc
    imgs = boot_images(images)
    imgs.root.sha256 = "0" * 64
    assert nc.run(run_request("i-baddigest", images=imgs)).state == S.PENDING
    info = nc.wait_state("i-baddigest", {S.TERMINATED}, timeout=30)
    assert info.reason.startswith("image failed: image emi-root: sha256 mismatch")
    assert_cleaned(nc, "i-baddigest")
    cache = Path(nc.config.nc.cache_dir)
    assert [p for p in (cache / "objects").iterdir()] == []


def test_missing_bridge_fails_and_deletes_the_tap(qemu_nc: tuple[Nc, ImageServer, FakeIp]) -> None:
    nc, images, ip = qemu_nc
    net = NetworkSpec(mode="bridge", mac="d0:0d:00:00:00:02", bridge="nosuchbr")
    nc.run(run_request("i-nobridge", images=boot_images(images), network=net))
    info = nc.wait_state("i-nobridge", {S.TERMINATED}, timeout=30)
    assert info.reason.startswith("network failed: cannot put tap tapnobridge on bridge nosuchbr")
    assert info.tap == "tapnobridge"
    assert ip.taps == set()
    assert ["ip", "tuntap", "add", "dev", "tapnobridge", "mode", "tap"] in ip.commands
    assert ip.commands[-1] == ["ip", "link", "del", "dev", "tapnobridge"]
    assert_cleaned(nc, "i-nobridge")


def test_qemu_refusing_to_start_fails_the_launch(qemu_nc: tuple[Nc, ImageServer, FakeIp]) -> None:
    nc, images, _ = qemu_nc
    imgs = boot_images(images, kernel=b"this is not a kernel" * 1000)
    nc.run(run_request("i-badkernel", images=imgs))
    info = nc.wait_state("i-badkernel", {S.TERMINATED}, timeout=60)
    assert info.reason.startswith("boot failed: qemu exited with status 1")
    assert "kernel" in info.reason
    assert_cleaned(nc, "i-badkernel")
    # the images stay cached for the next launch
    assert len([p for p in (Path(nc.config.nc.cache_dir) / "objects").glob("*.json")]) == 3
    assert images.gets["/b/root"] == 1
    nc.run(run_request("i-badkernel2", images=imgs))
    nc.wait_state("i-badkernel2", {S.TERMINATED}, timeout=60)
    assert images.gets["/b/root"] == 1 and images.gets["/b/kernel"] == 1
    # the kernel and ramdisk have no digest: they were asked for with a HEAD, fetched once
    assert all(images.signed)


def test_five_concurrent_launches_fetch_each_image_once(
    qemu_nc: tuple[Nc, ImageServer, FakeIp],
) -> None:
    """Five RunInstance calls at once for one image: one download per file, five disks.

    The launches then stop at the network step (no such bridge), so nothing boots.
    """
    nc, images, _ = qemu_nc
    images.delay = 0.01  # 1 MiB in 16 chunks: the five launches overlap the download
    imgs = boot_images(images, kernel=b"k" * 100_000)
    net = NetworkSpec(mode="bridge", mac="d0:0d:00:00:00:03", bridge="nosuchbr")
    ids = [f"i-con{i}" for i in range(5)]

    async def run_all(c: NcClient) -> None:
        await asyncio.gather(
            *(c.run_instance(run_request(i, images=imgs, network=net)) for i in ids)
        )

    nc.call(run_all)
    for iid in ids:
        info = nc.wait_state(iid, {S.TERMINATED}, timeout=60)
        assert info.reason.startswith("network failed"), info.reason  # got past the images
    assert images.gets == {"/b/root": 1, "/b/kernel": 1, "/b/ramdisk": 1}
