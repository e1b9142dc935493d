"""The datasets the pipeline is tried on, written as a user's CSV or Parquet folders.

- penguins: the shipped table, multi-class;
- diabetes: scikit-learn's bundled real clinical data (442 patients), regression;
- subscriptions: a seeded generator of customer churn, binary, with missing values, a
  high-cardinality company name, a signup timestamp, an id and a leaky column;
- loans: a seeded generator of loan repayments, binary, where one large branch and one small one
  recorded their outcomes at random, for the fairness gate across slices.

Run `python -m tests.datasets NAME FOLDER` to write one for trying `tfxp init` by hand.
"""

from __future__ import annotations

import csv
import datetime
import math
import shutil
import sys
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PENGUINS_CSV = PROJECT_ROOT / "data" / "penguins.csv"

SUBSCRIPTION_COLUMNS = (
    "customer_id",
    "signed_up_at",
    "plan",
    "company",
    "monthly_spend",
    "support_tickets",
    "seats",
    "cancellation_reason",
    "churned",
)
PLANS = ("basic", "team", "enterprise")
CANCEL_REASONS = ("price", "missing feature", "switched provider", "closed business")
LEAK_COLUMN = "cancellation_reason"  # only filled in for customers who churned


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """Writes rows under a header; None becomes an empty field."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    return path


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file, as strings."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_penguins(folder: Path) -> Path:
    """The shipped penguins table, copied into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(PENGUINS_CSV, folder / "penguins.csv"))


def diabetes_rows() -> tuple[list[str], list[list]]:
    """scikit-learn's diabetes table in its original units; the target is disease progression after a year."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    header = [*bunch.feature_names, "progression"]
    rows = [
        [_plain_number(v) for v in (*features, target)]
        for features, target in zip(bunch.data, bunch.target, strict=True)
    ]
    return header, rows


def _plain_number(value: float) -> int | float:
    """Whole numbers as integers, as a database export writes them."""
    return int(value) if float(value).is_integer() else round(float(value), 4)


def write_diabetes(folder: Path, data_format: str = "csv") -> Path:
    """The diabetes table as one CSV or Parquet file in `folder`."""
    header, rows = diabetes_rows()
    if data_format == "csv":
        return write_csv(folder / "diabetes.csv", header, rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(header)})
    table = table.cast(
        pa.schema(
            [
                pa.field(n, pa.float64() if pa.types.is_floating(t) or n == "progression" else pa.int64())
                for n, t in zip(table.column_names, table.schema.types, strict=True)
            ]
        )
    )
    path = folder / "diabetes.parquet"
    pq.write_table(table, path)
    return path


def subscription_rows(count: int, seed: int, first_id: int = 1) -> list[list]:
    """Customers of a SaaS product and whether they cancelled within the quarter.

    Churn rises with support tickets, falls with seats and on the enterprise plan, and is higher for
    weekend and night-time sign-ups, and varies by company; spend is missing for about 8% of customers (unbilled trials).
    """
    rng = np.random.default_rng(seed)
    companies = [f"{a} {b}" for a in _COMPANY_FIRST for b in _COMPANY_SECOND]
    popularity = 1 / rng.permutation(np.arange(1, len(companies) + 1)) ** 0.8  # a long tail of small customers
    popularity /= popularity.sum()
    company_effect = rng.normal(0, 0.6, size=len(companies))  # some accounts are simply more fickle
    start = datetime.datetime(2023, 1, 1)
    rows = []
    for i in range(count):
        company = rng.choice(len(companies), p=popularity)
        plan = rng.choice(PLANS, p=[0.55, 0.35, 0.10])
        seats = int(rng.integers(1, 6) * {"basic": 1, "team": 4, "enterprise": 20}[plan])
        signed_up = start + datetime.timedelta(minutes=int(rng.integers(0, 600 * 24 * 60)))
        tickets = int(rng.poisson(1.5))
        spend = round(float(rng.gamma(2.0, {"basic": 15, "team": 60, "enterprise": 400}[plan])), 2)
        weekend = signed_up.weekday() >= 5
        night = signed_up.hour < 6
        logit = (
            -1.6 + 0.45 * tickets - 0.5 * math.log(seats) - 0.8 * (plan == "enterprise") + 0.9 * weekend + 0.7 * night
        )
        logit += company_effect[company]
        churned = rng.random() < 1 / (1 + math.exp(-logit))
        rows.append(
            [
                f"C{first_id + i:06d}",
                signed_up.strftime("%Y-%m-%d %H:%M:%S"),
                plan,
                companies[company],
                None if rng.random() < 0.08 else spend,
                tickets,
                seats,
                rng.choice(CANCEL_REASONS) if churned else None,
                "yes" if churned else "no",
            ]
        )
    return rows


_COMPANY_FIRST = (
    "Acme",
    "Blue",
    "Bright",
    "Cedar",
    "Delta",
    "Echo",
    "Falcon",
    "Granite",
    "Harbor",
    "Iron",
    "Juniper",
    "Kite",
    "Lumen",
    "Maple",
    "North",
    "Orbit",
    "Pine",
    "Quartz",
    "River",
    "Summit",
    "Tidal",
    "Union",
    "Vertex",
    "Willow",
)
_COMPANY_SECOND = (
    "Analytics",
    "Bakery",
    "Capital",
    "Dental",
    "Energy",
    "Foods",
    "Group",
    "Health",
    "Imports",
    "Labs",
    "Logistics",
    "Media",
    "Motors",
    "Partners",
    "Retail",
    "Studios",
    "Systems",
    "Travel",
)


def write_subscriptions(folder: Path, count: int = 1500, seed: int = 7, first_id: int = 1) -> Path:
    """One CSV export of `count` customers in `folder`."""
    return write_csv(folder / "customers.csv", list(SUBSCRIPTION_COLUMNS), subscription_rows(count, seed, first_id))


EXPORT_UNLABELED = 3  # rows of the CRM export with no label


def write_crm_export(folder: Path, count: int = 600, seed: int = 3) -> Path:
    """A CRM export with what real exports contain, sorted by the label as some are.

    A row number, a customer id, a store code with many values, a note filled in once, a constant
    country, US-style sign-up dates, a last-login time in Unix seconds, and a few rows without a label.
    Renewal follows visits, spend and the store.
    """
    rng = np.random.default_rng(seed)
    store_effect = rng.normal(0, 1.0, size=40)
    rows = []
    for i in range(count):
        store = int(rng.integers(0, 40))
        visits = int(rng.poisson(6))
        spend = round(float(rng.gamma(2.0, 50.0)), 2)
        signed_up = datetime.datetime(2022, 1, 1) + datetime.timedelta(minutes=int(rng.integers(0, 700 * 24 * 60)))
        logit = -2.0 + 0.3 * visits + 0.004 * spend + store_effect[store]
        renewed = "yes" if rng.random() < 1 / (1 + math.exp(-logit)) else "no"
        rows.append(
            [
                None,  # the row number, filled in after sorting
                int(rng.integers(100_000, 999_999)),
                3100 + store,
                "called back" if i == 17 else None,
                "NZ",
                f"{signed_up.month}/{signed_up.day}/{signed_up.year} {signed_up.hour}:{signed_up.minute:02d}",
                int(signed_up.timestamp()) + int(rng.integers(0, 90 * 86400)),
                spend,
                visits,
                renewed,
            ]
        )
    rows.sort(key=lambda row: row[-1])  # exported sorted by the label
    for number, row in enumerate(rows, start=1):
        row[0] = number
    for row in rows[:: count // EXPORT_UNLABELED][:EXPORT_UNLABELED]:
        row[-1] = None
    header = [
        "row",
        "customer_id",
        "store_code",
        "note",
        "country",
        "signed_up",
        "last_login_time",
        "spend",
        "visits",
        "renewed",
    ]
    return write_csv(folder / "crm.csv", header, rows)


BRANCHES = {"north": 0.36, "east": 0.33, "harbor": 0.27, "summit": 0.04}  # share of applications
CARELESS_BRANCHES = ("harbor", "summit")  # outcomes recorded at random: about 110 and 16 eval rows of 1200


def loan_rows(count: int, seed: int) -> list[list]:
    """Loan applications by branch and whether each was repaid.

    Repayment follows income and the debt ratio closely everywhere except in the careless branches,
    whose outcomes are coin flips: no model can rank them, so their AUC is near 0.5.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        branch = rng.choice(list(BRANCHES), p=list(BRANCHES.values()))
        income = round(float(rng.normal(50, 15)), 1)
        debt_ratio = round(float(rng.uniform(0, 1)), 3)
        logit = 0.15 * (income - 50) - 6 * (debt_ratio - 0.5)
        repaid = rng.random() < (0.5 if branch in CARELESS_BRANCHES else 1 / (1 + math.exp(-logit)))
        rows.append([branch, income, debt_ratio, "yes" if repaid else "no"])
    return rows


def write_loans(folder: Path, count: int = 1200, seed: int = 11) -> Path:
    """One CSV export of `count` loan applications in `folder`."""
    return write_csv(folder / "loans.csv", ["branch", "income", "debt_ratio", "repaid"], loan_rows(count, seed))


SENSOR_REGIONS = {"north": 0.1, "south": 0.3, "east": 0.3, "west": 0.3}  # share of readings per region
DRIFTED_REGIONS = {"north": 0.3, "south": 0.7 / 3, "east": 0.7 / 3, "west": 0.7 / 3}  # north's share tripled
TEMPERATURE_MEAN, TEMPERATURE_SD = 20.0, 5.0


def sensor_rows(count: int, seed: int, drifted: bool = False) -> list[list]:
    """Machine readings and whether the machine failed the next day.

    Failure follows vibration and load, not the temperature or the region, so a drifted span (temperature
    two standard deviations higher, north's share tripled) keeps the label's distribution and every other
    feature's: exactly two features move.
    """
    rng = np.random.default_rng(seed)
    regions = DRIFTED_REGIONS if drifted else SENSOR_REGIONS
    shift = 2 * TEMPERATURE_SD if drifted else 0.0
    rows = []
    for _ in range(count):
        region = rng.choice(list(regions), p=list(regions.values()))
        temperature = round(float(rng.normal(TEMPERATURE_MEAN, TEMPERATURE_SD)) + shift, 2)
        vibration = round(float(rng.gamma(2.0, 1.5)), 3)
        load = round(float(rng.uniform(0, 100)), 1)
        logit = 1.2 * (vibration - 3) + 0.04 * (load - 50)
        failed = rng.random() < 1 / (1 + math.exp(-logit))
        rows.append([region, temperature, vibration, load, "yes" if failed else "no"])
    return rows


def write_sensors(folder: Path, count: int = 800, seed: int = 21, drifted: bool = False) -> Path:
    """One CSV export of `count` sensor readings in `folder`."""
    header = ["region", "temperature", "vibration", "load", "failed"]
    return write_csv(folder / "readings.csv", header, sensor_rows(count, seed, drifted))


WRITERS = {
    "penguins": write_penguins,
    "diabetes": write_diabetes,
    "subscriptions": write_subscriptions,
    "crm": write_crm_export,
    "loans": write_loans,
    "sensors": write_sensors,
}


def main(argv: list[str]) -> None:
    """Writes one dataset: `python -m tests.datasets {penguins|diabetes|subscriptions|crm|loans|sensors} FOLDER`."""
    if len(argv) != 2 or argv[0] not in WRITERS:
        sys.exit(f"usage: python -m tests.datasets {{{'|'.join(WRITERS)}}} FOLDER")
    print(WRITERS[argv[0]](Path(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
