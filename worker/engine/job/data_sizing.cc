#include "job/data_sizing.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/batch_source.h"

namespace tl::engine {

double SizedValFraction(int64_t images, size_t classes, bool needs_validation,
                        const DataSizingRule& rule) {
  if (needs_validation) return rule.val_fraction;
  if (classes == 0) return 0;
  const double per_class = static_cast<double>(images) / static_cast<double>(classes);
  return per_class < rule.min_images_per_class_for_val ? 0 : rule.val_fraction;
}

int SizedBatchSize(int64_t train_images, const DataSizingRule& rule) {
  const auto share = static_cast<int64_t>(std::floor(train_images * rule.max_batch_share));
  const int batch = static_cast<int>(std::clamp<int64_t>(share, rule.min_batch, rule.max_batch));
  return std::max(batch, rule.replicas);
}

int64_t SizedSteps(int64_t train_images, const DataSizingRule& rule) {
  return std::max<int64_t>(rule.min_steps,
                           static_cast<int64_t>(std::ceil(train_images * rule.steps_per_image)));
}

int64_t StepsPerEpoch(int64_t images, int batch_size) {
  return BatchCount(std::max<int64_t>(images, 1), std::max(batch_size, 1));
}

int SizedEpochs(int64_t train_images, int batch_size, const DataSizingRule& rule) {
  const int64_t images = std::max<int64_t>(train_images, 1);
  const int64_t steps_per_epoch = StepsPerEpoch(images, batch_size);
  const int64_t epochs = (SizedSteps(images, rule) + steps_per_epoch - 1) / steps_per_epoch;
  return static_cast<int>(std::clamp<int64_t>(epochs, rule.min_epochs, rule.max_epochs));
}

DataSizing SizeTraining(const DataSizingRequest& request, int64_t train_images,
                        int spec_batch_size, int spec_epochs, double val_fraction,
                        const DataSizingRule& rule) {
  DataSizing sizing;
  sizing.sized = request;
  sizing.train_images = train_images;
  sizing.val_fraction = val_fraction;
  sizing.batch_size = request.batch_size ? SizedBatchSize(train_images, rule) : spec_batch_size;
  sizing.epochs =
      request.epochs ? SizedEpochs(train_images, sizing.batch_size, rule) : spec_epochs;
  sizing.steps = StepsPerEpoch(train_images, sizing.batch_size) * sizing.epochs;
  std::ostringstream reason;
  reason << train_images << " training images";
  if (request.val_fraction) reason << " after a validation slice of " << val_fraction;
  if (request.batch_size) reason << "; batch " << sizing.batch_size;
  if (request.epochs) {
    reason << "; " << sizing.epochs << " epochs for " << sizing.steps << " steps (at least "
           << SizedSteps(train_images, rule) << ")";
  }
  sizing.reason = reason.str();
  return sizing;
}

int DefaultStepEpochs(int epochs, int warmup_epochs) {
  return std::max(1, (epochs - warmup_epochs) / 3);
}

std::string DataSizingToJson(const DataSizing& sizing) {
  nlohmann::json sized = nlohmann::json::array();
  if (sizing.sized.epochs) sized.push_back("training.epochs");
  if (sizing.sized.batch_size) sized.push_back("training.batch_size");
  if (sizing.sized.val_fraction) sized.push_back("dataset.val_fraction");
  return nlohmann::json{{"sized_fields", sized},
                        {"epochs", sizing.epochs},
                        {"batch_size", sizing.batch_size},
                        {"val_fraction", sizing.val_fraction},
                        {"train_images", sizing.train_images},
                        {"steps", sizing.steps},
                        {"reason", sizing.reason}}
      .dump();
}

}  // namespace tl::engine
