"""The isolation figure (rules A1, T2): a member of account B, knowing every id of account A, sees and
changes nothing of A, by any URL, any form field or any management command.

* Every URL pattern of the project is walked from `get_resolver()` (so a new view cannot be left out),
  its captured kwargs filled with A's ids of the right kind (and B's own ids beside A's where a URL takes
  two), and requested as B with GET and POST, with and without `HX-Request: true` (B's own pages also
  with each `HX-Target` their htmx aims at).
* Every form and query link of B's own pages is discovered from the HTML; each field that takes an id
  (or a directory, rule T2) must be covered by a control below: B's own values, accepted (checked, then
  rolled back), then each value swapped for A's twin, refused.
* Every management command that takes `--account` is found from its parser and run as B with A's ids;
  commands that take ids of two accounts' objects are run with one of each.

Nothing of A may show in a response or an output, and no row (A's or B's, the audit log's refusals
aside) nor any file of the stores and tenant directories may change.
"""

import argparse
import itertools
import os
import re
from html.parser import HTMLParser
from io import StringIO
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import CommandError, call_command, get_commands, load_command_class
from django.db import transaction
from django.shortcuts import resolve_url
from django.urls import URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern

from console import services as console_services
from console.models import AuditLog
from replication import engine
from replication import services as replication_services
from restore import services as restore_services
from tests.vaults.conftest import backup_ok
from vaults import services as vault_services
from vaults.dataplane import keys, objectstore
from vaults.models import EncryptionMethod, SourceType, VaultType
from vaults.services import policies

pytestmark = pytest.mark.django_db

PROJECT_APPS = {"console", "vaults", "replication", "restore"}
HEADERS = {"plain": {}, "htmx": {"HTTP_HX_REQUEST": "true"}}
KMS = EncryptionMethod.KMS

# What the URL walk does not request, and why.
SKIPPED_URLS = {
    "admin/": "Django's admin site: its own URLs, scoped by ServiceModelAdmin (tests/vaults/test_isolation.py, "
    "tests/replication/test_admin.py); a member who is not staff only gets the admin's login page",
    "login/": "the public login page: no account data",
    "logout/": "it ends the session the walk runs in; no account data",
    "static/": "static files: no account data",
}

# Form fields and query parameters that name no object of an account; every other field must be an id field.
NOT_IDS = {
    "csrfmiddlewaretoken",
    "created_from",  # the vault page's point filter: days
    "created_to",
    "submission",  # a form's one-time token: the user's own (tests/console/test_form_tokens.py)
    "access_key_id",  # a bucket's own credentials: checked against the bucket (tests/security/test_buckets.py)
    "secret_access_key",
    "next",  # a URL: checked by the switch itself (tests/security/test_switch_account.py)
    "name",
    "description",
    "confirmation",
    "retention_days",
    "retain_at_least_one",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "weekdays",
    "times",
    "every",
    "time_zone",
    "replicate_to",  # a region code, like destination_region
    "replicate_name",
    "fail_on_change",
    "archive_after_days",
    "mode",
    "encryption_method",
    "vault_type",
    "destination_region",  # a region code: regions are shared by every account
    "existing",
    "on_damage",
    "sub_path",  # a path inside the point (rule T1: tests/restore)
    "network",
    "kind",
    "prefix",
    "source_type",
    "page",
    "month",
}
# Fields that name an object (or a directory, rule T2) of an account: each needs a control below.
ID_FIELDS = {
    "account",
    "vault",
    "sources",
    "point",
    "source",
    "target",
    "target_vault",
    "kms_key",
    "resource_group",
    "bucket",
    "path",
    "location",
}


# -- the two accounts' worlds --------------------------------------------------------------------------------


def tenant_dir(root, account, *parts):
    path = root.joinpath(account.slug, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_tree(path, marker):
    (path / "docs").mkdir(parents=True, exist_ok=True)
    (path / "docs" / "plan.txt").write_bytes(marker.encode() * 2000)
    (path / "small.bin").write_bytes(os.urandom(5000))
    return path


def normal(vault):
    return vault_services.initialize_vault_storage(vault.id)


@pytest.fixture
def world(
    settings, tmp_path, tmp_path_factory, account, other_account, user, other_user, region, lrs_region, monkeypatch
):
    """Account A (acme, alice) with one object of every kind, and account B (globex, mallory) with twins of them."""
    monkeypatch.setattr("vaults.services.backups._enqueue_backup", lambda job_id: None)
    monkeypatch.setattr("vaults.services.vaults._enqueue_initialization", lambda vault_id: None)
    monkeypatch.setattr("replication.services.enqueue_sync", lambda pair_id: None)
    # the stores, keys and tenant directories in a directory whose path names neither account
    base = tmp_path_factory.mktemp("isolation")
    root = base / "tenants"
    settings.BACKUP_PATH_ROOTS = [str(root)]
    settings.OBJECT_STORE = {**settings.OBJECT_STORE, "root": str(base / "regions")}
    settings.KMS = {**settings.KMS, "local_root": str(base / "kms")}
    settings.MASTER_SECRET_FILE = base / "secrets" / "master.key"
    objectstore._store_for.cache_clear()
    keys._kms_client.cache_clear()
    a, b = SimpleNamespace(account=account, user=user), SimpleNamespace(account=other_account, user=other_user)
    for side, word in ((a, "acme"), (b, "globex")):
        acct = side.account
        side.default_group = acct.resource_groups.get(is_default=True)
        side.group = console_services.create_resource_group(actor=None, account=acct, name=f"{word}-team")
        side.key_hz = vault_services.create_kms_key(actor=None, account=acct, region=region, alias=f"{word}-key-hz")
        side.key_west = vault_services.create_kms_key(
            actor=None, account=acct, region=lrs_region, alias=f"{word}-key-west"
        )
        side.vault_hz = normal(
            vault_services.create_vault(
                actor=None,
                account=acct,
                region=region,
                name=f"{word}-vault-hz",
                resource_group=side.group,
                encryption_method=KMS,
                kms_key=side.key_hz,
            )
        )
        side.vault_west = normal(
            vault_services.create_vault(actor=None, account=acct, region=lrs_region, name=f"{word}-vault-west")
        )
        side.free_target = normal(
            vault_services.create_vault(
                actor=None,
                account=acct,
                region=lrs_region,
                name=f"{word}-free-target",
                vault_type=VaultType.REPLICATION_TARGET,
                encryption_method=KMS,
                kms_key=side.key_west,
            )
        )
        side.data_dir = write_tree(tenant_dir(root, acct, "data"), f"{word}-file-content ")
        side.source = vault_services.create_backup_source(
            actor=None,
            account=acct,
            region=region,
            source_type=SourceType.ECS_FILE,
            name=f"{word}-source",
            path=str(side.data_dir),
        )
        side.backup_job = backup_ok(side.vault_hz, side.source)
        side.point = side.backup_job.point
        side.bucket = vault_services.assign_bucket(actor=None, account=acct, region=region, name=f"{word}-bucket")
        side.restore_dir = tenant_dir(root, acct, "restore")
        side.target = restore_services.create_restore_target(
            actor=None,
            account=acct,
            region=region,
            kind="ecs-instance",
            name=f"{word}-target",
            location=str(side.restore_dir),
        )
        side.queued_target = restore_services.create_restore_target(
            actor=None,
            account=acct,
            region=region,
            kind="ecs-instance",
            name=f"{word}-queued-target",
            location=str(tenant_dir(root, acct, "restore-2")),
        )
        side.vault_west_hz = normal(
            vault_services.create_vault(actor=None, account=acct, region=region, name=f"{word}-vault-hz-2")
        )
        side.policy = policies.create_policy(
            actor=None, account=acct, region=region, name=f"{word}-policy", vault=side.vault_hz,
            schedule=policies.policy_schedule(weekdays=range(7), times=((2, 0),)),
        )  # fmt: skip
        policies.bind_source(actor=None, policy=side.policy, source=side.source)
    # B's jobs still queued: its lists poll, so their polled tables are found and tried (into a vault and a
    # target of their own: one job at a time per source and vault, and per target, and the controls use B's)
    b.queued_backup = vault_services.start_backup(actor=None, vault=b.vault_west_hz, source=b.source)
    b.queued_restore = restore_services.start_restore(actor=None, point=b.point, target=b.queued_target)
    # A also replicates, restores and verifies: a pair, a replica point, a restore job, a verify run
    a.pair = replication_services.start_replication(
        actor=None,
        source_vault=a.vault_hz,
        destination_region=lrs_region,
        create={"name": "acme-replica-west", "encryption_method": KMS, "kms_key": a.key_west},
    )
    a.replica_vault = normal(a.pair.target_vault)
    engine.sync_pair(a.pair.id)
    a.replica_point = a.replica_vault.points.get()
    a.restore_job = restore_services.start_restore(actor=None, point=a.point, target=a.target)
    restore_services.run_restore_job(a.restore_job.pk)
    a.verify_run = vault_services.start_verify(actor=None, vault=a.vault_hz)
    vault_services.run_verify(a.verify_run.pk)

    # captured URL kwargs -> the ids of that kind (A's, then B's own, for URLs that take two)
    a.url_ids = {
        "vault_id": [a.vault_hz.id, a.vault_west.id, a.free_target.id, a.replica_vault.id],
        "point_id": [a.point.id, a.replica_point.id],
        "source_id": [a.source.pk],
        "target_id": [a.target.pk],
        "job_id": [a.backup_job.pk, a.restore_job.pk],
        "pair_id": [a.pair.id],
        "key_id": [a.key_hz.key_id, a.key_west.key_id],
        "run_id": [a.verify_run.pk],
        "group_id": [a.default_group.pk, a.group.pk],
        "policy_id": [a.policy.pk],
        "account": [a.account.slug],
    }
    b.url_ids = {
        "vault_id": [b.vault_hz.id, b.free_target.id],
        "point_id": [b.point.id],
        "source_id": [b.source.pk],
        "target_id": [b.target.pk],
        "job_id": [b.backup_job.pk],
        "pair_id": [],
        "key_id": [b.key_hz.key_id],
        "run_id": [],
        "group_id": [b.group.pk],
        "policy_id": [b.policy.pk],
        "account": [b.account.slug],
    }
    # what must never show to B: A's names, ids, key ids, paths and file contents
    a.markers = {
        a.account.slug,
        a.account.name,
        a.user.username,
        a.group.name,
        a.key_hz.key_id,
        a.key_west.key_id,
        a.key_hz.alias,
        a.key_west.alias,
        a.source.name,
        str(a.data_dir),
        a.target.name,
        str(a.restore_dir),
        a.pair.id,
        a.bucket.name,
        "acme-file-content",
        *(v.id for v in (a.vault_hz, a.vault_west, a.free_target, a.replica_vault)),
        *(v.name for v in (a.vault_hz, a.vault_west, a.free_target, a.replica_vault)),
        a.point.id,
        a.replica_point.id,
        a.policy.pk,
        a.policy.name,
    }
    return SimpleNamespace(a=a, b=b, dirs=[tmp_path, base], regions=[region.code, lrs_region.code])


# -- what must not change ---------------------------------------------------------------------------------------


def plain(value):
    return bytes(value) if isinstance(value, memoryview) else value


def snapshot(dirs):
    """Every row of the project's tables (the audit log's refusals aside) and every file of the stores, keys and
    tenant directories."""
    rows = {}
    for model in apps.get_models():
        if model._meta.app_label not in PROJECT_APPS:
            continue
        queryset = model.objects.all()
        if model is AuditLog:
            queryset = queryset.exclude(outcome=AuditLog.Outcome.REFUSED)
        rows[model._meta.label] = sorted(repr(tuple(map(plain, row))) for row in queryset.values_list())
    for root in dirs:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                st = path.stat()
                rows[f"file {path}"] = (st.st_size, st.st_mtime_ns)
    return rows


def changes(before, after):
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


TOKEN = re.compile(r"[A-Za-z0-9]{48,}")


class Tally:
    """Requests and commands tried, and the leaks found (kept, so the figure prints before the assert)."""

    def __init__(self, markers):
        self.markers = markers
        self.requests = self.commands = self.controls = 0
        self.leaks = []

    def leaked(self, what, text, sent=""):
        """A's markers in `text`, but those the request sent itself (a form shows back what it was given).

        CSRF tokens (64 random letters and digits) are left out first: "Acme" turns up in one now and then.
        """
        text = TOKEN.sub("", text)
        found = sorted(m for m in self.markers if m in text and m not in sent)
        if found:
            at = text.index(found[0])
            self.leaks.append(f"{what}: shows {found}, first in ...{text[max(0, at - 80) : at + 40]!r}...")

    def response(self, what, response, sent, *, allowed):
        self.requests += 1
        if response.status_code not in allowed:
            self.leaks.append(f"{what}: status {response.status_code}, expected one of {sorted(allowed)}")
        body = response.content.decode(errors="replace")
        headers = " ".join(response.get(h, "") for h in ("Location", "HX-Redirect", "HX-Location"))
        self.leaked(what, body + headers, sent)
        location = response.get("Location", "")
        if response.status_code in (301, 302, 303, 307, 308) and not location.startswith("/"):
            self.leaks.append(f"{what}: redirects off the site to {location}")


def is_accepted(response):
    """A form's success: a redirect, or for htmx an HX-Redirect."""
    return response.status_code in (301, 302, 303) or "HX-Redirect" in response


def rolled_back(call):
    """Run `call` (a request or a command) and undo whatever it wrote."""
    with transaction.atomic():
        result = call()
        transaction.set_rollback(True)
    return result


# -- 1. every URL pattern ----------------------------------------------------------------------------------------

KWARG = re.compile(r"<(?:\w+:)?(\w+)>")
REFUSED = {403, 404, 405}
OWN_PAGE = {200, 286, 302, 400, 405, 422}  # 286: htmx polling stops


def url_patterns(patterns, prefix=""):
    """(full route, pattern) of every URL pattern, through every include; skipped prefixes are not entered."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if any(route.startswith(skip) for skip in SKIPPED_URLS):
            continue
        if isinstance(pattern, URLResolver):
            yield from url_patterns(pattern.url_patterns, route)
        else:
            yield route, pattern


def filled(route, world):
    """Every URL of `route` with A's ids in its owned kwargs (B's own beside them), and the region codes."""
    names = KWARG.findall(route)
    choices = []
    for name in names:
        if name == "region":
            choices.append([(code, False) for code in world.regions])
        elif name in world.a.url_ids:
            choices.append([(v, True) for v in world.a.url_ids[name]] + [(v, False) for v in world.b.url_ids[name]])
        else:
            pytest.fail(f"{route}: the captured kwarg {name!r} is unknown here: add account A's ids of that kind")
    owned = any(name != "region" for name in names)
    for combo in itertools.product(*choices):
        if owned and not any(is_a for _, is_a in combo):
            continue  # B's own objects only: not a probe
        url = "/" + route
        for name, (value, _) in zip(names, combo, strict=True):
            url = re.sub(rf"<(?:\w+:)?{name}>", str(value), url, count=1)
        yield url, owned


def walk_urls(client, world, tally, hx_targets):
    """Every URL pattern with A's ids, GET and POST, plain and htmx; B's own pages also with each HX-Target
    found on them (a list answers its table alone to htmx aiming at it)."""
    walked, login = 0, resolve_url(settings.LOGIN_URL)
    for route, pattern in url_patterns(get_resolver().url_patterns):
        assert isinstance(pattern.pattern, RoutePattern), f"{route}: a regex route; teach this test to fill it"
        walked += 1
        for url, owned in filled(route, world):
            assert resolve(url).route == route, f"{url} does not reach {route}"
            allowed = REFUSED if owned else OWN_PAGE
            variants = dict(HEADERS)
            if not owned:
                variants.update({f"htmx #{t}": {**HEADERS["htmx"], "HTTP_HX_TARGET": t} for t in hx_targets})
            for method, (label, headers) in itertools.product(("get", "post"), variants.items()):
                response = getattr(client, method)(url, **headers)
                if owned and response.status_code == 302 and response["Location"].startswith(login):
                    response.status_code = 403  # sent to the login page: nothing shown
                tally.response(f"{method.upper()} {url} ({label})", response, url, allowed=allowed)
    return walked


# -- 2. every id field of B's own forms ------------------------------------------------------------------------


class FormFields(HTMLParser):
    """The forms of a page (action, field names), its links that carry a query string, the named elements
    that send themselves with hx-get, and the ids htmx swaps (HX-Target)."""

    def __init__(self, page_url):
        super().__init__()
        self.page_url = page_url
        self.forms, self.links, self.targets = [], [], set()
        self.form = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            action = attrs.get("hx-post") or attrs.get("action") or self.page_url
            self.form = (urlsplit(action).path or urlsplit(self.page_url).path, set())
            self.forms.append(self.form)
        elif tag in ("input", "select", "textarea", "button") and attrs.get("name") and self.form is not None:
            self.form[1].add(attrs["name"])
        for attr in ("href", "hx-get"):
            link = urlsplit(attrs.get(attr) or "")
            path = link.path or urlsplit(self.page_url).path
            if link.query and not link.netloc:
                self.links.append((path, {k for k, _ in parse_qsl(link.query, keep_blank_values=True)}))
            if attr == "hx-get" and attrs.get(attr) and attrs.get("name"):
                self.links.append((path, {attrs["name"]}))
        aim = attrs.get("hx-target") or ""
        if aim.startswith("#"):
            self.targets.add(aim[1:])
        elif aim in ("", "this") and attrs.get("id") and (attrs.get("hx-get") or attrs.get("hx-post")):
            self.targets.add(attrs["id"])  # an element that polls itself

    def handle_endtag(self, tag):
        if tag == "form":
            self.form = None


# Id fields whose control needs what this world lacks, and the test that makes it.
CHECKED_ELSEWHERE = {
    # registering a bucket takes an S3 store (the embedded one refuses every registration): another account's
    # bucket is refused there, in tests/security/test_buckets.py::test_registering_a_bucket_in_the_console
    "backups:bucket-register": {"bucket"},
}


def controls(world):
    """For each form of B that takes an id: B's own valid values, and A's twins to swap in, field by field."""
    a, b = world.a, world.b
    hz = "/regions/cn-hangzhou"
    return [
        (
            "switch-account",
            "/account/switch/",
            {"account": b.account.slug, "next": f"{hz}/vaults/"},
            {"account": [a.account.slug]},
        ),
        (
            "vaults:create",
            f"{hz}/vaults/create/",
            {
                "name": "b-probe-vault",
                "description": "",
                "resource_group": b.group.pk,
                "vault_type": "general",
                "encryption_method": KMS,
                "kms_key": b.key_hz.key_id,
            },
            {"resource_group": [a.group.pk, a.default_group.pk], "kms_key": [a.key_hz.key_id]},
        ),
        (
            "console:policy-create",
            f"{hz}/policies/create/",
            {
                "name": "b-probe-policy",
                "vault": b.vault_hz.id,
                "weekdays": ["0"],
                "times": "02:00",
                "time_zone": "UTC",
                "keep_weekly": 0,
                "keep_monthly": 0,
                "keep_yearly": 0,
                "sources": [b.source.pk],
            },
            {"vault": [a.vault_hz.id, a.vault_west_hz.id], "sources": [a.source.pk]},
        ),  # fmt: skip
        (
            "backups:start",
            f"{hz}/vaults/{b.vault_hz.id}/backup/",
            {"source": b.source.pk, "retention_days": ""},
            {"source": [a.source.pk]},
        ),
        (
            "backups:source-create",
            f"{hz}/backup-sources/create/",
            {"name": "b-probe-source", "source_type": "ecs-file", "path": str(b.data_dir)},
            {"path": [str(a.data_dir), str(a.data_dir / "docs"), str(a.restore_dir)]},
        ),
        (
            "backups:source-create",
            f"{hz}/backup-sources/create/",
            {"name": "b-probe-oss", "source_type": "oss", "bucket": b.bucket.name, "prefix": ""},
            {"bucket": [a.bucket.name]},
        ),
        (
            "replication:initiate",
            f"{hz}/vaults/{b.vault_hz.id}/replication/",
            {
                "mode": "select",
                "destination_region": "us-west-1",
                "target_vault": b.free_target.pk,
                "encryption_method": KMS,
            },
            {"target_vault": [a.free_target.pk, a.replica_vault.pk]},
        ),
        (
            "replication:initiate",
            f"{hz}/vaults/{b.vault_hz.id}/replication/",
            {
                "mode": "create",
                "destination_region": "us-west-1",
                "name": "b-probe-replica",
                "description": "",
                "resource_group": b.group.pk,
                "encryption_method": KMS,
                "kms_key": b.key_west.key_id,
            },
            {"resource_group": [a.group.pk], "kms_key": [a.key_west.key_id, a.key_hz.key_id]},
        ),
        (
            "restore:create",
            f"{hz}/restore-jobs/create/",
            {"vault": b.vault_hz.id, "point": b.point.id, "target": b.target.pk, "sub_path": "", "existing": "fail"},
            {"vault": [a.vault_hz.id], "point": [a.point.id, a.replica_point.id], "target": [a.target.pk]},
        ),
        (
            "restore:target-create",
            f"{hz}/restore-targets/create/",
            {"name": "b-probe-target", "kind": "ecs-instance", "location": str(b.restore_dir), "network": "vpn"},
            {"location": [str(a.restore_dir), str(a.data_dir)]},
        ),
        (
            "restore:target-create",
            f"{hz}/restore-targets/create/",
            {"name": "b-probe-oss-target", "kind": "oss-bucket", "location": b.bucket.name, "network": "vpn"},
            {"location": [a.bucket.name]},
        ),
    ]


class Discovered:
    """view name -> the field names its forms and links send, and the HX-Target ids, from B's own pages."""

    def __init__(self):
        self.fields, self.targets = {}, set()

    def read(self, url, html):
        parser = FormFields(url)
        parser.feed(html)
        for path, fields in parser.forms + parser.links:
            self.fields.setdefault(resolve(path).view_name, set()).update(fields)
        self.targets |= parser.targets


def discover(client, world, tally):
    """B's own pages, read for their forms and links; nothing of A may show on them either."""
    found = Discovered()
    for url in b_own_pages(world):
        response = client.get(url)
        tally.response(f"GET {url} (B's own page)", response, url, allowed=OWN_PAGE | {404})  # 404: other region
        found.read(url, response.content.decode())
    return found


def b_own_pages(world):
    """Every walked URL filled with B's own ids only, then each control's form re-rendered with B's values."""
    pages = []
    for route, _ in url_patterns(get_resolver().url_patterns):
        names = KWARG.findall(route)
        values = [world.regions if n == "region" else world.b.url_ids.get(n, []) for n in names]
        for combo in itertools.product(*values):
            url = "/" + route
            for name, value in zip(names, combo, strict=True):
                url = re.sub(rf"<(?:\w+:)?{name}>", str(value), url, count=1)
            pages.append(url)
    pages += [f"{url}?{urlencode(data)}" for _, url, data, _ in controls(world)]
    return pages


def probe_forms(client, world, tally, found):
    """Each control accepted with B's values (then rolled back); each of A's twins swapped in, refused."""
    for view, url, data, swaps in controls(world):
        control = rolled_back(lambda url=url, data=data: client.post(url, data))
        tally.controls += 1
        errors = re.findall(r'role="alert">([^<]*)', control.content.decode())
        assert is_accepted(control), f"control of {view} with B's own values: {control.status_code} {errors}"
        variants = [{field: value} for field, values in swaps.items() for value in values]
        variants.append({field: values[0] for field, values in swaps.items()})  # every field A's at once
        for variant in variants:
            sent = {**data, **variant}
            sent_text = " ".join(map(str, sent.values()))
            for label, headers in HEADERS.items():
                response = client.post(url, sent, **headers)  # not rolled back: the snapshot must see any change
                tally.response(f"POST {view} {variant} ({label})", response, sent_text, allowed={400, 403, 404, 422})
                found.read(url, response.content.decode())  # a form re-rendered shows its dependent fields
                response = client.get(url, sent, **headers)
                tally.response(
                    f"GET {view} {variant} ({label})", response, sent_text, allowed={200, 400, 403, 404, 405}
                )
    # every id field of every form and link found is one the controls swap
    covered = {}
    for view, _, _, swaps in controls(world):
        covered.setdefault(view, set()).update(swaps)
    for view, fields in sorted(found.fields.items()):
        unknown = fields - NOT_IDS - ID_FIELDS
        assert not unknown, f"{view}: fields {sorted(unknown)}: list them in NOT_IDS or ID_FIELDS (with a control)"
        missing = (fields & ID_FIELDS) - covered.get(view, set()) - CHECKED_ELSEWHERE.get(view, set())
        assert not missing, f"{view}: id fields {sorted(missing)} have no control: add B's values and A's twins"


# -- 3. every management command that takes --account -----------------------------------------------------------


def parsers_of(parser, name=None):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers_of(sub, sub_name)


def account_commands():
    """(command, subcommand) of every project command whose parser takes --account."""
    found = set()
    for name, app in get_commands().items():
        if app not in PROJECT_APPS:
            continue
        parser = load_command_class(app, name).create_parser("manage.py", name)
        for sub, sub_parser in parsers_of(parser):
            if "--account" in sub_parser._option_string_actions:
                found.add((name, sub))
    return found


def command_cases(world):
    """Per command: B's own arguments with the swaps to A's ids (a control, then refused), a refusal
    without a control (`("refused", argv)`), a read as B (`argv`: nothing of A in the output), or why
    it is not run."""
    a, b = world.a, world.b
    as_b = ["--account", b.account.slug]
    hz, west = ["--region", "cn-hangzhou"], ["--region", "us-west-1"]
    new_vault = ["vault", "create", *as_b, "--name", "b-probe", "--encryption", KMS, "--kms-key"]
    new_target = ["restore", "target", "create", *as_b, *hz, "--kind"]
    replicate = ["replication", "start", "--source", b.vault_hz.id, *west]

    def swap(argv, *pairs):
        return argv, {str(mine): str(theirs) for mine, theirs in pairs}

    return {
        ("vault", "create"): [
            swap([*new_vault, b.key_hz.key_id, *hz], (b.key_hz.key_id, a.key_hz.key_id)),
            swap([*new_vault, b.key_west.key_id, *west], (b.key_west.key_id, a.key_west.key_id)),
            swap(
                ["vault", "create", *as_b, *hz, "--name", "b-probe", "--resource-group", b.group.name],
                (b.group.name, a.group.name),
            ),
        ],
        ("vault", "list"): [["vault", "list", *as_b, "--json"], ["vault", "list", *as_b, *west]],
        ("kms", "create-key"): "takes no id: the key it makes is B's (aliases are per account)",
        ("kms", "list"): [["kms", "list", *as_b, "--json"]],
        ("restore", "target"): [
            swap([*new_target, "ecs-instance", "--location", b.restore_dir], (b.restore_dir, a.restore_dir)),
            swap(
                [*new_target, "ecs-instance", "--location", b.restore_dir / "sub"], (b.restore_dir / "sub", a.data_dir)
            ),
            swap([*new_target, "oss-bucket", "--location", b.bucket.name], (b.bucket.name, a.bucket.name)),
            ["restore", "target", "list", *as_b, *hz, "--json"],
        ],
        ("bucket", "assign"): [
            swap(["bucket", "assign", *as_b, *hz, "--bucket", b.bucket.name], (b.bucket.name, a.bucket.name))
        ],
        ("bucket", "register"): [
            # no control: the embedded store's buckets are only assigned
            (
                "refused",
                [
                    "bucket",
                    "register",
                    *as_b,
                    *hz,
                    "--bucket",
                    a.bucket.name,
                    "--access-key-id",
                    "k",
                    "--secret-access-key",
                    "s",
                ],
            ),
        ],
        ("bucket", "list"): [["bucket", "list", *as_b, "--json"]],
        ("policy", "create"): [
            swap(
                ["policy", "create", *as_b, *hz, "--name", "b-policy", "--vault", b.vault_hz.id, "--every", "1d"],
                (b.vault_hz.id, a.vault_hz.id),
            )
        ],
        ("policy", "list"): [["policy", "list", *as_b, "--json"]],
        ("source", "create"): [
            swap(["source", "create", *as_b, *hz, "--name", "b-source", "--path", b.data_dir], (b.data_dir, a.data_dir))
        ],
        ("source", "list"): [["source", "list", *as_b, "--json"]],
        ("usage", None): [["usage", *as_b, "--region", code, "--json"] for code in world.regions],
        # it makes a new account: an existing one, A's included, is refused
        ("seed_scale", None): [("refused", ["seed_scale", *hz, "--account", a.account.slug, "--vaults", "1"])],
        # no --account, but ids of two accounts' objects in one command
        ("restore", "start"): [
            swap(["restore", "start", b.point.id, "--target", b.target.pk], (b.point.id, a.point.id)),
            swap(["restore", "start", b.point.id, "--target", b.target.pk], (b.target.pk, a.target.pk)),
        ],
        ("replication", "start"): [
            swap([*replicate, "--target", b.free_target.id], (b.free_target.id, a.free_target.id)),
            swap(
                [*replicate, "--create-name", "x", "--kms-key", b.key_west.key_id],
                (b.key_west.key_id, a.key_west.key_id),
            ),
        ],
        ("backup", None): [
            swap(["backup", "--vault", b.vault_hz.id, b.data_dir], (b.data_dir, a.data_dir)),
            swap(
                ["backup", "--vault", b.vault_hz.id, "--source-type", "oss", "--bucket", b.bucket.name],
                (b.bucket.name, a.bucket.name),
            ),
        ],
    }


def run_command(argv):
    out, err = StringIO(), StringIO()
    try:
        call_command(*argv, stdout=out, stderr=err)
    except CommandError as exc:
        return False, f"{out.getvalue()} {err.getvalue()} {exc}"
    return True, f"{out.getvalue()} {err.getvalue()}"


def try_commands(world, tally):
    cases = command_cases(world)
    missing = account_commands() - set(cases)
    assert not missing, f"commands taking --account without a case here: {sorted(missing, key=str)}"
    for runs in cases.values():
        if isinstance(runs, str):
            continue  # the reason it is not run
        for case in runs:
            if isinstance(case, list):  # a read as B: it works and shows nothing of A
                ok, output = run_command(case)
                tally.commands += 1
                assert ok, f"{case}: {output}"
                tally.leaked(" ".join(case), output)
                continue
            if case[0] == "refused":
                theirs = case[1]
            else:
                argv, swaps = [str(arg) for arg in case[0]], case[1]
                ok, output = rolled_back(lambda argv=argv: run_command(argv))
                tally.controls += 1
                assert ok, f"control {argv} with B's own ids failed: {output}"
                theirs = [swaps.get(arg, arg) for arg in argv]
                assert theirs != argv, f"{argv}: the swap {swaps} changes nothing"
            ok, output = run_command(theirs)
            tally.commands += 1
            if ok:
                tally.leaks.append(f"{' '.join(theirs)}: accepted")
            tally.leaked(" ".join(theirs), output, " ".join(theirs))


# -- the figure ------------------------------------------------------------------------------------------------


def test_another_account_sees_and_changes_nothing_by_any_url_form_or_command(client, world):
    client.force_login(world.b.user)
    tally = Tally(world.a.markers)
    before = snapshot(world.dirs)

    found = discover(client, world, tally)
    patterns = walk_urls(client, world, tally, sorted(found.targets))
    probe_forms(client, world, tally, found)
    try_commands(world, tally)

    changed = changes(before, snapshot(world.dirs))
    skipped = "; ".join(f"{prefix} ({why})" for prefix, why in SKIPPED_URLS.items())
    print(f"\nisolation: skipped {skipped}")
    print(
        f"isolation: {tally.requests} requests and {tally.commands} commands tried as another account, "
        f"{len(tally.leaks)} leaks, {len(changed)} changes ({patterns} URL patterns, {len(found.fields)} forms "
        f"and links, {tally.controls} controls with its own ids accepted)"
    )
    assert tally.leaks == [], "\n".join(tally.leaks)
    assert changed == []
