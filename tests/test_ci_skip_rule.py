"""tests/conftest.py's CI rule, run on tiny suites with pytester: under CI, every skip
(except "not applicable:") and every xfail fails, however it is raised."""

from __future__ import annotations

import pytest

import tests.conftest as ci_rule

SUITE = {
    "test_skips": """
        import pytest

        def test_skip():
            pytest.skip("no swaks")

        def test_not_applicable():
            pytest.skip("not applicable: dovecot cannot serve this")

        @pytest.mark.xfail(reason="known bug")
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="fixed already")
        def test_xpass():
            pass

        def test_imperative_xfail():
            pytest.xfail("later")

        def test_pass():
            pass
    """,
    "test_module_skip": """
        import pytest
        pytest.skip("no docker here", allow_module_level=True)

        def test_never():
            pass
    """,
    "test_module_importorskip": """
        import pytest
        pytest.importorskip("no_such_module_for_the_ci_rule")

        def test_never():
            pass
    """,
    "test_module_not_applicable": """
        import pytest
        pytest.skip("not applicable: no imaptest", allow_module_level=True)

        def test_never():
            pass
    """,
}


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: bool) -> pytest.RunResult:
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(**SUITE)
    # pytest-asyncio warns without its loop-scope setting; our own plugin is not needed.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest_inprocess(
        "--continue-on-collection-errors",
        "-rA",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:mailharness",
        plugins=[ci_rule],
    )


def test_in_ci_every_skip_and_xfail_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(pytester, monkeypatch, ci=True)
    # test_skip, test_xfail, test_xpass, test_imperative_xfail fail; two modules fail to
    # collect; "not applicable:" skips stay skips (one test, one module).
    result.assert_outcomes(passed=1, failed=4, skipped=2, errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "*skipped in CI, which counts as a failure: no swaks*",
            "*xfail in CI, which counts as a failure: known bug*",
            "*xpass in CI, which counts as a failure: fixed already*",
            "*xfail in CI, which counts as a failure: later*",
            "*collection skipped in CI, which counts as a failure: no docker here*",
            "*collection skipped in CI, * failure: *no_such_module_for_the_ci_rule*",
        ]
    )


def test_outside_ci_skips_and_xfails_are_left_alone(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(pytester, monkeypatch, ci=False)
    result.assert_outcomes(passed=1, skipped=5, xfailed=2, xpassed=1)
