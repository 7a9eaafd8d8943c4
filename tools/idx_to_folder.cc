// idx_to_folder: turns an IDX image file and its label file (MNIST,
// Fashion-MNIST; plain or gzip-compressed) into an image folder,
// OUT/<class name>/<index>.png, the layout the engine's ScanImageFolder reads.
//
//   idx_to_folder --images train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz \
//       --out data/train [--classes 0,1,2] [--per-class N] [--skip-per-class K]
//       [--class-names "T-shirt,Trouser,..." | --fashion-names] [--threads N]
//
// --skip-per-class K drops the first K images of each class, so that disjoint
// slices can be taken from one file (say K=0,N=500 for training and K=500,N=100
// for validation).
#include <zlib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

// IDX magic numbers: two zero bytes, 0x08 for unsigned bytes, then the number
// of dimensions.
constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;

// Fashion-MNIST's classes by label, spelled so that each is a plain folder
// name ("T-shirt/top" would make a subfolder).
const char* const kFashionNames[] = {"T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                                     "Sandal",  "Shirt",   "Sneaker",  "Bag",   "Ankle-boot"};

// Bad input (files, arguments): reported on stderr with exit status 1.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string images_path;
  std::string labels_path;
  std::string out_dir;
  std::optional<std::vector<int>> classes;  // all labels present when absent
  int64_t per_class = std::numeric_limits<int64_t>::max();
  int64_t skip_per_class = 0;
  std::vector<std::string> class_names;  // by label; the label's digits when empty
  int threads = 0;                       // 0: one per core
};

constexpr char kDescription[] =
    "idx_to_folder: writes DIR/<class name>/<index>.png for the images of the selected\n"
    "classes of an IDX image file and its label file (either may be gzip-compressed).\n"
    "Class names are given by label (the first name is label 0's); by default a class's\n"
    "folder is its label.";

std::vector<std::string> Split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

int64_t ParseCount(const std::string& flag, const std::string& text) {
  size_t used = 0;
  int64_t value = -1;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 0) {
    throw UserError(flag + " needs a non-negative integer, got \"" + text + "\"");
  }
  return value;
}

std::vector<int> ParseClasses(const std::string& text) {
  std::vector<int> classes;
  for (const std::string& part : Split(text, ',')) {
    const int64_t label = ParseCount("--classes", part);
    if (label > 255) throw UserError("--classes: label " + part + " is above 255");
    if (std::find(classes.begin(), classes.end(), label) != classes.end()) {
      throw UserError("--classes names label " + part + " twice");
    }
    classes.push_back(static_cast<int>(label));
  }
  return classes;
}

// A class name becomes a folder that ScanImageFolder must list as a class.
void CheckClassName(const std::string& name) {
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    throw UserError("class name \"" + name +
                    "\" cannot be a class folder (empty, hidden, or holding '/')");
  }
}

// The command line as CLI11 reads it; FinishOptions turns it into Options.
struct Flags {
  Options options;
  std::string classes;
  std::string class_names;
  bool fashion_names = false;
  // Given at all, even empty (an empty list is an error, not "every label").
  const CLI::Option* classes_flag = nullptr;
  const CLI::Option* class_names_flag = nullptr;
};

// A count: a whole non-negative integer (CLI11's own checks describe a range of doubles).
CLI::Validator NonNegativeCount() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        int64_t value = -1;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error == std::errc() && end == text.data() + text.size() && value >= 0) return "";
        return "needs a non-negative integer, got \"" + text + "\"";
      },
      "N>=0");
}

void AddFlags(CLI::App& app, Flags& flags) {
  const CLI::Validator count = NonNegativeCount();
  app.add_option("--images", flags.options.images_path, "IDX image file")->required();
  app.add_option("--labels", flags.options.labels_path, "IDX label file")->required();
  app.add_option("--out", flags.options.out_dir, "folder to write the class folders into")
      ->required();
  flags.classes_flag =
      app.add_option("--classes", flags.classes, "labels to convert, as 0,1,2 (default: all)");
  app.add_option("--per-class", flags.options.per_class, "at most N images of each class")
      ->check(count);
  app.add_option("--skip-per-class", flags.options.skip_per_class,
                 "skip the first K images of each class")
      ->check(count);
  CLI::Option* class_names =
      app.add_option("--class-names", flags.class_names, "folder names by label, as \"a,b,...\"");
  flags.class_names_flag = class_names;
  app.add_flag("--fashion-names", flags.fashion_names, "Fashion-MNIST's class names")
      ->excludes(class_names);
  app.add_option("--threads", flags.options.threads, "encoding threads (default: one per core)")
      ->check(count);
}

// The checks CLI11 cannot make: label lists and class names that must be folder names.
Options FinishOptions(Flags flags) {
  Options options = std::move(flags.options);
  options.threads = std::min(options.threads, 256);
  if (flags.classes_flag->count() > 0) options.classes = ParseClasses(flags.classes);
  if (flags.class_names_flag->count() > 0) options.class_names = Split(flags.class_names, ',');
  if (flags.fashion_names) {
    options.class_names.assign(std::begin(kFashionNames), std::end(kFashionNames));
  }
  for (const std::string& name : options.class_names) CheckClassName(name);
  return options;
}

// The whole file, decompressed when it is gzip (zlib reads plain files as they are).
std::string ReadMaybeGzipped(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw UserError(path + ": cannot open");
  gzbuffer(file, 1 << 20);
  std::string bytes;
  std::vector<char> chunk(1 << 22);
  while (true) {
    const int read = gzread(file, chunk.data(), static_cast<unsigned>(chunk.size()));
    if (read < 0) {
      int code = 0;
      const std::string reason = gzerror(file, &code);
      gzclose(file);
      throw UserError(path + ": cannot read: " + reason);
    }
    if (read == 0) break;
    bytes.append(chunk.data(), read);
  }
  // A gzip stream cut short reads as a short file; gzclose_r reports it.
  const int closed = gzclose(file);
  if (closed != Z_OK && closed != Z_BUF_ERROR) throw UserError(path + ": cannot read to its end");
  if (closed == Z_BUF_ERROR) throw UserError(path + ": the gzip stream is truncated");
  return bytes;
}

uint32_t BigEndian32(const std::string& bytes, size_t at) {
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data()) + at;
  return (uint32_t{data[0]} << 24) | (uint32_t{data[1]} << 16) | (uint32_t{data[2]} << 8) |
         uint32_t{data[3]};
}

std::string Hex(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", value);
  return text;
}

// Checks the header (magic number, then one big-endian size per dimension)
// and that the payload has exactly the size the header promises.
std::vector<uint32_t> ReadIdxHeader(const std::string& path, const std::string& bytes,
                                    uint32_t magic, const char* what) {
  if (bytes.size() < 4) throw UserError(path + ": too short for an IDX file");
  const uint32_t found = BigEndian32(bytes, 0);
  if (found != magic) {
    throw UserError(path + ": magic number " + Hex(found) + " is not that of an IDX " + what +
                    " file (" + Hex(magic) + ")");
  }
  const size_t dimensions = magic & 0xff;
  const size_t header = 4 + 4 * dimensions;
  if (bytes.size() < header) throw UserError(path + ": IDX header is cut short");
  std::vector<uint32_t> sizes;
  uint64_t payload = 1;
  for (size_t d = 0; d < dimensions; ++d) {
    sizes.push_back(BigEndian32(bytes, 4 + 4 * d));
    payload *= sizes.back();
  }
  if (bytes.size() - header != payload) {
    throw UserError(path + ": holds " + std::to_string(bytes.size() - header) +
                    " bytes of data, its header promises " + std::to_string(payload));
  }
  return sizes;
}

struct ImageFile {
  std::string bytes;
  int64_t count = 0;
  int rows = 0;
  int cols = 0;
  const uint8_t* Pixels(int64_t index) const {
    return reinterpret_cast<const uint8_t*>(bytes.data()) + 16 + index * rows * cols;
  }
};

ImageFile ReadImages(const std::string& path) {
  ImageFile images;
  images.bytes = ReadMaybeGzipped(path);
  const std::vector<uint32_t> sizes = ReadIdxHeader(path, images.bytes, kImagesMagic, "image");
  if (sizes[1] == 0 || sizes[2] == 0 || sizes[1] > 65535 || sizes[2] > 65535) {
    throw UserError(path + ": image size " + std::to_string(sizes[1]) + "x" +
                    std::to_string(sizes[2]) + " is not usable");
  }
  images.count = sizes[0];
  images.rows = static_cast<int>(sizes[1]);
  images.cols = static_cast<int>(sizes[2]);
  return images;
}

std::vector<uint8_t> ReadLabels(const std::string& path) {
  const std::string bytes = ReadMaybeGzipped(path);
  ReadIdxHeader(path, bytes, kLabelsMagic, "label");
  return std::vector<uint8_t>(bytes.begin() + 8, bytes.end());
}

struct Selected {
  int64_t index;
  int label;
};

// Per class, in file order: skip the first skip_per_class, keep up to per_class.
std::vector<Selected> SelectImages(const std::vector<uint8_t>& labels, const Options& options,
                                   const std::vector<bool>& wanted) {
  std::vector<int64_t> seen(256, 0);
  std::vector<Selected> selected;
  for (size_t index = 0; index < labels.size(); ++index) {
    const int label = labels[index];
    if (!wanted[label]) continue;
    const int64_t rank = seen[label]++;
    if (rank >= options.skip_per_class && rank - options.skip_per_class < options.per_class) {
      selected.push_back({static_cast<int64_t>(index), label});
    }
  }
  return selected;
}

std::vector<bool> WantedLabels(const Options& options, const std::vector<uint8_t>& labels) {
  std::vector<bool> wanted(256, false);
  if (options.classes) {
    for (int label : *options.classes) wanted[label] = true;
  } else {
    for (uint8_t label : labels) wanted[label] = true;
  }
  return wanted;
}

std::string ClassName(const Options& options, int label) {
  if (options.class_names.empty()) return std::to_string(label);
  if (label >= static_cast<int>(options.class_names.size())) {
    throw UserError("no class name for label " + std::to_string(label) + " (" +
                    std::to_string(options.class_names.size()) + " names given)");
  }
  return options.class_names[label];
}

// Zero-padded so that file names sort in file order, which keeps the order
// ScanImageFolder lists them in.
std::string FileName(int64_t index, int64_t count) {
  const int width = static_cast<int>(std::to_string(std::max<int64_t>(count - 1, 0)).size());
  char name[32];
  std::snprintf(name, sizeof(name), "%0*lld.png", width, static_cast<long long>(index));
  return name;
}

// Encodes the selected images on several threads: PNG compression, not the
// disk, bounds the speed.
void WritePngs(const ImageFile& images, const std::vector<Selected>& selected,
               const std::map<int, fs::path>& class_dirs, int threads) {
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::string first_error;
  auto work = [&] {
    for (size_t i = next++; i < selected.size(); i = next++) {
      const Selected& item = selected[i];
      const fs::path path = class_dirs.at(item.label) / FileName(item.index, images.count);
      // A view of the file's bytes: IDX stores rows top to bottom, as OpenCV does.
      const cv::Mat image(images.rows, images.cols, CV_8UC1,
                          const_cast<uint8_t*>(images.Pixels(item.index)));
      bool written = false;
      try {
        written = cv::imwrite(path.string(), image);
      } catch (const cv::Exception&) {
        written = false;  // reported below with the path, which OpenCV's text lacks
      }
      if (!written) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (first_error.empty()) first_error = path.string() + ": cannot write";
        next = selected.size();
      }
    }
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t) workers.emplace_back(work);
  work();
  for (std::thread& worker : workers) worker.join();
  if (!first_error.empty()) throw UserError(first_error);
}

int Run(const Options& options) {
  const auto start = std::chrono::steady_clock::now();
  const ImageFile images = ReadImages(options.images_path);
  const std::vector<uint8_t> labels = ReadLabels(options.labels_path);
  if (static_cast<int64_t>(labels.size()) != images.count) {
    throw UserError(options.labels_path + ": holds " + std::to_string(labels.size()) +
                    " labels, but " + options.images_path + " holds " +
                    std::to_string(images.count) + " images");
  }
  const std::vector<bool> wanted = WantedLabels(options, labels);
  const std::vector<Selected> selected = SelectImages(labels, options, wanted);

  // Every name is checked before the first folder is made.
  std::map<int, fs::path> class_dirs;
  std::map<int, int64_t> written_per_class;
  for (int label = 0; label < 256; ++label) {
    if (!wanted[label]) continue;
    class_dirs[label] = fs::path(options.out_dir) / ClassName(options, label);
    written_per_class[label] = 0;
  }
  for (const auto& [label, dir] : class_dirs) {
    std::error_code error;
    fs::create_directories(dir, error);
    if (error) throw UserError(dir.string() + ": cannot create: " + error.message());
  }
  for (const Selected& item : selected) ++written_per_class[item.label];

  const int threads = options.threads > 0
                          ? options.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  WritePngs(images, selected, class_dirs, threads);

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "wrote " << selected.size() << " images (" << images.rows << "x" << images.cols
            << ") of " << class_dirs.size() << " classes to " << options.out_dir << " in "
            << seconds << " s:";
  for (const auto& [label, count] : written_per_class) {
    std::cout << " " << ClassName(options, label) << "=" << count;
  }
  std::cout << "\n";
  for (const auto& [label, count] : written_per_class) {
    if (count == 0) {
      std::cerr << "idx_to_folder: warning: class " << ClassName(options, label)
                << " got no images\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "idx_to_folder"};
  Flags flags;
  AddFlags(app, flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    // Help is a success; every usage error exits 1, as a bad file does.
    return app.exit(error) == 0 ? 0 : 1;
  }
  try {
    return Run(FinishOptions(std::move(flags)));
  } catch (const UserError& error) {
    std::cerr << "idx_to_folder: " << error.what() << "\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "idx_to_folder: unexpected failure: " << error.what() << "\n";
    return 1;
  }
}
