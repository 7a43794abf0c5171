"""Evaluation metrics: FID/KID with the standard Inception detector, weight-free SWD, custom-feature
FID/KID, named protocols and a runner that evaluates any generator callable."""

from __future__ import annotations

from mimic3d.metrics.cache import dataset_fingerprint, real_stats_path
from mimic3d.metrics.custom import (
    custom_extractor,
    fid_with_features,
    kid_with_features,
    load_feature_network,
)
from mimic3d.metrics.detector import (
    DETECTOR_FILES,
    DETECTOR_NAME,
    FeatureExtractor,
    inception_from_state_dict,
    load_inception,
)
from mimic3d.metrics.fid import fid_from_stats, frechet_distance
from mimic3d.metrics.inception import FIDInceptionV3
from mimic3d.metrics.kid import kernel_distance, unbiased_mmd2
from mimic3d.metrics.protocols import PROTOCOLS, MetricProtocol, get_protocol
from mimic3d.metrics.runner import (
    MetricResult,
    compute_metric,
    generator_images,
    quantize_images,
    report_metric,
)
from mimic3d.metrics.stats import FeatureStats
from mimic3d.metrics.swd import SWDConfig, sliced_wasserstein_distance

__all__ = [
    "DETECTOR_FILES",
    "DETECTOR_NAME",
    "FIDInceptionV3",
    "FeatureExtractor",
    "FeatureStats",
    "MetricProtocol",
    "MetricResult",
    "PROTOCOLS",
    "SWDConfig",
    "compute_metric",
    "custom_extractor",
    "dataset_fingerprint",
    "fid_from_stats",
    "fid_with_features",
    "frechet_distance",
    "generator_images",
    "get_protocol",
    "inception_from_state_dict",
    "kernel_distance",
    "kid_with_features",
    "load_feature_network",
    "load_inception",
    "quantize_images",
    "real_stats_path",
    "report_metric",
    "sliced_wasserstein_distance",
    "unbiased_mmd2",
]
