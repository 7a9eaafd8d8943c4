#include "job/distributed_job.h"

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

// A folder of this process's own under the system's temporary folder,
// removed with everything in it when the object goes.
class PrivateDir {
 public:
  PrivateDir() {
    std::random_device random;
    path_ = fs::temp_directory_path() /
            ("tl-replica-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
    fs::create_directories(path_);
  }
  ~PrivateDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  PrivateDir(const PrivateDir&) = delete;
  PrivateDir& operator=(const PrivateDir&) = delete;
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

void AppendSized(std::string& out, const std::string& bytes) {
  const uint64_t size = bytes.size();
  out.append(reinterpret_cast<const char*>(&size), sizeof(size));
  out += bytes;
}

std::string TakeSized(const std::string& in, size_t& offset) {
  uint64_t size = 0;
  if (offset + sizeof(size) > in.size()) {
    throw EngineError(ErrorKind::kInternal, "training state from rank 0 is truncated");
  }
  std::memcpy(&size, in.data() + offset, sizeof(size));
  offset += sizeof(size);
  if (offset + size > in.size()) {
    throw EngineError(ErrorKind::kInternal, "training state from rank 0 is truncated");
  }
  std::string bytes = in.substr(offset, size);
  offset += size;
  return bytes;
}

}  // namespace

void CheckDistributedJob(const ImageJobConfig& config) {
  CheckDistributedOptions(config.distributed);
  if (config.distributed.world_size == 1) return;
  if (!config.evaluate_model_path.empty()) {
    throw InvalidArgument("distributed.world_size must be 1 for evaluation jobs");
  }
  if (config.auto_strategy.enabled) {
    throw InvalidArgument(
        "training.strategy AUTO cannot run data-parallel: name the strategy, or set "
        "distributed.world_size to 1");
  }
  if (config.batch_size < config.distributed.world_size) {
    throw InvalidArgument("training.batch_size (the global batch) must be at least "
                          "distributed.world_size");
  }
}

ImageJobResult RunWithPrivateOutput(
    const ImageJobConfig& config, const std::function<ImageJobResult(const ImageJobConfig&)>& run) {
  PrivateDir output;
  ImageJobConfig own = config;
  own.output_dir = output.path();
  ImageJobResult result = run(own);
  for (std::string* path : {&result.model_path, &result.model_info_path, &result.backbone_path,
                            &result.metrics_path, &result.report_path,
                            &result.confusion_matrix_path}) {
    path->clear();
  }
  return result;
}

void ShardTrainingSource(const DistributedOptions& options, ImageFolderSourceOptions& source) {
  if (options.world_size <= 1) return;
  source.shard_count = options.world_size;
  source.shard_index = options.rank;
  source.keep_every_batch = true;
}

std::unique_ptr<ProcessGroupReplicas> JoinReplicas(const DistributedOptions& options,
                                                   Trainer& trainer) {
  if (options.world_size <= 1) return nullptr;
  auto replicas = std::make_unique<ProcessGroupReplicas>(options, trainer.device());
  trainer.SetReplicas(replicas.get());
  return replicas;
}

std::vector<EpochStats> ShareTrainingState(ProcessGroupReplicas& replicas, Trainer& trainer,
                                           const std::vector<EpochStats>& done) {
  // The checkpoint format carries all of it, so rank 0 writes one to a
  // private folder and the others read it back from theirs: each of
  // kCheckpointFiles as its size and bytes, in one string.
  PrivateDir dir;
  const fs::path checkpoint = fs::path(dir.path()) / "checkpoint";
  std::string state;
  if (replicas.rank() == 0) {
    trainer.SaveCheckpoint(dir.path(), done);
    for (const char* name : kCheckpointFiles) AppendSized(state, ReadFile(checkpoint / name));
  }
  replicas.BroadcastBytes(state);
  if (replicas.rank() == 0) return done;
  fs::create_directories(checkpoint);
  size_t offset = 0;
  for (const char* name : kCheckpointFiles) {
    WriteFileAtomically((checkpoint / name).string(), TakeSized(state, offset));
  }
  // A rank that started over while rank 0 resumed would train another model.
  return trainer.LoadCheckpoint(dir.path(), [](const std::string& line) {
    throw EngineError(ErrorKind::kInternal, "training state from rank 0 is damaged: " + line);
  });
}

}  // namespace tl::engine
