"""Penguin tables of any size with the real table's distributions, for measuring per-example cost.

Each synthetic row copies the categorical columns (species, island, sex, year) of a real row
drawn at random, then draws the four measurements from a multivariate normal fitted to that
species and sex, so the correlations between bill, flipper and mass are kept. Measurements are
rounded as the field notes round them and clipped to the range seen, and missing values appear
at the real rates. The same seed always gives the same file.

Run `python -m bench.generate ROWS FILE`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

PENGUINS_CSV = Path(__file__).resolve().parent.parent / "data" / "penguins.csv"
CATEGORICAL = ["species", "island", "sex", "year"]
MEASUREMENTS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
DECIMALS = {"bill_length_mm": 1, "bill_depth_mm": 1, "flipper_length_mm": 0, "body_mass_g": 0}
SEED = 20261128


def _fitted_normals(real: pd.DataFrame) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Mean and covariance of the measurements per (species, sex), and per (species, '') for unknown sex."""
    complete = real.dropna(subset=MEASUREMENTS)
    fitted = {}
    for species, rows in complete.groupby("species"):
        fitted[(species, "")] = (rows[MEASUREMENTS].mean().to_numpy(), rows[MEASUREMENTS].cov().to_numpy())
        for sex, group in rows.dropna(subset=["sex"]).groupby("sex"):
            fitted[(species, sex)] = (group[MEASUREMENTS].mean().to_numpy(), group[MEASUREMENTS].cov().to_numpy())
    return fitted


def generate(rows: int, seed: int = SEED) -> pd.DataFrame:
    """`rows` synthetic penguins, in the real table's column order."""
    real = pd.read_csv(PENGUINS_CSV)
    rng = np.random.default_rng(seed)
    table = real[CATEGORICAL].iloc[rng.integers(0, len(real), rows)].reset_index(drop=True)
    measured = np.empty((rows, len(MEASUREMENTS)))
    sex = table["sex"].fillna("")
    for (species, sex_value), (mean, cov) in _fitted_normals(real).items():
        where = ((table["species"] == species) & (sex == sex_value)).to_numpy()
        measured[where] = rng.multivariate_normal(mean, cov, int(where.sum()))
    low, high = real[MEASUREMENTS].min().to_numpy(), real[MEASUREMENTS].max().to_numpy()
    measured = np.clip(measured, low, high)
    missing = rng.random(rows) < real[MEASUREMENTS[0]].isna().mean()  # the real table loses all four at once
    for i, name in enumerate(MEASUREMENTS):
        values = pd.Series(measured[:, i].round(DECIMALS[name]))
        if DECIMALS[name] == 0:
            values = values.astype("Int64")
        table[name] = values.mask(missing)
    return table[list(real.columns)]


def write(rows: int, path: Path, seed: int = SEED) -> Path:
    """Writes `rows` synthetic penguins to a CSV file; an empty field is a missing value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    generate(rows, seed).to_csv(path, index=False, na_rep="")
    return path


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m bench.generate ROWS FILE")
    print(write(int(sys.argv[1]), Path(sys.argv[2])))
