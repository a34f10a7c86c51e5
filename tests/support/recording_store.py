"""A fixture for test folders that record sessions: import it into the folder's conftest.py to use it."""

import pytest


@pytest.fixture(autouse=True)
def recording_store(settings, tmp_path):
    """Each test records into its own directory and signs with its own key."""
    settings.GATEHOUSE_RECORDINGS_DIR = tmp_path / "recordings"
    settings.GATEHOUSE_SIGNING_KEY_FILE = tmp_path / "keys" / "recording-signing.key"
    return settings.GATEHOUSE_RECORDINGS_DIR
