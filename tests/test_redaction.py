"""Secrets in Beam arguments: redacted in what is written down (the log, ML Metadata, last_run.json, the report)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from pipeline import redaction
from tests.conftest import cold_run

TOKEN, PASSWORD = "s3cr3t-TOKEN-123", "hunter2-XYZ"
BEAM_ARGS = (f"--gcp_oauth_token={TOKEN}", "--db_password", PASSWORD, "--direct_num_workers=1")


@pytest.mark.parametrize(
    ("args", "redacted"),
    [
        ((f"--gcp_oauth_token={TOKEN}",), ("--gcp_oauth_token=***",)),
        (("--db_password", PASSWORD, "--runner=DirectRunner"), ("--db_password", "***", "--runner=DirectRunner")),
        (
            ("--DB_PASSWD=x", "--Api_Key", "k", "--client_secret=s"),
            ("--DB_PASSWD=***", "--Api_Key", "***", "--client_secret=***"),
        ),
        (("--aws_credentials=c", "--authorization=a"), ("--aws_credentials=***", "--authorization=***")),
        # A secret-looking flag with no value, and options that are not secret, are kept.
        (("--use_auth", "--direct_num_workers=1", "--setup_file=/p/setup.py"), None),
    ],
    ids=["inline", "separate value", "any case", "credential and auth", "nothing secret"],
)
def test_values_of_secret_looking_options_are_redacted_in_both_forms(args, redacted):
    assert redaction.redact_args(args) == (redacted or args)


def test_the_secret_values_and_options_are_found_in_both_forms():
    assert redaction.secret_values(BEAM_ARGS) == [TOKEN, PASSWORD]
    assert redaction.secret_options(BEAM_ARGS) == ["--gcp_oauth_token", "--db_password"]
    assert redaction.secret_options(("--direct_num_workers=1",)) == []


def test_text_loses_known_values_and_inline_secrets_it_was_not_told_of():
    text = f"args: ['{BEAM_ARGS[0]}', '--db_password', '{PASSWORD}'] and --other_token=abc, --runner=Direct"
    cleaned = redaction.redact(text, redaction.secret_values(BEAM_ARGS))
    assert TOKEN not in cleaned and PASSWORD not in cleaned and "abc" not in cleaned
    assert "--other_token=***" in cleaned and "--runner=Direct" in cleaned


@pytest.fixture
def captured():
    """A logger writing to a buffer through a handler added after the redaction is installed, as libraries do."""
    saved = logging.getLogRecordFactory()
    redaction.install(BEAM_ARGS)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, buffer
    logger.removeHandler(handler)
    logging.setLogRecordFactory(saved)


def test_every_log_record_is_redacted_whichever_handler_writes_it(captured):
    logger, buffer = captured
    # What TFX's LocalDagRunner and Beam log, as measured in a real run's log.
    logger.info(
        "Using deployment config:\n %s", 'beam_pipeline_args: "--db_password"\nbeam_pipeline_args: "hunter2-XYZ"'
    )
    logger.warning("Discarding unparseable args: %s", list(BEAM_ARGS))
    try:
        raise ValueError(f"bad option {BEAM_ARGS[0]}")
    except ValueError:
        logger.exception("failed")
    written = buffer.getvalue()
    assert TOKEN not in written and PASSWORD not in written
    assert "--gcp_oauth_token=***" in written and 'beam_pipeline_args: "***"' in written
    assert "Traceback" in written  # the traceback is kept, redacted


def test_a_record_with_a_broken_format_string_loses_its_secrets_too():
    """Logging prints such a record's message and arguments raw when it fails to format them."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "broken %d", (f"--db_password={PASSWORD}",), None)
    assert redaction.RedactingFilter([PASSWORD]).filter(record)
    assert record.args == ("--db_password=***",)


def test_a_record_without_secrets_keeps_its_message_and_args(captured):
    """The runner's progress handler matches the launcher's format string and reads the component id from args."""
    logger, _ = captured
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.info("Component %s is running.", "Trainer")
    logger.removeHandler(handler)
    assert records[0].msg == "Component %s is running." and records[0].args == ("Trainer",)


@pytest.mark.pipeline
def test_no_secret_from_beam_arguments_is_written_anywhere(tmp_path):
    """One real run with a token and a password in its Beam arguments: neither is in any file of the output
    folder (the run log, the MLMD store's bytes, last_run.json, the report, the artifacts) nor on the terminal."""
    output = tmp_path / "outputs"
    result = cold_run(output, *(f"--beam-arg={arg}" for arg in BEAM_ARGS))  # exits 0: Beam ignores unknown options
    found = [
        (str(path.relative_to(output)), secret)
        for path in sorted(p for p in output.rglob("*") if p.is_file())
        for secret in (TOKEN, PASSWORD)
        if secret.encode() in Path(path).read_bytes()
    ]
    assert found == []
    assert TOKEN not in result.stdout + result.stderr and PASSWORD not in result.stdout + result.stderr
    [log] = (output / "logs").glob("run-*.log")
    text = log.read_text(errors="replace")
    assert "--gcp_oauth_token=***" in text and "Discarding unparseable args" in text  # redacted, not left out
