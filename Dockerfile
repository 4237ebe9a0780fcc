# The MNIST Lab as a hosted demo: CPU-only PyTorch (no CUDA libraries), hosted mode on, the runs in a volume.
#   docker build -t mnist-lab .
#   docker run -p 8501:8501 -v mnist-lab-data:/data mnist-lab      then open http://localhost:8501
# Memory (benchmarks/footprint.py): the app about 450 MB after its first visitor, under 900 MB once every page has been
# opened; each job worker process 200-300 MB more while it exists.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The dependencies first, so a code change does not reinstall them. torch comes from PyPI's CPU-only index.
# g++ and ninja build tiny_gap's fused training kernels (mnist_core/fused.py); without them it trains layer by layer.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ ninja-build \
    && rm -rf /var/lib/apt/lists/*
COPY requirements-cpu.txt ./
RUN pip install -r requirements-cpu.txt

# The app's code, the bundled MNIST files and the shipped checkpoints, owned by root: the app cannot change them.
COPY .streamlit ./.streamlit
COPY app.py ./
COPY mnist_core ./mnist_core
COPY labui ./labui
COPY pages ./pages
COPY data ./data
COPY checkpoints ./checkpoints

# Everything the app writes goes under /data (a volume): runs, drawings, computed maps and features.
# NUMBA_CACHE_DIR: UMAP's compiled functions are cached there, as site-packages is read-only for the app user.
ENV MNIST_HOSTED=1 \
    MNIST_RUNS_DIR=/data/runs \
    MNIST_DRAWINGS_DIR=/data/drawings \
    MNIST_CACHE_DIR=/data/cache \
    NUMBA_CACHE_DIR=/data/numba \
    TORCH_EXTENSIONS_DIR=/data/torch-extensions \
    HOME=/home/lab
# UMAP's compiled code and the fused training kernels are made here, into the volume's first contents: a fresh
# container's first map and first tiny_gap run load them instead of compiling (tens of seconds each). The kernels
# are built for the building machine's CPU; a host with another CPU builds its own on first use.
RUN useradd --create-home --no-log-init --uid 10001 lab \
    && mkdir -p /data \
    && python -c "from mnist_core import embed; embed.warm_up()" \
    && python -c "from mnist_core import fused; fused.kernels()" \
    && chown -R lab:lab /data
VOLUME ["/data"]
USER 10001:10001

EXPOSE 8501
# Streamlit's own health endpoint answers "ok" once the server is up (python: the slim image has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).read() != b'ok')"]
CMD ["python", "-m", "streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0", \
     "--server.headless=true", "--browser.gatherUsageStats=false"]
