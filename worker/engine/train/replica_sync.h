// What the trainer needs from data-parallel training, free of any
// communication library: the trainer steps through this, and
// distributed.cc implements it over a c10d process group. Null in the
// trainer means one replica, trained exactly as before.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace tl::engine {

struct EpochStats;
struct EvaluationStats;

class ReplicaSync {
 public:
  virtual ~ReplicaSync() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Before each training step: sums this replica's share of the global
  // batch's loss weight and images over the replicas, and tells whether any
  // replica was asked to stop.
  struct StepStart {
    double loss_weight = 0;
    double images = 0;
    bool stop = false;
  };
  virtual StepStart StartStep(double local_loss_weight, int64_t local_images, bool stop) = 0;
  // Sums the gradients of `parameters` that require one over the replicas,
  // in place (a missing gradient counts as zeros), and sums `extras` along
  // with them; returns the summed extras.
  virtual std::vector<double> SumGradients(const std::vector<torch::Tensor>& parameters,
                                           const std::vector<double>& extras) = 0;
  // Gives every replica rank 0's copy of these tensors (BatchNorm running
  // statistics), in place.
  virtual void BroadcastTensors(const std::vector<torch::Tensor>& tensors) = 0;
  // Adds up the replicas' evaluations of their shards of a source.
  virtual void SumEvaluation(EvaluationStats& stats) = 0;
  // Gives every replica rank 0's stats, so that every replica reports, and
  // decides on, the very same figures.
  virtual void AgreeOnEpoch(EpochStats& stats) = 0;
};

}  // namespace tl::engine
