"""Every create form carries a one-time token: a repeated submission (double click, resent form, two racing
requests) answers with what the first one created and creates nothing more."""

import re
import threading

import pytest
from django.db import connection
from django.test import Client

from console.models import AuditLog, FormSubmission
from console.services import add_member
from replication.models import ReplicationPair
from restore.models import RestoreJob
from tests.conftest import make_user
from tests.restore.conftest import make_target
from tests.vaults.conftest import make_source, write
from vaults import services
from vaults.models import BackupJob, BackupSource, Vault, VerifyRun

HTMX = {"HTTP_HX_REQUEST": "true"}
TOKEN = re.compile(r'name="submission" value="([^"]+)"')


@pytest.fixture
def ready(make_vault, account, region, tmp_path):
    vault = services.initialize_vault_storage(make_vault("v").id)
    write(tmp_path / "src" / "a.txt", b"a\n")
    source = make_source(account, region, "ecs-file", path=tmp_path / "src")
    return vault, source


@pytest.fixture
def other_user_in_account(account):
    bob = make_user("bob")
    add_member(actor=None, account=account, user=bob)
    return bob


def token_of(client, url):
    found = TOKEN.findall(client.get(url, **HTMX).content.decode())
    assert len(found) == 1, url
    return found[0]


def test_every_create_form_carries_a_fresh_token(alice, ready, lrs_region):
    vault, source = ready
    code = vault.region.code
    forms = [
        f"/regions/{code}/vaults/create/",
        f"/regions/{code}/backup-sources/create/",
        f"/regions/{code}/restore-targets/create/",
        f"/regions/{code}/vaults/{vault.id}/backup/",
        f"/regions/{code}/restore-jobs/create/",
        f"/regions/{code}/vaults/{vault.id}/replication/",
    ]
    for url in forms:
        assert token_of(alice, url) != token_of(alice, url), url
    page = alice.get(f"/regions/{code}/vaults/{vault.id}/").content.decode()
    verify_form = page[page.index(f'action="/regions/{code}/vaults/{vault.id}/verify/"') :].split("</form>")[0]
    assert TOKEN.search(verify_form)


def test_a_resent_create_vault_form_opens_the_vault_the_first_made(alice, account):
    token = token_of(alice, "/regions/cn-hangzhou/vaults/create/")
    form = {
        "name": "twice",
        "vault_type": "general",
        "encryption_method": "cloud-backup-managed",
        "resource_group": account.resource_groups.get(is_default=True).pk,
        "submission": token,
    }
    first = alice.post("/regions/cn-hangzhou/vaults/create/", form, **HTMX)
    again = alice.post("/regions/cn-hangzhou/vaults/create/", form, **HTMX)
    vault = Vault.objects.get(name="twice")
    assert first["HX-Redirect"] == again["HX-Redirect"] == f"/regions/cn-hangzhou/vaults/{vault.id}/"
    assert AuditLog.objects.filter(action="create_vault").count() == 1  # the repeat did not even try


def test_a_refused_first_submission_gives_the_token_back(alice, ready, tmp_path):
    vault, source = ready
    url = "/regions/cn-hangzhou/backup-sources/create/"
    token = token_of(alice, url)
    form = {"name": source.name, "source_type": "ecs-file", "path": str(tmp_path / "src"), "submission": token}
    assert alice.post(url, form, **HTMX).status_code == 422  # the name is taken
    assert not FormSubmission.objects.filter(token=token).exists()
    form["name"] = "second-source"
    assert alice.post(url, form, **HTMX).status_code == 200
    assert BackupSource.objects.filter(name="second-source").count() == 1


def test_a_repeated_restore_and_verify_make_one_each(alice, no_queue, monkeypatch, ready, account, region, tmp_path):
    vault, source = ready
    point = services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source).pk)
    monkeypatch.setattr("restore.services._enqueue", lambda job_id: None)
    monkeypatch.setattr("vaults.services.verify._enqueue", lambda run_id: None)
    (tmp_path / "dest").mkdir()
    target = make_target(account, region, "ecs-instance", tmp_path / "dest")
    url = "/regions/cn-hangzhou/restore-jobs/create/"
    form = {"vault": vault.id, "point": point.id, "target": target.pk, "existing": "fail", "submission": "r-1"}
    assert [alice.post(url, form, **HTMX).status_code for _ in range(2)] == [200, 200]
    assert RestoreJob.objects.count() == 1
    verify = f"/regions/cn-hangzhou/vaults/{vault.id}/verify/"
    assert [alice.post(verify, {"submission": "v-1"}).status_code for _ in range(2)] == [302, 302]
    assert VerifyRun.objects.count() == 1


def test_a_repeated_replication_form_makes_one_pair(alice, ready, lrs_region):
    vault, _ = ready
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/replication/"
    form = {"destination_region": lrs_region.code, "mode": "create", "name": "dr", "submission": "p-1"}
    answers = [alice.post(url, form, **HTMX) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].content.decode()[:2000]
    assert ReplicationPair.objects.count() == 1


def test_a_token_is_the_users_own(alice, client, ready, other_user_in_account):
    vault, source = ready
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/backup/"
    assert alice.post(url, {"source": source.pk, "submission": "same"}, **HTMX).status_code == 200
    job = BackupJob.objects.get()
    services.run_backup_job(job.pk)
    client.force_login(other_user_in_account)  # the same token from someone else is a submission of theirs
    assert client.post(url, {"source": source.pk, "submission": "same"}, **HTMX).status_code == 200
    assert BackupJob.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_racing_posts_with_one_token_both_answer_with_the_one_job(no_queue, ready, user):
    # a double click that reached the server twice: each request on its own database connection
    vault, source = ready
    url = f"/regions/{vault.region.code}/vaults/{vault.id}/backup/"
    barrier = threading.Barrier(2)
    answers = []

    def post():
        client = Client()
        client.force_login(user)
        barrier.wait()
        try:
            answers.append(client.post(url, {"source": source.pk, "submission": "click"}, **HTMX))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    assert {a["HX-Redirect"] for a in answers} == {f"/regions/{vault.region.code}/backup-jobs/"}
    assert BackupJob.objects.count() == 1


def test_a_resent_select_target_form_answers_with_the_pair_though_the_target_is_taken(alice, ready, lrs_region):
    # the first submission took the free target out of the form's choices: the repeat is answered first
    vault, _ = ready
    free = services.create_vault(
        actor=None, account=vault.account, region=lrs_region, name="free-dr", vault_type="replication-target"
    )
    services.initialize_vault_storage(free.id)
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/replication/"
    form = {"destination_region": lrs_region.code, "mode": "select", "target_vault": free.id, "submission": "s-1"}
    answers = [alice.post(url, form, **HTMX) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert ReplicationPair.objects.get().target_vault_id == free.id


def test_a_claim_whose_request_died_is_taken_over(alice, ready, user):
    # a process killed between its claim and its result does not make every resend wait
    from datetime import timedelta

    from django.utils import timezone

    vault, source = ready
    FormSubmission.objects.create(user=user, token="orphan", action="start_backup")
    FormSubmission.objects.filter(token="orphan").update(created=timezone.now() - timedelta(minutes=5))
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/backup/"
    assert alice.post(url, {"source": source.pk, "submission": "orphan"}, **HTMX).status_code == 200
    assert BackupJob.objects.count() == 1
    assert FormSubmission.objects.get(token="orphan").object_id == str(BackupJob.objects.get().pk)


def test_a_token_of_another_action_is_refused_with_a_message(alice, ready, no_queue):
    vault, source = ready
    url = f"/regions/cn-hangzhou/vaults/{vault.id}/backup/"
    assert alice.post(url, {"source": source.pk, "submission": "mixed"}, **HTMX).status_code == 200
    verify = alice.post(f"/regions/cn-hangzhou/vaults/{vault.id}/verify/", {"submission": "mixed"}, follow=True)
    assert verify.status_code == 200 and "already used for something else" in verify.content.decode()
    assert VerifyRun.objects.count() == 0
