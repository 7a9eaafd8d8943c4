// Checkpoints on a full disk and damaged on disk: a write that fails leaves
// the previous checkpoint whole, and a checkpoint that is cut short or
// altered is not trusted; the job resumes from the previous one or starts
// over, and says so. Real files, really truncated.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "base/errors.h"
#include "common/testing/temp_dir.h"
#include "data/tensor_source.h"
#include "job/image_job.h"
#include "testing/class_images.h"
#include "testing/file_size_limit.h"
#include "testing/tiny_backbone.h"
#include "train/trainer.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;
using ::tl::engine::testing::FileSizeLimit;
using ::tl::engine::testing::kTinyInputSize;
using ::tl::engine::testing::TinyManifest;
using ::tl::engine::testing::WriteTinyBackbone;
using ::tl::testing::TempDir;

TrainOptions Options(int epochs) {
  TrainOptions options;
  options.strategy = Strategy::kFull;
  options.epochs = epochs;
  options.optimizer = OptimizerKind::kAdam;
  options.learning_rate = 0.01;
  options.backbone_lr_scale = 1.0;
  return options;
}

class NoObserver : public TrainObserver {};

void Truncate(const fs::path& path, uintmax_t keep) { fs::resize_file(path, keep); }

void FlipAByte(const fs::path& path, size_t at) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(at));
  const char byte = static_cast<char>(file.get());
  file.seekp(static_cast<std::streamoff>(at));
  file.put(static_cast<char>(byte ^ 0x5a));
}

// A model and trainer on the tiny backbone, and a checkpoint of `epochs`
// trained epochs in dir.
class CheckpointTest : public ::testing::Test {
 protected:
  CheckpointTest()
      : backbone_(WriteTinyBackbone(dir_.path())),
        model_(backbone_, TinyManifest(), 2, 1),
        trainer_(model_, Options(3)) {}

  std::vector<EpochStats> Train(int epochs) {
    torch::manual_seed(3);
    const torch::Tensor images = torch::randn({16, 3, kTinyInputSize, kTinyInputSize});
    const torch::Tensor labels = torch::arange(16, torch::kInt64).remainder(2);
    TensorSource train(images, labels, 8, /*shuffle=*/false, 1);
    NoObserver observer;
    Trainer trainer(model_, Options(epochs));
    return trainer.Run(train, nullptr, observer).epochs;
  }

  // What a fresh model and trainer load from dir, and the lines they note.
  std::vector<EpochStats> LoadFresh(std::vector<std::string>& notes,
                                    torch::Tensor* head = nullptr) {
    TransferModel fresh(backbone_, TinyManifest(), 2, 99);
    const torch::Tensor untouched = fresh.HeadParameters()[0].clone();
    Trainer trainer(fresh, Options(3));
    std::vector<EpochStats> epochs = trainer.LoadCheckpoint(
        dir_.path(), [&notes](const std::string& line) { notes.push_back(line); });
    if (head != nullptr) *head = fresh.HeadParameters()[0].clone();
    if (epochs.empty()) {
      EXPECT_TRUE(torch::equal(fresh.HeadParameters()[0], untouched))
          << "a rejected checkpoint changed the model";
    }
    return epochs;
  }

  fs::path Checkpoint() const { return fs::path(dir_.path()) / "checkpoint"; }

  TempDir dir_;
  std::string backbone_;
  TransferModel model_;
  Trainer trainer_;
};

TEST_F(CheckpointTest, AWholeCheckpointLoadsWithoutANote) {
  const std::vector<EpochStats> done = Train(2);
  trainer_.SaveCheckpoint(dir_.path(), done);
  std::vector<std::string> notes;
  torch::Tensor head;
  EXPECT_EQ(LoadFresh(notes, &head).size(), 2u);
  EXPECT_TRUE(torch::equal(head, model_.HeadParameters()[0]));
  EXPECT_TRUE(notes.empty());
  for (const char* name : kCheckpointFiles) EXPECT_TRUE(fs::exists(Checkpoint() / name)) << name;
}

// Every parameter and buffer of two classifiers, compared by name.
void ExpectSameTensors(torch::jit::Module a, torch::jit::Module b) {
  std::map<std::string, torch::Tensor> theirs;
  for (const auto& named : b.named_parameters(/*recurse=*/true)) theirs[named.name] = named.value;
  for (const auto& named : b.named_buffers(/*recurse=*/true)) theirs[named.name] = named.value;
  size_t compared = 0;
  for (const auto& named : a.named_parameters(/*recurse=*/true)) {
    EXPECT_TRUE(torch::equal(named.value, theirs.at(named.name))) << named.name;
    ++compared;
  }
  for (const auto& named : a.named_buffers(/*recurse=*/true)) {
    EXPECT_TRUE(torch::equal(named.value, theirs.at(named.name))) << named.name;
    ++compared;
  }
  EXPECT_EQ(compared, theirs.size());
}

// Under a frozen backbone the checkpoint keeps the head (and the buffers):
// a fraction of the whole model's bytes, and a fresh model built from the
// same backbone file resumes with every tensor equal.
TEST_F(CheckpointTest, AFrozenBackbonesCheckpointKeepsWhatTrains) {
  trainer_.SaveCheckpoint(dir_.path(), Train(1));
  const uintmax_t whole = fs::file_size(Checkpoint() / "model.pt");

  TransferModel frozen(backbone_, TinyManifest(), 2, 1);
  TrainOptions options = Options(2);
  options.strategy = Strategy::kFeatureExtraction;
  Trainer trainer(frozen, options);
  torch::manual_seed(3);
  TensorSource train(torch::randn({16, 3, kTinyInputSize, kTinyInputSize}),
                     torch::arange(16, torch::kInt64).remainder(2), 8, /*shuffle=*/false, 1);
  NoObserver observer;
  const std::vector<EpochStats> done = trainer.Run(train, nullptr, observer).epochs;
  trainer.SaveCheckpoint(dir_.path(), done);
  EXPECT_LT(fs::file_size(Checkpoint() / "model.pt"), whole / 2);

  TransferModel fresh(backbone_, TinyManifest(), 2, 99);
  Trainer resumed(fresh, options);
  EXPECT_EQ(resumed.LoadCheckpoint(dir_.path()).size(), 2u);
  ExpectSameTensors(fresh.classifier(), frozen.classifier());
}

// A checkpoint that holds the whole classifier (as earlier versions wrote
// it) still resumes.
TEST_F(CheckpointTest, AWholeModelCheckpointOfAnEarlierVersionStillLoads) {
  trainer_.SaveCheckpoint(dir_.path(), Train(2));
  model_.classifier().save((Checkpoint() / "model.pt").string());
  fs::remove(Checkpoint() / "checksums.json");  // judged by whether it loads
  std::vector<std::string> notes;
  torch::Tensor head;
  EXPECT_EQ(LoadFresh(notes, &head).size(), 2u);
  EXPECT_TRUE(torch::equal(head, model_.HeadParameters()[0]));
  EXPECT_TRUE(notes.empty()) << notes.front();
}

// Issue 12: a truncated epochs.json threw, was classed as retryable and
// burnt every attempt. Each file of the checkpoint, cut short, is caught.
TEST_F(CheckpointTest, ATruncatedFileMakesTheJobStartOverAndSaysSo) {
  for (const char* name : {"epochs.json", "model.pt", "optimizer.pt", "checksums.json"}) {
    SCOPED_TRACE(name);
    trainer_.SaveCheckpoint(dir_.path(), Train(1));
    Truncate(Checkpoint() / name, fs::file_size(Checkpoint() / name) / 2);
    std::vector<std::string> notes;
    EXPECT_TRUE(LoadFresh(notes).empty());
    ASSERT_EQ(notes.size(), 2u);
    EXPECT_NE(notes[0].find("checkpoint " + Checkpoint().string() + " is damaged"),
              std::string::npos)
        << notes[0];
    EXPECT_NE(notes[1].find("starts over from epoch 1"), std::string::npos) << notes[1];
    EXPECT_FALSE(fs::exists(Checkpoint())) << "the damaged checkpoint was kept";
  }
}

// A checkpoint written before checksums were recorded is judged by loading.
TEST_F(CheckpointTest, ATruncatedCheckpointWithoutChecksumsIsNotTrusted) {
  trainer_.SaveCheckpoint(dir_.path(), Train(2));
  fs::remove(Checkpoint() / "checksums.json");
  Truncate(Checkpoint() / "epochs.json", 40);
  std::vector<std::string> notes;
  EXPECT_TRUE(LoadFresh(notes).empty());
  ASSERT_FALSE(notes.empty());
  EXPECT_NE(notes.front().find("is damaged"), std::string::npos) << notes.front();
}

TEST_F(CheckpointTest, AFileOfTheRightSizeWithOtherBytesFailsItsChecksum) {
  trainer_.SaveCheckpoint(dir_.path(), Train(1));
  FlipAByte(Checkpoint() / "optimizer.pt", fs::file_size(Checkpoint() / "optimizer.pt") / 2);
  std::vector<std::string> notes;
  EXPECT_TRUE(LoadFresh(notes).empty());
  ASSERT_FALSE(notes.empty());
  EXPECT_NE(notes.front().find("optimizer.pt does not match its checksum"), std::string::npos)
      << notes.front();
}

// A crash between the two renames of SaveCheckpoint leaves the previous
// checkpoint as checkpoint.old; when the newer one is damaged, the job
// resumes from the previous one.
TEST_F(CheckpointTest, ADamagedCheckpointFallsBackToThePreviousOne) {
  trainer_.SaveCheckpoint(dir_.path(), Train(1));
  fs::rename(Checkpoint(), fs::path(dir_.path()) / "checkpoint.old");
  TempDir newer;
  trainer_.SaveCheckpoint(newer.path(), Train(2));
  fs::rename(fs::path(newer.path()) / "checkpoint", Checkpoint());
  Truncate(Checkpoint() / "model.pt", 100);
  std::vector<std::string> notes;
  EXPECT_EQ(LoadFresh(notes).size(), 1u);
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_NE(notes[0].find("model.pt holds 100 bytes"), std::string::npos) << notes[0];
  EXPECT_NE(notes[1].find("resuming from the previous checkpoint"), std::string::npos)
      << notes[1];
}

TEST_F(CheckpointTest, AFullDiskLeavesThePreviousCheckpointWhole) {
  trainer_.SaveCheckpoint(dir_.path(), Train(1));
  const std::vector<EpochStats> more = Train(2);
  std::string message;
  {
    FileSizeLimit limit(2048);  // less than a model file
    try {
      trainer_.SaveCheckpoint(dir_.path(), more);
    } catch (const EngineError& error) {
      EXPECT_EQ(error.kind(), ErrorKind::kInternal);
      message = error.what();
    }
  }
  EXPECT_NE(message.find("cannot write"), std::string::npos) << message;
  EXPECT_NE(message.find("model.pt: File too large"), std::string::npos) << message;
  std::vector<std::string> notes;
  EXPECT_EQ(LoadFresh(notes).size(), 1u);
  EXPECT_TRUE(notes.empty());
}

class NoticeRecorder : public ImageJobObserver {
 public:
  void OnNotice(const std::string& line) override { notices.push_back(line); }
  void OnEpoch(const EpochStats& stats) override { epochs.push_back(stats.epoch); }
  std::vector<std::string> notices;
  std::vector<int> epochs;
};

// The whole job: a damaged checkpoint in its output folder is noted, and
// the job trains every epoch instead of failing.
TEST(DamagedCheckpointJobTest, AJobWithATruncatedCheckpointStartsOverAndSucceeds) {
  TempDir dir;
  testing::WriteClassFolder(dir.Sub("train"), {"dark", "light"}, 4);
  ImageJobConfig config;
  config.backbone_path = WriteTinyBackbone(dir.path());
  config.train_dir = dir.Sub("train");
  config.val_fraction = 0.25;
  config.batch_size = 4;
  config.threads = 1;
  config.loader_threads = 1;
  config.train.strategy = Strategy::kFull;
  config.train.epochs = 2;
  config.train.learning_rate = 0.01;
  config.output_dir = dir.Sub("out");
  // What a crash or a full disk mid-write used to leave behind.
  fs::create_directories(dir.Sub("out/checkpoint"));
  std::ofstream(dir.Sub("out/checkpoint/epochs.json")) << "{\"epochs\": [{\"epoch\": 1, \"tra";
  NoticeRecorder observer;
  const ImageJobResult result = RunImageJob(config, observer);
  EXPECT_EQ(result.first_epoch_run, 1);
  EXPECT_EQ(observer.epochs, (std::vector<int>{1, 2}));
  // The precision chosen, then the damaged checkpoint, then the fresh start.
  ASSERT_EQ(observer.notices.size(), 3u);
  EXPECT_NE(observer.notices[0].find("precision: FP32"), std::string::npos) << observer.notices[0];
  EXPECT_NE(observer.notices[1].find("epochs.json"), std::string::npos) << observer.notices[1];
  EXPECT_TRUE(fs::exists(result.model_path));
}

}  // namespace
}  // namespace tl::engine
