// Data-parallel training over a c10d process group: every rank (a process,
// possibly on another machine) trains a replica of the model on its slice of
// each global batch, and the replicas' gradients are summed before every
// optimizer step, so that they all take the one-replica step on the global
// batch. Rank 0 serves the c10d TCPStore through which the ranks meet.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/replica_sync.h"

namespace tl::engine {

struct DistributedOptions {
  int world_size = 1;              // 1: not distributed; everything else below ignored
  int rank = 0;                    // 0..world_size-1
  std::string store_host;          // where rank 0 runs the c10d TCPStore (rank 0 serves it)
  int store_port = 0;              // its port
  std::string local_address = "127.0.0.1";  // the interface this rank's Gloo device binds to
  std::string key_prefix;          // unique per job attempt, e.g. "job-12/3": keys in the store are prefixed with it
  std::chrono::milliseconds timeout{60000};  // each collective; a dead or partitioned peer surfaces as an error within this
  // Meeting the other ranks: each decodes its dataset before it joins, which
  // on a large folder takes longer than a collective ever should.
  std::chrono::milliseconds rendezvous_timeout{600000};
};

// Throws EngineError(kInvalidArgument) naming the distributed.* field that
// cannot work.
void CheckDistributedOptions(const DistributedOptions& options);

// Whether this build can train data-parallel (LibTorch's c10d with Gloo).
bool DistributedTrainingAvailable();

// The replicas of one job, joined through c10d: NCCL when the trainer's
// device is CUDA and LibTorch has it, Gloo on the CPU otherwise. Every
// collective throws EngineError(kUnavailable) when a peer dies, leaves or
// does not answer within options.timeout.
class ProcessGroupReplicas : public ReplicaSync {
 public:
  // Meets the other ranks (rank 0 serves the store); throws
  // EngineError(kUnavailable) when they do not all arrive within the timeout.
  ProcessGroupReplicas(const DistributedOptions& options, const torch::Device& device);
  ~ProcessGroupReplicas() override;

  int rank() const override;
  int world_size() const override;
  StepStart StartStep(double local_loss_weight, int64_t local_images, bool stop) override;
  std::vector<double> SumGradients(const std::vector<torch::Tensor>& parameters,
                                   const std::vector<double>& extras) override;
  void BroadcastTensors(const std::vector<torch::Tensor>& tensors) override;
  void SumEvaluation(EvaluationStats& stats) override;
  void AgreeOnEpoch(EpochStats& stats) override;

  // Gives every rank rank 0's bytes.
  void BroadcastBytes(std::string& bytes);
  // Whether `flag` is true on any rank.
  bool AnyRank(bool flag);
  // The communication library in use: "gloo" or "nccl".
  std::string backend() const;
  // Gradients are summed in buckets of about this many bytes, one
  // asynchronous all-reduce each.
  static constexpr int64_t kBucketBytes = 25 << 20;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tl::engine
