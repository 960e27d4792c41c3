"""The demo's tests use the ai tests' image fixture."""
from tests.ai.conftest import png  # noqa: F401  (a fixture)
