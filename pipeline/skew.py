"""Training/serving skew: TFDV statistics of the requests a model received, compared with its training statistics.

One set of thresholds for drift and skew ([monitoring]); TFDV's skew comparators measure the distance, L-infinity
for categorical features and Jensen-Shannon divergence for numeric ones, as the pipeline's drift check does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from pipeline import monitoring, request_logs
from pipeline.settings import Settings

TRAINING, SERVING = "TRAINING", "SERVING"  # schema environments: the label is in training data only


def skew_schema(settings: Settings) -> schema_pb2.Schema:
    """The curated schema with a skew comparator on every model input, at its [monitoring] threshold, and the label
    expected in training data only.

    Every input must also appear in the requests at least once: one the server never receives is fed its default.
    """
    schema = settings.imported_schema
    schema.default_environment[:] = [TRAINING, SERVING]
    tfdv.get_feature(schema, settings.declarations.label.name).not_in_environment.append(SERVING)
    kinds = settings.column_types
    for declared in settings.declarations.features:
        feature = tfdv.get_feature(schema, declared.name)
        threshold = settings.project.monitoring.threshold(declared.name)
        if kinds[declared.name] == "BYTES":
            feature.skew_comparator.infinity_norm.threshold = threshold
        else:
            feature.skew_comparator.jensen_shannon_divergence.threshold = threshold
        feature.presence.min_count = max(feature.presence.min_count, 1)
    return schema


def request_statistics(requests: request_logs.Requests) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of every request row, with StatisticsGen's default options, so both sides are comparable.

    Batch by batch, merged as TFDV merges a split dataframe's parts: files may differ in their columns.
    """
    options = tfdv.StatsOptions()
    generators = stats_impl.get_generators(options, in_memory=True)
    partials = [
        stats_impl.generate_partial_statistics_in_memory(batch, options, generators) for batch in requests.batches
    ]
    merged = [
        generator.merge_accumulators(accumulators)
        for generator, accumulators in zip(generators, zip(*partials, strict=True), strict=True)
    ]
    return stats_impl.extract_statistics_output(merged, generators)


def compare(
    training: statistics_pb2.DatasetFeatureStatisticsList,
    serving: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
) -> anomalies_pb2.Anomalies:
    """The requests checked against the schema in the SERVING environment (missing and unexpected columns, values
    it forbids), with the skew comparators' measurements and findings added: one Anomalies, as ExampleValidator
    writes."""
    anomalies = tfdv.validate_statistics(serving, schema, environment=SERVING)
    skew = tfdv.validate_statistics(training, schema, environment=TRAINING, serving_statistics=serving)
    anomalies.drift_skew_info.extend(skew.drift_skew_info)
    for feature, info in skew.anomaly_info.items():
        reasons = [reason for reason in info.reason if monitoring.is_comparator(reason)]
        if not reasons:  # the training data's own problems were ExampleValidator's to find
            continue
        if feature in anomalies.anomaly_info:
            anomalies.anomaly_info[feature].reason.extend(reasons)
        else:
            anomalies.anomaly_info[feature].CopyFrom(info)
            del anomalies.anomaly_info[feature].reason[:]
            anomalies.anomaly_info[feature].reason.extend(reasons)
    return anomalies


@dataclasses.dataclass
class Comparison:
    """The requests read, their statistics, and what comparing them with the training statistics found."""

    requests: request_logs.Requests
    statistics: statistics_pb2.DatasetFeatureStatisticsList
    anomalies: anomalies_pb2.Anomalies


def check(settings: Settings, training: statistics_pb2.DatasetFeatureStatisticsList, requests_path: Path) -> Comparison:
    """Profiles the requests under `requests_path` and compares them with the model's training statistics."""
    requests = request_logs.read_requests(requests_path, settings.example_column_types)
    serving = request_statistics(requests)
    return Comparison(requests, serving, compare(training, serving, skew_schema(settings)))
