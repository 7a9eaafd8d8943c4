// Labelled image folders for engine tests: each class a solid colour (one
// colour channel per class), brightness varying with the image's index, so
// that a tiny model learns them in a few epochs.
#pragma once

#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace tl::engine::testing {

// Class `label` (0, 1 or 2) as a 10 x 10 image.
inline cv::Mat ClassImage(int label, int index) {
  cv::Scalar bgr(30, 30, 30);
  bgr[2 - label % 3] = 150 + 10 * (index % 10);  // OpenCV orders channels BGR
  return cv::Mat(10, 10, CV_8UC3, bgr);
}

inline void WriteClassImage(const std::string& path, int label, int index) {
  if (!cv::imwrite(path, ClassImage(label, index))) throw std::runtime_error("cannot write " + path);
}

// dir/<class>/img<i>.png, per_class images for each of `classes`; a class's
// colour follows its position in `classes`.
inline void WriteClassFolder(const std::string& dir, const std::vector<std::string>& classes,
                             int per_class) {
  for (size_t label = 0; label < classes.size(); ++label) {
    const std::string class_dir = dir + "/" + classes[label];
    std::filesystem::create_directories(class_dir);
    for (int i = 0; i < per_class; ++i) {
      WriteClassImage(class_dir + "/img" + std::to_string(i) + ".png", static_cast<int>(label), i);
    }
  }
}

}  // namespace tl::engine::testing
