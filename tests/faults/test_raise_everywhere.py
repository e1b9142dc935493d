"""An exception raised inside each component, and the push: every rerun resumes, one version is pushed, none torn."""

import pytest

from tests.faults.fault_chain import every_place_resumes_and_the_model_is_pushed_once

pytestmark = [pytest.mark.pipeline, pytest.mark.faults]


def test_every_place_resumes_after_an_exception_and_the_model_is_pushed_once(tmp_path):
    every_place_resumes_and_the_model_is_pushed_once(tmp_path / "outputs", "raise")
