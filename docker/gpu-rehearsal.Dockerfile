# A stand-in for the GPU machine that scripts/gpu-worker-check is written
# for, without its GPU: a compiler, CMake, ninja and Python with PyTorch
# (Debian's, CPU only), and none of tl's other dependencies, so that a build
# from .gpu-deps/ that reaches for something the bundle lacks fails here.
# Debian's libtorch-dev brings protobuf's headers with it; the check's list
# of what came from the system names them if the build takes them.
#   scripts/gpu-rehearsal   (builds this image and runs the check in it)
FROM debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build binutils procps ca-certificates \
      python3 python3-torch python3-torchvision python3-numpy python3-pil libtorch-dev \
 && rm -rf /var/lib/apt/lists/*
# scripts/gpu-rehearsal runs it as the caller's user id, so that what the
# build writes into the bind-mounted repository is the caller's.
RUN useradd --create-home rehearsal
USER rehearsal
WORKDIR /src
