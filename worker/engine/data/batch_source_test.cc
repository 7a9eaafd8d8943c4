#include "data/batch_source.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "data/tensor_source.h"

namespace tl::engine {
namespace {

std::vector<int64_t> BatchSizes(int64_t images, int64_t batch_size) {
  std::vector<int64_t> sizes;
  for (int64_t batch = 0; batch < BatchCount(images, batch_size); ++batch) {
    sizes.push_back(BatchStart(images, batch_size, batch + 1) -
                    BatchStart(images, batch_size, batch));
  }
  return sizes;
}

TEST(BatchSourceTest, AnEpochsImagesAreDealtEvenlyIntoTheFewestBatches) {
  // 50 images in batches of at most 12: five of 10, not four of 12 and one of 2.
  EXPECT_EQ(BatchSizes(50, 12), (std::vector<int64_t>{10, 10, 10, 10, 10}));
  EXPECT_EQ(BatchSizes(2500, 32).back(), 31);  // not 4
  EXPECT_EQ(BatchSizes(12, 5), (std::vector<int64_t>{4, 4, 4}));
  EXPECT_EQ(BatchSizes(64, 32), (std::vector<int64_t>{32, 32}));
  EXPECT_TRUE(BatchSizes(0, 8).empty());
  for (int64_t images = 1; images <= 2000; ++images) {
    for (int64_t batch_size : {1, 2, 3, 8, 12, 32}) {
      SCOPED_TRACE(testing::Message() << images << " images in batches of " << batch_size);
      const std::vector<int64_t> sizes = BatchSizes(images, batch_size);
      ASSERT_EQ(static_cast<int64_t>(sizes.size()), (images + batch_size - 1) / batch_size);
      ASSERT_EQ(BatchStart(images, batch_size, 0), 0);
      ASSERT_EQ(BatchStart(images, batch_size, BatchCount(images, batch_size)), images);
      ASSERT_LE(sizes.front(), batch_size);
      ASSERT_LE(sizes.front() - sizes.back(), 1);
      for (size_t i = 1; i < sizes.size(); ++i) ASSERT_LE(sizes[i], sizes[i - 1]);
    }
  }
}

TEST(BatchSourceTest, TensorSourceDealsTheSameBatches) {
  const int64_t images = 50;
  TensorSource source(torch::zeros({images, 3, 2, 2}),
                      torch::arange(images, torch::kInt64), 12, /*shuffle=*/true, 7);
  ASSERT_EQ(source.batches(), 5);
  for (int epoch = 1; epoch <= 2; ++epoch) {
    source.StartEpoch(epoch);
    std::vector<int64_t> sizes;
    std::vector<bool> seen(images, false);
    while (std::optional<Batch> batch = source.Next()) {
      sizes.push_back(batch->labels.size(0));
      for (int64_t i = 0; i < batch->labels.size(0); ++i) {
        const int64_t label = batch->labels[i].item<int64_t>();
        ASSERT_FALSE(seen[label]) << "image " << label << " twice in epoch " << epoch;
        seen[label] = true;
      }
    }
    EXPECT_EQ(sizes, BatchSizes(images, 12));
    EXPECT_EQ(std::count(seen.begin(), seen.end(), true), images);
  }
}

}  // namespace
}  // namespace tl::engine
