#include "eval/confusion_matrix_image.h"

#include <algorithm>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "base/atomic_file.h"
#include "base/errors.h"

namespace tl::engine {
namespace {

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
const cv::Scalar kWhite(255, 255, 255);
const cv::Scalar kBlack(0, 0, 0);
const cv::Scalar kGridLine(190, 190, 190);
// A full row share is drawn in this deep blue (BGR); an empty cell is white.
const cv::Scalar kFullShare(150, 70, 20);

std::string Label(const std::string& name) {
  return name.size() <= kMaxLabelChars ? name : name.substr(0, kMaxLabelChars - 1) + "~";
}

int TextWidth(const std::string& text, double scale) {
  int baseline = 0;
  return cv::getTextSize(text, kFont, scale, 1, &baseline).width;
}

cv::Scalar ShareColour(double share) {
  return kWhite * (1.0 - share) + kFullShare * share;
}

}  // namespace

void DrawConfusionMatrix(const EvaluationReport& report, const std::string& png_path) {
  const int n = static_cast<int>(report.class_names.size());
  // About 800 px of grid: 20 classes get 40 px cells, 200 get 8 px ones.
  const int cell = std::clamp(800 / std::max(n, 1), 8, 48);
  const double label_scale = std::clamp(cell / 40.0, 0.3, 0.45);
  const double count_scale = std::clamp(cell / 100.0, 0.3, 0.45);
  int label_width = 0;
  for (const std::string& name : report.class_names) {
    label_width = std::max(label_width, TextWidth(Label(name), label_scale));
  }
  label_width += 8;
  const int grid = n * cell;
  const int left = label_width + 10;
  const int top = 56;
  const int width = std::max(left + grid + 16, 460);
  const int height = top + grid + label_width + 16;
  cv::Mat image(height, width, CV_8UC3, kWhite);

  const std::string title = "confusion matrix: " + report.split + ", " +
                            std::to_string(report.images) + " images, accuracy " +
                            std::to_string(report.accuracy).substr(0, 6);
  cv::putText(image, title, {8, 22}, kFont, 0.5, kBlack, 1, cv::LINE_AA);
  cv::putText(image, "rows: true class, columns: predicted, colour: share of the row", {8, 44},
              kFont, 0.4, kBlack, 1, cv::LINE_AA);

  for (int t = 0; t < n; ++t) {
    int64_t row_total = 0;
    for (int64_t count : report.confusion[t]) row_total += count;
    for (int p = 0; p < n; ++p) {
      const int64_t count = report.confusion[t][p];
      const double share = row_total > 0 ? static_cast<double>(count) / row_total : 0.0;
      const cv::Rect box(left + p * cell, top + t * cell, cell, cell);
      cv::rectangle(image, box, ShareColour(share), cv::FILLED);
      cv::rectangle(image, box, kGridLine, 1);
      const std::string text = std::to_string(count);
      const int text_width = TextWidth(text, count_scale);
      if (cell < 18 || text_width > cell - 2) continue;  // too small to read
      cv::putText(image, text,
                  {box.x + (cell - text_width) / 2, box.y + cell / 2 + static_cast<int>(7 * count_scale)},
                  kFont, count_scale, share > 0.5 ? kWhite : kBlack, 1, cv::LINE_AA);
    }
    // Row labels, right-aligned against the grid.
    const std::string name = Label(report.class_names[t]);
    cv::putText(image, name,
                {left - 6 - TextWidth(name, label_scale),
                 top + t * cell + cell / 2 + static_cast<int>(8 * label_scale)},
                kFont, label_scale, kBlack, 1, cv::LINE_AA);
  }
  // Column labels read upwards and end at the grid: written right-aligned
  // on a horizontal strip, then turned a quarter counter-clockwise.
  for (int p = 0; p < n; ++p) {
    cv::Mat strip(cell, label_width, CV_8UC3, kWhite);
    const std::string name = Label(report.class_names[p]);
    cv::putText(strip, name,
                {label_width - 6 - TextWidth(name, label_scale),
                 cell / 2 + static_cast<int>(8 * label_scale)},
                kFont, label_scale, kBlack, 1, cv::LINE_AA);
    cv::Mat turned;
    cv::rotate(strip, turned, cv::ROTATE_90_COUNTERCLOCKWISE);
    turned.copyTo(image(cv::Rect(left + p * cell, top + grid + 4, cell, label_width)));
  }
  std::vector<uchar> png;
  if (!cv::imencode(".png", image, png)) {
    throw EngineError(ErrorKind::kInternal, "cannot encode " + png_path);
  }
  WriteFileAtomically(png_path, std::string(png.begin(), png.end()));
}

}  // namespace tl::engine
