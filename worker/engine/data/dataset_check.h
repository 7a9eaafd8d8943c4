// What a job finds out about its data before training: images per class in
// each split, how unbalanced the classes are, which files cannot be read,
// and validation images that are byte-for-byte copies of training images
// (they make validation scores look better than the model is).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/image_folder.h"

namespace tl::engine {

// Examples kept of each finding; counts are always complete.
inline constexpr size_t kDatasetCheckExamples = 10;

struct DatasetCheck {
  std::vector<int64_t> train_per_class;  // by label
  std::vector<int64_t> val_per_class;
  // The largest training class over the smallest; classes without training
  // images are left out. 1 is balanced; 0 when no class has images.
  double imbalance_ratio = 0;
  std::vector<std::string> unreadable_examples;
  int64_t duplicate_images = 0;  // validation images equal to a training image
  std::vector<std::string> duplicate_examples;  // "val = train"
};

std::vector<int64_t> ImagesPerClass(const std::vector<ImageSample>& samples, size_t class_count);
double ImbalanceRatio(const std::vector<int64_t>& per_class);

// Reads every file of both splits (on `threads` threads) and counts the
// validation images whose bytes equal a training image's. Files that cannot
// be read match nothing, nor do files `rules` refuse (outside their root, or
// larger than an image within the pixel limit can be). `display` turns a
// path into what examples show. Returns false when `stop_requested` ended
// it early.
bool FindDuplicates(const std::vector<ImageSample>& train, const std::vector<ImageSample>& val,
                    int threads, const std::function<bool()>& stop_requested,
                    const std::function<std::string(const std::string&)>& display,
                    DatasetCheck& check, const ImageReadRules& rules = {});

// Fails the job (EngineError(kFailedPrecondition) naming `where`) when more
// than half of a source's images were skipped: a dataset mostly unreadable
// or refused is a broken dataset, not a noisy one. The message counts each
// reason.
void CheckMostlyReadable(const ImageFolderSource& source, const std::string& where);

// The check as JSON (dataset.json), classes by name.
std::string DatasetCheckToJson(const std::vector<std::string>& class_names, int64_t unreadable,
                               const DatasetCheck& check);

}  // namespace tl::engine
