// A classifier exported by a real (tiny) training job, for tests of what
// uses exported models: three solid-colour classes (class_images.h) learned
// by the tiny backbone.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "job/image_job.h"
#include "testing/class_images.h"
#include "testing/tiny_backbone.h"

namespace tl::engine::testing {

inline const std::vector<std::string>& TinyModelClasses() {
  static const std::vector<std::string> classes = {"apple", "banana", "cherry"};
  return classes;
}

// A quick job on dir/train and dir/val (the caller writes them) from the
// tiny backbone, written to dir/backbones; its output goes to dir/model.
inline ImageJobConfig TinyJobConfig(const std::string& dir) {
  std::filesystem::create_directories(dir + "/backbones");
  ImageJobConfig config;
  config.backbone_path = WriteTinyBackbone(dir + "/backbones");
  config.train_dir = dir + "/train";
  config.val_dir = dir + "/val";
  config.batch_size = 6;
  config.threads = 1;
  config.loader_threads = 1;
  config.train.strategy = Strategy::kFull;
  config.train.epochs = 6;
  config.train.learning_rate = 0.01;
  config.train.backbone_lr_scale = 1.0;
  config.output_dir = dir + "/model";
  return config;
}

// Trains TinyJobConfig(dir) on 12 training and 2 validation images per
// class; returns its result (model_path is dir/model/model.pt).
inline ImageJobResult TrainTinyModel(const std::string& dir) {
  WriteClassFolder(dir + "/train", TinyModelClasses(), 12);
  WriteClassFolder(dir + "/val", TinyModelClasses(), 2);
  ImageJobObserver observer;
  return RunImageJob(TinyJobConfig(dir), observer);
}

}  // namespace tl::engine::testing
