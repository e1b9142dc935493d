"""The benchmark's inputs are honest: generated penguins look like the real ones, and the plain script does the work."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from bench import generate
from tests.datasets import PENGUINS_CSV, PROJECT_ROOT


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    """The shipped penguins table."""
    return pd.read_csv(PENGUINS_CSV)


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    """20,000 generated penguins with the default seed."""
    return generate.generate(20_000)


def test_generated_penguins_keep_the_real_distributions(real, synthetic):
    assert list(synthetic.columns) == list(real.columns)
    for column in ("species", "island", "year"):
        expected = real[column].value_counts(normalize=True)
        observed = synthetic[column].value_counts(normalize=True).reindex(expected.index)
        assert np.allclose(observed, expected, atol=0.02), column
    for species, rows in real.groupby("species"):
        generated = synthetic[synthetic["species"] == species]
        for column in generate.MEASUREMENTS:
            assert generated[column].mean() == pytest.approx(rows[column].mean(), rel=0.02), (species, column)
    # Heavier penguins have longer flippers in the generated table too.
    assert synthetic["body_mass_g"].astype(float).corr(synthetic["flipper_length_mm"].astype(float)) > 0.8
    assert synthetic["sex"].isna().mean() == pytest.approx(real["sex"].isna().mean(), abs=0.01)


def test_generated_penguins_pass_the_curated_schema_ranges(synthetic):
    schema = text_format.Parse((PROJECT_ROOT / "schema" / "schema.pbtxt").read_text(), schema_pb2.Schema())
    for feature in schema.feature:
        domain = (
            feature.float_domain
            if feature.HasField("float_domain")
            else (feature.int_domain if feature.HasField("int_domain") else None)
        )
        if domain is not None:
            values = synthetic[feature.name].dropna().astype(float)
            assert values.min() >= domain.min and values.max() <= domain.max, feature.name


def test_the_same_seed_gives_the_same_table():
    assert generate.generate(500).equals(generate.generate(500))
    assert not generate.generate(500).equals(generate.generate(500, seed=1))


@pytest.mark.slow
def test_the_plain_script_trains_evaluates_and_saves_a_tf_example_model(tmp_path):
    model_dir = tmp_path / "model"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.plain_keras", str(PENGUINS_CSV), str(model_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == 344 and 90 < result["eval_rows"] < 140  # a third held out
    assert result["accuracy"] > 0.9
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    examples = []
    for row in pd.read_csv(PENGUINS_CSV).drop(columns="species").head(3).itertuples(index=False):
        example = tf.train.Example()
        for name, value in row._asdict().items():
            if pd.isna(value):
                continue
            feature = example.features.feature[name]
            if isinstance(value, str):
                feature.bytes_list.value.append(value.encode())
            elif name in ("flipper_length_mm", "body_mass_g", "year"):
                feature.int64_list.value.append(int(value))
            else:
                feature.float_list.value.append(float(value))
        examples.append(example.SerializeToString())
    outputs = serve(examples=tf.constant(examples))
    assert outputs["probabilities"].shape == (3, 3)
    assert [name.decode() for name in outputs["class_name"].numpy()] == ["Adelie"] * 3  # the first rows are Adelie
