"""A tiny bootable guest image built from Debian packages, and helpers to boot it with QEMU.

* :func:`build_test_image` -- kernel + initramfs + ext4 rootfs, cached by input hash;
* :func:`detect_accel` -- "kvm" if KVM really boots a guest here, else "tcg";
* :func:`qemu_command` -- the QEMU command line for an image (the NC's QEMU driver uses it).

Command line: ``python -m eucalypt.nc.guestimage build [--cache-dir DIR]``.
"""

from .build import BuildError, GuestImage, build_test_image, default_cache_dir
from .qemu import detect_accel, qemu_command, user_netdev

__all__ = [
    "BuildError",
    "GuestImage",
    "build_test_image",
    "default_cache_dir",
    "detect_accel",
    "qemu_command",
    "user_netdev",
]
