"""Running the command-line S3 clients (AWS CLI, s3cmd, rclone) against a Walrus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from eucalypt.auth import Credential
from tests.walrus.conftest import REGION

BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str], timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[:3]} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


class AwsCli:
    """``aws`` (v1, from the venv) with the endpoint, credentials and path-style set."""

    def __init__(self, url: str, cred: Credential, home: Path) -> None:
        self.url = url
        home.mkdir(parents=True, exist_ok=True)
        config = home / "config"
        config.write_text(
            "[default]\n"
            f"region = {REGION}\n"
            "s3 =\n"
            "    addressing_style = path\n"
            "    multipart_threshold = 8MB\n"
            "    multipart_chunksize = 8MB\n"
            "    max_concurrent_requests = 4\n"
        )
        self.env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "HOME": str(home),
            "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "AWS_ACCESS_KEY_ID": cred.access_key, "AWS_SECRET_ACCESS_KEY": cred.secret_key,
            "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([str(BIN / "aws"), "--endpoint-url", self.url, *args], self.env, check=check)


class S3cmd:
    """``s3cmd`` (from the venv) with a config file for this Walrus (SigV4, path style)."""

    def __init__(self, url: str, cred: Credential, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        hostport = url.removeprefix("http://")
        self.config = home / "s3cfg"
        self.config.write_text(
            "[default]\n"
            f"access_key = {cred.access_key}\n"
            f"secret_key = {cred.secret_key}\n"
            f"host_base = {hostport}\n"
            f"host_bucket = {hostport}\n"
            f"bucket_location = {REGION}\n"
            "use_https = False\n"
            "signature_v2 = False\n"
            "multipart_chunk_size_mb = 15\n"
            "check_ssl_certificate = False\n"
        )
        self.env = {"PATH": f"{BIN}:{os.environ.get('PATH', '')}", "HOME": str(home)}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, str(BIN / "s3cmd"), "-c", str(self.config), *args],
                   self.env, check=check)


class Rclone:
    """``rclone`` (Debian package) with an S3 remote named ``walrus``."""

    def __init__(self, url: str, cred: Credential, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.config = home / "rclone.conf"
        self.config.write_text(
            "[walrus]\n"
            "type = s3\n"
            "provider = Other\n"
            f"access_key_id = {cred.access_key}\n"
            f"secret_access_key = {cred.secret_key}\n"
            f"endpoint = {url}\n"
            f"region = {REGION}\n"
            "force_path_style = true\n"
            "chunk_size = 8Mi\n"
            "upload_cutoff = 16Mi\n"
        )
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}

    @staticmethod
    def available() -> bool:
        return shutil.which("rclone") is not None

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["rclone", "--config", str(self.config), "--retries", "1",
                    "--low-level-retries", "2", *args], self.env, check=check)
