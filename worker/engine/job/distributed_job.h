// What an image job does differently when it is one rank of a data-parallel
// job (distributed.h): the checks, rank 0's state handed to every rank and
// the private folder that stands in for output_dir on the other ranks. (The
// pause all ranks take together is the training stage's, stages.h.)
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

}  // namespace tl::engine
