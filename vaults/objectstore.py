"""Region object stores: one per region, a local directory or an S3 bucket.

Everything that touches stored bytes goes through `region_store(region)`;
which backend a region uses is decided here and nowhere else.
"""

import functools
import shutil
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from storages.backends.s3 import S3Storage


class ObjectStoreError(Exception):
    """The region's object store refused or could not be reached."""


def store_config(region):
    """The effective store settings of a region: its own row, else the deployment default."""
    default = settings.OBJECT_STORE
    backend = region.store_backend or default["backend"]
    if backend == "s3":
        location = region.store_location or default["bucket_template"].format(region=region.code)
        endpoint = region.store_endpoint_url or default["endpoint_url"]
    else:
        location = region.store_location or str(Path(default["root"]) / region.code)
        endpoint = ""
    return (backend, location, endpoint, default["access_key"], default["secret_key"], default["addressing_style"])


def region_store(region):
    return _store_for(store_config(region))


@functools.lru_cache(maxsize=64)
def _store_for(config):
    backend, location, endpoint, access_key, secret_key, addressing = config
    if backend == "s3":
        return S3RegionStore(location, endpoint, access_key, secret_key, addressing)
    if backend == "local":
        return LocalRegionStore(location)
    raise ObjectStoreError(f"Unknown object store backend {backend!r}.")


class LocalRegionStore:
    """A directory on a disk the workers share (the embedded default)."""

    def __init__(self, root):
        self.root = Path(root)
        self.storage = FileSystemStorage(location=str(self.root), allow_overwrite=True)

    def __str__(self):
        return f"directory {self.root}"

    def ensure_ready(self):
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ObjectStoreError(f"Cannot create {self.root}: {exc.strerror}") from exc

    def put(self, key, data):
        try:
            self.storage.save(key, ContentFile(data))
        except OSError as exc:
            raise ObjectStoreError(f"Cannot write {key} to {self}: {exc.strerror}") from exc

    def get(self, key):
        try:
            with self.storage.open(key, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ObjectStoreError(f"Cannot read {key} from {self}: {exc.strerror}") from exc

    def exists(self, key):
        return self.storage.exists(key)

    def list_keys(self, prefix):
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def delete_prefix(self, prefix):
        target = self.root / prefix
        if not target.resolve().is_relative_to(self.root.resolve()) or target.resolve() == self.root.resolve():
            raise ObjectStoreError(f"Refusing to delete {prefix!r} outside a vault area.")
        try:
            shutil.rmtree(target)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ObjectStoreError(f"Cannot delete {prefix} from {self}: {exc.strerror}") from exc


class S3RegionStore:
    """A bucket on an S3-compatible endpoint, through django-storages and boto3."""

    def __init__(self, bucket, endpoint_url, access_key, secret_key, addressing_style):
        self.bucket_name = bucket
        self.endpoint_url = endpoint_url or None
        self.storage = S3Storage(
            bucket_name=bucket,
            endpoint_url=self.endpoint_url,
            access_key=access_key or None,
            secret_key=secret_key or None,
            region_name="us-east-1",
            addressing_style=addressing_style,
            file_overwrite=True,
            default_acl=None,
            querystring_auth=False,
            client_config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
        )

    def __str__(self):
        return f"bucket {self.bucket_name}"

    @property
    def client(self):
        return self.storage.connection.meta.client

    def ensure_ready(self):
        try:
            self.client.head_bucket(Bucket=self.bucket_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
                raise ObjectStoreError(f"Cannot reach {self}: {exc}") from exc
            try:
                self.client.create_bucket(Bucket=self.bucket_name)
            except (ClientError, BotoCoreError) as create_exc:
                raise ObjectStoreError(f"Cannot create {self}: {create_exc}") from create_exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"Cannot reach {self}: {exc}") from exc

    def put(self, key, data):
        try:
            self.client.put_object(Bucket=self.bucket_name, Key=key, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"Cannot write {key} to {self}: {exc}") from exc

    def get(self, key):
        try:
            return self.client.get_object(Bucket=self.bucket_name, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"Cannot read {key} from {self}: {exc}") from exc

    def exists(self, key):
        try:
            return self.storage.exists(key)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"Cannot reach {self}: {exc}") from exc

    def list_keys(self, prefix):
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            return sorted(
                obj["Key"]
                for page in paginator.paginate(Bucket=self.bucket_name, Prefix=prefix)
                for obj in page.get("Contents", [])
            )
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"Cannot list {prefix} in {self}: {exc}") from exc

    def delete_prefix(self, prefix):
        if not prefix.strip("/"):
            raise ObjectStoreError("Refusing to delete a whole bucket.")
        try:
            self.storage.bucket.objects.filter(Prefix=prefix).delete()
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"Cannot delete {prefix} from {self}: {exc}") from exc


def s3_client(endpoint_url, access_key, secret_key):
    """A plain boto3 S3 client, for tools and tests that manage buckets."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
    )
