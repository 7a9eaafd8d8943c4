// The training stage: TrainModel, and the checkpoint it leaves until the
// job has exported its model (RemoveTrainingState).
#include <filesystem>

#include "data/dataset_check.h"
#include "job/distributed_job.h"
#include "job/stages.h"
#include "train/feature_cache.h"

namespace tl::engine {
namespace {

// The job's side of every epoch: the dataset must stay mostly readable, the
// best epoch's weights (early stopping) and the checkpoint are saved, and
// then the job's observer hears of it. Data-parallel ranks agree on a pause,
// so all of them stop after the same epoch.
class EpochKeeper : public TrainObserver {
 public:
  EpochKeeper(ImageJobObserver& observer, Trainer& trainer, TransferModel& model,
              const ImageFolderSource& train, std::string output_dir, std::string train_origin,
              std::vector<EpochStats> done, const EarlyStoppingOptions& early_stopping,
              ProcessGroupReplicas* replicas)
      : observer_(observer),
        trainer_(trainer),
        model_(model),
        train_(train),
        output_dir_(std::move(output_dir)),
        train_origin_(std::move(train_origin)),
        done_(std::move(done)),
        early_stopping_(early_stopping),
        best_weights_(output_dir_),
        replicas_(replicas) {
    // A resumed job rebuilds early stopping's state from the checkpoint's epochs.
    if (early_stopping.enabled) {
      for (const EpochStats& stats : done_) early_stopping_.Update(stats);
    }
  }

  void OnBatch(const BatchProgress& progress) override { observer_.OnBatch(progress); }
  bool StopRequested() override { return observer_.StopRequested(); }
  void OnEpoch(const EpochStats& stats) override {
    CheckMostlyReadable(train_, train_origin_);
    done_.push_back(stats);
    const bool best = early_stopping_.options().enabled && early_stopping_.Update(stats);
    if (best) best_weights_.Save(model_, stats.epoch);
    trainer_.SaveCheckpoint(output_dir_, done_);
    if (best) best_weights_.KeepOnly(stats.epoch);
    observer_.OnEpoch(stats);
  }
  bool PauseRequested() override {
    const bool pause = observer_.PauseRequested();
    return replicas_ != nullptr ? replicas_->AnyRank(pause) : pause;
  }
  bool TrainingDone() override { return early_stopping_.ShouldStop(); }

  const std::vector<EpochStats>& done() const { return done_; }
  const EarlyStopping& early_stopping() const { return early_stopping_; }
  const BestWeights& best_weights() const { return best_weights_; }

 private:
  ImageJobObserver& observer_;
  Trainer& trainer_;
  TransferModel& model_;
  const ImageFolderSource& train_;
  std::string output_dir_;
  std::string train_origin_;
  std::vector<EpochStats> done_;
  EarlyStopping early_stopping_;
  BestWeights best_weights_;
  ProcessGroupReplicas* replicas_;
};

}  // namespace

OrStopped<TrainedModel> TrainModel(const ImageJobConfig& config, const PreparedJob& job,
                                   JobModel& model, JobData& data, ImageJobObserver& observer) {
  Trainer& trainer = *model.trainer;
  model.replicas = JoinReplicas(config.distributed, trainer);
  std::vector<EpochStats> done = trainer.LoadCheckpoint(
      config.output_dir, [&observer](const std::string& line) { observer.OnNotice(line); });
  if (model.replicas) done = ShareTrainingState(*model.replicas, trainer, done);
  // Said in the job's log, so that whoever reads it (or scripts/gpu-worker-
  // check) sees that a retried attempt went on rather than starting over.
  if (!done.empty()) {
    observer.OnNotice("resuming from the checkpoint after epoch " + std::to_string(done.size()));
  }
  TrainedModel trained;
  trained.first_epoch_run = static_cast<int>(done.size()) + 1;
  // Epochs from the checkpoint are reported again: the attempt that ran them
  // may have died after saving and before reporting.
  for (const EpochStats& stats : done) observer.OnEpoch(stats);
  EpochKeeper keeper(observer, trainer, *model.model, *data.train, config.output_dir,
                     TrainOriginOf(config), done, config.early_stopping, model.replicas.get());
  // A job paused in the epoch that early stopping ended has nothing left to train.
  if (!keeper.TrainingDone()) {
    std::optional<FeatureTraining> features;
    if (data.cache_features && trained.first_epoch_run <= config.train.epochs) {
      // One table of the training and validation images together: a job
      // that splits the same folder with another seed or slice reuses it.
      std::vector<ImageSample> images = job.train;
      images.insert(images.end(), job.val.begin(), job.val.end());
      const FeatureTable table(
          *model.model, images,
          FeatureTable::Options{config.feature_cache_dir, job.backbone.OpenedPath(),
                                job.preprocessing, data.val_options, trainer.device(),
                                [&observer] { return observer.StopRequested(); },
                                config.feature_cache_max_bytes, config.train.precision});
      if (table.stopped()) {
        return RunOutcome::Cancelled("stopped on request while computing the features");
      }
      features.emplace(*model.model, table, job.train, job.val, config.batch_size, config.seed);
      trained.features_cached = true;
      trained.features_from_disk = table.from_disk();
    }
    BatchSource* validation = data.val->size() > 0 ? data.val.get() : nullptr;
    const Trainer::RunResult run = trainer.Run(features ? features->train() : *data.train,
                                     features ? features->validation() : validation, keeper,
                                     trained.first_epoch_run);
    if (!run.outcome.finished()) return run.outcome;
  }
  trained.epochs = keeper.done();
  trained.early_stopping = keeper.early_stopping();
  if (config.early_stopping.enabled && trained.early_stopping.best_epoch() > 0) {
    trained.best_epoch = trained.early_stopping.best_epoch();
    trained.stopped_early = trained.epochs.back().epoch < config.train.epochs;
    keeper.best_weights().Restore(*model.model, trained.best_epoch, trainer.device());
  }
  RecordUnreadableImages(config, data);
  return trained;
}

void RemoveTrainingState(const std::string& output_dir) {
  std::filesystem::remove_all(std::filesystem::path(output_dir) / "checkpoint");
  std::filesystem::remove_all(std::filesystem::path(output_dir) / "best");
}

}  // namespace tl::engine
