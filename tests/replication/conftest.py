import os

import pytest

from vaults import services


@pytest.fixture
def source_vault(make_vault):
    return services.initialize_vault_storage(make_vault("source").id)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "plan.txt").write_bytes(b"cross-region plan\n" * 20000)
    (root / "random.bin").write_bytes(os.urandom(700_000))
    (root / "empty").write_bytes(b"")
    return root


@pytest.fixture
def source(account, region, tree):
    return services.create_backup_source(
        actor=None, account=account, region=region, source_type="ecs-file", name="web", path=str(tree)
    )


@pytest.fixture
def backup(source):
    def run(vault, **kwargs):
        return services.run_backup_job(services.start_backup(actor=None, vault=vault, source=source, **kwargs).pk)

    return run


def create_target(name="target"):
    return {"name": name, "description": "", "resource_group": None, "encryption_method": None, "kms_key": None}
