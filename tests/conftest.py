import pytest


def pytest_collection_modifyitems(config, items):
    # Tests marked `last` tear the sandbox down and bring it back: run them after
    # everything else so no other test sees a half fleet.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture
def marker_name(request):
    """A file name unique to the running test, for proving something did not happen."""
    return f"ops-test-{request.node.name[:60]}".replace("[", "-").replace("]", "")
