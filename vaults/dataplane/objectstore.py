"""Region object stores: one per region, a local directory or an S3 bucket.

Everything that touches stored bytes goes through `region_store(region)`;
which backend a region uses is decided here and nowhere else.
"""

import functools
import os
import shutil
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from storages.backends.s3 import S3Storage

from console.models import Region

from .directio import DIRECT_MIN, DirectWriter, write_all
from .tenantfs import DIRECTORY, UnsafePath, key_problem, open_regular


class ObjectStoreError(Exception):
    """The region's object store refused or could not be reached."""


class ObjectMissing(ObjectStoreError):
    """The store answered, and the object is not there, or shorter than it was written: damage, not an outage."""


S3_MISSING = {"NoSuchKey", "404", "InvalidRange", "416"}


def _read_error(store, key, exc):
    """The error of a failed read: ObjectMissing where the store said the object (or the range) is not there."""
    missing = isinstance(exc, FileNotFoundError) or (
        isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in S3_MISSING
    )
    reason = exc.strerror if isinstance(exc, OSError) else exc
    return (ObjectMissing if missing else ObjectStoreError)(f"Cannot read {key} from {store}: {reason}")


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
    """A directory on a disk the workers share (the embedded default).

    Writes go to a temporary name, are fsynced and renamed, so an object either
    exists whole and durable or not at all (rule P3).
    """

    def __init__(self, root):
        self.root = Path(root)

    def __str__(self):
        return f"directory {self.root}"

    def _path(self, key):
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ObjectStoreError(f"Refusing a key outside the store: {key!r}.")
        return path

    def ensure_ready(self):
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ObjectStoreError(f"Cannot create {self.root}: {exc.strerror}") from exc

    def put(self, key, data, archive=False):
        """`archive`: the archive tier, which a local store keeps in its own area (the key says so)."""
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if len(data) >= DIRECT_MIN:  # a pack: around the page cache (vaults/directio.py)
                    with DirectWriter(tmp, fd) as writer:
                        writer.write(data)
                        writer.finish()
                else:
                    write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ObjectStoreError(f"Cannot write {key} to {self}: {exc.strerror}") from exc

    def get(self, key):
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise _read_error(self, key, exc) from exc

    def get_range(self, key, offset, length):
        try:
            with open(self._path(key), "rb") as f:
                f.seek(offset)
                data = f.read(length)
                # Readers go on with the next bytes of a pack (a file's chunks follow each other), and
                # packs are not in the page cache (written with O_DIRECT): start reading them now.
                os.posix_fadvise(f.fileno(), offset + length, length, os.POSIX_FADV_WILLNEED)
        except OSError as exc:
            raise _read_error(self, key, exc) from exc
        if len(data) != length:
            raise ObjectMissing(f"{key} in {self} is shorter than expected.")
        return data

    def exists(self, key):
        return self._path(key).is_file()

    def delete(self, key):
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise ObjectStoreError(f"Cannot delete {key} from {self}: {exc.strerror}") from exc

    def list_keys(self, prefix):
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.endswith(".tmp")
        )

    def list_objects(self, prefix):
        """(key, last modified) of every object under `prefix`, the temporary files of torn writes too."""
        base = self.root / prefix
        if not base.exists():
            return []
        try:
            return [
                (str(p.relative_to(self.root)), datetime.fromtimestamp(p.stat().st_mtime, UTC))
                for p in base.rglob("*")
                if p.is_file()
            ]
        except OSError as exc:
            raise ObjectStoreError(f"Cannot list {prefix} in {self}: {exc.strerror}") from exc

    def delete_prefix(self, prefix):
        target = self._path(prefix)
        if target == self.root.resolve():
            raise ObjectStoreError(f"Refusing to delete {prefix!r}: not a vault area.")
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

    def put(self, key, data, archive=False):
        extra = {"StorageClass": settings.OBJECT_STORE["archive_storage_class"]} if archive else {}
        try:
            self.client.put_object(Bucket=self.bucket_name, Key=key, Body=data, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"Cannot write {key} to {self}: {exc}") from exc

    def get(self, key):
        try:
            return self.client.get_object(Bucket=self.bucket_name, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _read_error(self, key, exc) from exc

    def get_range(self, key, offset, length):
        try:
            body = self.client.get_object(
                Bucket=self.bucket_name, Key=key, Range=f"bytes={offset}-{offset + length - 1}"
            )["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _read_error(self, key, exc) from exc
        if len(body) != length:
            raise ObjectMissing(f"{key} in {self} is shorter than expected.")
        return body

    def delete(self, key):
        try:
            self.client.delete_object(Bucket=self.bucket_name, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"Cannot delete {key} from {self}: {exc}") from exc

    def exists(self, key):
        try:
            return self.storage.exists(key)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"Cannot reach {self}: {exc}") from exc

    def list_keys(self, prefix):
        return sorted(key for key, _ in self.list_objects(prefix))

    def list_objects(self, prefix):
        """(key, last modified) of every object under `prefix`."""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            return [
                (obj["Key"], obj["LastModified"])
                for page in paginator.paginate(Bucket=self.bucket_name, Prefix=prefix)
                for obj in page.get("Contents", [])
            ]
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
    """A plain boto3 S3 client, for tools and tests that look at buckets directly."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
    )


BUCKET_NAME_RULE = (
    "Enter a bucket name: 3 to 63 lowercase letters, digits, dots or hyphens, beginning and ending with a letter "
    "or a digit."
)


def is_valid_bucket_name(name):
    """S3's rule for bucket names (so no name starts with a dot, as a local bucket's upload area does)."""
    return (
        3 <= len(name) <= 63
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-." for c in name)
        and name[0].isalnum()
        and name[-1].isalnum()
        and ".." not in name
    )


def _service_areas():
    """Directories of the service's own data: region stores, keys, the embedded database."""
    areas = {settings.DATA_DIR, Path(settings.OBJECT_STORE["root"]), Path(settings.MASTER_SECRET_FILE).parent}
    areas.add(Path(settings.KMS["local_root"]))
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        areas.add(Path(database["NAME"]).parent)
    for region in Region.objects.all():
        backend, location, *_ = store_config(region)
        if backend == "local":
            areas.add(Path(location))
    return {Path(os.path.realpath(a)) for a in areas}


PATH_MAX, NAME_MAX = 4096, 255
SYSTEM_AREAS = ("/proc", "/sys", "/dev")  # the host's: a worker's environment (secrets) is in /proc/self/environ


def path_refusal(path, account):
    """Why a directory may not be a backup source or a restore target of an account, or None.

    Rule T3: the service's own data is never one, nor a directory holding it (a backup of
    it would hand over every vault's keys, a restore into it could overwrite another
    account's packs), and neither are the host's system areas, whatever the settings.
    Rule T2: with BACKUP_PATH_ROOTS set, each account has its own directory under each
    root (`<root>/<account slug>/`) and its paths must lie in one of them; without roots,
    only a single-tenant service (settings.SINGLE_TENANT) accepts other directories.
    """
    if "\x00" in path:
        return "A path cannot contain a NUL byte."
    if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX or any(
        len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in path.split("/")
    ):
        return f"The path is longer than {PATH_MAX} bytes or has a name longer than {NAME_MAX}."
    if os.path.islink(path):  # a job opens the root without following a link (vaults/tenantfs.py): say so now
        return f"{path} is a symbolic link; give the directory it leads to."
    where = Path(os.path.realpath(path))
    for area in {*_service_areas(), *(Path(a) for a in SYSTEM_AREAS)}:
        if where == area or area in where.parents or where in area.parents:
            return f"{path} holds or is part of this service's own data or the system's; choose another directory."
    roots = [Path(os.path.realpath(r)) / account.slug for r in settings.BACKUP_PATH_ROOTS]
    if roots and not any(where == r or r in where.parents for r in roots):
        return f"{path} is not under this account's directories: {', '.join(map(str, roots))}."
    if not roots and not settings.SINGLE_TENANT:
        return (
            "This service keeps several accounts' data, and no directories are set aside for them: an operator "
            "sets BACKUP_PATH_ROOTS (or CLOUD_BACKUP_SINGLE_TENANT=1 for a service of one tenant)."
        )
    return None


def bucket_refusal(bucket):
    """Why an OSS bucket may not be a backup source or a restore target: it is a region's store."""
    for region in Region.objects.all():
        backend, location, *_ = store_config(region)
        if backend == "s3" and location == bucket:
            return f"The bucket {bucket} holds this service's own data; choose another bucket."
    return None


def oss_bucket(region, bucket, credentials=None):
    """An OSS bucket of a region, as a backup source reads it (and a restore writes it).

    On an S3-backed region it is a bucket of the region's endpoint, reached with
    `credentials` (access key, secret) or the service's own; in the embedded default it
    is a directory `oss/<region>/<bucket>` beside the region stores. Which account may
    use which bucket is vaults.services.buckets' business (rule T2).
    """
    backend, _, endpoint, access_key, secret_key, addressing = store_config(region)
    if credentials:
        access_key, secret_key = credentials
    if backend == "s3":
        return S3Bucket(bucket, endpoint, access_key, secret_key, addressing)
    return LocalBucket(Path(settings.OBJECT_STORE["root"]) / "oss" / region.code / bucket, bucket)


class LocalBucket:
    """An OSS bucket of the embedded default: a directory whose files are its objects.

    Every key it is asked to put, open, check or list is checked (rule T1: no absolute,
    empty, `.` or `..` segment) and resolved inside the bucket's directory; links in it
    are never followed, nor listed as objects.
    """

    def __init__(self, root, name):
        self.root = Path(root)
        self.name = name

    def _require(self):
        if not self.root.is_dir():
            raise ObjectStoreError(f"The bucket {self.name} does not exist.")

    def _path(self, key):
        problem = key_problem(key)
        if problem is None:
            path = self.root / key
            root, parent = os.path.realpath(self.root), os.path.realpath(path.parent)
            if parent == root or parent.startswith(root + os.sep):
                return path
            problem = "leads outside the bucket"
        raise ObjectStoreError(f"Refusing the key {key[:200]!r} of the bucket {self.name}: it {problem}.")

    def list_objects(self, prefix=""):
        self._require()
        found = []
        for top, _dirs, files in os.walk(self.root):  # os.walk does not enter links to directories
            for name in files:
                path = Path(top) / name
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode):
                    continue  # a link or a special file is not an object
                key = str(path.relative_to(self.root))
                if key.startswith(prefix):
                    found.append({"key": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "content_type": None})
        yield from sorted(found, key=lambda o: o["key"])

    def totals(self, prefix=""):
        objects = list(self.list_objects(prefix))
        return len(objects), sum(o["size"] for o in objects)

    def open(self, key):
        path = self._path(key)
        try:
            fd, _ = _open_object(path)
        except UnsafePath as exc:
            raise FileNotFoundError(key) from exc
        return open(fd, "rb", buffering=0)  # noqa: SIM115 - the caller closes it

    def exists(self, key):
        self._require()
        path = self._path(key)
        return path.is_file() and not path.is_symlink()

    def put_file(self, key, path, content_type=None):
        """Put a local file as an object: copied beside the bucket, then renamed into place.

        The copy in progress lives outside the bucket's directory (no bucket name starts
        with a dot), so a half-written object is never listed, even after a crash.
        """
        self._require()
        final = self._path(key)
        uploads = self.root.parent / f".{self.name}.uploads"
        part = uploads / f"{uuid.uuid4().hex}.part"
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._path(key)  # the directories just made are inside the bucket too
            uploads.mkdir(exist_ok=True)
            shutil.copyfile(path, part)
            os.replace(part, final)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise ObjectStoreError(f"Cannot write {key} to the bucket {self.name}: {exc.strerror}") from exc


def _open_object(path):
    """Open an object's file without following a link in its directory or at its name."""
    dir_fd = os.open(path.parent, DIRECTORY)
    try:
        return open_regular(dir_fd, path.name)
    finally:
        os.close(dir_fd)


class S3Bucket:
    def __init__(self, name, endpoint_url, access_key, secret_key, addressing_style):
        self.name = name
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": addressing_style}, retries={"max_attempts": 3}),
        )

    def _call(self, operation, **kwargs):
        try:
            return getattr(self.client, operation)(Bucket=self.name, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchBucket", "404"}:
                raise ObjectStoreError(f"The bucket {self.name} does not exist.") from exc
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                raise FileNotFoundError(kwargs.get("Key")) from exc
            raise ObjectStoreError(f"The bucket {self.name} refused {operation}: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"Cannot reach the bucket {self.name}: {exc}") from exc

    def list_objects(self, prefix=""):
        token = None
        while True:
            kwargs = {"Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self._call("list_objects_v2", **kwargs)
            for obj in page.get("Contents", []):
                head = self._call("head_object", Key=obj["Key"])
                yield {
                    "key": obj["Key"],
                    "size": obj["Size"],
                    "content_type": head.get("ContentType"),
                    "mtime_ns": int(obj["LastModified"].timestamp() * 1e9),
                }
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def totals(self, prefix=""):
        count = size = 0
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                for obj in page.get("Contents", []):
                    count += 1
                    size += obj["Size"]
        except ClientError as exc:
            raise ObjectStoreError(f"The bucket {self.name} does not exist or cannot be listed: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"Cannot reach the bucket {self.name}: {exc}") from exc
        return count, size

    def open(self, key):
        return self._call("get_object", Key=key)["Body"]

    def exists(self, key):
        try:
            self.client.head_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                self._call("head_bucket")  # a missing bucket is an error, a missing key is not
                return False
            raise ObjectStoreError(f"The bucket {self.name} refused head_object: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"Cannot reach the bucket {self.name}: {exc}") from exc
        return True

    def put_file(self, key, path, content_type=None):
        """Upload a local file as an object (multipart for big ones; the object appears whole)."""
        self._call("head_bucket")
        try:
            self.client.upload_file(
                str(path), self.name, key, ExtraArgs={"ContentType": content_type} if content_type else None
            )
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise ObjectStoreError(f"Cannot write {key} to the bucket {self.name}: {exc}") from exc
