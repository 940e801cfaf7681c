"""OSS buckets and their owners (rule T2): assign, register, refuse, open.

A bucket is used as a backup source or a restore target only by the one account it
belongs to. An operator assigns it (the service's store credentials then serve it), or the
account registers it with an S3 access key of its own, sealed under the master secret.
"""

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from console.services import audit_refusals, record_audit

from ..dataplane.keys import open_credential, seal_credential
from ..dataplane.objectstore import BUCKET_NAME_RULE, bucket_refusal, is_valid_bucket_name, oss_bucket, store_config
from ..models import OssBucket


def _owner_of(region, name):
    """The bucket's row, refusing a name no account may own; regions on one S3 endpoint share its buckets."""
    if not is_valid_bucket_name(name):
        raise ValidationError({"bucket": BUCKET_NAME_RULE})
    if reason := bucket_refusal(name):
        raise ValidationError({"bucket": reason})
    backend, _, endpoint, *_ = store_config(region)
    rows = OssBucket.objects.filter(name=name).select_related("region", "account")
    for owned in sorted(rows, key=lambda row: row.region_id != region.pk):  # this region's row first
        other_backend, _, other_endpoint, *_ = store_config(owned.region)
        if owned.region_id == region.pk or (backend == other_backend == "s3" and endpoint == other_endpoint):
            return owned
    return None


def assign_bucket(*, actor, account, region, name):
    """An operator gives a bucket of a region to an account; a local bucket is created.

    The service's own store credentials serve it. A bucket already another account's is refused.
    """
    name = (name or "").strip()
    with audit_refusals("assign_bucket", actor=actor, account=account, region_code=region.code, object_type="bucket"):
        owner = _owner_of(region, name)
        if owner is not None and owner.account_id != account.pk:
            raise ValidationError({"bucket": f"The bucket {name} belongs to another account."})
        if owner is not None and owner.region_id == region.pk:
            return owner
        if store_config(region)[0] == "local":
            oss_bucket(region, name).root.mkdir(parents=True, exist_ok=True)
        try:
            with transaction.atomic():
                bucket = OssBucket.objects.create(account=account, region=region, name=name, assigned_by_operator=True)
                record_audit(
                    actor=actor,
                    action="assign_bucket",
                    object_type="bucket",
                    object_id=bucket.pk,
                    account=account,
                    region_code=region.code,
                    name=name,
                )
        except IntegrityError:
            raise ValidationError({"bucket": f"The bucket {name} belongs to another account."}) from None
    return bucket


def register_bucket(*, actor, account, region, name, access_key_id, secret_access_key):
    """An account registers a bucket with its own S3 access key, checked against the bucket first."""
    name = (name or "").strip()
    access_key_id = (access_key_id or "").strip()
    with audit_refusals("register_bucket", actor=actor, account=account, region_code=region.code, object_type="bucket"):
        owner = _owner_of(region, name)
        if owner is not None:
            raise ValidationError({"bucket": f"The bucket {name} is already registered."})
        if store_config(region)[0] != "s3":
            raise ValidationError(
                {"bucket": "Buckets of the embedded store are assigned by an operator (manage.py bucket assign)."}
            )
        if not access_key_id or not secret_access_key:
            raise ValidationError({"access_key_id": "Enter the access key ID and secret of a key for this bucket."})
        try:
            oss_bucket(region, name, credentials=(access_key_id, secret_access_key)).client.head_bucket(Bucket=name)
        except (ClientError, BotoCoreError) as exc:
            raise ValidationError({"access_key_id": f"The key cannot reach the bucket {name}: {exc}"[:500]}) from None
        try:
            with transaction.atomic():
                bucket = OssBucket.objects.create(
                    account=account,
                    region=region,
                    name=name,
                    access_key_id=access_key_id,
                    sealed_secret=seal_credential(secret_access_key, f"{region.code}/{name}"),
                )
                record_audit(
                    actor=actor,
                    action="register_bucket",
                    object_type="bucket",
                    object_id=bucket.pk,
                    account=account,
                    region_code=region.code,
                    name=name,
                    access_key_id=access_key_id,
                )
        except IntegrityError:
            raise ValidationError({"bucket": f"The bucket {name} is already registered."}) from None
    return bucket


def oss_bucket_refusal(*, account, region, name):
    """Rule T2: why an account may not name this bucket as a source or a target, or None."""
    if not is_valid_bucket_name(name):
        return BUCKET_NAME_RULE
    if reason := bucket_refusal(name):
        return reason
    owner = OssBucket.objects.filter(region=region, name=name).first()
    if owner is None or owner.account_id != account.pk:
        return (
            f"The bucket {name} is not one of this account's buckets in {region.name}: an operator assigns it "
            "(manage.py bucket assign), or register it with an access key of your own."
        )
    return None


def open_oss_bucket(*, account, region, name):
    """The account's bucket, with the credentials that serve it (its own key, or the service's)."""
    owned = OssBucket.objects.get(account=account, region=region, name=name)
    credentials = None
    if owned.access_key_id:
        credentials = (owned.access_key_id, open_credential(owned.sealed_secret, f"{region.code}/{name}"))
    return oss_bucket(region, name, credentials=credentials)
