#include "data/image_folder.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <system_error>
#include <thread>

#include "base/errors.h"
#include "base/parallel_for.h"
#include "common/image_files.h"
#include "data/shard_range.h"

namespace tl::engine {
namespace {

namespace fs = std::filesystem;

// Loader threads may run this many batches per thread ahead of the consumer:
// enough to hide one slow decode, small enough to bound memory.
constexpr int64_t kBatchesAheadPerThread = 2;

// Salts that keep the shuffle and the flip streams of one (seed, epoch) apart.
constexpr uint64_t kShuffleSalt = 0x53485546464c4531;
constexpr uint64_t kFlipSalt = 0x464c495050494e47;
constexpr uint64_t kAugmentSalt = 0x4155474d454e5431;

// SplitMix64's finalizer: spreads nearby inputs (epoch 3, epoch 4) over
// unrelated outputs, so derived seeds do not correlate.
uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

uint64_t EpochKey(uint64_t seed, int epoch, uint64_t salt) {
  return Mix64(Mix64(seed ^ salt) ^ Mix64(static_cast<uint64_t>(static_cast<int64_t>(epoch))));
}

// std::uniform_int_distribution and std::shuffle differ between standard
// libraries; drawing by rejection from mt19937_64 (whose output the standard
// fixes) keeps orders identical on every platform.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  const uint64_t excess = (kMax % bound + 1) % bound;  // 2^64 mod bound
  uint64_t draw;
  do {
    draw = rng();
  } while (draw > kMax - excess);
  return draw % bound;
}

template <typename T>
void Shuffle(std::vector<T>& values, std::mt19937_64& rng) {
  for (size_t i = values.size(); i > 1; --i) {
    std::swap(values[i - 1], values[UniformBelow(rng, i)]);
  }
}

std::string Quoted(const std::string& text) { return "'" + text + "'"; }

bool IsHidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return !name.empty() && name[0] == '.';
}

// The names of the visible entries of `dir` that are folders (or, when
// `want_folders` is false, regular files), in byte order.
std::vector<std::string> ListEntries(const fs::path& dir, bool want_folders) {
  std::vector<std::string> names;
  std::error_code error;
  fs::directory_iterator it(dir, error);
  for (; !error && it != fs::directory_iterator(); it.increment(error)) {
    if (IsHidden(it->path())) continue;
    std::error_code type_error;  // a dangling link is not worth failing the scan
    const bool is_wanted =
        want_folders ? it->is_directory(type_error) : it->is_regular_file(type_error);
    if (is_wanted && !type_error) names.push_back(it->path().filename().string());
  }
  if (error) {
    throw InvalidArgument("cannot list image folder " + Quoted(dir.string()) + ": " +
                          error.message());
  }
  std::sort(names.begin(), names.end());
  return names;
}

void CheckPreprocessing(const Preprocessing& preprocessing) {
  if (preprocessing.resize_size < 1 || preprocessing.crop_size < 1 ||
      preprocessing.crop_size > preprocessing.resize_size) {
    throw InvalidArgument("preprocessing needs 1 <= crop_size <= resize_size, got crop_size " +
                          std::to_string(preprocessing.crop_size) + " and resize_size " +
                          std::to_string(preprocessing.resize_size));
  }
  for (float deviation : preprocessing.std) {
    if (!(std::isfinite(deviation) && deviation > 0.0f)) {
      throw InvalidArgument("preprocessing std must be positive and finite");
    }
  }
}

// For each channel, the normalized float of every byte value. A table makes
// normalizing a cached image a lookup per value, and gives exactly
// (v / 255 - mean) / std, the value a reference implementation computes.
using NormalizationTable = std::array<std::array<float, 256>, 3>;

NormalizationTable MakeNormalizationTable(const Preprocessing& preprocessing) {
  NormalizationTable table;
  for (int channel = 0; channel < 3; ++channel) {
    for (int value = 0; value < 256; ++value) {
      table[channel][value] = (static_cast<float>(value) / 255.0f - preprocessing.mean[channel]) /
                              preprocessing.std[channel];
    }
  }
  return table;
}

cv::Mat ResizeShorterSide(const cv::Mat& image, int side) {
  const int shorter = std::min(image.rows, image.cols);
  if (shorter == side) return image;
  const double scale = static_cast<double>(side) / shorter;
  const int longer =
      std::max(side, static_cast<int>(std::lround(std::max(image.rows, image.cols) * scale)));
  const cv::Size size = image.rows <= image.cols ? cv::Size(longer, side) : cv::Size(side, longer);
  // Area averaging does not alias when shrinking; it degenerates to nearest
  // neighbour when growing, where bilinear looks right.
  cv::Mat resized;
  cv::resize(image, resized, size, 0, 0, scale < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
  return resized;
}

// An image read for the pipeline, or why it was skipped.
struct Decoded {
  cv::Mat image;
  ImageSkip skip = ImageSkip::kNone;
  std::string reason;
};

Decoded SkippedAs(ImageSkip skip, std::string reason = "") {
  Decoded decoded;
  decoded.skip = skip;
  decoded.reason = std::move(reason);
  return decoded;
}

// Reads `path` under `rules` into 8-bit BGR with its shorter side resized
// to `side`.
Decoded DecodeResized(const std::string& path, int side, const ImageReadRules& rules) {
  ImageReadResult read = ReadImageFile(path, rules);
  if (read.bgr.empty()) return SkippedAs(read.skip, std::move(read.reason));
  try {
    Decoded decoded;
    decoded.image = ResizeShorterSide(read.bgr, side);
    return decoded;
  } catch (const cv::Exception&) {
    return SkippedAs(ImageSkip::kUnreadable);
  }
}

// The decoded, resized image as RGB, whole: what random resized crops are
// cut from.
Decoded DecodeResizedRgb(const std::string& path, const Preprocessing& preprocessing,
                         const ImageReadRules& rules) {
  Decoded decoded = DecodeResized(path, preprocessing.resize_size, rules);
  if (decoded.image.empty()) return decoded;
  cv::Mat rgb;
  cv::cvtColor(decoded.image, rgb, cv::COLOR_BGR2RGB);
  decoded.image = rgb;
  return decoded;
}

// Decodes `path` and writes its resized center crop to `rgb` (crop_size^2 * 3
// bytes, HWC, RGB): the form the cache keeps without random resized crops.
// The returned image is empty; its skip says whether `rgb` was written.
Decoded DecodeCenterCrop(const std::string& path, const Preprocessing& preprocessing,
                         const ImageReadRules& rules, uint8_t* rgb) {
  try {
    Decoded decoded = DecodeResized(path, preprocessing.resize_size, rules);
    if (decoded.image.empty()) return decoded;
    const cv::Mat resized = decoded.image;
    decoded.image = cv::Mat();
    const int side = preprocessing.crop_size;
    const cv::Rect center((resized.cols - side) / 2, (resized.rows - side) / 2, side, side);
    cv::Mat out(side, side, CV_8UC3, rgb);
    cv::cvtColor(resized(center), out, cv::COLOR_BGR2RGB);
    // cvtColor would only reallocate on a shape mismatch
    if (out.data != rgb) decoded.skip = ImageSkip::kUnreadable;
    return decoded;
  } catch (const cv::Exception&) {
    return SkippedAs(ImageSkip::kUnreadable);
  }
}

void WriteNormalizedChw(const uint8_t* rgb, int side, const NormalizationTable& table, bool flip,
                        float* chw) {
  const int64_t plane = int64_t{side} * side;
  float* red = chw;
  float* green = chw + plane;
  float* blue = chw + 2 * plane;
  for (int y = 0; y < side; ++y) {
    const uint8_t* row = rgb + int64_t{y} * side * 3;
    for (int x = 0; x < side; ++x) {
      const uint8_t* pixel = row + (flip ? side - 1 - x : x) * 3;
      const int64_t at = int64_t{y} * side + x;
      red[at] = table[0][pixel[0]];
      green[at] = table[1][pixel[1]];
      blue[at] = table[2][pixel[2]];
    }
  }
}

}  // namespace

ImageFolderIndex ScanImageFolder(const std::string& dir) {
  std::error_code error;
  const fs::file_status status = fs::status(dir, error);
  if (!fs::exists(status)) {
    throw InvalidArgument("image folder " + Quoted(dir) + " does not exist");
  }
  if (!fs::is_directory(status)) {
    throw InvalidArgument("image folder " + Quoted(dir) + " is not a folder");
  }
  ImageFolderIndex index;
  index.class_names = ListEntries(dir, /*want_folders=*/true);
  if (index.class_names.empty()) {
    throw InvalidArgument("image folder " + Quoted(dir) +
                          " holds no class folder (expected <folder>/<class>/<image>)");
  }
  for (size_t label = 0; label < index.class_names.size(); ++label) {
    const fs::path class_dir = fs::path(dir) / index.class_names[label];
    for (const std::string& file : ListEntries(class_dir, /*want_folders=*/false)) {
      if (!tl::HasImageExtension(file)) continue;
      index.samples.push_back({(class_dir / file).string(), static_cast<int64_t>(label)});
    }
  }
  return index;
}

std::pair<std::vector<ImageSample>, std::vector<ImageSample>> StratifiedSplit(
    const std::vector<ImageSample>& samples, double val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0.0 && val_fraction <= 1.0)) {
    throw InvalidArgument("val_fraction must lie in [0, 1], got " + std::to_string(val_fraction));
  }
  std::map<int64_t, std::vector<size_t>> members_by_label;
  for (size_t i = 0; i < samples.size(); ++i) members_by_label[samples[i].label].push_back(i);

  std::vector<bool> held_out(samples.size(), false);
  std::mt19937_64 rng(seed);
  for (auto& [label, members] : members_by_label) {
    const size_t count = members.size();
    size_t held = std::min(count, static_cast<size_t>(std::llround(count * val_fraction)));
    // A class without validation images would make its recall unmeasurable.
    if (held == 0 && count >= 2 && val_fraction > 0.0) held = 1;
    Shuffle(members, rng);
    for (size_t i = 0; i < held; ++i) held_out[members[i]] = true;
  }

  std::pair<std::vector<ImageSample>, std::vector<ImageSample>> split;
  for (size_t i = 0; i < samples.size(); ++i) {
    (held_out[i] ? split.second : split.first).push_back(samples[i]);
  }
  return split;
}

bool LoadImage(const std::string& path, const Preprocessing& preprocessing, bool flip, float* chw,
               const ImageReadRules& rules, std::string* why_not) {
  CheckPreprocessing(preprocessing);
  CheckImageReadRules(rules);
  const int side = preprocessing.crop_size;
  std::vector<uint8_t> rgb(static_cast<size_t>(side) * side * 3);
  const Decoded decoded = DecodeCenterCrop(path, preprocessing, rules, rgb.data());
  if (decoded.skip != ImageSkip::kNone) {
    if (why_not != nullptr) *why_not = decoded.reason;
    return false;
  }
  WriteNormalizedChw(rgb.data(), side, MakeNormalizationTable(preprocessing), flip, chw);
  return true;
}

class ImageFolderSource::Impl {
 public:
  Impl(std::vector<ImageSample> samples, Preprocessing preprocessing,
       ImageFolderSourceOptions options);
  ~Impl() { StopLoaders(); }

  int64_t size() const { return static_cast<int64_t>(samples_.size()); }
  int64_t batches() const {
    return BatchCount(ImagesPerEpoch(), options_.batch_size);
  }
  void StartEpoch(int epoch);
  std::optional<Batch> Next();
  int64_t skipped() const { return skipped_.load(); }
  int64_t skipped(ImageSkip skip) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    return skipped_by_kind_[static_cast<size_t>(skip)];
  }
  std::vector<SkippedImage> SkippedImages(size_t limit) {
    std::vector<SkippedImage> images;
    std::lock_guard<std::mutex> lock(cache_mutex_);
    for (size_t i = 0; i < failed_.size() && images.size() < limit; ++i) {
      if (failed_[i] == ImageSkip::kNone) continue;
      const auto reason = refusal_reasons_.find(static_cast<int64_t>(i));
      images.push_back({samples_[i].path, failed_[i],
                        reason == refusal_reasons_.end() ? "" : reason->second});
    }
    return images;
  }
  bool Preload(int threads, const std::function<bool()>& stop_requested);

 private:
  // One prepared batch; `filled` of its rows hold images, the rest belong to
  // images that could not be read.
  struct Slot {
    bool ready = false;
    torch::Tensor images;
    torch::Tensor labels;
    int64_t filled = 0;
    std::exception_ptr error;
  };

  // When the images dealt into even batches (BatchStart) would leave one
  // alone in a batch, one image of the epoch (its last) is left out if
  // drop_singleton_batch asks for it; with a batch of 2 or more that only
  // happens to an odd count in batches of two, or a single image.
  int64_t ImagesPerEpoch() const {
    const int64_t count = size();
    const bool lone_image = count > 0 && count / BatchCount(count, options_.batch_size) == 1;
    const bool drop_last =
        options_.drop_singleton_batch && lone_image && options_.batch_size > 1;
    return drop_last ? count - 1 : count;
  }
  int64_t Window() const { return kBatchesAheadPerThread * options_.threads; }
  // Skipped images can leave any batch with one image; it goes too, since
  // BatchNorm fails on it wherever it comes.
  bool Keeps(int64_t filled) const {
    return filled > 0 && !(filled == 1 && options_.drop_singleton_batch && options_.batch_size > 1);
  }
  bool FlipFor(int64_t sample) const {
    return options_.random_hflip && (Mix64(flip_key_ ^ static_cast<uint64_t>(sample)) >> 63) != 0;
  }
  uint64_t AugmentKeyFor(int64_t sample) const {
    return Mix64(augment_key_ ^ static_cast<uint64_t>(sample));
  }

  void StopLoaders();
  void LoaderLoop();
  Slot LoadBatch(int64_t batch);
  // What the cache keeps of a sample (see keeps_resized_); empty when the
  // file cannot be read.
  cv::Mat CachedImage(int64_t sample);
  Decoded Decode(int64_t sample) const;

  const std::vector<ImageSample> samples_;
  const Preprocessing preprocessing_;
  const ImageFolderSourceOptions options_;
  const NormalizationTable table_;
  const int64_t image_bytes_;
  const int64_t image_floats_;
  // Random resized crops are cut from the whole resized image, so that is
  // what the cache keeps then; otherwise it keeps the center crop.
  const bool keeps_resized_;

  // Decoded images and known failures, kept over the source's life. A cached
  // image is never changed, so a loader may read it after releasing the lock
  // (its cv::Mat header holds a reference).
  std::mutex cache_mutex_;
  std::vector<cv::Mat> cache_;
  std::vector<ImageSkip> failed_;  // kNone: not (yet) found unreadable
  std::map<int64_t, std::string> refusal_reasons_;  // by sample, refusals only
  std::array<int64_t, 4> skipped_by_kind_{};        // by ImageSkip
  int64_t cached_bytes_ = 0;
  std::atomic<int64_t> skipped_{0};

  // The running epoch. order_ and flip_key_ change only while no loader runs.
  std::vector<int64_t> order_;
  uint64_t flip_key_ = 0;
  uint64_t augment_key_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable batch_ready_;  // a loader finished a batch
  std::condition_variable room_;         // the consumer took a batch
  bool started_ = false;
  int64_t next_to_claim_ = 0;
  int64_t next_to_deliver_ = 0;
  std::vector<Slot> slots_;  // ring: batch b waits in slots_[b % Window()]
  std::vector<std::thread> loaders_;
};

ImageFolderSource::Impl::Impl(std::vector<ImageSample> samples, Preprocessing preprocessing,
                              ImageFolderSourceOptions options)
    : samples_(std::move(samples)),
      preprocessing_(preprocessing),
      options_(options),
      table_(MakeNormalizationTable(preprocessing)),
      image_bytes_(int64_t{preprocessing.crop_size} * preprocessing.crop_size * 3),
      image_floats_(image_bytes_),
      keeps_resized_(options.augmentation.random_resized_crop),
      cache_(samples_.size()),
      failed_(samples_.size(), ImageSkip::kNone) {
  CheckPreprocessing(preprocessing_);
  CheckImageReadRules(options_.read_rules);
  CheckAugmentation(options_.augmentation);
  if (options_.batch_size < 1) {
    throw InvalidArgument("batch_size must be at least 1, got " +
                          std::to_string(options_.batch_size));
  }
  if (options_.shard_count < 1 || options_.shard_index < 0 ||
      options_.shard_index >= options_.shard_count) {
    throw InvalidArgument("shard " + std::to_string(options_.shard_index) + " of " +
                          std::to_string(options_.shard_count) + " does not exist");
  }
  if (options_.threads < 1) {
    throw InvalidArgument("loader threads must be at least 1, got " +
                          std::to_string(options_.threads));
  }
}

void ImageFolderSource::Impl::StopLoaders() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  room_.notify_all();
  for (std::thread& loader : loaders_) loader.join();
  loaders_.clear();
  stopping_ = false;
}

void ImageFolderSource::Impl::StartEpoch(int epoch) {
  StopLoaders();  // abandons whatever the previous epoch had not delivered

  order_.resize(samples_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
  if (options_.shuffle) {
    std::mt19937_64 rng(EpochKey(options_.seed, epoch, kShuffleSalt));
    Shuffle(order_, rng);
  }
  flip_key_ = EpochKey(options_.seed, epoch, kFlipSalt);
  augment_key_ = EpochKey(options_.seed, epoch, kAugmentSalt);

  {
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = true;
    next_to_claim_ = 0;
    next_to_deliver_ = 0;
    slots_.assign(Window(), Slot{});
  }
  const int64_t loader_count = std::min<int64_t>(options_.threads, batches());
  try {
    for (int64_t i = 0; i < loader_count; ++i) loaders_.emplace_back([this] { LoaderLoop(); });
  } catch (...) {
    // Without all of its loaders the epoch might never finish; run none.
    StopLoaders();
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = false;
    throw;
  }
}

void ImageFolderSource::Impl::LoaderLoop() {
  const int64_t batch_count = batches();
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    room_.wait(lock, [&] {
      return stopping_ || next_to_claim_ >= batch_count ||
             next_to_claim_ < next_to_deliver_ + Window();
    });
    if (stopping_ || next_to_claim_ >= batch_count) return;
    const int64_t batch = next_to_claim_++;
    lock.unlock();
    Slot loaded = LoadBatch(batch);
    lock.lock();
    loaded.ready = true;
    slots_[batch % Window()] = std::move(loaded);
    batch_ready_.notify_one();
  }
}

ImageFolderSource::Impl::Slot ImageFolderSource::Impl::LoadBatch(int64_t batch) {
  Slot slot;
  try {
    const int64_t batch_begin = BatchStart(ImagesPerEpoch(), options_.batch_size, batch);
    const int64_t batch_end = BatchStart(ImagesPerEpoch(), options_.batch_size, batch + 1);
    const auto [shard_begin, shard_end] = ShardRange(batch_end - batch_begin, options_.shard_count,
                                                     options_.shard_index);
    const int64_t begin = batch_begin + shard_begin;
    const int64_t end = batch_begin + shard_end;
    const int side = preprocessing_.crop_size;
    slot.images = torch::empty({end - begin, 3, side, side}, torch::kFloat32);
    slot.labels = torch::empty({end - begin}, torch::kInt64);
    float* images = slot.images.data_ptr<float>();
    int64_t* labels = slot.labels.data_ptr<int64_t>();
    cv::Mat augmented;
    for (int64_t position = begin; position < end && !stopping_; ++position) {
      const int64_t sample = order_[position];
      const cv::Mat cached = CachedImage(sample);
      if (cached.empty()) continue;
      const uint8_t* rgb = cached.data;
      if (options_.augmentation.any()) {
        AugmentImage(cached, side, options_.augmentation, AugmentKeyFor(sample), augmented);
        rgb = augmented.data;
      }
      WriteNormalizedChw(rgb, side, table_, FlipFor(sample), images + slot.filled * image_floats_);
      labels[slot.filled] = samples_[sample].label;
      ++slot.filled;
    }
  } catch (...) {
    slot.error = std::current_exception();  // rethrown to the consumer by Next()
  }
  return slot;
}

Decoded ImageFolderSource::Impl::Decode(int64_t sample) const {
  const std::string& path = samples_[sample].path;
  if (keeps_resized_) return DecodeResizedRgb(path, preprocessing_, options_.read_rules);
  cv::Mat crop(preprocessing_.crop_size, preprocessing_.crop_size, CV_8UC3);
  Decoded decoded = DecodeCenterCrop(path, preprocessing_, options_.read_rules, crop.data);
  if (decoded.skip == ImageSkip::kNone) decoded.image = crop;
  return decoded;
}

cv::Mat ImageFolderSource::Impl::CachedImage(int64_t sample) {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (failed_[sample] != ImageSkip::kNone) return cv::Mat();
    if (!cache_[sample].empty()) return cache_[sample];
  }
  // Decoding runs unlocked: it is the slow part, and other loaders need the cache meanwhile.
  Decoded read = Decode(sample);
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (read.skip != ImageSkip::kNone) {
    if (failed_[sample] == ImageSkip::kNone) {
      failed_[sample] = read.skip;
      if (!read.reason.empty()) refusal_reasons_[sample] = std::move(read.reason);
      ++skipped_by_kind_[static_cast<size_t>(read.skip)];
      ++skipped_;
    }
    return cv::Mat();
  }
  const cv::Mat decoded = read.image;
  const int64_t bytes = static_cast<int64_t>(decoded.total() * decoded.elemSize());
  if (cache_[sample].empty() && cached_bytes_ + bytes <= options_.cache_bytes) {
    cache_[sample] = decoded;
    cached_bytes_ += bytes;
  }
  return decoded;
}

bool ImageFolderSource::Impl::Preload(int threads,
                                      const std::function<bool()>& stop_requested) {
  // Resized images are at least resize_size squared; the cache's own budget
  // check stops it at its limit should longer images not fit after all.
  const int64_t least_bytes =
      keeps_resized_ ? int64_t{preprocessing_.resize_size} * preprocessing_.resize_size * 3
                     : image_bytes_;
  if (size() * least_bytes > options_.cache_bytes) return false;
  StopLoaders();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = false;  // the next epoch needs StartEpoch
  }
  return ParallelFor(size(), threads, [this](int64_t sample) { CachedImage(sample); },
                     stop_requested);
}

std::optional<Batch> ImageFolderSource::Impl::Next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!started_) {
    throw EngineError(ErrorKind::kInternal, "ImageFolderSource::Next called before StartEpoch");
  }
  while (next_to_deliver_ < batches()) {
    Slot& slot = slots_[next_to_deliver_ % Window()];
    batch_ready_.wait(lock, [&] { return slot.ready; });
    Slot taken = std::move(slot);
    slot = Slot{};
    ++next_to_deliver_;
    room_.notify_all();
    if (taken.error) std::rethrow_exception(taken.error);
    if (!Keeps(taken.filled) && !options_.keep_every_batch) continue;
    lock.unlock();
    if (taken.filled < taken.images.size(0)) {
      taken.images = taken.images.narrow(0, 0, taken.filled);
      taken.labels = taken.labels.narrow(0, 0, taken.filled);
    }
    return Batch{std::move(taken.images), std::move(taken.labels)};
  }
  return std::nullopt;
}

ImageFolderSourceOptions EvaluationOptions(const ImageFolderSourceOptions& training) {
  ImageFolderSourceOptions options = training;
  options.shuffle = false;
  options.keep_every_batch = false;
  options.random_hflip = false;
  options.augmentation = Augmentation{};
  options.drop_singleton_batch = false;
  return options;
}

ImageFolderSource::ImageFolderSource(std::vector<ImageSample> samples, Preprocessing preprocessing,
                                     ImageFolderSourceOptions options)
    : impl_(std::make_unique<Impl>(std::move(samples), preprocessing, options)) {}

ImageFolderSource::~ImageFolderSource() = default;

int64_t ImageFolderSource::size() const { return impl_->size(); }
int64_t ImageFolderSource::batches() const { return impl_->batches(); }
void ImageFolderSource::StartEpoch(int epoch) { impl_->StartEpoch(epoch); }
std::optional<Batch> ImageFolderSource::Next() { return impl_->Next(); }
int64_t ImageFolderSource::skipped() const { return impl_->skipped(); }
std::vector<std::string> ImageFolderSource::SkippedPaths(size_t limit) const {
  std::vector<std::string> paths;
  for (SkippedImage& image : impl_->SkippedImages(limit)) paths.push_back(std::move(image.path));
  return paths;
}
std::vector<ImageFolderSource::SkippedImage> ImageFolderSource::SkippedImages(size_t limit) const {
  return impl_->SkippedImages(limit);
}
int64_t ImageFolderSource::skipped(ImageSkip skip) const { return impl_->skipped(skip); }
bool ImageFolderSource::Preload(int threads, const std::function<bool()>& stop_requested) {
  return impl_->Preload(threads, stop_requested);
}

}  // namespace tl::engine
