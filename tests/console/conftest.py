from tests.vaults.conftest import no_queue  # noqa: F401 - the fixture, for the console tests that start jobs
