// What an image job does differently when it is one rank of a data-parallel
// job (distributed.h): the checks, rank 0's state handed to every rank, the
// pause that all ranks take together, and the private folder that stands in
// for output_dir on the other ranks.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "data/image_folder.h"
#include "job/image_job.h"
#include "train/distributed.h"

namespace tl::engine {

// Throws EngineError(kInvalidArgument) naming the field for a job that
// cannot run data-parallel: evaluation and AUTO jobs, bad distributed.*.
void CheckDistributedJob(const ImageJobConfig& config);

// Only rank 0 writes to output_dir. Another rank runs `run` on a copy of
// `config` whose output_dir is a private folder, removed afterwards; the
// paths in its result are cleared.
ImageJobResult RunWithPrivateOutput(const ImageJobConfig& config,
                                    const std::function<ImageJobResult(const ImageJobConfig&)>& run);

// This rank's shard of the training source.
void ShardTrainingSource(const DistributedOptions& options, ImageFolderSourceOptions& source);

// Joins the other ranks and hands the trainer to them; null for a job of one
// replica.
std::unique_ptr<ProcessGroupReplicas> JoinReplicas(const DistributedOptions& options,
                                                   Trainer& trainer);

// Every rank continues from rank 0's weights, optimizer state and finished
// epochs (`done`, read from rank 0's checkpoint); returns those epochs.
std::vector<EpochStats> ShareTrainingState(ProcessGroupReplicas& replicas, Trainer& trainer,
                                           const std::vector<EpochStats>& done);

// Passes everything on to `downstream`; with replicas, a pause asked for on
// any rank pauses every rank after the same epoch.
class ReplicatedJobObserver : public ImageJobObserver {
 public:
  ReplicatedJobObserver(ImageJobObserver& downstream, ProcessGroupReplicas* replicas)
      : downstream_(downstream), replicas_(replicas) {}
  void OnBatch(const BatchProgress& progress) override { downstream_.OnBatch(progress); }
  void OnEpoch(const EpochStats& stats) override { downstream_.OnEpoch(stats); }
  bool StopRequested() override { return downstream_.StopRequested(); }
  bool PauseRequested() override;
  bool TrainingDone() override { return downstream_.TrainingDone(); }
  void OnDataset(const DatasetInfo& dataset) override { downstream_.OnDataset(dataset); }
  void OnAutoStrategy(const AutoDecision& decision) override {
    downstream_.OnAutoStrategy(decision);
  }

 private:
  ImageJobObserver& downstream_;
  ProcessGroupReplicas* replicas_;
};

}  // namespace tl::engine
