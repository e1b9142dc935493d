"""How TFX lays out a split artifact on disk: one `Split-<name>` folder per split, holding the file its component
writes, and the split names as a JSON list property. Light (no TFX), so code outside the pipeline can read and
write such artifacts as StatisticsGen and ExampleValidator do."""

from __future__ import annotations

import json
from pathlib import Path

ANOMALIES_FILE = "SchemaDiff.pb"  # what ExampleValidator writes per split
STATISTICS_FILE = "FeatureStats.pb"  # what StatisticsGen writes per split


def split_file(uri: str | Path, split: str, file_name: str) -> Path:
    """The file a component wrote for one split of an artifact."""
    return Path(uri) / f"Split-{split}" / file_name


def encode_split_names(names: list[str]) -> str:
    """The `split_names` property, as TFX's artifact_utils.encode_split_names writes it."""
    return json.dumps(names)
