# tlworker for NVIDIA GPUs: the worker built against PyTorch's CUDA LibTorch
# (pip wheel), with gRPC, protobuf, abseil, prometheus-cpp and OpenCV from
# Ubuntu 24.04, whose versions are bookworm's. Only tlworker is built (CMake option
# TL_WORKER_ONLY), as scripts/gpu-check builds the engine against a pip
# PyTorch.
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
# One binary links LibTorch and the system's gRPC and protobuf: they must
# agree on the std::string ABI, and the system libraries use the C++11 one.
RUN /opt/torch/bin/python -c "import sys, torch; sys.exit(0 if torch.compiled_with_cxx11_abi() else \
      'this PyTorch uses the old std::string ABI; the system gRPC needs a C++11-ABI LibTorch (PyTorch 2.7 or later)')"

WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY common common
COPY worker worker
COPY bench bench
COPY docker/runtime-packages /usr/local/bin/runtime-packages
# GPU generations to compile kernels for (tl's own code has none; LibTorch's
# CMake wants the list). 8.0 A100, 8.6/8.9 RTX 30/40, 9.0 H100/H200.
ARG CUDA_ARCHS="8.0;8.6;8.9;9.0"
ARG JOBS=4
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTL_BUILD_TESTS=OFF \
      -DTL_WORKER_ONLY=ON \
      -DCMAKE_PREFIX_PATH="$(/opt/torch/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
      -DTORCH_CUDA_ARCH_LIST="$CUDA_ARCHS" \
 && ninja -C /build -j "$JOBS" tlworker \
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
