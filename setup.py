"""Installs the pipeline and model code, and the `tfxp` command."""

from setuptools import find_packages, setup

setup(
    name="tfx-penguin-pipeline",
    version="0.1.0",
    description="A local-first TFX pipeline: validated data in, a blessed SavedModel out, lineage throughout.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipeline", "pipeline.*", "models", "models.*"]),
    package_data={"pipeline": ["templates/*.j2"]},  # the run report's page
    # Dependencies are pinned in requirements.lock and installed from it; see the Makefile.
    install_requires=[],
    entry_points={"console_scripts": ["tfxp = pipeline.cli:entry"]},
)
