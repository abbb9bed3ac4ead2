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


def test_fake_server_fixture_with_replies_and_faults_and_teardown_after_a_failure(pytester):
    pytester.makepyfile(
        """
        import json, socket, urllib.error, urllib.request
        import pytest
        from llamaproc.testing import Fault

        PORTS = []

        def ask(url):
            body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
            req = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.load(r)["choices"][0]["message"]["content"]

        @pytest.mark.llamaproc_replies(["scripted"])
        def test_replies(llamaproc_fake_server):
            assert ask(llamaproc_fake_server.url) == "scripted"
            assert llamaproc_fake_server.requests[0].path == "/v1/chat/completions"

        @pytest.mark.llamaproc_faults(Fault.error(503))
        def test_fault_marker(llamaproc_fake_server):
            with pytest.raises(urllib.error.HTTPError) as info:
                ask(llamaproc_fake_server.url)
            assert info.value.code == 503
            info.value.close()

        @pytest.mark.llamaproc_faults(Fault.error(503))
        def test_fault_marker_on_the_real_server(llamaproc_server):
            with pytest.raises(urllib.error.HTTPError) as info:
                ask(llamaproc_server.url)
            assert info.value.code == 503
            info.value.close()

        def test_fails_on_purpose(llamaproc_fake_server):
            PORTS.append(llamaproc_fake_server.port)
            assert False, "this test fails"

        def test_the_failed_tests_server_was_stopped():
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", PORTS[0]), timeout=1)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)


def test_the_fake_fixture_works_without_the_gguf_package(pytester):
    pytester.makepyfile(
        """
        import sys
        sys.modules["gguf"] = None  # as on a plain install: import gguf raises ImportError

        def test_fake(llamaproc_fake_server):
            assert llamaproc_fake_server.direct.tokenize("ab").tolist() == [100, 101]

        def test_tiny_model_says_what_to_install(tmp_path):
            import pytest
            from llamaproc.testing import make_tiny_model
            with pytest.raises(ImportError, match="pip install gguf"):
                make_tiny_model(tmp_path / "m.gguf")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_readmes_testing_example_passes(pytester):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Testing your app"):]
    pytester.makepyfile(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error",
                                           "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=2)
