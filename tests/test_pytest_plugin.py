"""The pytest plugin shipped to users, tested as users run it."""

from __future__ import annotations

pytest_plugins = ["pytester"]


def test_fixtures_give_a_running_server(pytester):
    pytester.makepyfile(
        """
        import json, urllib.request

        def test_server(llamaproc_server):
            assert llamaproc_server.status.value == "ready"
            with urllib.request.urlopen(llamaproc_server.url + "/health") as r:
                assert json.load(r) == {"status": "ok"}

        def test_model_is_a_gguf(llamaproc_tiny_model):
            assert llamaproc_tiny_model.read_bytes()[:4] == b"GGUF"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
