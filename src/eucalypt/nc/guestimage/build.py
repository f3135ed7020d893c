"""Build a tiny bootable x86_64 guest image from Debian packages.

The image is three files, all built without root and without mounting anything:

* ``vmlinuz``   -- the Debian ``linux-image-*-cloud-amd64`` kernel, unchanged;
* ``initrd.gz`` -- a busybox initramfs that loads the virtio modules of that kernel
  (the cloud kernel builds virtio as modules; ext4 is built in), waits for
  ``/dev/vda``, mounts it and ``switch_root``s into it;
* ``rootfs.ext4`` -- a sparse raw ext4 filesystem (made by ``mke2fs -d``) with busybox,
  dropbear (and the shared libraries it needs, taken from their Debian packages)
  and our ``/sbin/init`` (``rootfs/init.sh``), which brings up the network by DHCP,
  reads the EC2 metadata service, installs the SSH key, runs the user-data and
  prints ``EUCALYPT-GUEST-READY instance-id=<id> ip=<addr>`` on the serial console.

Outputs are cached in ``<cache_dir>/<key>/`` where ``key`` hashes every input: the
exact Debian package versions and our own scripts/recipe. A repeat call with the
same inputs returns at once, without apt, network or rebuild.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import debs, elf
from .cpio import CpioBuilder

Progress = Callable[[str], None]

#: Bump to invalidate every cached image when the recipe changes in ways not
#: covered by the hashed script files and constants below.
FORMAT_VERSION = 1

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"
DROPBEAR_PACKAGE = "dropbear-bin"
#: Packages providing dropbear's shared libraries (checked against DT_NEEDED at build time).
LIBRARY_PACKAGES = ("libc6", "libcrypt1", "libtomcrypt1", "libtommath1", "zlib1g", "libgmp10")
#: Programs copied from dropbear-bin (path inside the package == path in the rootfs).
DROPBEAR_PROGRAMS = ("usr/sbin/dropbear", "usr/bin/dropbearkey")
#: Modules the initramfs loads (their dependencies are added in load order).
INITRAMFS_MODULES = ("virtio_pci", "virtio_net", "virtio_blk")
ROOTFS_SIZE_MIB = 128
MULTIARCH = "x86_64-linux-gnu"
#: Kernel command line the image is meant to boot with.
DEFAULT_CMDLINE = "console=ttyS0 quiet panic=-1"

#: Small configuration files of the rootfs: path -> (mode, content).
ROOTFS_FILES: dict[str, tuple[int, str]] = {
    "etc/passwd": (
        0o644,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ),
    "etc/group": (0o644, "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
    # "*": no password can ever match; root logs in with SSH keys only.
    "etc/shadow": (0o600, "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n"),
    "etc/shells": (0o644, "/bin/sh\n/bin/ash\n"),
    "etc/hostname": (0o644, "eucalypt-guest\n"),
    "etc/hosts": (0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    "etc/nsswitch.conf": (0o644, "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"),
    "etc/profile": (
        0o644,
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w\\$ '\n",
    ),
    "etc/inittab": (
        0o644,
        "# busybox init: /sbin/init (init.sh) has already booted the system when it\n"
        "# execs busybox init, so there is no sysinit entry here.\n"
        "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
        "::ctrlaltdel:/sbin/reboot\n"
        "::shutdown:/bin/sync\n"
        "::shutdown:/bin/umount -a -r\n",
    ),
}
#: Our scripts (files of this package) -> (path in the image, mode).
INITRAMFS_SCRIPTS = {"initramfs/init.sh": ("init", 0o755)}
ROOTFS_SCRIPTS = {
    "rootfs/init.sh": ("sbin/init", 0o755),
    "rootfs/udhcpc.sh": ("etc/udhcpc.script", 0o755),
}
ROOTFS_DIRS: dict[str, int] = {
    "dev": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "run": 0o755,
    "tmp": 0o1777,
    "root": 0o700,
    "home": 0o755,
    "mnt": 0o755,
    "etc/dropbear": 0o700,
    "var/log": 0o755,
    "var/tmp": 0o1777,
    "lib64": 0o755,
}
ROOTFS_SYMLINKS = {"var/run": "/run", "etc/mtab": "/proc/mounts"}

_builds_done = 0


def build_count() -> int:
    """Number of real (non-cached) builds done by this process; tests use it."""
    return _builds_done


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class GuestImage:
    """A built guest image. ``cmdline`` is the kernel command line to boot it with."""

    kernel: Path
    ramdisk: Path
    rootfs: Path
    version: str
    cmdline: str = DEFAULT_CMDLINE


def default_cache_dir() -> Path:
    env = os.environ.get("EUCALYPT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "eucalypt" / "images"


def _script(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def recipe_hash() -> str:
    """Hash of everything of ours that goes into an image (scripts, files, constants)."""
    h = hashlib.sha256()
    recipe = {
        "format": FORMAT_VERSION,
        "kernel": KERNEL_METAPACKAGE,
        "busybox": BUSYBOX_PACKAGE,
        "dropbear": DROPBEAR_PACKAGE,
        "libs": LIBRARY_PACKAGES,
        "programs": DROPBEAR_PROGRAMS,
        "modules": INITRAMFS_MODULES,
        "size": ROOTFS_SIZE_MIB,
        "cmdline": DEFAULT_CMDLINE,
        "files": {k: [v[0], v[1]] for k, v in ROOTFS_FILES.items()},
        "dirs": ROOTFS_DIRS,
        "symlinks": ROOTFS_SYMLINKS,
        "initramfs_scripts": INITRAMFS_SCRIPTS,
        "rootfs_scripts": ROOTFS_SCRIPTS,
    }
    h.update(json.dumps(recipe, sort_keys=True).encode())
    for name in sorted({*INITRAMFS_SCRIPTS, *ROOTFS_SCRIPTS}):
        h.update(name.encode() + b"\0" + _script(name) + b"\0")
    return h.hexdigest()


def _image_key(recipe: str, pkgs: dict[str, debs.DebPackage]) -> str:
    h = hashlib.sha256(recipe.encode())
    for name in sorted(pkgs):
        p = pkgs[name]
        h.update(f"{p.name}={p.version}:{p.architecture}\n".encode())
    return h.hexdigest()[:24]


# --------------------------------------------------------------------------- cache


def _load_image(out: Path) -> GuestImage | None:
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    img = GuestImage(
        kernel=out / manifest["kernel"],
        ramdisk=out / manifest["ramdisk"],
        rootfs=out / manifest["rootfs"],
        version=manifest["version"],
        cmdline=manifest.get("cmdline", DEFAULT_CMDLINE),
    )
    if all(p.is_file() for p in (img.kernel, img.ramdisk, img.rootfs)):
        return img
    return None


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    with (cache_dir / ".lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_test_image(cache_dir: Path | None = None, progress: Progress | None = None) -> GuestImage:
    """Return the test guest image, building it (and downloading packages) if needed.

    A cache hit costs a few ``stat`` calls: the package versions resolved last time
    are reused while the apt lists are unchanged (no ``apt-cache``, no network).
    """
    say: Progress = progress or (lambda _msg: None)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    recipe = recipe_hash()
    resolved_file = cache_dir / f"resolved-{recipe[:16]}.json"
    lists_fp = debs.apt_lists_fingerprint()

    # Fast path: same recipe, same apt lists -> same key as last time.
    with contextlib.suppress(OSError, ValueError, KeyError):
        resolved = json.loads(resolved_file.read_text())
        if resolved["lists"] == lists_fp:
            img = _load_image(cache_dir / resolved["key"])
            if img is not None:
                say(f"guest image {img.version}: cached in {img.kernel.parent}")
                return img

    with _locked(cache_dir):
        say("resolving Debian package versions (apt-cache)")
        try:
            pkgs = _resolve_packages()
        except debs.DebError as exc:
            fallback = _newest_build(cache_dir, recipe)
            if fallback is None:
                raise BuildError(f"cannot resolve packages: {exc}") from exc
            say(f"warning: {exc}; using the cached image {fallback.version}")
            return fallback
        key = _image_key(recipe, pkgs)
        out = cache_dir / key
        img = _load_image(out)
        if img is None:
            img = _build(cache_dir, out, key, recipe, pkgs, say)
        else:
            say(f"guest image {img.version}: cached in {out}")
        tmp = resolved_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"lists": lists_fp, "key": key}))
        tmp.replace(resolved_file)
        return img


def _newest_build(cache_dir: Path, recipe: str) -> GuestImage | None:
    best: tuple[float, GuestImage] | None = None
    for manifest in cache_dir.glob("*/manifest.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(manifest.read_text())
            img = _load_image(manifest.parent)
            if img is not None and data.get("recipe") == recipe:
                mtime = manifest.stat().st_mtime
                if best is None or mtime > best[0]:
                    best = (mtime, img)
    return best[1] if best else None


def _resolve_packages() -> dict[str, debs.DebPackage]:
    arch = debs.host_architecture()
    if arch != "amd64":
        raise debs.DebError(f"the test image needs amd64 packages; this host is {arch}")
    kernel = debs.resolve_metapackage(KERNEL_METAPACKAGE)
    names = [kernel, BUSYBOX_PACKAGE, DROPBEAR_PACKAGE, *LIBRARY_PACKAGES]
    found = debs.candidates(names)
    return {"kernel" if n == kernel else n: found[n] for n in names}


# --------------------------------------------------------------------------- build


def _build(
    cache_dir: Path,
    out: Path,
    key: str,
    recipe: str,
    pkgs: dict[str, debs.DebPackage],
    say: Progress,
) -> GuestImage:
    global _builds_done
    started = time.monotonic()
    kernel_pkg = pkgs["kernel"]
    kver = kernel_pkg.name.removeprefix("linux-image-")
    version = f"debian-{kver}-{key[:12]}"
    say(f"building guest image {version}")

    missing = [
        f"{tool} (Debian package {pkg})"
        for tool, pkg in (("mke2fs", "e2fsprogs"), ("dpkg-deb", "dpkg"), ("apt-get", "apt"))
        if shutil.which(tool) is None and not Path("/sbin", tool).exists()
    ]
    if missing:
        raise BuildError("missing build tools: " + ", ".join(missing))

    debs_dir = cache_dir / "debs"
    todo = [p for p in pkgs.values() if not (debs_dir / p.filename).exists()]
    if todo:
        say("downloading " + ", ".join(f"{p.name} {p.version}" for p in todo))
    else:
        say("Debian packages already downloaded")
    paths = debs.download(list(pkgs.values()), debs_dir)
    for stale in debs.prune(list(pkgs.values()), debs_dir):
        say(f"removed outdated {stale.name}")

    work = cache_dir / f".build-{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        trees: dict[str, Path] = {}
        for role, pkg in pkgs.items():
            path = paths[pkg.name]
            say(f"extracting {path.name}")
            trees[role] = debs.extract(path, work / "pkgs" / pkg.name)

        stage = work / "out"
        stage.mkdir()
        kdir = trees["kernel"]
        vmlinuz = kdir / "boot" / f"vmlinuz-{kver}"
        if not vmlinuz.is_file():
            raise BuildError(f"{kernel_pkg.name} has no boot/vmlinuz-{kver}")
        shutil.copyfile(vmlinuz, stage / "vmlinuz")

        busybox = trees[BUSYBOX_PACKAGE] / "bin" / "busybox"
        applets = _busybox_applets(busybox)

        say("building initramfs")
        modules = module_load_order(kdir / "lib" / "modules" / kver, INITRAMFS_MODULES)
        say("initramfs modules: " + " ".join(m.stem for m in modules))
        _build_initramfs(stage / "initrd.gz", busybox, applets, modules)

        say(f"building {ROOTFS_SIZE_MIB} MiB ext4 root filesystem (mke2fs -d)")
        root = work / "rootfs"
        _stage_rootfs(root, busybox, applets, trees)
        _make_ext4(root, stage / "rootfs.ext4", ROOTFS_SIZE_MIB)

        manifest = {
            "version": version,
            "kernel": "vmlinuz",
            "ramdisk": "initrd.gz",
            "rootfs": "rootfs.ext4",
            "cmdline": DEFAULT_CMDLINE,
            "recipe": recipe,
            "packages": {p.name: p.version for p in pkgs.values()},
            "modules": [m.stem for m in modules],
            "built_at": time.time(),
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _builds_done += 1
    img = _load_image(out)
    assert img is not None
    say(f"built guest image {version} in {time.monotonic() - started:.1f} s: {out}")
    return img


def _busybox_applets(busybox: Path) -> list[str]:
    """Applet install paths (``bin/sh``, ``sbin/ip``...) of the (static, amd64) busybox."""
    proc = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or "bin/sh" not in proc.stdout.split():
        raise BuildError(f"{busybox} --list-full failed: {proc.stderr.strip()}")
    return [a.strip("/") for a in proc.stdout.split()]


def module_load_order(moddir: Path, wanted: tuple[str, ...] | list[str]) -> list[Path]:
    """Resolve ``wanted`` modules and their ``depends=`` into an insmod order.

    Modules built into the kernel (``modules.builtin``) are skipped. The result lists
    each ``.ko`` once, dependencies first.
    """
    builtin = set()
    with contextlib.suppress(OSError):
        for line in (moddir / "modules.builtin").read_text().splitlines():
            builtin.add(Path(line).name.removesuffix(".ko").replace("-", "_"))
    index: dict[str, Path] = {}
    for ko in (moddir / "kernel").rglob("*.ko"):
        index[ko.name.removesuffix(".ko").replace("-", "_")] = ko
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name in chain:
            raise BuildError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        ko = index.get(name)
        if ko is None:
            raise BuildError(f"kernel module {name} not found under {moddir}")
        for dep in elf.module_depends(ko):
            visit(dep, (*chain, name))
        seen.add(name)
        order.append(ko)

    for name in wanted:
        visit(name, ())
    return order


def _build_initramfs(dest: Path, busybox: Path, applets: list[str], modules: list[Path]) -> None:
    cpio = CpioBuilder()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "newroot", "run"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    cpio.file_from("bin/busybox", busybox, 0o755)
    for applet in applets:
        if applet not in ("bin/busybox", "init", "linuxrc"):
            cpio.symlink(applet, "/bin/busybox")
    for script, (path, mode) in INITRAMFS_SCRIPTS.items():
        cpio.file(path, _script(script), mode)
    cpio.dir("lib/modules")
    for ko in modules:
        name = ko.name.removesuffix(".ko")
        cpio.file(f"lib/modules/{name}.ko", ko.read_bytes(), 0o644)
    order = "".join(ko.name.removesuffix(".ko") + "\n" for ko in modules)
    cpio.file("lib/modules/load.order", order.encode())
    cpio.write_gzip(dest)


def _inside(root: Path, link: Path) -> Path:
    """Resolve ``link`` as if ``root`` were ``/`` (package symlinks may be absolute)."""
    path = link
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    raise BuildError(f"symlink loop at {link}")


def _stage_rootfs(root: Path, busybox: Path, applets: list[str], trees: dict[str, Path]) -> None:
    root.mkdir()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", f"lib/{MULTIARCH}"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for d, mode in ROOTFS_DIRS.items():
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, mode)

    shutil.copyfile(busybox, root / "bin/busybox")
    os.chmod(root / "bin/busybox", 0o755)
    ours = {p for p, _ in ROOTFS_SCRIPTS.values()}
    for applet in applets:
        if applet != "bin/busybox" and applet not in ours and applet != "linuxrc":
            (root / applet).symlink_to("/bin/busybox")

    for rel, (mode, text) in ROOTFS_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
        os.chmod(root / rel, mode)
    for script, (rel, mode) in ROOTFS_SCRIPTS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_script(script))
        os.chmod(root / rel, mode)
    for rel, target in ROOTFS_SYMLINKS.items():
        (root / rel).symlink_to(target)

    # dropbear and exactly the shared libraries it needs (DT_NEEDED closure).
    dropbear_tree = trees[DROPBEAR_PACKAGE]
    libdirs = []
    for name in LIBRARY_PACKAGES:
        tree = trees[name]
        for sub in (f"lib/{MULTIARCH}", f"usr/lib/{MULTIARCH}"):
            if (tree / sub).is_dir():
                libdirs.append((tree, tree / sub))

    def find_lib(soname: str) -> Path:
        for tree, d in libdirs:
            cand = d / soname
            if cand.exists() or cand.is_symlink():
                real = _inside(tree, cand)
                if real.is_file():
                    return real
        raise BuildError(f"shared library {soname} not found in {', '.join(LIBRARY_PACKAGES)}")

    todo: list[Path] = []
    interp: str | None = None
    for prog in DROPBEAR_PROGRAMS:
        src = dropbear_tree / prog
        dst = root / prog
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)
        todo.append(dst)
        interp = interp or elf.interpreter(src)
    copied: set[str] = set()
    while todo:
        for soname in elf.needed_libraries(todo.pop()):
            if soname in copied:
                continue
            copied.add(soname)
            dst = root / "lib" / MULTIARCH / soname
            shutil.copyfile(find_lib(soname), dst)
            os.chmod(dst, 0o755)
            todo.append(dst)
    if interp:
        name = Path(interp).name
        real_ld = root / "lib" / MULTIARCH / name
        if not real_ld.exists():
            shutil.copyfile(find_lib(name), real_ld)
            os.chmod(real_ld, 0o755)
        link = root / interp.lstrip("/")
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"/lib/{MULTIARCH}/{name}")


def _make_ext4(src: Path, dest: Path, size_mib: int) -> None:
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    with dest.open("wb") as f:
        f.truncate(size_mib << 20)  # sparse
    cmd = [
        mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0",
        "-L", "eucalypt-root", "-E", "root_owner=0:0", "-d", str(src), str(dest),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"mke2fs failed: {proc.stderr.strip() or proc.stdout.strip()}")
    # Sanity check: the file really is an ext2/3/4 filesystem.
    with dest.open("rb") as f:
        f.seek(1024 + 56)
        if f.read(2) != b"\x53\xef":
            raise BuildError(f"{dest} has no ext4 superblock after mke2fs")


def describe(img: GuestImage) -> dict[str, str]:
    return {
        "kernel": str(img.kernel),
        "ramdisk": str(img.ramdisk),
        "rootfs": str(img.rootfs),
        "version": img.version,
    }


__all__ = [
    "DEFAULT_CMDLINE",
    "BuildError",
    "GuestImage",
    "build_count",
    "build_test_image",
    "default_cache_dir",
    "describe",
    "module_load_order",
    "recipe_hash",
]
