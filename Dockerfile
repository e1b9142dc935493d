# The image every task of the compiled pipeline runs in (`tfxp compile`), and the Dataflow workers' SDK container:
# requirements.lock installed as the Makefile installs it (--no-deps, no resolver), then this project.
# Build and push it as the README's "Running on a cluster" says; the [cluster] image setting names it.

# CPython 3.11 on Debian 12 (glibc 2.36, which TFX 1.16's compiled wheels need), with the compilers that the
# lock's few source-only packages (crcmod, pyfarmhash) build with.
FROM python:3.11.7-bookworm

# Beam's worker boot program, so Dataflow can start this image as its SDK container (--sdk_container_image):
# the Beam and Python versions must be the lock's.
COPY --from=apache/beam_python3.11_sdk:2.59.0 /opt/apache/beam /opt/apache/beam

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1

# tf.keras is Keras 2 (tf_keras) in every process of the image. models/__init__.py sets this only in a process
# that imports `models` before TensorFlow, and Beam's workers unpickle TFMA's DoFns without ever importing it:
# the Evaluator's workers then load the SavedModel with Keras 3 and fail ("File format not supported"), as
# Beam's portable runner showed here (README: Beam's portable runner, tried here).
ENV TF_USE_LEGACY_KERAS=1

# tfxp compile's --setup_file points here (pipeline/settings.py: IMAGE_PROJECT_DIR).
WORKDIR /pipeline

# The lock's own pip, setuptools and wheel first, so that the source-only packages build with them and not with
# whatever build isolation would fetch; then the whole lock. TFX 1.16 declares Requires-Python <3.11, but every
# compiled dependency ships CPython 3.11 wheels (README: Pinned dependencies).
COPY requirements.lock ./
RUN grep -E '^(pip|setuptools|wheel)==' requirements.lock > build-tools.lock \
    && python -m pip install --no-deps -r build-tools.lock \
    && python -m pip install --no-deps --no-build-isolation --ignore-requires-python -r requirements.lock

# This project: the pipeline and model code, installed, and its sources kept here for Dataflow's --setup_file.
COPY setup.py pyproject.toml ./
COPY models ./models
COPY pipeline ./pipeline
RUN python -m pip install --no-deps --no-build-isolation . \
    && python -c "import pipeline.wiring, tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"

# Dataflow starts its workers with the boot program; Vertex AI and Kubeflow give each task its own command
# (python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor), so they never use this.
ENTRYPOINT ["/opt/apache/beam/boot"]
