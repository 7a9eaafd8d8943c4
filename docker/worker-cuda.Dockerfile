# tlworker for NVIDIA GPUs: the worker built against PyTorch's CUDA LibTorch
# (pip wheel), with gRPC, protobuf, abseil, prometheus-cpp and OpenCV from
# Ubuntu 24.04, whose versions are bookworm's. Only tlworker is built (CMake option
# TL_WORKER_ONLY), by scripts/gpu-build: the build steps scripts/gpu-worker-check
# runs on a GPU machine against the same library versions from its bundle.
#   docker build -f docker/worker-cuda.Dockerfile -t tl/worker-cuda .
# Run with the NVIDIA container toolkit (`--gpus all`, or the device
# reservation in deploy/docker-compose.yml). The build context is the
# repository root.

ARG CUDA_VERSION=12.8.1

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-ubuntu24.04 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates python3 python3-venv \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev \
      prometheus-cpp-dev libssl-dev \
      libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev nlohmann-json3-dev \
 && rm -rf /var/lib/apt/lists/*
# PyTorch lives in a virtual environment at the same path in both stages, so
# that the worker's RPATH into it holds in the runtime image.
ARG TORCH_VERSION=2.7.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN python3 -m venv /opt/torch \
 && /opt/torch/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY common common
COPY worker worker
COPY bench bench
COPY scripts/gpu-build scripts/gpu-build
COPY docker/runtime-packages /usr/local/bin/runtime-packages
# GPU generations to compile kernels for (tl's own code has none; LibTorch's
# CMake wants the list). 8.0 A100, 8.6/8.9 RTX 30/40, 9.0 H100/H200.
ARG CUDA_ARCHS="8.0;8.6;8.9;9.0"
ARG JOBS=4
# The build steps of scripts/gpu-worker-check (scripts/gpu-build: the
# std::string ABI check, the CMake options), with the distribution's
# packages in place of its bundle, which are the same versions.
RUN PYTHON=/opt/torch/bin/python TL_GPU_BUILD=/build TL_GPU_DEPS=system \
      TL_CUDA_ARCHS="$CUDA_ARCHS" TL_GPU_BUILD_JOBS="$JOBS" TL_GPU_CMAKE_ARGS=-DTL_WORKER_ONLY=ON \
      scripts/gpu-build tlworker \
 && mkdir /out \
 && cp /build/worker/tlworker /out/ \
 && PROVIDED_AT_RUN_TIME="libcuda.so.1" runtime-packages /out/tlworker >/out/worker.packages

# The CUDA runtime libraries come with the PyTorch wheel (its nvidia-*
# packages); the driver comes from the host through the container toolkit.
FROM nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04 AS worker-cuda
COPY docker/install-packages /usr/local/bin/install-packages
COPY --from=build /out/worker.packages /tmp/packages
RUN install-packages /tmp/packages && rm /tmp/packages \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/tl --create-home tl \
 && mkdir -p /data /artifacts \
 && chown tl:tl /data /artifacts
COPY --from=build /opt/torch /opt/torch
COPY --from=build /out/tlworker /usr/local/bin/
USER tl
WORKDIR /var/lib/tl
EXPOSE 9465
ENTRYPOINT ["tlworker"]
CMD ["--server=tlserver:50051", "--data_root=/data", "--artifact_root=/artifacts", \
     "--device=cuda", "--metrics_listen=0.0.0.0:9465"]
