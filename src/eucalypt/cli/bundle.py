"""``eucalypt bundle``: EC2 image bundles, as ec2-bundle-image / euca-bundle-image make them.

The paper's path for a user's image::

    eucalypt admin cert --account A --user U --out ~/.eucalypt-certs   # once (an administrator)
    eval "$(eucalypt env --account A --user U)"
    eucalypt bundle image  -i rootfs.img --keys-dir ~/.eucalypt-certs --kernel eki-... -d out/
    eucalypt bundle upload -m out/rootfs.img.manifest.xml -b my-images
    eucalypt bundle register my-images/rootfs.img.manifest.xml -n my-image --wait

``unbundle`` is the reverse for the user's own bundles (the key is decrypted
with the user's private key), from a directory or straight from Walrus.

Keys: ``--cert``/``--privatekey``/``--ec2cert`` (or ``$EC2_CERT``,
``$EC2_PRIVATE_KEY``, ``$EUCALYPTUS_CERT`` as euca2ools use them), or
``--keys-dir`` holding ``cert.pem``, ``pk.pem`` and ``cloud-cert.pem`` as
``eucalypt admin cert --out`` writes them. Endpoints and access keys come
from the environment ``eucalypt env`` sets (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_EC2``, ``AWS_ACCESS_KEY_ID`` ...).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from eucalypt.bundle import crypto
from eucalypt.bundle.bundle import DEFAULT_PART_SIZE, BundleKeys, BundleSpec, bundle_image
from eucalypt.bundle.errors import BundleError, PartMissing
from eucalypt.bundle.manifest import (
    ARCHITECTURES,
    IMAGE_TYPES,
    MANIFEST_SUFFIX,
    ManifestPart,
    SignedManifest,
    parse,
)
from eucalypt.bundle.unbundle import PartSource, decrypt_key_iv, directory_source, unbundle

MIB = 1 << 20


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _fail(exc: BundleError) -> click.ClickException:
    return click.ClickException(f"{exc.code}: {exc.message}")


# -- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFiles:
    cert: Path | None
    private_key: Path | None
    cloud_cert: Path | None


def _key_files(keys_dir: Path | None, cert: Path | None, private_key: Path | None,
               cloud_cert: Path | None) -> KeyFiles:
    def pick(given: Path | None, name: str, env: str) -> Path | None:
        if given is not None:
            return given
        if keys_dir is not None and (keys_dir / name).exists():
            return keys_dir / name
        value = os.environ.get(env)
        return Path(value) if value else None

    return KeyFiles(
        cert=pick(cert, "cert.pem", "EC2_CERT"),
        private_key=pick(private_key, "pk.pem", "EC2_PRIVATE_KEY"),
        cloud_cert=pick(cloud_cert, "cloud-cert.pem", "EUCALYPTUS_CERT"),
    )


def _need(path: Path | None, what: str, option: str) -> Path:
    if path is None:
        raise click.UsageError(f"{what} is needed: give {option} or --keys-dir")
    if not path.is_file():
        raise click.UsageError(f"{what} {path} does not exist")
    return path


def keys_options(fn):  # type: ignore[no-untyped-def]
    path = click.Path(path_type=Path, dir_okay=False)
    for decorator in reversed([
        click.option("--keys-dir", type=click.Path(path_type=Path, file_okay=False),
                     help="Directory with cert.pem, pk.pem, cloud-cert.pem "
                          "(`eucalypt admin cert --out`)."),
        click.option("-c", "--cert", type=path, help="Your certificate [$EC2_CERT]."),
        click.option("-k", "--privatekey", "private_key", type=path,
                     help="Your private key [$EC2_PRIVATE_KEY]."),
        click.option("--ec2cert", "cloud_cert", type=path,
                     help="The cloud's certificate [$EUCALYPTUS_CERT]."),
    ]):
        fn = decorator(fn)
    return fn


# -- S3 / EC2 clients -------------------------------------------------------------------------


def _endpoint(given: str | None, *names: str) -> str | None:
    if given:
        return given
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _boto(service: str, url: str | None) -> Any:
    import boto3.session
    from botocore.config import Config as BotoConfig

    # A session of our own: the default one caches the first credentials it resolves.
    return boto3.session.Session().client(
        service,
        endpoint_url=url,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or "eucalypt-1",
        config=BotoConfig(retries={"max_attempts": 3, "mode": "standard"},
                          s3={"addressing_style": "path"}, max_pool_connections=16),
    )


def _s3(url: str | None) -> Any:
    return _boto("s3", _endpoint(url, "AWS_ENDPOINT_URL_S3", "S3_URL"))


def _ec2(url: str | None) -> Any:
    return _boto("ec2", _endpoint(url, "AWS_ENDPOINT_URL_EC2", "EC2_URL"))


def _split_bucket(spec: str) -> tuple[str, str]:
    """``bucket`` or ``bucket/prefix`` (also ``s3://...``) -> (bucket, prefix with '/')."""
    bucket, _, prefix = spec.removeprefix("s3://").strip("/").partition("/")
    if not bucket:
        raise click.UsageError("give a bucket (bucket or bucket/prefix)")
    return bucket, (prefix.strip("/") + "/") if prefix else ""


# -- the group ----------------------------------------------------------------------------------


@click.group("bundle")
def bundle_group() -> None:
    """EC2 image bundles: bundle, upload, register, unbundle (euca-bundle-image compatible)."""


@bundle_group.command(
    "image", short_help="Bundle an image: tar, gzip, encrypt, split, sign a manifest.")
@click.option("-i", "--image", "image", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The image file: a root filesystem or disk, a kernel or a ramdisk.")
@click.option("-d", "--destination", type=click.Path(path_type=Path, file_okay=False),
              help="Where to write the parts and manifest [./bundle-<prefix>].")
@click.option("-p", "--prefix", default="", help="Bundle file names' prefix [image file name].")
@keys_options
@click.option("-u", "--user", default=None,
              help="Your account id (the manifest's <user>) [from your certificate].")
@click.option("-r", "--arch", "architecture", type=click.Choice(ARCHITECTURES),
              default="x86_64", show_default=True)
@click.option("--kernel", "kernel_id", default=None,
              help="Kernel image id (eki-...) for a machine image, or 'true' to bundle a kernel.")
@click.option("--ramdisk", "ramdisk_id", default=None,
              help="Ramdisk id (eri-...) for a machine image, or 'true' to bundle a ramdisk.")
@click.option("--image-type", type=click.Choice(IMAGE_TYPES), default=None,
              help="machine, kernel or ramdisk [machine, or as --kernel/--ramdisk true say].")
@click.option("-B", "--part-size", "part_mib", type=click.FloatRange(min=0.001),
              default=DEFAULT_PART_SIZE / MIB, show_default=True, help="Part size in MiB.")
@click.option("--compress-level", type=click.IntRange(0, 9), default=6, show_default=True,
              help="gzip level (1 is much faster on large sparse images).")
def bundle_image_command(image: Path, destination: Path | None, prefix: str,
                         keys_dir: Path | None, cert: Path | None, private_key: Path | None,
                         cloud_cert: Path | None, user: str | None, architecture: str,
                         kernel_id: str | None, ramdisk_id: str | None, image_type: str | None,
                         part_mib: float, compress_level: int) -> None:
    """Bundle an image: tar, gzip, encrypt (AES-128-CBC), split, and sign a manifest.

    The AES key is encrypted to the cloud's certificate (Walrus decrypts it)
    and to yours (`eucalypt bundle unbundle`). Memory stays bounded for any
    image size.
    """
    files = _key_files(keys_dir, cert, private_key, cloud_cert)
    try:
        keys = BundleKeys.from_files(
            _need(files.private_key, "your private key", "-k/--privatekey"),
            _need(files.cert, "your certificate", "-c/--cert"),
            _need(files.cloud_cert, "the cloud's certificate", "--ec2cert"),
        )
    except BundleError as exc:
        raise _fail(exc) from exc
    account = user or crypto.account_of(keys.user_cert) or os.environ.get("EC2_USER_ID")
    if not account:
        raise click.UsageError("give -u/--user (your account id): the certificate names none")
    kind = image_type or ("kernel" if kernel_id == "true" else
                          "ramdisk" if ramdisk_id == "true" else "machine")
    if kind != "machine" and (kernel_id not in (None, "true") or ramdisk_id not in (None, "true")):
        raise click.UsageError("only machine images name a kernel or ramdisk")
    name = prefix or image.name
    spec = BundleSpec(
        image=image,
        destination=destination or Path(f"bundle-{name}"),
        user=account,
        prefix=name,
        image_type=kind,
        architecture=architecture,
        kernel_id=kernel_id if kind == "machine" else ("true" if kind == "kernel" else None),
        ramdisk_id=ramdisk_id if kind == "machine" else ("true" if kind == "ramdisk" else None),
        part_size=int(part_mib * MIB),
        compress_level=compress_level,
    )
    console = Console(stderr=True)
    size = image.stat().st_size
    with _progress(console) as progress:
        task = progress.add_task(f"bundling {image.name}", total=size)
        try:
            result = bundle_image(spec, keys, lambda done: progress.update(task, completed=done))
        except BundleError as exc:
            raise _fail(exc) from exc
    m = result.manifest
    console.print(f"{kind} image {image.name}: {m.size} bytes -> {len(m.parts)} part(s), "
                  f"{m.bundled_size} bytes encrypted")
    click.echo(str(result.manifest_path))


@bundle_group.command(
    "upload", short_help="Upload a bundle's parts, then its manifest, to a bucket.")
@click.option("-m", "--manifest", "manifest_path", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The bundle's manifest (<prefix>.manifest.xml).")
@click.option("-b", "--bucket", required=True, help="bucket or bucket/prefix to upload into.")
@click.option("-d", "--directory", type=click.Path(path_type=Path, file_okay=False),
              help="Where the parts are [the manifest's directory].")
@click.option("--acl", default="private", show_default=True, help="Canned ACL for the objects.")
@click.option("--s3-url", default=None, help="Walrus URL [$AWS_ENDPOINT_URL_S3, $S3_URL].")
@click.option("--multipart-threshold", "threshold_mib", type=click.IntRange(min=5), default=64,
              show_default=True, help="Parts larger than this (MiB) go up in multipart uploads.")
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Parts uploaded at once.")
def upload_command(manifest_path: Path, bucket: str, directory: Path | None, acl: str,
                   s3_url: str | None, threshold_mib: int, concurrency: int) -> None:
    """Upload a bundle to a Walrus bucket: every part, then the manifest (so a manifest in
    the bucket always has its parts). Prints the location to register."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        signed = parse(manifest_path.read_bytes())
    except BundleError as exc:
        raise _fail(exc) from exc
    folder = directory or manifest_path.parent
    bucket_name, prefix = _split_bucket(bucket)
    paths = [folder / p.filename for p in signed.manifest.parts]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise click.ClickException(f"{len(missing)} part(s) missing, first {missing[0]}")
    s3 = _s3(s3_url)
    transfer = TransferConfig(multipart_threshold=threshold_mib * MIB,
                              multipart_chunksize=max(5, threshold_mib // 4) * MIB,
                              max_concurrency=4, use_threads=True)
    extra = {"ACL": acl} if acl != "private" else None
    console = Console(stderr=True)
    total = sum(p.stat().st_size for p in paths) + manifest_path.stat().st_size
    lock = threading.Lock()
    try:
        try:
            s3.head_bucket(Bucket=bucket_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            s3.create_bucket(Bucket=bucket_name)
        with _progress(console) as progress:
            task = progress.add_task(f"uploading to {bucket_name}", total=total)

            def advance(n: int) -> None:
                with lock:
                    progress.advance(task, n)

            def put(path: Path) -> None:
                s3.upload_file(str(path), bucket_name, prefix + path.name, Config=transfer,
                               Callback=advance, ExtraArgs=extra)

            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for future in [pool.submit(put, p) for p in paths]:
                    future.result()
            put(manifest_path)  # last: a manifest always finds its parts
    except (BotoCoreError, ClientError) as exc:
        raise click.ClickException(f"upload failed: {exc}") from exc
    click.echo(f"{bucket_name}/{prefix}{manifest_path.name}")


@bundle_group.command(
    "register", short_help="Register an uploaded bundle as an image (EMI/EKI/ERI).")
@click.argument("location")
@click.option("-n", "--name", required=True, help="The image's name (unique in your account).")
@click.option("--description", default="", help="A description.")
@click.option("--kernel", "kernel_id", default=None, help="Kernel (eki-...) [the manifest's].")
@click.option("--ramdisk", "ramdisk_id", default=None, help="Ramdisk (eri-...) [the manifest's].")
@click.option("-r", "--arch", "architecture", type=click.Choice(ARCHITECTURES), default=None,
              help="Architecture [the manifest's].")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until Walrus has verified and decrypted the image.")
@click.option("--timeout", type=float, default=1800.0, show_default=True,
              help="Seconds to wait with --wait.")
@click.option("--ec2-url", default=None, help="CLC URL [$AWS_ENDPOINT_URL_EC2, $EC2_URL].")
def register_command(location: str, name: str, description: str, kernel_id: str | None,
                     ramdisk_id: str | None, architecture: str | None, wait: bool,
                     timeout: float, ec2_url: str | None) -> None:
    """Register an uploaded bundle (LOCATION = bucket/prefix.manifest.xml) as an image.

    The image type (machine, kernel, ramdisk) comes from the manifest. The
    image is pending until Walrus has checked the signature and every part
    and decrypted it; a tampered or foreign bundle ends failed, with why.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    location = location.removeprefix("s3://")
    if not location.endswith(MANIFEST_SUFFIX):
        raise click.UsageError(f"LOCATION must name a manifest (...{MANIFEST_SUFFIX})")
    ec2 = _ec2(ec2_url)
    kwargs: dict[str, Any] = {"Name": name, "ImageLocation": location}
    if description:
        kwargs["Description"] = description
    if kernel_id:
        kwargs["KernelId"] = kernel_id
    if ramdisk_id:
        kwargs["RamdiskId"] = ramdisk_id
    if architecture:
        kwargs["Architecture"] = architecture
    try:
        image_id = ec2.register_image(**kwargs)["ImageId"]
        if wait:
            console = Console(stderr=True)
            with console.status(f"{image_id}: Walrus is verifying and decrypting the bundle ..."):
                deadline = time.monotonic() + timeout
                while True:
                    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
                    if image["State"] == "available":
                        break
                    if image["State"] == "failed":
                        reason = image.get("StateReason", {}).get("Message", "")
                        raise click.ClickException(f"{image_id} failed: {reason}")
                    if time.monotonic() > deadline:
                        raise click.ClickException(f"{image_id} still pending after {timeout}s")
                    time.sleep(0.5)
    except (BotoCoreError, ClientError) as exc:
        raise click.ClickException(f"register failed: {exc}") from exc
    click.echo(image_id)


def _s3_source(s3: Any, bucket: str, folder: str) -> PartSource:
    from botocore.exceptions import ClientError

    def read(part: ManifestPart) -> Iterator[bytes]:
        try:
            body = s3.get_object(Bucket=bucket, Key=folder + part.filename)["Body"]
        except ClientError as exc:
            raise PartMissing(f"part s3://{bucket}/{folder}{part.filename}: {exc}") from exc
        with contextlib.closing(body):
            yield from body.iter_chunks(MIB)

    return read


@bundle_group.command(
    "unbundle", short_help="Turn one of your bundles back into the image.")
@click.option("-m", "--manifest", "manifest", required=True,
              help="The manifest: a file, or s3://bucket/key (parts read from Walrus).")
@click.option("-s", "--source", type=click.Path(path_type=Path, file_okay=False),
              help="Directory with the parts [the manifest's directory].")
@click.option("-d", "--destination", type=click.Path(path_type=Path, file_okay=False),
              default=Path("."), show_default=True, help="Where to write the image.")
@keys_options
@click.option("--no-verify", is_flag=True,
              help="Do not check the manifest's signature against your certificate.")
@click.option("--s3-url", default=None, help="Walrus URL [$AWS_ENDPOINT_URL_S3, $S3_URL].")
def unbundle_command(manifest: str, source: Path | None, destination: Path,
                     keys_dir: Path | None, cert: Path | None, private_key: Path | None,
                     cloud_cert: Path | None, no_verify: bool, s3_url: str | None) -> None:
    """Unbundle one of your bundles back into the image (decrypted with your private key).

    Every part's digest, the image digest and (unless --no-verify) the
    signature are checked; a bundle that fails any check leaves no image.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    del cloud_cert  # accepted for symmetry with `bundle image`; not needed here
    files = _key_files(keys_dir, cert, private_key, None)
    try:
        key = crypto.load_private_key(
            _need(files.private_key, "your private key", "-k/--privatekey").read_bytes())
        s3: Any = None
        if manifest.startswith("s3://"):
            bucket, _, key_name = manifest.removeprefix("s3://").partition("/")
            s3 = _s3(s3_url)
            data = s3.get_object(Bucket=bucket, Key=key_name)["Body"].read()
            folder = key_name.rsplit("/", 1)[0] + "/" if "/" in key_name else ""
            parts = _s3_source(s3, bucket, folder)
        else:
            path = Path(manifest)
            data = path.read_bytes()
            parts = directory_source(source or path.parent)
        signed: SignedManifest = parse(data)
        if not no_verify:
            signed.signer([crypto.load_certificate(
                _need(files.cert, "your certificate (or --no-verify)", "-c/--cert").read_bytes())])
        aes_key, iv = decrypt_key_iv(signed.manifest, key, user=True)
        destination.mkdir(parents=True, exist_ok=True)
        console = Console(stderr=True)
        fd, temp_name = tempfile.mkstemp(prefix=".unbundle-", dir=destination)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out, _progress(console) as progress:
                task = progress.add_task(f"unbundling {signed.manifest.name}",
                                         total=signed.manifest.bundled_size)
                result = unbundle(signed.manifest, aes_key, iv, parts, out,
                                  lambda done: progress.update(task, completed=done))
            final = destination / result.name
            temp.replace(final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    except BundleError as exc:
        raise _fail(exc) from exc
    except (OSError, BotoCoreError, ClientError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"{result.size} bytes, sha256 {result.sha256}")
    click.echo(str(final))
